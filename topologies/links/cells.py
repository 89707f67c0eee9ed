"""Cells (gNBs) as Mininet nodes whose data plane is a cell inside the link engine's relay.

A factory topology declares a gNB as a switch with UEs on radio links and one backhaul (N3) link
to the UPF. The runner passes :attr:`LinkEngine.cell_class <topologies.links.engine.LinkEngine>`
for it, so the topology still reads as the factory, but no Open vSwitch bridge is made: each UE's
radio link ends inside the relay, in the cell, which serves the cell's shared capacity per direction
and forwards between its UEs and its backhaul (relay/cell.c). No UE has a port on any OVS bridge;
the UPF sees one port per cell. Per UE packet on the way up: its radio link (own delay, jitter,
loss), the cell's shared capacity, the backhaul: one relay crossing instead of two crossings and
an OVS bridge.

Its ports (:class:`CellPort`) are Mininet interface records with no kernel interface behind them:
configuring or deleting one does nothing; the UE's end of the radio link is a real veth into the
relay namespace. A UE moves to another cell with :meth:`LinkEngine.move_ue`; the Mininet objects
keep the cell it was declared in.
"""

from __future__ import annotations

from typing import Any

from mininet.link import Intf
from mininet.node import Switch

from topologies.links.params import DirectionParams


class CellPort(Intf):
    """A port of a cell: a record for Mininet, with no kernel interface (the relay holds the cell)."""

    def config(self, **_params: Any) -> dict:
        return {}

    def ifconfig(self, *args: Any) -> str:
        return ""

    def isUp(self, setUp: bool = False) -> bool:  # noqa: N802, N803 (Mininet's names)
        return True

    def setMAC(self, macstr: str) -> str:  # noqa: N802
        self.mac = macstr
        return ""

    def setIP(self, ipstr: str, prefixLen: int | None = None) -> str:  # noqa: N802, N803
        return ""

    def updateAddr(self) -> tuple[str | None, str | None]:  # noqa: N802
        return self.ip, self.mac

    def delete(self) -> None:
        if self.node is not None:
            self.node.delIntf(self)
        self.link = None

    def status(self) -> str:
        return "OK"


class RelayCell(Switch):
    """Base of the engine-bound cell class: a gNB node with no OVS bridge (see the module docstring).

    ``cell_capacity``: (uplink, downlink) DirectionParams the cell's UEs share (transparent: none);
    ``scenario_name``: the cell's name in the scenario (its link is ``cell_<name>``);
    ``nr_plan``: a :class:`topologies.nr.config.NrPlan` to run the NR slot model (relay/nrcell.c).
    """

    is_relay_cell = True
    engine: Any = None  # set on the subclass made by make_cell_class

    def __init__(self, name: str, scenario_name: str | None = None,
                 cell_capacity: tuple[DirectionParams, DirectionParams] | None = None,
                 nr_plan: Any = None, **params: Any) -> None:
        for key in ("batch", "inNamespace"):  # an OVS switch's options: a cell has no use for them
            params.pop(key, None)
        Switch.__init__(self, name, inNamespace=False, **params)
        self.cell_name = scenario_name or name
        uplink, downlink = cell_capacity or (DirectionParams(), DirectionParams())
        try:
            self.cell_link = self.engine.add_cell(self.cell_name, uplink, downlink, nr=nr_plan)
        except BaseException:
            self.terminate()  # the node's shell
            raise

    def start(self, controllers: Any) -> None:
        """Nothing to start: the cell serves packets from its creation."""

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's name)
        """Forget the ports (records only); the engine removes the cell with the relay."""
        if deleteIntfs:
            for intf in list(self.intfList()):
                if isinstance(intf, CellPort):
                    intf.delete()

    def connected(self) -> bool:
        return True


def is_cell(node: Any) -> bool:
    """True for a cell node (its links end inside the relay)."""
    return bool(getattr(node, "is_relay_cell", False))


def make_cell_class(engine: Any) -> type:
    """A RelayCell subclass whose cells live in ``engine`` (a LinkEngine)."""
    return type("EngineCell", (RelayCell,), {"engine": engine})

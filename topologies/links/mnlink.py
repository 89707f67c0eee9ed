"""The Mininet Link subclass bound to a LinkEngine.

``net.addLink(node1, node2, cls=engine.link_class, link_name=..., uplink=..., downlink=...)``:
``uplink`` is node1 -> node2, ``downlink`` node2 -> node1. A link whose both directions are
transparent (and not ``dynamic``) is a plain veth pair; any other is made and emulated by the
engine's backend (how its interfaces are made is the backend's: see topologies/links/backend.py).
The node-side interfaces carry exactly the names and MACs Mininet asked for, so its Intf objects
work unchanged. This module uses only the engine's public link-building methods.

A link with a cell (:mod:`topologies.links.cells`) at one end is a UE's radio link (cell = node2)
or the cell's backhaul (cell = node1): the engine serves it in the cells' relay, the cell's end is
a :class:`~topologies.links.cells.CellPort` record and only the other end is a real interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mininet.link import Link

from topologies.links.backend import Endpoint, veth_offloads
from topologies.links.direction import DOWNLINK, UPLINK
from topologies.links.params import DirectionParams


class LinkBuilder(Protocol):
    """The part of :class:`topologies.links.engine.LinkEngine` a link class uses."""

    switch_hop_ms: float
    backend: Any  # a LinkBackend: ``owns_qdisc``

    def add_link(self, name: str, emulated: bool, switch_hops: Mapping[str, int] | None = None,
                 cell: str | None = None, cell_end: int = 0, ue_mac: str | None = None) -> None: ...
    def make_intf_pair(self, name: str, end1: Endpoint, end2: Endpoint,
                       options: Mapping[str, Any] | None = None) -> None: ...
    def offloads(self, name: str, uplink: DirectionParams, downlink: DirectionParams,
                 txo: bool) -> tuple[str, ...]: ...
    def attach(self, name: str, uplink: DirectionParams, downlink: DirectionParams) -> None: ...
    def remove_link(self, name: str) -> None: ...


def make_link_class(engine: LinkBuilder) -> type:
    """Return a Link subclass whose instances are emulated by ``engine``."""

    class EngineLink(Link):
        """Mininet link with per-direction delay/jitter/loss/rate (uplink = node1 -> node2).

        ``dynamic``: emulate it even if it starts transparent (it will be changed at run time);
        ``backend_options``: per-link options of the engine's backend; ``txo``: leave TX checksum
        offload on (the userspace OVS datapath needs it off).
        """

        def __init__(self, node1: Any, node2: Any, port1: int | None = None, port2: int | None = None,
                     intfName1: str | None = None, intfName2: str | None = None,
                     addr1: str | None = None, addr2: str | None = None, link_name: str | None = None,
                     uplink: DirectionParams | None = None, downlink: DirectionParams | None = None,
                     txo: bool = True, dynamic: bool = False,
                     backend_options: Mapping[str, Any] | None = None, **params: Any) -> None:
            if not link_name:
                raise ValueError("link_name is required for links of a LinkEngine")
            uplink = uplink or DirectionParams()
            downlink = downlink or DirectionParams()
            from topologies.links.cells import CellPort, is_cell

            self.link_name = link_name
            cell_end = 1 if is_cell(node1) else 2 if is_cell(node2) else 0
            self.emulated = bool(cell_end) or dynamic or not (uplink.is_transparent()
                                                               and downlink.is_transparent())
            self._backend_options = backend_options
            # e.g. netem lives in the ports' root qdiscs: switches must not touch them (switches.py)
            self.owns_qdisc = self.emulated and not cell_end and engine.backend.owns_qdisc
            # A direction entering an OVS switch (a root-namespace node, not a cell) carries its latency.
            engine.add_link(link_name, self.emulated, {UPLINK: 0 if _no_switch(node2) else 1,
                                                       DOWNLINK: 0 if _no_switch(node1) else 1},
                            cell=(node1, node2)[cell_end - 1].cell_name if cell_end else None,
                            cell_end=cell_end,
                            ue_mac=(node1.params.get("mac") or addr1) if cell_end == 2 else None,
                            ue_slice=node1.params.get("slice") if cell_end == 2 else None)
            if cell_end:
                params[f"cls{cell_end}"] = CellPort
            try:
                Link.__init__(self, node1, node2, port1=port1, port2=port2, intfName1=intfName1,
                              intfName2=intfName2, addr1=addr1, addr2=addr2, **params)
                words = (engine.offloads(link_name, uplink, downlink, txo) if self.emulated
                         else veth_offloads(uplink, downlink, txo))
                if words:
                    for end, (node, intf) in enumerate(((node1, self.intf1), (node2, self.intf2)), 1):
                        if end != cell_end:
                            node.cmd("ethtool", "-K", intf.name, *words)
                if self.emulated:
                    engine.attach(link_name, uplink, downlink)
            except BaseException:
                engine.remove_link(link_name)
                raise

        def makeIntfPair(self, intfname1: str, intfname2: str, addr1: str | None = None,  # noqa: N802
                         addr2: str | None = None, node1: Any = None, node2: Any = None,
                         deleteIntfs: bool = True) -> None:  # noqa: N803
            if not self.emulated:
                Link.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2, deleteIntfs=False)
                return
            engine.make_intf_pair(self.link_name, Endpoint(node1, intfname1, addr1),
                                  Endpoint(node2, intfname2, addr2), self._backend_options)

        def delete(self) -> None:
            engine.remove_link(self.link_name)
            if self.intf1 is not None:
                Link.delete(self)

    return EngineLink


def _no_switch(node: Any) -> bool:
    """True unless ``node`` is an OVS switch (root namespace): hosts and cells add no switch hop."""
    return bool(getattr(node, "inNamespace", True)) or bool(getattr(node, "is_relay_cell", False))

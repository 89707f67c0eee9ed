"""Mininet topology of a factory site, declared from a :class:`~topologies.scenario.Scenario`.

Like any Mininet ``Topo``, :class:`FactoryTopo` only declares nodes and links; the network
runner picks the switch, host and link classes. Each link carries per-direction parameters:

* ``link_params="engine"`` (the runner): ``link_name``, ``uplink`` and ``downlink``
  (DirectionParams for node1 -> node2 and node2 -> node1), read by the link engine's link class;
* ``link_params="tclink"`` (for ``mn --custom topologies/factory.py --topo factory --link tc``):
  Mininet ``TCLink`` ``params1`` / ``params2`` (egress of each end), which need netem.

Switch names carry a per-run prefix (``fsab`` + ``gnb1``) because OVS bridges live in the root
namespace that other work may share; hosts live in their own namespaces and keep plain names.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # loaded by path, as `mn --custom` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mininet.topo import Topo  # noqa: E402

from topologies.links import DirectionParams  # noqa: E402
from topologies.scenario import LinkPair, Scenario, load_scenario  # noqa: E402

SUBNET = "10.77.0.0/16"  # private addresses inside the emulated hosts' own namespaces
# The backup backhaul's links ([backup], topologies/backup.py). The network's forwarding tables follow
# the tree without BACKUP_LINK (every switch reaches the cloud over the LEO link); the controller
# steers a slice onto it with higher-priority rules (controllers/adaptation.py), so the loop it
# closes never carries a frame both ways: broadcasts are flooded on the tree only.
LEO_LINK = "leo"
BACKUP_SITE_LINK = "site_backup"
BACKUP_LINK = "backup"


def host_ip(index: int) -> str:
    """Address of the ``index``-th host (0-based) in :data:`SUBNET`, with prefix length."""
    return f"10.77.{index // 250}.{index % 250 + 1}/16"


def host_mac(index: int) -> str:
    """Locally administered unicast MAC of the ``index``-th host."""
    value = 0x020000000000 + index + 1
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -1, -8))


class FactoryTopo(Topo):
    """UEs on gNB switches, gNBs on the UPF, edge server, LEO terminal, ground station, cloud, and
    optionally a backup switch between the UPF and the ground station ([backup])."""

    def build(self, scenario: Scenario | None = None, switch_prefix: str = "fs",
              link_params: str = "engine", initial: dict[str, LinkPair] | None = None) -> None:
        """Declare the site. ``initial`` gives starting values of schedule-driven links
        (``leo``, ``orbit_compute``) before their schedule starts."""
        scenario = scenario or load_scenario(None)
        initial = initial or {}
        if link_params not in ("engine", "tclink"):
            raise ValueError(f"link_params={link_params!r}; allowed: 'engine', 'tclink'")
        self.scenario = scenario
        self.switch_prefix = switch_prefix
        self._link_mode = link_params
        self._dpid = 0
        self._hosts = 0

        upf = self._switch(scenario.core.upf, "upf")
        for cell in scenario.cells:
            # cell_link / cell_capacity: the cell's own data path, when the runner makes the gNB a
            # cell inside the link engine's relay (topologies/links/cells.py); an OVS gNB ignores them
            gnb = self._switch(cell.name, "gnb", cell_link=f"cell_{cell.name}",
                               cell_capacity=(cell.capacity.uplink, cell.capacity.downlink),
                               nr_plan=scenario.nr_plan(cell.name))
            self._link(gnb, upf, f"bh_{cell.name}", cell.backhaul)
        for ue in scenario.ues:
            host = self._host(ue.name, role="ue", kind=ue.kind, slice=ue.slice, cell=ue.cell)
            gnb = self.switch_name(ue.cell)
            # an NR cell's air interface is its model (relay/nrcell.c): the radio link is transparent
            nr = scenario.cell(ue.cell).nr is not None
            self._link(host, gnb, f"radio_{ue.name}", LinkPair() if nr else scenario.slice(ue.slice).radio)
        edge = self._host(scenario.core.edge, role="edge")
        self._link(upf, edge, "edge", scenario.core.edge_link)
        ut = self._switch(scenario.leo.terminal, "ut")
        gs = self._switch(scenario.leo.ground_station, "gs")
        self._link(upf, ut, "site", LinkPair())
        orbit = scenario.leo.orbit is not None
        self._link(ut, gs, LEO_LINK, initial.get("leo", scenario.leo.link), dynamic=orbit)
        cloud = self._host(scenario.cloud.name, role="cloud")
        self._link(gs, cloud, "terrestrial", scenario.cloud.terrestrial)
        if scenario.backup is not None:  # the backup backhaul: UPF -> backup switch -> ground station side
            backup = self._switch(scenario.backup.switch, "backup", backup_kind=scenario.backup.kind)
            self._link(upf, backup, BACKUP_SITE_LINK, LinkPair())
            self._link(backup, gs, BACKUP_LINK, scenario.backup.link)
        if scenario.leo.compute_host:
            sat = self._host(scenario.leo.compute_host, role="orbit_compute")
            self._link(ut, sat, "orbit_compute", initial.get("orbit_compute", LinkPair()),
                       dynamic=True)

    def switch_name(self, name: str) -> str:
        """The Mininet/OVS name of scenario switch ``name``."""
        return f"{self.switch_prefix}{name}"

    def _switch(self, name: str, role: str, **info: object) -> str:
        self._dpid += 1
        return self.addSwitch(self.switch_name(name), dpid=f"{self._dpid:016x}", role=role,
                              scenario_name=name, **info)

    def _host(self, name: str, **info: str) -> str:
        index = self._hosts
        self._hosts += 1
        return self.addHost(name, ip=host_ip(index), mac=host_mac(index), **info)

    def _link(self, node1: str, node2: str, link_name: str, pair: LinkPair,
              dynamic: bool = False) -> None:
        # node1 -> node2 is always the uplink direction (towards the core / cloud / satellite),
        # except for the UPF -> edge server link, where "uplink" means towards the server.
        # ``dynamic`` links are replayed from a schedule, so they are emulated even if they
        # start transparent.
        if self._link_mode == "engine":
            extra = {"dynamic": True} if dynamic else {}
            self.addLink(node1, node2, link_name=link_name, uplink=pair.uplink, downlink=pair.downlink,
                         **extra)
        else:
            self.addLink(node1, node2, params1=tclink_params(pair.uplink),
                         params2=tclink_params(pair.downlink))


def tclink_params(params: DirectionParams) -> dict:
    """Mininet TCLink interface parameters for the egress direction ``params``."""
    out: dict = {"txo": False}
    if params.delay_ms:
        out["delay"] = f"{params.delay_ms}ms"
    if params.jitter_ms:
        out["jitter"] = f"{params.jitter_ms}ms"
    if params.loss_pct:
        out["loss"] = params.loss_pct
    if params.rate_mbps:
        out["bw"] = params.rate_mbps
    return out


def orbit_start_links(scenario: Scenario) -> dict[str, LinkPair]:
    """Values of the orbit-driven links at schedule time 0 (for static use, e.g. ``mn``)."""
    from topologies.leo_links import scenario_link_schedules, start_links

    return start_links(scenario_link_schedules(scenario, 1.0))


def _mn_factory_topo(scenario_path: str | None = None) -> FactoryTopo:
    """Entry point for ``mn --custom topologies/factory.py --topo factory[,FILE]``.

    ``mn`` cannot replay schedules: orbit-driven links are fixed at their values at t = 0, and
    Mininet's TCLink takes only delay, jitter, loss and rate (no loss bursts, queue limits or
    jitter distribution; with jitter and no rate, netem may reorder).
    """
    scenario = load_scenario(scenario_path)
    return FactoryTopo(scenario=scenario, link_params="tclink", initial=orbit_start_links(scenario))


topos = {"factory": _mn_factory_topo}

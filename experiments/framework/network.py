"""Build and tear down the emulated factory network for one run.

:class:`EmulatedNetwork` owns everything a run creates: the link engine, the controller process,
the Mininet hosts, switches and links. Every object is recorded in the run's
:class:`~topologies.manifest.Manifest` before it is created, and :meth:`EmulatedNetwork.stop`
removes exactly those, so a crash, Ctrl-C or ``factorysat clean`` after SIGKILL leaves nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import RemoteController

from controllers.adaptation import SteerSwitch
from controllers.apps import DEFAULT_APPS, PATH_SWITCH_FILE_NAME
from controllers.launcher import ControllerProcess, ready_timeout_s
from controllers.policy import HostSpec, SlicePolicy, SliceSpec, SwitchSpec
from experiments.framework.results import write_json
from experiments.framework.watchdog import ovs_daemon_pid
from topologies.errors import RunFailed
from topologies.factory import BACKUP_LINK, LEO_LINK, FactoryTopo
from topologies.hosts import FactoryHost, static_arp
from topologies.links import LinkEngine, select_backend
from topologies.links.backend import check_settings, direction_params_in
from topologies.links.backends import REGISTRY
from topologies.links.cells import is_cell
from topologies.links.ovs_calibrate import SwitchHopMeter, hop_to_compensate_ms
from topologies.manifest import STATE_ROOT, Manifest
from topologies.scenario import LinkPair, Scenario
from topologies.schedprio import (
    OVS_RT_PRIO,
    SaturationGuard,
    idle_and_total_ticks,
    main_thread_ids,
    raise_to_fifo,
)
from topologies.switches import OvsNotRunning, ovs_running, select_datapath, switch_class
from topologies.validate import ConfigError

log = logging.getLogger(__name__)
OVS_REALTIME_DEFAULT = True  # chosen by its measured effect: README "Factory scale"
_TAG_CHARS = string.ascii_lowercase + string.digits


def claim_tag() -> tuple[str, Manifest]:
    """A 2-character run tag no live or leftover run uses, claimed by creating its manifest."""
    for _ in range(200):
        tag = "".join(secrets.choice(_TAG_CHARS) for _ in range(2))
        try:
            return tag, Manifest.create(f"fs{tag}")
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run tag: too many manifests in {STATE_ROOT}; run `factorysat clean`")


def _resolve(select: Any, override: str | None, flag: str, configured: str, key: str) -> str:
    """Apply ``select`` to the CLI override or the scenario value; errors name which one."""
    value, path = (override, flag) if override else (configured, key)
    try:
        return select(value)
    except ValueError as exc:
        raise ConfigError(path, value, str(exc)) from None


class EmulatedNetwork:
    """The factory network of ``scenario`` on Mininet, with link engine and controller."""

    def __init__(self, scenario: Scenario, link_backend: str | None = None,
                 ovs_datapath: str | None = None,
                 initial_links: dict[str, LinkPair] | None = None,
                 controller_apps: Sequence[str] = DEFAULT_APPS, ovs_realtime: bool | None = None) -> None:
        self.scenario = scenario
        # userspace datapath only: its packet thread gets SCHED_FIFO for the run (schedprio.py)
        self.ovs_realtime = OVS_REALTIME_DEFAULT if ovs_realtime is None else ovs_realtime
        self.ovs_priority: list[dict[str, Any]] = []  # what was changed, per thread (metadata.json)
        self.ovs_realtime_dropped: dict[str, Any] | None = None  # when and why it was given back
        self._guard = SaturationGuard()
        self.controller_apps = controller_apps
        self.initial_links = initial_links
        self.run_dir = Path()
        self._path_switch_seq = 0
        # Resolve choices first: a bad choice fails before anything is created.
        self.backend = _resolve(select_backend, link_backend, "--link-backend",
                                scenario.link_backend, "site.link_backend")
        self.datapath = _resolve(select_datapath, ovs_datapath, "--ovs-datapath",
                                 scenario.ovs_datapath, "site.ovs_datapath")
        # Every link setting (and each scheduled link's start) against what this backend can do.
        self.backend_warnings: list[str] = check_settings(
            REGISTRY[self.backend],
            direction_params_in(scenario) + direction_params_in(initial_links or {}, "leo schedule"))
        if not ovs_running():
            raise OvsNotRunning("the Open vSwitch daemons do not answer (ovs-vsctl show failed); "
                                "run ./bootstrap.sh, which starts them")
        self.tag = ""
        self.prefix = ""
        self.manifest: Manifest | None = None
        self.engine: LinkEngine | None = None
        self.controller: ControllerProcess | None = None
        self.net: Mininet | None = None
        self.topo: FactoryTopo | None = None
        self.switch_hop: dict[str, Any] | None = None
        self.hop_meter: SwitchHopMeter | None = None

    # --- bring-up ----------------------------------------------------------------------------
    def start(self, run_dir: Path) -> None:
        """Create everything (logs under ``run_dir``); on failure remove what was created, re-raise."""
        self.run_dir = run_dir
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        setLogLevel("warning")
        self.tag, self.manifest = claim_tag()
        self.prefix = f"fs{self.tag}"
        logs = self.run_dir / "logs"
        self.engine = LinkEngine(self.backend, self.tag, self.manifest, logs, seed=self.scenario.seed)
        self.engine.start()
        # Per-switch latency of this machine's OVS datapath, charged to each link direction that
        # enters a switch (topologies/links/ovs_calibrate.py), so path delays match the scenario.
        self.hop_meter = SwitchHopMeter(self.datapath, self.tag, self.manifest, logs)  # kept: load probe
        self.switch_hop = self.hop_meter.calibrate()
        self.engine.switch_hop_ms = hop_to_compensate_ms(self.switch_hop)

        self.topo = FactoryTopo(scenario=self.scenario, switch_prefix=self.prefix,
                                initial=self.initial_links)
        cells = set()
        for name in self.topo.switches():
            if self.topo.nodeInfo(name).get("role") == "gnb":  # a cell inside the relay, no bridge
                self.topo.nodeInfo(name)["cls"] = self.engine.cell_class
                cells.add(name)
            else:  # each name is checked free (NameClash) as it is recorded
                self.manifest.add("ovs_bridge", name)
        for node1, node2, info in self.topo.links(withInfo=True):
            for node, port in ((node1, info["port1"]), (node2, info["port2"])):
                if self.topo.isSwitch(node) and node not in cells:  # OVS ports: root namespace
                    self.manifest.add("link", f"{node}-eth{port}")

        # The userspace datapath needs TX checksum offload off on every interface (DESIGN.md).
        link = functools.partial(self.engine.link_class, txo=self.datapath != "user")
        # Bridges and their root-namespace ports are tagged with the run id as they are created.
        self.net = Mininet(topo=self.topo, switch=switch_class(self.datapath, self.manifest.run_id),
                           host=FactoryHost, controller=None, link=link, build=False, autoSetMacs=False,
                           waitConnected=False)
        self.net.build()
        # Mininet starts one shell per node during build(); their pids exist only from then on.
        for node in (*self.net.hosts, *self.net.switches):
            self.manifest.add_process(f"shell:{node.name}", node.pid)
        static_arp(self.net.hosts)

        policy_path = self.run_dir / "controller_policy.json"
        write_json(policy_path, self.controller_policy().to_dict())
        status_path = self.run_dir / "controller_status.json"
        if self.scenario.mobility is not None:  # handovers: slice_switch watches this file (path_switch)
            status_path.with_name(PATH_SWITCH_FILE_NAME).touch()
        self.controller = ControllerProcess()
        self.controller.start(policy_path, status_path, logs / "controller.log",
                              apps=self.controller_apps)  # free loopback port
        self.manifest.add_process("controller", self.controller.pid)
        remote = self.net.addController(RemoteController(f"{self.prefix}-c0", ip="127.0.0.1",
                                                         port=self.controller.port))
        self.manifest.add_process("shell:controller", remote.pid)  # Mininet keeps a shell per node
        self.net.start()
        bridges = self.ovs_switches()
        ports = sum(len(s.intfList()) for s in bridges)
        self.controller.wait_ready({int(s.dpid, 16): s.name for s in bridges},
                                   timeout_s=ready_timeout_s(len(bridges), ports))
        ovs_pid = ovs_daemon_pid("ovs-vswitchd")
        if self.ovs_realtime and self.datapath == "user" and ovs_pid is not None:
            self.ovs_priority = raise_to_fifo(self.manifest, "ovs-vswitchd", main_thread_ids(ovs_pid),
                                              OVS_RT_PRIO)

    def controller_policy(self) -> SlicePolicy:
        """The slice policy the controller apps read (see controllers/policy.py)."""
        assert self.net is not None and self.topo is not None
        ue_slice = {ue.name: ue.slice for ue in self.scenario.ues}
        servers = set(self.scenario.servers())
        switches = []
        backup = self._backup_switch()
        for switch in self.ovs_switches():
            access = [name for peer in _peers(switch)  # a cell's UEs are at the switch it hangs on
                      for name in ([p.name for p in _peers(peer)] if is_cell(peer) else [peer.name])]
            # the backup switch carries only steered traffic: it forwards on the backup tree and
            # floods nothing (the loop it closes never sees a broadcast); the others use the LEO tree
            ports = self._mac_to_port(switch, skip=(LEO_LINK if switch.name == backup else BACKUP_LINK,))
            switches.append(SwitchSpec(switch.name, int(switch.dpid, 16),
                                       tuple(n for n in access if n in ue_slice or n in servers),
                                       ports, flood=switch.name != backup))
        return SlicePolicy(
            slices={s.name: SliceSpec(s.name, s.dscp, s.max_rate_mbps) for s in self.scenario.slices},
            hosts=tuple(HostSpec(h.name, h.IP(), h.MAC(), ue_slice.get(h.name)) for h in self.net.hosts),
            switches=tuple(switches))

    def _backup_switch(self) -> str | None:
        assert self.topo is not None
        return self.topo.switch_name(self.scenario.backup.switch) if self.scenario.backup else None

    def _link_ends(self, names: tuple[str, ...]) -> set[tuple[str, int]]:
        """(node, port) of both ends of the topology's links named ``names``."""
        assert self.topo is not None
        return {end for n1, n2, info in self.topo.links(withInfo=True) if info.get("link_name") in names
                for end in ((n1, info["port1"]), (n2, info["port2"]))}

    def _mac_to_port(self, switch: Any, skip: tuple[str, ...] = (BACKUP_LINK,)) -> dict[str, int]:
        """For each host MAC, the port of ``switch`` on the path towards it (BFS) in the tree left
        when the links named ``skip`` are taken out (the LEO tree by default: no backup link)."""
        table: dict[str, int] = {}
        seen = {switch.name}
        skipped = self._link_ends(skip)
        queue: deque = deque()
        for intf in switch.intfList():
            if intf.link and (switch.name, switch.ports[intf]) not in skipped:
                peer = intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
                queue.append((peer.node, switch.ports[intf]))
        while queue:
            node, port = queue.popleft()
            if node.name in seen:
                continue
            seen.add(node.name)
            if node in self.net.hosts:
                table[node.MAC()] = port
                continue
            for intf in node.intfList():
                if intf.link and (node.name, node.ports.get(intf)) not in skipped:
                    peer = intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
                    queue.append((peer.node, port))
        return table

    def steer_switches(self) -> list[SteerSwitch]:
        """Every OVS switch's port towards each host address over the LEO tree and the backup tree
        (controllers/adaptation.py); [] without a [backup]."""
        assert self.net is not None
        if self.scenario.backup is None:
            return []
        ip_of = {h.MAC(): h.IP() for h in self.net.hosts}
        out = []
        for switch in self.ovs_switches():
            leo, backup = self._mac_to_port(switch, (BACKUP_LINK,)), self._mac_to_port(switch, (LEO_LINK,))
            out.append(SteerSwitch(int(switch.dpid, 16), {ip_of[m]: p for m, p in leo.items()},
                                   {ip_of[m]: p for m, p in backup.items()}))
        return out

    def controller_file(self, name: str) -> Path:
        """A file beside the controller's status file (where its apps read and write theirs)."""
        assert self.controller is not None and self.controller.status_path is not None
        return self.controller.status_path.with_name(name)

    def host(self, name: str) -> Any:
        assert self.net is not None
        return self.net.get(name)

    def path_switch(self, ue: str, cell: str) -> dict[str, Any]:
        """Tell the controller that ``ue`` is now behind ``cell``: one line for slice_switch
        (controllers/apps, PATH_SWITCH_FILE_NAME), the UPF's port towards the cell; the record."""
        assert self.net is not None and self.topo is not None and self.controller is not None
        assert self.controller.status_path is not None
        upf = self.net.get(self.topo.switch_name(self.scenario.core.upf))
        gnb = self.net.get(self.topo.switch_name(cell))
        port = next(upf.ports[intf] for intf in upf.intfList() if intf.link and gnb in
                    (intf.link.intf1.node, intf.link.intf2.node))
        self._path_switch_seq += 1
        record = {"seq": self._path_switch_seq, "ue": ue, "mac": self.host(ue).MAC(),
                  "dpid": int(upf.dpid, 16), "port": port, "cell": cell, "sent_ns": time.time_ns()}
        # where slice_switch reads it: beside its status file; one complete line per write
        with self.controller_file(PATH_SWITCH_FILE_NAME).open("a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def start_load_probe(self, duration_s: float) -> None:
        """Probe an OVS hop while the traffic runs (ovs_calibrate.SwitchHopMeter)."""
        if self.hop_meter is not None:
            self.hop_meter.start_under_load(duration_s)

    def stop_load_probe(self) -> dict[str, Any] | None:
        """The OVS hop under the run's load (metadata.json ``ovs_switch_hop_under_load``)."""
        return self.hop_meter.stop_under_load() if self.hop_meter is not None else None

    def metadata(self) -> dict[str, Any]:
        return {"link_backend": self.backend, "ovs_datapath": self.datapath, "run_tag": self.prefix,
                "ovs_switch_hop": self.switch_hop,
                "ovs_realtime": self.realtime_state(),
                "link_engine": self.engine.metadata() if self.engine else None,
                "controller_port": self.controller.port if self.controller else None,
                "controller_apps": list(self.controller.apps) if self.controller else None}

    # --- teardown ----------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Remove everything this run created (idempotent); return what could not be removed."""
        problems: list[str] = []
        for step in (self._restore_priorities, self._close_hop_meter, self._stop_net, self._stop_controller,
                     self._stop_engine):
            try:
                step()
            except Exception as exc:  # keep tearing down
                problems.append(f"{step.__name__}: {exc}")
                log.warning("teardown step %s failed: %s", step.__name__, exc)
        if self.manifest is not None:
            problems += self.manifest.remove_all()
        return problems

    def _restore_priorities(self) -> None:
        """Give ovs-vswitchd's threads back the scheduling they had (first: OVS stays ours)."""
        for entry in [e for e in (self.manifest.entries if self.manifest else []) if e["kind"] == "sched"]:
            problem = self.manifest.remove("sched", entry["name"])
            if problem:
                raise RuntimeError(problem)

    def guard_realtime(self, t_s: float) -> None:
        """Call often while the traffic runs (``t_s``: seconds since it started): once the machine
        is saturated, ovs-vswitchd's thread gets its normal priority back (schedprio.SaturationGuard)."""
        if self.ovs_realtime_dropped is not None or not any(
                e["kind"] == "sched" for e in (self.manifest.entries if self.manifest else [])):
            return  # OVS is not real-time (any more): nothing to guard
        ticks = idle_and_total_ticks()
        if ticks is not None and self._guard.saturated(time.monotonic(), *ticks):
            self._restore_priorities()
            self.ovs_realtime_dropped = {
                "at_s": round(t_s, 1),
                "why": f"machine saturated (idle <= {100 * self._guard.idle_share:g} % for "
                       f"{self._guard.window_s:g} s): a real-time OVS would starve the traffic engine"}
            log.warning("ovs-vswitchd back to normal priority %.1f s into the traffic: %s", t_s,
                        self.ovs_realtime_dropped["why"])

    def realtime_state(self) -> dict[str, Any]:
        """metadata.json ``ovs_realtime``: requested, what was changed per thread, whether and when
        it was given back mid-run."""
        return {"requested": self.ovs_realtime, "threads": self.ovs_priority,
                "dropped": self.ovs_realtime_dropped}

    def _close_hop_meter(self) -> None:
        meter, self.hop_meter = self.hop_meter, None
        if meter is not None:
            meter.close()

    def _stop_net(self) -> None:
        net, self.net = self.net, None
        if net is not None:
            net.stop()
            for controller in net.controllers:  # RemoteController.stop() leaves its shell running
                controller.terminate()

    def _stop_controller(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def _stop_engine(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop()

    # --- liveness (experiments/framework/watchdog.py) -------------------------------------------
    def components(self) -> dict[str, Callable[[], RunFailed | None]]:
        """What a run watches while it runs: the link engine's processes and threads (relay, tc
        batches, schedule replayers) and the controller; each check returns a RunFailed once dead."""
        checks: dict[str, Callable[[], RunFailed | None]] = {}
        if self.engine is not None:
            checks["link engine"] = self.engine.failed
        if self.controller is not None:
            checks["controller"] = self.controller.failed
        return checks

    def ovs_switches(self) -> list[Any]:
        """The Mininet switches that are OVS bridges (cells are not)."""
        return [s for s in self.net.switches if not is_cell(s)] if self.net is not None else []

    def bridges(self) -> list[str]:
        """The OVS bridges of this run."""
        return [s.name for s in self.ovs_switches()]


def _peers(node: Any) -> list[Any]:
    """The nodes at the other end of ``node``'s links."""
    return [intf.link.intf1.node if intf.link.intf2 is intf else intf.link.intf2.node
            for intf in node.intfList() if intf.link]

"""Per-slice UDP flows: planned from the scenario (pure), run in the emulated hosts."""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.framework.agent_procs import kill_agents, start_agent, stop_agent, wait_ready
from experiments.framework.results import write_json
from experiments.framework.watchdog import ovs_daemon_pid
from experiments.kinds.slices.engine import TrafficEngine, engine_binary
from topologies.scenario import Scenario
from topologies.switches import ovs_socket_drops

RECEIVER_PORT = 5001
ECHO_PORT = 5002
LINK_COUNTERS_FILE = "link_counters.json"  # in raw/: every link's counters when the receivers stopped
OVS_COUNTERS_FILE = "ovs_counters.json"  # in raw/: switch port and receive-socket drops, before/after
_DUMP_PORT = re.compile(r"port\s+(\S+?):\s*rx pkts=\S+, bytes=\S+, drop=(\S+), errs=(\S+),.*?\n"
                        r"\s*tx pkts=\S+, bytes=\S+, drop=(\S+), errs=(\S+),", re.S)


def ovs_port_counters(bridges: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """Per bridge and port: rx/tx drops and errors as the switch counts them now (``ovs-ofctl
    dump-ports``; "?" = not counted = 0). A bridge that does not answer is left out."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for bridge in bridges:
        try:
            proc = subprocess.run(["ovs-ofctl", "--timeout=5", "-O", "OpenFlow13", "dump-ports", bridge],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            out[bridge] = {m[1].strip('"'): dict(zip(("rx_dropped", "rx_errors", "tx_dropped", "tx_errors"),
                                                      (int(v) if v.isdigit() else 0 for v in m.groups()[1:]),
                                                      strict=True))
                           for m in _DUMP_PORT.finditer(proc.stdout)}
    return out


@dataclass(frozen=True)
class FlowPlan:
    flow_id: int
    ue: str
    kind: str
    slice: str
    destination: str
    payload_bytes: int
    interval_ms: float
    latency_bound_ms: float
    dscp_expected: int
    start_offset_s: float = 0.0  # starts this long after traffic start, and runs to its end


def plan_flows(scenario: Scenario) -> list[FlowPlan]:
    """One flow per UE, numbered from 1 in UE order."""
    flows = []
    for flow_id, ue in enumerate(scenario.ues, start=1):
        s = scenario.slice(ue.slice)
        flows.append(FlowPlan(flow_id, ue.name, ue.kind, ue.slice, ue.traffic.destination,
                              ue.traffic.payload_bytes, ue.traffic.interval_ms, s.latency_bound_ms,
                              s.dscp))
    return flows


def flows_table(flows: list[FlowPlan], raw_dir: Path) -> pd.DataFrame:
    """Flow plans joined with what each sender reports it scheduled and sent (``sender_summary``
    False and zero counts where a sender left no summary)."""
    rows = []
    for flow in flows:
        path = raw_dir / f"send-{flow.ue}.json"
        sent = json.loads(path.read_text()) if path.exists() else None  # missing: reconciliation fails
        rows.append({**flow.__dict__, "sender_summary": sent is not None,
                     **{k: (sent or {}).get(k, 0) for k in ("packets_scheduled", "packets_sent",
                                                            "send_errors")}})
    return pd.DataFrame(rows)


class TrafficRun:
    """Receivers on the destination hosts and one sender per UE, all inside their hosts."""

    def __init__(self, network: Any, flows: list[FlowPlan], raw_dir: Path, log_dir: Path,
                 probes: tuple = (), drain_s: float = 2.0) -> None:
        self.network = network
        self.flows = flows
        self.probes = probes
        self.drain_s = drain_s
        self.raw_dir = raw_dir
        self.log_dir = log_dir
        self.receivers: dict[str, subprocess.Popen] = {}
        self.senders: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}  # sender/receiver name -> its log file
        self.ovs_before: dict[str, dict[str, dict[str, int]]] = {}  # switch port drops at start
        self.ovs_sockets_before: dict[str, int] = {}  # userspace OVS receive-socket drops at start
        self.engine_binary = engine_binary()  # None: Python agents for the flows too
        self.engine: TrafficEngine | None = None

    @property
    def implementation(self) -> str:
        """``c`` (one traffic engine process) or ``python`` (a sender and a receiver process each)."""
        return "c" if self.engine_binary is not None else "python"

    def _popen(self, host_name: str, args: list[str], log_name: str) -> subprocess.Popen:
        self.logs[log_name.removesuffix(".txt")] = self.log_dir / log_name
        return start_agent(self.network, host_name, "experiments.agents.traffic", args,
                           self.log_dir / log_name, f"traffic:{log_name}")

    def start_receivers(self, timeout_s: float = 30.0) -> None:
        """Start a receiver per destination and an echo server per probe target; wait for them."""
        waits = []
        destinations = sorted({f.destination for f in self.flows})
        if self.engine_binary is not None:
            self.engine = TrafficEngine(self.engine_binary, self.network.manifest,
                                        self.log_dir / "traffic-engine.txt")
            for dest in destinations:
                self.engine.add_receiver(dest, self.network.host(dest).pid, RECEIVER_PORT,
                                         self.raw_dir / f"recv-{dest}.bin")
        else:
            for dest in destinations:
                out = self.raw_dir / f"recv-{dest}.bin"
                proc = self._popen(dest, ["recv", "--port", str(RECEIVER_PORT), "--out", str(out)],
                                   f"recv-{dest}.txt")
                self.receivers[dest] = proc
                waits.append((f"receiver on {dest}", proc, Path(f"{out}.ready")))
        for target in sorted({p.target for p in self.probes}):
            ready = self.raw_dir / f"echo-{target}.ready"
            proc = self._popen(target, ["echo", "--port", str(ECHO_PORT), "--ready", str(ready)],
                               f"echo-{target}.txt")
            self.receivers[f"echo-{target}"] = proc
            waits.append((f"echo server on {target}", proc, ready))
        wait_ready(waits, timeout_s)
        self.ovs_before = ovs_port_counters(self._bridges())  # before the clock starts: no traffic yet
        self.ovs_sockets_before = ovs_socket_drops(self._bridges())

    def _bridges(self) -> list[str]:
        bridges = getattr(self.network, "bridges", None)  # the run's OVS bridges (cells are none)
        return list(bridges()) if bridges is not None else []

    def start_senders(self, start_ns: int, duration_s: float) -> None:
        if self.engine is not None:
            for flow in self.flows:
                self.engine.add_sender(flow.flow_id, self.network.host(flow.ue).pid,
                                       self.network.host(flow.destination).IP(), RECEIVER_PORT,
                                       flow.payload_bytes, flow.interval_ms,
                                       start_ns + round(flow.start_offset_s * 1e9),
                                       duration_s - flow.start_offset_s,
                                       self.raw_dir / f"send-{flow.ue}.json")
            self.engine.go()
        else:
            for flow in self.flows:
                dest_ip = self.network.host(flow.destination).IP()
                self.senders[flow.ue] = self._popen(flow.ue, [
                    "send", "--dest", dest_ip, "--port", str(RECEIVER_PORT),
                    "--flow-id", str(flow.flow_id), "--payload-bytes", str(flow.payload_bytes),
                    "--interval-ms", repr(flow.interval_ms),
                    "--start-ns", str(start_ns + round(flow.start_offset_s * 1e9)),
                    "--duration-s", repr(duration_s - flow.start_offset_s),
                    "--summary", str(self.raw_dir / f"send-{flow.ue}.json")], f"send-{flow.ue}.txt")
        for spec in self.probes:
            name = f"probe-{spec.source}-{spec.target}"
            self.senders[name] = self._popen(spec.source, [
                "probe", "--dest", self.network.host(spec.target).IP(), "--port", str(ECHO_PORT),
                "--payload-bytes", str(spec.payload_bytes), "--interval-ms", repr(spec.interval_ms),
                "--start-ns", str(start_ns), "--duration-s", repr(duration_s),
                "--drain-s", repr(self.drain_s), "--out", str(self.raw_dir / f"{name}.bin"),
                "--summary", str(self.raw_dir / f"{name}.json")], f"{name}.txt")

    def wait_senders(self, timeout_s: float) -> None:
        """Wait for every sender (and probe client, which also drains its echoes) to finish."""
        deadline = time.monotonic() + timeout_s
        if self.engine is not None:
            self.engine.wait_senders(timeout_s)
        for ue, proc in self.senders.items():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                code = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"sender on {ue} still running {timeout_s} s after start") from None
            if code != 0:
                log = self.logs.get(ue if ue.startswith("probe-") else f"send-{ue}")
                raise RuntimeError(f"sender {ue} exited with {code}; see {log}")

    def stop_receivers(self, timeout_s: float = 10.0) -> None:
        """Stop every receiver (each drains its socket), then store the link counters of that
        instant in ``raw/link_counters.json`` (what the relay still holds is in flight at stop)."""
        if self.engine is not None:
            self.engine.stop(timeout_s)
        for dest, proc in self.receivers.items():
            stop_agent(f"receiver on {dest}", proc, timeout_s)
        engine = getattr(self.network, "engine", None)
        if engine is not None:
            write_json(self.raw_dir / LINK_COUNTERS_FILE, engine.counters())
        if self.ovs_before:
            write_json(self.raw_dir / OVS_COUNTERS_FILE,
                       {"before": self.ovs_before, "after": ovs_port_counters(self._bridges()),
                        "socket_drops": {"before": self.ovs_sockets_before,
                                         "after": ovs_socket_drops(self._bridges())}})

    def cpu_components(self) -> dict[str, list[int | None]]:
        """The processes of each emulator component, for :class:`CpuMeter` (metadata.json)."""
        engine = getattr(self.network, "engine", None)
        controller = getattr(self.network, "controller", None)
        return {"relay": list(engine.data_path_pids()) if engine is not None else [],
                "traffic engine": [self.engine.proc.pid] if self.engine is not None else [],
                "python agents": [p.pid for p in (*self.senders.values(), *self.receivers.values())],
                "ovs-vswitchd": [ovs_daemon_pid("ovs-vswitchd")],
                "controller": [controller.pid] if controller is not None else []}

    def kill_all(self) -> None:
        engine = [self.engine.proc] if self.engine is not None else []
        kill_agents([*engine, *self.senders.values(), *self.receivers.values()])

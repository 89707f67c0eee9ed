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
from experiments.kinds.slices import models
from experiments.kinds.slices.engine import TrafficEngine, engine_binary
from topologies.scenario import Scenario
from topologies.switches import ovs_socket_drops
from topologies.traffic_defaults import CYCLE_BOUND_TRANSFER_INTERVALS, SURVIVAL_TRANSFER_INTERVALS

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


MODELS = ("periodic", "video", "command", "status")


@dataclass(frozen=True)
class FlowPlan:
    """One flow of a UE. ``model``: ``periodic`` (a packet every interval), ``video`` (groups of
    pictures, models.video), ``command`` (a control loop's downlink, periodic) or ``status`` (its
    uplink: one reply per command received, ``reply_to`` = the command's flow id). ``source`` sends
    ("" = the UE); TS 22.104 service parameters: ``message_bound_ms`` (0 = the slice's latency
    bound; a video frame's deadline; a loop's cycle bound), ``survival_time_ms``, ``target_pct``."""

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
    source: str = ""
    direction: str = "uplink"
    model: str = "periodic"
    reply_to: int = 0
    message_bound_ms: float = 0.0
    survival_time_ms: float = 0.0
    target_pct: float = 0.0
    frame_rate_fps: float = 0.0
    gop_frames: int = 0
    i_frame_bytes: int = 0
    p_frame_bytes: int = 0
    frame_spread_ms: float = 0.0

    @property
    def sender(self) -> str:
        return self.source or self.ue


def flow_pattern(flow: Any) -> models.Pattern | None:
    """The packet schedule of a flow (a FlowPlan or a flows-table row); None for ``status`` flows,
    which answer commands instead of following a schedule."""
    model = getattr(flow, "model", "periodic")
    if model == "status":
        return None
    if model == "video":
        return models.video(flow.frame_rate_fps, int(flow.gop_frames), int(flow.i_frame_bytes),
                            int(flow.p_frame_bytes), int(flow.payload_bytes), flow.frame_spread_ms)
    return models.periodic(flow.interval_ms, int(flow.payload_bytes))


def plan_flows(scenario: Scenario) -> list[FlowPlan]:
    """The UEs' flows, numbered from 1 in UE order: one per UE, two for a control loop (its
    downlink command first). Control loops and cameras start at a seeded phase (models.phase_ns)."""
    flows: list[FlowPlan] = []
    for ue in scenario.ues:
        s, t = scenario.slice(ue.slice), ue.traffic
        survival = t.survival_time_ms if t.survival_time_ms is not None else \
            SURVIVAL_TRANSFER_INTERVALS * t.transfer_interval_ms
        common = dict(ue=ue.name, kind=ue.kind, slice=ue.slice, latency_bound_ms=s.latency_bound_ms,
                      dscp_expected=s.dscp, survival_time_ms=survival,
                      target_pct=t.availability_target_pct or s.reliability_target_pct)
        flow_id = len(flows) + 1
        if t.pattern == "control_loop":
            phase = models.phase_ns(scenario.seed, flow_id, t.interval_ms) / 1e9
            cycle = t.cycle_bound_ms if t.cycle_bound_ms is not None else \
                CYCLE_BOUND_TRANSFER_INTERVALS * t.interval_ms
            flows.append(FlowPlan(flow_id=flow_id, destination=ue.name, payload_bytes=t.command_bytes,
                                  interval_ms=t.interval_ms, start_offset_s=phase, source=t.destination,
                                  direction="downlink", model="command", **common))
            flows.append(FlowPlan(flow_id=flow_id + 1, destination=t.destination,
                                  payload_bytes=t.payload_bytes, interval_ms=t.interval_ms,
                                  start_offset_s=phase, model="status", reply_to=flow_id,
                                  message_bound_ms=cycle, **common))
        elif t.pattern == "video":
            v = t.video
            assert v is not None
            phase = models.phase_ns(scenario.seed, flow_id, v.frame_interval_ms) / 1e9
            flows.append(FlowPlan(flow_id=flow_id, destination=t.destination, payload_bytes=t.payload_bytes,
                                  interval_ms=t.interval_ms, start_offset_s=phase, model="video",
                                  message_bound_ms=v.frame_deadline_ms, frame_rate_fps=v.frame_rate_fps,
                                  gop_frames=v.gop_frames, i_frame_bytes=v.i_frame_bytes,
                                  p_frame_bytes=v.p_frame_bytes, frame_spread_ms=v.frame_spread_ms,
                                  **common))
        else:
            flows.append(FlowPlan(flow_id=flow_id, destination=t.destination, payload_bytes=t.payload_bytes,
                                  interval_ms=t.interval_ms, **common))
    return flows


def flow_name(flow: Any) -> str:
    """A flow's name (summary.json ``flows``): its UE; a control loop's two flows add their model
    (``agv1-command``, ``agv1-status``)."""
    model = getattr(flow, "model", "periodic")
    return f"{flow.ue}{'' if model in ('periodic', 'video') else '-' + model}"


def summary_name(flow: Any) -> str:
    """The sender summary file of a flow: ``send-<flow name>.json``."""
    return f"send-{flow_name(flow)}.json"


def flows_table(flows: list[FlowPlan], raw_dir: Path) -> pd.DataFrame:
    """Flow plans joined with what each sender reports it scheduled and sent (``sender_summary``
    False and zero counts where a sender left no summary)."""
    rows = []
    for flow in flows:
        path = raw_dir / summary_name(flow)
        sent = json.loads(path.read_text()) if path.exists() else None  # missing: reconciliation fails
        rows.append({**flow.__dict__, "sender": flow.sender, "sender_summary": sent is not None,
                     **{k: (sent or {}).get(k, 0) for k in ("packets_scheduled", "packets_sent",
                                                            "send_errors")}})
    scheduled = {row["flow_id"]: row["packets_scheduled"] for row in rows}
    for row in rows:  # the sequence numbers a flow may carry: a status flow answers its commands'
        row["seq_space"] = scheduled.get(row["reply_to"], 0) if row["model"] == "status" \
            else row["packets_scheduled"]
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
        replies = [f for f in self.flows if f.model == "status"]  # answered by the UE's receiver
        if self.engine_binary is not None:
            self.engine = TrafficEngine(self.engine_binary, self.network.manifest,
                                        self.log_dir / "traffic-engine.txt")
            for dest in destinations:
                self.engine.add_receiver(dest, self.network.host(dest).pid, RECEIVER_PORT,
                                         self.raw_dir / f"recv-{dest}.bin")
            for f in replies:
                self.engine.add_reply(f.sender, f.reply_to, f.flow_id, self.network.host(f.destination).IP(),
                                      RECEIVER_PORT, f.payload_bytes, self.raw_dir / summary_name(f))
        else:
            for dest in destinations:
                out = self.raw_dir / f"recv-{dest}.bin"
                reply = ";".join(f"{f.reply_to},{f.flow_id},{self.network.host(f.destination).IP()},"
                                 f"{RECEIVER_PORT},{f.payload_bytes},{self.raw_dir / summary_name(f)}"
                                 for f in replies if f.sender == dest)
                proc = self._popen(dest, ["recv", "--port", str(RECEIVER_PORT), "--out", str(out),
                                          "--reply", reply], f"recv-{dest}.txt")
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

    def _pattern_file(self, flow: FlowPlan) -> Path | None:
        """A video flow's pattern file in raw/ (periodic flows need none); None for the others."""
        pattern = flow_pattern(flow) if flow.model == "video" else None
        return pattern.write(self.raw_dir / f"pattern-{flow.flow_id}.txt") if pattern is not None else None

    def start_senders(self, start_ns: int, duration_s: float) -> None:
        scheduled = [f for f in self.flows if f.model != "status"]  # status flows answer commands
        if self.engine is not None:
            for flow in scheduled:
                pid, dest_ip = self.network.host(flow.sender).pid, self.network.host(flow.destination).IP()
                begin, length = start_ns + round(flow.start_offset_s * 1e9), duration_s - flow.start_offset_s
                pattern = self._pattern_file(flow)
                if pattern is not None:
                    self.engine.add_pattern_sender(flow.flow_id, pid, dest_ip, RECEIVER_PORT, pattern, begin,
                                                   length, self.raw_dir / summary_name(flow))
                else:
                    self.engine.add_sender(flow.flow_id, pid, dest_ip, RECEIVER_PORT, flow.payload_bytes,
                                           flow.interval_ms, begin, length, self.raw_dir / summary_name(flow))
            self.engine.go()
        else:
            for flow in scheduled:
                dest_ip = self.network.host(flow.destination).IP()
                name = f"send-{flow_name(flow)}"
                pattern = self._pattern_file(flow)
                self.senders[name] = self._popen(flow.sender, [
                    "send", "--dest", dest_ip, "--port", str(RECEIVER_PORT),
                    "--flow-id", str(flow.flow_id), "--payload-bytes", str(flow.payload_bytes),
                    "--interval-ms", repr(flow.interval_ms),
                    "--start-ns", str(start_ns + round(flow.start_offset_s * 1e9)),
                    "--duration-s", repr(duration_s - flow.start_offset_s),
                    "--summary", str(self.raw_dir / summary_name(flow)),
                    "--pattern", str(pattern or "")], f"{name}.txt")
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
                log = self.logs.get(ue)
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

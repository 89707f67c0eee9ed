"""A minimal experiment kind, registered only by the test that runs it (test_example_kind.py).

It is the README's "add an experiment kind" recipe in one file: UDP round trips from one host to
another, using the traffic agent's ``echo`` and ``probe`` modes. A real kind lives in a folder
``experiments/kinds/<name>/`` and gets one line in ``experiments/kinds/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.agents.traffic import PROBE_RECORD
from experiments.framework.agent_procs import kill_agents, start_agent, stop_agent, wait_ready
from experiments.framework.definition import Experiment
from experiments.framework.kind import Kind
from experiments.framework.plotting import plt, save
from experiments.framework.session import RunSession
from experiments.framework.stats import percentile, share_pct
from topologies.scenario import Scenario
from topologies.validate import ConfigError, Table

ECHO_PORT = 5009


@dataclass(frozen=True)
class EchoParams:
    source: str = "agv1"
    target: str = "edge1"
    interval_ms: float = 10.0


class EchoKind(Kind):
    """Round-trip time from ``source`` to an echo server on ``target``."""

    name = "echo_example"

    def parse_params(self, raw: dict) -> EchoParams:
        d = EchoParams()
        with Table(raw, "params") as t:
            return EchoParams(t.str("source", d.source), t.str("target", d.target),
                              t.number("interval_ms", d.interval_ms, min=1, max=1000))

    def check(self, experiment: Experiment, scenario: Scenario, params: EchoParams) -> None:
        for key in ("source", "target"):
            if getattr(params, key) not in scenario.host_names():
                raise ConfigError(f"params.{key}", getattr(params, key), "a host of the scenario")

    def run_traffic(self, session: RunSession, params: EchoParams) -> None:
        raw, logs = session.raw_dir, session.log_dir
        echo = start_agent(session.network, params.target, "experiments.agents.traffic",
                           ["echo", "--port", str(ECHO_PORT), "--ready", str(raw / "echo.ready")],
                           logs / "echo.txt", "example:echo")
        procs = [echo]
        try:
            wait_ready([("echo server", echo, raw / "echo.ready")], timeout_s=10)
            start_ns = session.start_clock()
            dest = session.network.host(params.target).IP()
            client = start_agent(session.network, params.source, "experiments.agents.traffic", [
                "probe", "--dest", dest, "--port", str(ECHO_PORT), "--payload-bytes", "64",
                "--interval-ms", repr(params.interval_ms), "--start-ns", str(start_ns),
                "--duration-s", repr(session.duration_s), "--drain-s", "1",
                "--out", str(raw / "probe.bin"), "--summary", str(raw / "probe.json")],
                logs / "probe.txt", "example:probe")
            procs.append(client)
            session.progress(start_ns)
            if client.wait(timeout=session.duration_s + 30) != 0:
                raise RuntimeError("probe client failed; see logs/probe.txt")
            stop_agent("echo server", echo, timeout_s=10)
        finally:
            kill_agents(procs)

    def collect(self, session: RunSession, params: EchoParams) -> dict[str, pd.DataFrame]:
        records = [PROBE_RECORD.unpack_from(chunk) for chunk in _chunks((session.raw_dir / "probe.bin")
                                                                       .read_bytes())]
        frame = pd.DataFrame(records, columns=["seq", "send_ns", "echo_ns", "recv_ns"])
        frame["t_s"] = (frame["send_ns"] - session.start_ns) / 1e9
        frame["rtt_ms"] = (frame["recv_ns"] - frame["send_ns"]) / 1e6
        return {"rtt": frame}

    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: EchoParams
                  ) -> dict[str, Any]:
        rtt = tables["rtt"]["rtt_ms"].to_numpy()
        scheduled = int(session.duration_s * 1000 / params.interval_ms)
        return {"pair": f"{params.source}->{params.target}", "probes_received": int(rtt.size),
                "rtt_ms_p50": percentile(rtt, 50), "rtt_ms_p99": percentile(rtt, 99),
                "received_pct": share_pct(int(rtt.size), scheduled)}

    def draw_figures(self, run_dir: Path) -> list[Path]:
        rtt = pd.read_parquet(run_dir / "rtt.parquet")
        fig, ax = plt.subplots(figsize=(6.4, 3.2), layout="constrained")
        ax.plot(rtt["t_s"], rtt["rtt_ms"], ".", markersize=2)
        ax.set_xlabel("time since traffic start (s)")
        ax.set_ylabel("RTT (ms)")
        return save(fig, run_dir / "rtt")

    def print_summary(self, summary: dict[str, Any]) -> str:
        return f"{summary['pair']}: RTT p50 {summary['rtt_ms_p50']} ms, p99 {summary['rtt_ms_p99']} ms"


def _chunks(data: bytes) -> list[bytes]:
    size = PROBE_RECORD.size
    return [data[i:i + size] for i in range(0, len(data) - len(data) % size, size)]


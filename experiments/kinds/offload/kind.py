"""The ``offload`` experiment kind: inference offload from a factory camera to edge, orbit or cloud.

A camera UE sends image requests (UDP fragments, see :mod:`experiments.agents.offload`) to a server
on each target in turn: the factory edge server (behind the UPF), the in-orbit compute host
(terminal -> serving satellite -> laser ISLs -> computing satellite) and the ground cloud (LEO
link -> ground station -> PoP). Network delays are MEASURED in the emulator; the compute time is
MODELLED (model.py). params -> servers + client -> raw JSON lines -> ``requests`` table ->
summary (with the model's prediction beside the measurement) -> figure.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.agents.offload import request_schedule
from experiments.framework import accounting, stalls
from experiments.framework.agent_procs import kill_agents, start_agent, stop_agent, wait_ready
from experiments.framework.definition import Experiment
from experiments.framework.kind import Kind
from experiments.framework.plotting import save
from experiments.framework.session import RunSession
from experiments.kinds.offload import analysis, figures
from experiments.kinds.offload.model import (
    OffloadParams,
    check_scenario,
    parse_params,
    predict_response_ms,
    target_roles,
)
from topologies.errors import RunFailed
from topologies.scenario import Scenario
from topologies.validate import ConfigError

OFFLOAD_PORT = 5003


class OffloadRun:
    """Servers on every target and the client on the camera, all inside their hosts."""

    def __init__(self, session: RunSession, params: OffloadParams) -> None:
        self.session = session
        self.params = params
        self.servers: dict[str, subprocess.Popen] = {}
        self.client: subprocess.Popen | None = None

    def _popen(self, host_name: str, args: list[str], log_name: str) -> subprocess.Popen:
        return start_agent(self.session.network, host_name, "experiments.agents.offload", args,
                           self.session.log_dir / log_name, f"offload:{log_name}")

    def start_servers(self, timeout_s: float = 10.0) -> None:
        raw = self.session.raw_dir
        compute = self.params.compute_ms()
        for target in self.params.targets:
            self.servers[target.host] = self._popen(target.host, [
                "server", "--port", str(OFFLOAD_PORT), "--compute-ms", repr(compute[target.host]),
                "--reply-bytes", str(self.params.reply_bytes),
                "--out", str(raw / f"server-{target.host}.jsonl"),
                "--ready", str(raw / f"server-{target.host}.ready")], f"server-{target.host}.txt")
        wait_ready([(f"offload server on {host}", proc, raw / f"server-{host}.ready")
                    for host, proc in self.servers.items()], timeout_s)

    def start_client(self, start_ns: int, duration_s: float) -> None:
        p = self.params
        targets = [f"--target={t.host}={self.session.network.host(t.host).IP()}" for t in p.targets]
        self.client = self._popen(p.client, [
            "client", *targets, "--port", str(OFFLOAD_PORT), "--request-bytes", str(p.request_bytes),
            "--max-datagram-bytes", str(p.max_datagram_bytes),
            "--pacing-rate-mbps", repr(p.pacing_rate_mbps), "--interval-ms", repr(p.interval_ms),
            "--start-ns", str(start_ns), "--duration-s", repr(duration_s),
            "--timeout-ms", repr(p.timeout_ms), "--seed", str(self.session.scenario.seed),
            "--out", str(self.session.raw_dir / f"client-{p.client}.jsonl")], f"client-{p.client}.txt")

    def wait_client(self, timeout_s: float) -> None:
        assert self.client is not None
        try:
            code = self.client.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"offload client still running after {timeout_s} s") from None
        if code != 0:
            raise RuntimeError(f"offload client exited with {code}; see logs/client-*.txt")

    def stop_servers(self, timeout_s: float = 10.0) -> None:
        for host, proc in self.servers.items():
            stop_agent(f"offload server on {host}", proc, timeout_s)

    def kill_all(self) -> None:
        kill_agents([*([self.client] if self.client else []), *self.servers.values()])


class OffloadKind(Kind):
    """Response time of inference offload from a camera to edge, in-orbit and cloud targets."""

    name = "offload"

    def __init__(self) -> None:
        self._counts: dict[str, Any] | None = None  # loss split and reconciliation, from collect()

    def parse_params(self, raw: dict) -> OffloadParams:
        return parse_params(raw)

    def check(self, experiment: Experiment, scenario: Scenario, params: OffloadParams) -> None:
        check_scenario(params, scenario)
        requests = experiment.duration_s * 1000 / params.interval_ms
        if requests < len(params.targets):  # targets take turns: one would get no request at all
            raise ConfigError("params.interval_ms", params.interval_ms,
                              f"<= {experiment.duration_s * 1000 / len(params.targets):g} so that "
                              f"each of the {len(params.targets)} targets gets a request in "
                              f"duration_s = {experiment.duration_s:g}")

    def run_traffic(self, session: RunSession, params: OffloadParams) -> None:
        work = OffloadRun(session, params)
        try:
            work.start_servers()
            start_ns = session.start_clock()
            work.start_client(start_ns, session.duration_s)
            session.progress(start_ns)
            work.wait_client(timeout_s=session.duration_s + params.timeout_ms / 1000 + 30)
            work.stop_servers()
        finally:
            work.kill_all()

    def collect(self, session: RunSession, params: OffloadParams) -> dict[str, pd.DataFrame]:
        client, servers, problems = analysis.read_logs(session.raw_dir, params)
        planned = len(request_schedule(len(params.targets), session.start_ns,
                                       session.start_ns + int(session.duration_s * 1e9),
                                       int(params.interval_ms * 1e6), session.scenario.seed))
        more, checks = analysis.reconcile_requests(client, servers, planned)
        streams = analysis.datagram_streams(client, servers, params.client,
                                            accounting.session_links(session))
        counters = (session.metadata.get("link_engine") or {}).get("link_counters")
        problems += more + accounting.check_link_counters(streams, counters)
        self._counts = {"loss": accounting.account(streams, counters),
                        "reconciliation": accounting.reconciliation(problems, checks),
                        "source": "at teardown (metadata.json)" if counters else "unavailable"}
        if problems and not client:
            raise RunFailed(f"counts do not reconcile: {'; '.join(problems)}", component="reconciliation")
        roles = target_roles(session.scenario)
        requests = analysis.tidy_requests(session.raw_dir, params, roles, session.start_ns)
        return {"requests": stalls.flag(requests, session.host_stalls, "send_start_ns", "reply_recv_ns")}

    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: OffloadParams
                  ) -> dict[str, Any]:
        frames = session.leo.frames if session.leo else None
        predicted = predict_response_ms(params, session.scenario, frames, session.duration_s)
        summary = analysis.summarise(tables["requests"], params, target_roles(session.scenario), predicted)
        if self._counts is None:
            self.collect(session, params)
        assert self._counts is not None
        loss = self._counts["loss"]
        for host, target in summary["targets"].items():
            target["datagram_loss"] = {k: loss[host][k] for k in ("scheduled_pkts", *accounting.LOSS_KEYS)
                                       } if host in loss else None
        summary["loss_accounting"] = {
            "unit": "datagrams (request fragments and replies)", "total": loss["total"],
            "link_counters": self._counts["source"],
            "attribution": "a link's drops count for a target only if no other target's traffic "
                           "crosses it (the camera's radio hop is shared by every target)"}
        summary["reconciliation"] = self._counts["reconciliation"]
        summary["host_stalls"] = {
            **stalls.block(session.host_stalls, tables["requests"], include=True,
                           unavailable=session.metadata.get("host_stalls", {}).get("unavailable"),
                           rule="flagged when a stall window overlaps the request's life [first "
                                "fragment sent, reply received]; kept in every figure: a request "
                                "lives for its modelled compute time, so most would be touched"),
            "unit": "requests"}
        return summary

    def reconcile(self, tables: dict[str, pd.DataFrame], session: RunSession, params: OffloadParams
                  ) -> list[str]:
        if self._counts is None:
            self.collect(session, params)
        assert self._counts is not None
        return list(self._counts["reconciliation"]["problems"])

    def draw_figures(self, run_dir: Path) -> list[Path]:
        requests = pd.read_parquet(run_dir / "requests.parquet")
        summary = json.loads((run_dir / "summary.json").read_text())
        return save(figures.response_figure(requests, summary), run_dir / "offload_response")

    def print_summary(self, summary: dict[str, Any]) -> str:
        return analysis.format_summary(summary)

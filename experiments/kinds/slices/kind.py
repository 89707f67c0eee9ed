"""The ``slices`` experiment kind: every UE's flow at once, per-slice delay, loss and deadlines.

scenario -> flows (one per UE) -> receivers + senders in the hosts -> raw records -> tidy tables
(``packets``, ``flows``, ``rtt`` with probes) -> per-slice summary -> figures. Optional RTT
probes (``[[probes]]`` in experiment.toml) measure round trips, e.g. factory -> cloud over LEO.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.framework.kind import Kind
from experiments.framework.plotting import save
from experiments.framework.session import RunSession
from experiments.kinds.slices import analysis, figures
from experiments.kinds.slices.traffic import TrafficRun, flows_table, plan_flows


class SlicesKind(Kind):
    """Per-slice one-way delay, loss, deadline share and DSCP marking of every UE's flow."""

    name = "slices"

    def run_traffic(self, session: RunSession, params: Any) -> None:
        experiment = session.experiment
        traffic = TrafficRun(session.network, plan_flows(session.scenario), session.raw_dir,
                             session.log_dir, probes=experiment.probes, drain_s=experiment.drain_s)
        try:
            traffic.start_receivers()
            start_ns = session.start_clock()
            traffic.start_senders(start_ns, session.duration_s)
            session.progress(start_ns)
            traffic.wait_senders(timeout_s=session.duration_s + experiment.drain_s + 30)
            if not experiment.probes:  # probe clients already waited out the drain
                time.sleep(experiment.drain_s)
            traffic.stop_receivers()
        finally:
            traffic.kill_all()

    def collect(self, session: RunSession, params: Any) -> dict[str, pd.DataFrame]:
        raw = session.raw_dir
        flows = flows_table(plan_flows(session.scenario), raw)
        tables = {"packets": analysis.tidy_packets(sorted(raw.glob("recv-*.bin")), flows),
                  "flows": flows}
        if session.experiment.probes:
            tables["rtt"] = analysis.tidy_probes(sorted(raw.glob("probe-*.bin")), session.start_ns)
        return tables

    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any
                  ) -> dict[str, Any]:
        summary: dict[str, Any] = analysis.slice_summary(tables["packets"], tables["flows"])
        if "rtt" in tables:
            summary["probes"] = analysis.probe_summary(tables["rtt"])
        return summary

    def draw_figures(self, run_dir: Path) -> list[Path]:
        packets = pd.read_parquet(run_dir / "packets.parquet")
        flows = pd.read_parquet(run_dir / "flows.parquet")
        bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=True))
        paths = save(figures.owd_cdf(packets, bounds), run_dir / "owd_cdf")
        if (run_dir / "rtt.parquet").exists():
            rtt = pd.read_parquet(run_dir / "rtt.parquet")
            schedule = None
            if (run_dir / "leo_schedule.parquet").exists():
                frame = pd.read_parquet(run_dir / "leo_schedule.parquet")
                schedule = frame[frame["link"] == "leo"]
            paths += save(figures.rtt_timeline(rtt, schedule), run_dir / "rtt_timeline")
        return paths

    def print_summary(self, summary: dict[str, Any]) -> str:
        return analysis.format_table(summary)

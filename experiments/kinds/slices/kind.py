"""The ``slices`` experiment kind: every UE's flow at once, per-slice delay, loss and deadlines.

scenario -> network -> traffic -> raw records -> tidy tables -> summary -> figure. Optional RTT
probes (``[[probes]]`` in experiment.toml) measure round trips, e.g. factory -> cloud over LEO.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import pandas as pd

from experiments.framework.definition import Experiment
from experiments.framework.session import RunOptions, RunResult, RunSession
from experiments.kinds.slices import analysis, figures
from experiments.kinds.slices.traffic import TrafficRun, flows_table, plan_flows
from topologies.validate import ConfigError

# experiment kind -> module with ``run(experiment, options) -> RunResult``
KINDS = {"slices": "experiments.kinds.slices.kind", "offload": "experiments.kinds.offload.kind"}


def run_experiment(experiment: Experiment, options: RunOptions = RunOptions()) -> RunResult:
    """Run ``experiment`` with the module of its kind; complete only if this returns."""
    module = importlib.import_module(KINDS[experiment.kind])
    return module.run(experiment, options)


def check_probes(experiment: Experiment, hosts: tuple[str, ...]) -> None:
    """Probe endpoints must be hosts of the scenario (before anything starts)."""
    for i, spec in enumerate(experiment.probes):
        for key in ("source", "target"):
            if getattr(spec, key) not in hosts:
                raise ConfigError(f"probes[{i}].{key}", getattr(spec, key), "one of " + ", ".join(hosts))


def run(experiment: Experiment, options: RunOptions) -> RunResult:
    session = RunSession(experiment, options)
    check_probes(experiment, session.scenario.host_names())
    flows = plan_flows(session.scenario)
    with session:
        traffic = TrafficRun(session.network, flows, session.raw_dir, session.log_dir,
                             probes=experiment.probes, drain_s=experiment.drain_s)
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

    run_dir = session.run_dir
    flow_df = flows_table(flows, session.raw_dir)
    packets = analysis.tidy_packets(sorted(session.raw_dir.glob("recv-*.bin")), flow_df)
    summary = analysis.slice_summary(packets, flow_df)
    analysis.write_tables(run_dir, packets, flow_df, summary)
    if experiment.probes:
        rtt = analysis.tidy_probes(sorted(session.raw_dir.glob("probe-*.bin")), start_ns)
        rtt.to_parquet(run_dir / "rtt.parquet", index=False)
        summary["probes"] = analysis.probe_summary(rtt)
        analysis.write_summary(run_dir, summary)
    paths = draw_figures(run_dir)
    session.complete()
    return RunResult(run_dir, summary, paths)


def draw_figures(run_dir: Path) -> list[Path]:
    """(Re)draw every figure of a ``slices`` run from its stored tables; return the paths."""
    packets = pd.read_parquet(run_dir / "packets.parquet")
    flows = pd.read_parquet(run_dir / "flows.parquet")
    bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=True))
    paths = figures.save(figures.owd_cdf(packets, bounds), run_dir / "owd_cdf")
    if (run_dir / "rtt.parquet").exists():
        rtt = pd.read_parquet(run_dir / "rtt.parquet")
        schedule = None
        if (run_dir / "leo_schedule.parquet").exists():
            frame = pd.read_parquet(run_dir / "leo_schedule.parquet")
            schedule = frame[frame["link"] == "leo"]
        paths += figures.save(figures.rtt_timeline(rtt, schedule), run_dir / "rtt_timeline")
    return paths

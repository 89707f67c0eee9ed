"""Run one experiment end to end: scenario -> network -> traffic -> tables -> summary -> figure."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from experiments import analysis, figures
from experiments.experiment import Experiment
from experiments.network import EmulatedNetwork
from experiments.results import base_metadata, mark_complete, new_run_dir, write_json
from experiments.traffic import TrafficRun, flows_table, plan_flows
from topologies.scenario import Scenario

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of the experiment and scenario."""

    duration_s: float | None = None
    link_backend: str | None = None
    ovs_datapath: str | None = None
    seed: int | None = None
    scenario_path: Path | None = None
    results_root: Path | None = None
    progress: bool = True


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    figure_paths: list[Path]


class _Terminated(Exception):
    """SIGTERM received: unwind like Ctrl-C so that teardown runs."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise _Terminated("terminated by SIGTERM")


def run_experiment(experiment: Experiment, options: RunOptions = RunOptions()) -> RunResult:
    """Run ``experiment``; the run folder is complete only if this returns."""
    if options.scenario_path is not None:
        from topologies.scenario import load_scenario

        scenario = load_scenario(options.scenario_path)
    else:
        scenario = experiment.load_scenario()
    if options.seed is not None:
        scenario = replace(scenario, seed=options.seed)
    duration_s = options.duration_s or experiment.duration_s
    flows = plan_flows(scenario)

    network = EmulatedNetwork(scenario, options.link_backend, options.ovs_datapath)
    run_id, run_dir = new_run_dir(experiment.name, options.results_root)
    _write_inputs(run_dir, experiment, scenario, duration_s)
    metadata = {**base_metadata(), "experiment": experiment.name, "run_id": run_id,
                "scenario_source": scenario.source, "seed": scenario.seed, "duration_s": duration_s,
                "link_backend": network.backend, "ovs_datapath": network.datapath}
    write_json(run_dir / "metadata.json", metadata)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    traffic = TrafficRun(network, flows, run_dir / "raw", run_dir / "logs")
    try:
        _say(options, f"building the network ({len(scenario.ues)} UEs, link backend "
                      f"{network.backend}, OVS datapath {network.datapath})")
        t0 = time.monotonic()
        network.start(run_dir)
        metadata["bringup_s"] = round(time.monotonic() - t0, 3)
        metadata.update(network.metadata())
        write_json(run_dir / "metadata.json", metadata)
        traffic.start_receivers()
        start_ns = time.time_ns() + 1_000_000_000  # every sender waits for the same instant
        traffic.start_senders(start_ns, duration_s)
        _progress(options, start_ns, duration_s)
        traffic.wait_senders(timeout_s=duration_s + 30)
        time.sleep(experiment.drain_s)
        traffic.stop_receivers()
    except BaseException as exc:
        metadata["error"] = repr(exc)  # the folder stays without COMPLETE: visibly incomplete
        raise
    finally:
        traffic.kill_all()
        problems = network.stop()
        signal.signal(signal.SIGTERM, previous)
        if problems:
            log.error("teardown left objects behind: %s; run `factorysat clean`", problems)
    metadata["teardown_problems"] = problems
    write_json(run_dir / "metadata.json", metadata)

    flow_df = flows_table(flows, run_dir / "raw")
    packets = analysis.tidy_packets(sorted((run_dir / "raw").glob("recv-*.bin")), flow_df)
    summary = analysis.slice_summary(packets, flow_df)
    analysis.write_tables(run_dir, packets, flow_df, summary)
    bounds = {s.name: s.latency_bound_ms for s in scenario.slices}
    figure_paths = figures.save(figures.owd_cdf(packets, bounds), run_dir / "owd_cdf")
    mark_complete(run_dir)
    return RunResult(run_dir, summary, figure_paths)


def _write_inputs(run_dir: Path, experiment: Experiment, scenario: Scenario, duration_s: float) -> None:
    """Copy the experiment definition and the resolved scenario into the run folder."""
    shutil.copyfile(experiment.folder / "experiment.toml", run_dir / "experiment.toml")
    resolved = {"source": scenario.source, "seed": scenario.seed, "duration_s": duration_s,
                "scenario": scenario.raw}
    (run_dir / "scenario.resolved.json").write_text(json.dumps(resolved, indent=2) + "\n")


def _say(options: RunOptions, text: str) -> None:
    if options.progress:
        print(f"factorysat: {text}", flush=True)


def _progress(options: RunOptions, start_ns: int, duration_s: float) -> None:
    """Show a progress bar until every flow's last packet should have left."""
    end_ns = start_ns + int(duration_s * 1e9)
    with tqdm(total=round(duration_s), unit="s", desc="traffic", disable=not options.progress,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s") as bar:
        while (now := time.time_ns()) < end_ns:
            done = max(0.0, (now - start_ns) / 1e9)
            bar.n = min(round(duration_s), int(done))
            bar.refresh()
            time.sleep(0.25)
        bar.n = round(duration_s)
        bar.refresh()

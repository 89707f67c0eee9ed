"""The ``factory`` experiment end to end as root, shortened: AGV control loops (downlink command,
uplink status answered by the UE), machine-vision cameras sending frames in groups of pictures and
sensors, over the NR cells and the LEO uplink; the summary reports TS 22.104 availability, survival
violations, MTBF and what the run can claim, per flow and per slice, and draws its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments.framework.definition import Experiment
from experiments.framework.pcap import parse_pcap_option
from experiments.framework.results import is_complete
from experiments.framework.session import RunOptions
from experiments.framework.skeleton import run_experiment

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def test_factory_run_reports_ts22104_service_per_flow_and_slice(tmp_path) -> None:
    experiment = Experiment.from_file(REPO / "experiments" / "factory" / "experiment.toml")
    result = run_experiment(experiment, RunOptions(duration_s=6.0, results_root=tmp_path / "results",
                                                   progress=False,
                                                   pcap=parse_pcap_option("edge1-eth0,agv1-eth0")))
    run_dir = Path(result.run_dir)
    assert is_complete(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reconciliation"]["ok"], summary["reconciliation"]
    flows = summary["flows"]
    loops = {name: f for name, f in flows.items() if f["model"] == "status"}
    commands = {name: f for name, f in flows.items() if f["model"] == "command"}
    assert len(loops) == 4 and len(commands) == 4
    # The loops' cycles (p50 ~5 ms, p99 ~9-10 ms on an idle host, results/reference/factory) sit close
    # to their 10 ms bound by design, so what the emulator's host adds shows in the share on time: held
    # to >= 95 % when the run's own estimate of that error (fidelity, URLLC p99) is small, else only to
    # what a working loop keeps (a broken one answers none in time). Judged by the share's 95 %
    # interval: cycles a host stall touched are left out, and on a host stalling every few ms (seen:
    # 97 % of packets touched) few are left to judge
    host_error_ms = summary["fidelity"]["per_slice"]["urllc"]["p99"]
    least_on_time_pct = 95.0 if host_error_ms is not None and host_error_ms <= 2.0 else 75.0
    stalled = summary["host_stalls"].get("packets_flagged", 0) > 0
    for loop in loops.values():
        # 6 s of 10 ms cycles, from a seeded phase: 600 cycles, nearly all answered in time
        assert 590 <= loop["messages"] <= 600, loop
        assert loop["messages_considered"] + loop["messages_excluded"] == loop["messages"], loop
        assert loop["messages_considered"] >= 500 or stalled, loop
        if loop["messages_considered"]:
            assert loop["cycle_ms"]["p50"] is not None and 0.5 < loop["cycle_ms"]["p50"] < 10.0, loop
            assert loop["deadline_met_pct_ci95"][1] >= least_on_time_pct, (loop, summary["fidelity"])
        # 600 messages cannot show 99.9999 %: undetermined, with the sample that would
        assert loop["target_met"] in ("undetermined", False)
        assert loop["messages_needed_for_target"] > 3_000_000
        assert loop["run_s_needed_for_target"] > 30_000
    cameras = {name: f for name, f in flows.items() if f["model"] == "video"}
    assert sorted(cameras) == ["cam1", "cam2", "cam3"]
    assert cameras["cam1"]["messages"] in range(178, 181) and cameras["cam3"]["messages"] in range(89, 91)
    for name, f in flows.items():
        for key in ("availability_pct", "survival_violations", "jitter_ms", "deadline_met_pct_ci95",
                    "target_met", "messages_needed_for_target"):
            assert key in f, (name, key)
        assert f["availability_pct"] is None or 0.0 <= f["availability_pct"] <= 100.0
    for name in ("urllc", "embb", "mmtc"):
        service = summary[name]["service"]
        if not service["messages_considered"]:  # every message touched by a host stall: no claim
            assert stalled and service["availability_pct_ci95"] is None, (name, service)
            continue
        low, high = service["availability_pct_ci95"]
        assert low <= service["availability_msgs_pct"] <= high
        assert summary[name]["deadline_met_pct_ci95"][0] <= summary[name]["deadline_met_pct"]
        assert "mtbf_s" in service and "survival_violations" in service
    # downlink commands are marked with their UE's slice (controller: downlink marking rule)
    assert summary["urllc"]["dscp_marked_pct"] == 100.0
    cycles = pd.read_parquet(run_dir / "cycles.parquet")
    judged = {name.removesuffix("-status") for name, f in loops.items() if f["messages_considered"]}
    assert set(cycles["ue"]) == judged and (judged == {"agv1", "agv2", "agv3", "agv4"} or stalled)
    # the capture at the edge (uplink: statuses, video, nothing else) and at an AGV (its commands)
    # holds exactly the receivers' records, DSCP and kernel stamps included
    check = json.loads((run_dir / "pcap" / "cross_check.json").read_text())
    assert check["passed"] is True and set(check["interfaces"]) == {"edge1-eth0", "agv1-eth0"}, check
    for figure in ("availability_timeline", "failure_bursts", "cycle_time_cdf"):
        assert (run_dir / f"{figure}.png").stat().st_size > 5000, figure

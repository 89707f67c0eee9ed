"""The cell_load kind (experiments/kinds/cell_load): cameras start one per step, and each step's
per-slice figures come from the packets due in its window."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from experiments.framework.definition import load_experiment
from experiments.kinds.cell_load.kind import CellLoadKind, CellLoadParams
from experiments.kinds.cell_load.steps import scheduled_s, step_points
from topologies.validate import ConfigError

DEFINITION = Path(__file__).resolve().parents[2] / "experiments" / "cell_load" / "experiment.toml"


def due_in(offset_s: float, interval_s: float, duration_s: float, a: float, b: float) -> int:
    t = scheduled_s(offset_s, interval_s, duration_s)
    return int(np.count_nonzero((t >= a) & (t < b)))


def test_scheduled_sends_are_the_senders_and_a_window_counts_them() -> None:
    assert due_in(0.0, 0.01, 10.0, 1.0, 2.0) == 100       # every 10 ms over one second
    assert due_in(1.5, 0.01, 10.0, 1.0, 2.0) == 50        # starts half-way in
    assert due_in(0.0, 0.01, 1.505, 1.0, 2.0) == 51       # the flow ends at 1.505 s: 1.00 .. 1.50
    assert due_in(3.0, 0.01, 10.0, 1.0, 2.0) == 0         # not started yet


def test_cameras_start_one_per_step_and_everything_else_at_once() -> None:
    experiment = load_experiment(DEFINITION)
    scenario = experiment.load_scenario()
    kind = CellLoadKind()
    params = kind.parse_params(experiment.params)
    kind.check(experiment, scenario, params)
    session = SimpleNamespace(scenario=scenario, duration_s=experiment.duration_s)
    flows = {f.ue: f for f in kind.flow_plan(session, params)}
    cameras = kind.cameras(scenario, params)
    assert len(cameras) == 10 and experiment.duration_s / 11 == 6.0
    assert [flows[c].start_offset_s for c in cameras] == [6.0 * (i + 1) for i in range(10)]
    assert {f.start_offset_s for u, f in flows.items() if u not in cameras} == {0.0}


def test_a_run_too_short_for_its_steps_is_refused() -> None:
    experiment = load_experiment(DEFINITION)
    scenario = experiment.load_scenario()
    with pytest.raises(ConfigError, match="experiment.duration_s"):
        CellLoadKind().check(SimpleNamespace(duration_s=11.0), scenario, CellLoadParams(settle_s=1.0))
    with pytest.raises(ConfigError, match="params.cell.*gnb1, gnb2"):
        CellLoadKind().check(experiment, scenario, CellLoadParams(cell="gnb7"))
    with pytest.raises(ConfigError, match="params"):
        CellLoadKind().parse_params({"cells": "gnb1"})


def test_step_points_from_packets_due_in_each_window() -> None:
    # two steps of 2 s, settle 0.5 s: an AGV (10 ms) from 0 s, a camera (1 ms) from 2 s; the camera
    # loses every other packet and its delay is 10 ms; the AGV's 1 ms, all on time
    flows = pd.DataFrame([
        {"flow_id": 1, "ue": "agv1", "slice": "urllc", "interval_ms": 10.0, "payload_bytes": 100,
         "start_offset_s": 0.0, "latency_bound_ms": 10.0},
        {"flow_id": 2, "ue": "cam1", "slice": "embb", "interval_ms": 1.0, "payload_bytes": 1000,
         "start_offset_s": 2.0, "latency_bound_ms": 10.0}])
    agv = pd.DataFrame({"slice": "urllc", "flow_id": 1, "seq": np.arange(400), "owd_ms": 1.0,
                        "on_time": True, "host_stall": False})
    cam = pd.DataFrame({"slice": "embb", "flow_id": 2, "seq": np.arange(0, 2000, 2), "owd_ms": 10.0,
                        "on_time": True, "host_stall": False})
    cam.loc[cam.index[-10:], "host_stall"] = True  # kept, and counted
    points = step_points([agv, cam], flows, ["cam1"], step_s=2.0, settle_s=0.5, duration_s=4.0)
    assert [p["cameras"] for p in points] == [0, 1]
    assert [p["offered_mbps"] for p in points] == pytest.approx([0.08, 8.08])
    first, second = points[0]["slices"], points[1]["slices"]
    assert first["urllc"] == {"packets": 150, "packets_received": 150, "packets_host_stall": 0,
                              "owd_ms_p50": 1.0, "owd_ms_p99": 1.0, "loss_pct": 0.0,
                              "deadline_met_pct": 100.0, "deadline_met_pct_without_stalls": 100.0}
    assert first["embb"]["packets"] == 0 and first["embb"]["loss_pct"] is None
    assert second["embb"]["packets"] == 1500 and second["embb"]["loss_pct"] == pytest.approx(50.0)
    assert second["embb"]["deadline_met_pct"] == pytest.approx(50.0) and second["embb"]["owd_ms_p99"] == 10.0
    assert second["embb"]["packets_host_stall"] == 10 and second["embb"]["packets_received"] == 750
    # without the 10 stall-touched packets: 740 on time of the 1490 others due
    assert second["embb"]["deadline_met_pct_without_stalls"] == pytest.approx(100 * 740 / 1490)

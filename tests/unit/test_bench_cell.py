"""factorysat bench cell (experiments/bench/cell.py): the target check, and a short run per
profile writing summary.json with the issue's keys (the model alone: no root needed)."""

from __future__ import annotations

import json

import numpy as np

from experiments.bench import cell
from topologies.nr.profiles import CALIBRATION_TARGETS, PROFILES

TARGET = {"low_ms": 3.0, "high_ms": 4.5, "share_pct": 85.0, "floor_ms": 2.5}


def test_a_target_needs_the_share_in_range_and_nothing_below_the_floor() -> None:
    inside = np.full(90, 4.0)
    assert cell.check_target(np.concatenate([inside, np.full(10, 8.0)]), TARGET) is True   # 90 %
    assert cell.check_target(np.concatenate([inside[:80], np.full(20, 8.0)]), TARGET) is False
    assert cell.check_target(np.concatenate([inside, [2.4]]), TARGET) is False              # floor
    assert cell.check_target(inside, None) is None


def test_bench_cell_writes_every_profile_slice_and_direction(tmp_path) -> None:
    code = cell.main(tmp_path, duration_s=10.0, seed=2)
    (out,) = (tmp_path / "bench_cell").iterdir()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["profiles"]) == set(PROFILES) == set(summary["loaded"])
    for prof, res in summary["profiles"].items():
        for name in ("urllc", "embb", "mmtc"):
            for d in ("uplink", "downlink"):
                v = res[name][d]
                assert v["owd_ms_p50"] <= v["owd_ms_p95"] <= v["owd_ms_p99"]
                if v["target"] is not None:
                    assert v["target"] == CALIBRATION_TARGETS[prof][d] and v["share_in_range_pct"] is not None
    # the configured grant (low_latency's URLLC uplink) beats the dynamic one in the same cell
    ll = summary["profiles"]["low_latency"]
    assert ll["urllc"]["uplink"]["owd_ms_p50"] < ll["embb"]["uplink"]["owd_ms_p50"]
    assert code == (0 if summary["all_within_target"] else 1)
    assert (out / "COMPLETE").is_file() and (out / "cell_delay_cdf.png").stat().st_size > 1000
    (out / "cell_delay_cdf.png").unlink()
    assert cell.redraw(out) and (out / "cell_delay_cdf.png").is_file()

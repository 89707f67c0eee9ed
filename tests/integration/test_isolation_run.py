"""The isolation kind end to end as root, shortened (two arms of 8 s): with enforcement off the
cameras' overload reaches the AGV control loops (a slice-unaware cell, a FIFO backhaul queue); with
it on, URLLC keeps its bound. Checks what each arm set, through the relay's own counters too."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from shortrun import run_short  # same folder: on sys.path under pytest

from experiments.kinds.isolation import IsolationKind
from topologies.scenario import load_scenario

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = """
[experiment]
name = "isolation"
kind = "isolation"
duration_s = 16.0
drain_s = 1.0

[params]
settle_s = 2.0

[controller]
sla_monitor = true
"""


def test_isolation_run_shows_urllc_protected_only_with_enforcement_on(tmp_path) -> None:
    scenario = load_scenario(REPO / "experiments" / "isolation" / "scenario.toml")
    run_dir, summary = run_short(tmp_path, "isolation", EXPERIMENT, scenario=scenario)
    arms = summary["arms"]
    assert arms["off"]["window_s"] == [2.0, 8.0] and arms["on"]["window_s"] == [10.0, 16.0]
    off, on = arms["off"]["slices"]["urllc"], arms["on"]["slices"]["urllc"]
    assert off["packets"] > 1000 and on["packets"] > 1000
    # off: the backhaul FIFO holds up to 64 camera frames (106 ms at 6 Mbit/s) in front of the statuses
    assert off["deadline_met_pct"] < 90.0, off
    assert off["owd_ms_p99"] is not None and off["owd_ms_p99"] > 20.0, off
    # on: strict priority on the backhaul and URLLC's RAN share; a short run can show >= 99.9 % of the
    # packets no host stall touched. All packets, stalls kept, judged side by side with the off arm of
    # the same run (a loaded host delays both): at most a tenth of its late share, under half its p99
    # (a CI run of this test on this VM had 634 of 4800 touched by stalls and 6 of them late: 99.875 %;
    # the off arm stays near 50 %)
    assert on["deadline_met_pct_without_stalls"] >= 99.9, on
    assert 100.0 - on["deadline_met_pct"] <= (100.0 - off["deadline_met_pct"]) / 10, (on, off)
    assert on["owd_ms_p99"] < off["owd_ms_p99"] / 2, (on, off)
    assert summary["isolation"]["holds"]["off"] is False
    text = IsolationKind().print_summary(summary)
    assert "slice enforcement" in text and "urllc within bound >= 99.99 %: off no" in text, text
    # what each arm set, and when
    enforcement = summary["enforcement"]["arms"]
    assert enforcement["off"]["plan"]["queues"] is None
    assert enforcement["on"]["plan"]["queues"][0]["name"] == "urllc"
    assert "bh_gnb1/uplink" in enforcement["on"]["applied"]["queues"]
    assert enforcement["on"]["applied"]["cells"] == ["gnb1", "gnb2"]
    assert enforcement["on"]["applied_lag_ms"] < 100.0
    meta = json.loads((run_dir / "metadata.json").read_text())
    changes = meta["link_engine"]["cells"]["share_changes"]
    assert [c["cell"] for c in changes] == ["gnb1", "gnb2", "gnb1", "gnb2"]  # off before traffic, then on
    backhaul = meta["link_engine"]["link_counters"]["links"]["bh_gnb1"]["uplink"]
    classes = backhaul["classes"]
    assert classes[0]["tx"] > 1000 and classes[0]["dropped_queue"] == 0  # URLLC's strict class
    assert sum(c["dropped_queue"] for c in classes[1:]) > 0  # the cameras' class overflowed
    # the live SLA monitor (experiment [controller] sla_monitor): URLLC violated in the off arm, then ok
    sla = summary["sla"]["slices"]["urllc"]
    assert summary["sla"]["errors"] == 0 and sla["violations"] >= 1, sla
    timeline = pd.read_parquet(run_dir / "sla_timeline.parquet")
    urllc = timeline[timeline["slice"] == "urllc"]
    assert (urllc[urllc["t_s"] < 8.0]["state"] == "violated").any()
    last = urllc[urllc["t_s"] < 15.0].iloc[-1]
    # the first ok interval may start up to one sampling interval (1 s) before the switch at 8 s
    assert last["state"] in ("ok", "at_risk") and last["t_s"] > 7.0, urllc
    for name in ("isolation_cdf.png", "isolation_timeline.png", "owd_cdf.png", "sla_state.png"):
        assert (run_dir / name).stat().st_size > 10_000, name

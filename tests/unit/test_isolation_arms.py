"""The isolation kind's per-arm figures (experiments/kinds/isolation/arms.py) on hand-made packets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.kinds.isolation import arms

# one URLLC flow every 10 ms and one eMBB flow every 100 ms over 20 s: arms of 10 s, 1 s settling
FLOWS = pd.DataFrame({"flow_id": [1, 2], "slice": ["urllc", "embb"], "interval_ms": [10.0, 100.0],
                      "start_offset_s": [0.0, 0.05], "latency_bound_ms": [10.0, 10.0]})
TARGETS = {"urllc": 99.99, "embb": 99.9}


def packets(late_off: int, late_on: int, lost_on: int, stalled_on: int) -> pd.DataFrame:
    """Every URLLC packet received on time, but ``late_off`` late in the off arm's window, ``late_on``
    late and ``lost_on`` lost and ``stalled_on`` late and touched by a host stall in the on arm's."""
    seq = np.arange(2000)
    t = seq * 0.01
    owd = np.full(len(seq), 2.0)
    stall = np.zeros(len(seq), dtype=bool)
    off = np.flatnonzero((t >= 1) & (t < 10))
    on = np.flatnonzero((t >= 11) & (t < 20))
    owd[off[:late_off]] = 50.0
    owd[on[:late_on]] = 50.0
    owd[on[late_on:late_on + stalled_on]] = 30.0
    stall[on[late_on:late_on + stalled_on]] = True
    keep = np.ones(len(seq), dtype=bool)
    keep[on[late_on + stalled_on:late_on + stalled_on + lost_on]] = False
    urllc = pd.DataFrame({"slice": "urllc", "flow_id": 1, "seq": seq, "owd_ms": owd,
                          "host_stall": stall})[keep]
    embb = pd.DataFrame({"slice": "embb", "flow_id": 2, "seq": np.arange(200), "owd_ms": 3.0,
                         "host_stall": False})
    frame = pd.concat([urllc, embb], ignore_index=True)
    return frame.assign(on_time=frame["owd_ms"] <= 10.0)


def summary(frame: pd.DataFrame) -> dict:
    chunks = [frame.iloc[:700], frame.iloc[700:]]  # chunked as the stored table is read
    delays = arms.arm_delays(chunks, FLOWS, 10.0, 1.0)
    due = arms.due_per_arm(FLOWS, 10.0, 1.0, 20.0)
    return arms.arm_summary(delays, due, FLOWS, TARGETS, 10.0, 1.0)


def test_packets_are_counted_in_the_arm_of_their_scheduled_time_settling_left_out() -> None:
    s = summary(packets(late_off=90, late_on=0, lost_on=0, stalled_on=0))
    assert s["off"]["window_s"] == [1.0, 10.0] and s["on"]["window_s"] == [11.0, 20.0]
    off, on = s["off"]["slices"]["urllc"], s["on"]["slices"]["urllc"]
    assert off["packets"] == on["packets"] == 900
    assert off["deadline_met_pct"] == pytest.approx(90.0)
    assert on["deadline_met_pct"] == 100.0 and on["owd_ms_p9999"] == 2.0
    assert off["target_met"] is False
    assert s["off"]["slices"]["embb"]["packets"] == 90  # 0.05 + k * 0.1 in [1, 10)


def test_a_lost_packet_misses_its_deadline_and_host_stalls_are_kept() -> None:
    frame = packets(late_off=0, late_on=1, lost_on=2, stalled_on=3)
    on = summary(frame)["on"]["slices"]["urllc"]
    assert on["loss_pct"] == pytest.approx(100 * 2 / 900, abs=1e-4)
    assert on["packets_host_stall"] == 3
    # 900 due: 1 late, 2 lost, 3 late under a host stall (kept: they miss too)
    assert on["deadline_met_pct"] == pytest.approx(100 * 894 / 900, abs=1e-4)
    assert on["deadline_met_pct_without_stalls"] == pytest.approx(100 * 894 / 897, abs=1e-4)
    ci = on["deadline_met_pct_ci95"]
    assert ci[0] < on["deadline_met_pct"] < ci[1]
    assert on["owd_ms_max"] == 50.0 and on["packets_received"] == 898


def test_the_verdict_needs_the_threshold_met_with_enforcement_and_missed_without() -> None:
    shown = arms.verdict(summary(packets(late_off=90, late_on=0, lost_on=0, stalled_on=0)), "urllc", 99.99)
    assert shown["holds"] == {"off": False, "on": True} and shown["isolation_shown"] is True
    # 900 failure-free packets cannot show 99.99 % at 95 % confidence (36,887 would)
    assert shown["confident"] == {"off": False, "on": "undetermined"}
    assert shown["isolation_shown_confident"] is False
    assert arms.verdict(summary(packets(90, 0, 0, 0)), "urllc", 99.0)["isolation_shown_confident"] is True
    late = summary(packets(late_off=90, late_on=1, lost_on=0, stalled_on=0))
    not_shown = arms.verdict(late, "urllc", 99.99)
    assert not_shown["holds"]["on"] is False and not_shown["isolation_shown"] is False
    neither = arms.verdict(summary(packets(late_off=0, late_on=0, lost_on=0, stalled_on=0)), "urllc", 99.99)
    assert neither["holds"]["off"] is True and neither["isolation_shown"] is False

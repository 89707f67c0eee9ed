"""experiments/framework/sla_state.py and sla_monitor.py: samples from counter snapshots, the state
rules on both sides of each threshold, the timeline, and the sampler thread driven by fakes."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments.framework.plotting import plt
from experiments.framework.sla_monitor import (
    SlaMonitor,
    queue_class_names,
    sla_state_figure,
    sla_table,
)
from experiments.framework.sla_state import (
    RanFigures,
    SlaSample,
    SlaState,
    SlaThresholds,
    SlaTimeline,
    TransportFigures,
    classify,
    hist_quantile,
    sample_slice,
)
from topologies.links.queues import QueueClass, QueueConfig
from topologies.validate import ConfigError

QUEUES = {("bh_gnb1", "uplink"): ["urllc", "embb", "best_effort"]}


def nr_dir(out: int, harq: int = 0, buf: int = 0, hist: list | None = None) -> dict:
    return {"in": out + harq + buf, "out": out, "out_bytes": 100 * out, "dropped_harq": harq,
            "dropped_buffer": buf, "tbs": 0, "retx": 0, "prb": 0, "moved_in": 0, "moved_out": 0,
            "delay_hist": hist or []}


def qclass(tx: int, dropped: int = 0, wait_sum_ns: int = 0, wait_max_ns: int = 0, queued: int = 0) -> dict:
    return {"rx": tx + dropped + queued, "tx": tx, "dropped_queue": dropped, "tx_bytes": 100 * tx,
            "queued": queued, "queue_max": 100, "wait_sum_ns": wait_sum_ns, "wait_max_ns": wait_max_ns}


def snapshot(urllc: tuple[dict, dict], embb: tuple[dict, dict], classes: list[dict]) -> dict:
    """Shaped like LinkEngine.counters(): one NR cell with two slices, one queued link direction."""
    cell = {"slot_ns": 500_000, "hist_bin_ns": 50_000, "slice_names": ["urllc", "embb"],
            "slices": [{"srs": 0, "changes": 0, "uplink": u, "downlink": d} for u, d in (urllc, embb)]}
    return {"backend": "relay", "totals": {}, "unavailable": {}, "nr_cells": {"gnb1": cell},
            "links": {"bh_gnb1": {"uplink": {"rx": 0, "tx": 0, "classes": classes},
                                  "downlink": {"rx": 5, "tx": 5}}}}


A = snapshot((nr_dir(50, hist=[[10, 50]]), nr_dir(0)),
             (nr_dir(1000, harq=1, hist=[[100, 1000]]), nr_dir(0)),
             [qclass(100, wait_sum_ns=1_000_000, wait_max_ns=200_000),
              qclass(10, wait_sum_ns=1_000_000, wait_max_ns=1_000_000), qclass(0)])
B = snapshot((nr_dir(150, hist=[[10, 149], [30, 1]]), nr_dir(10, hist=[[4, 10]])),
             (nr_dir(1098, harq=2, buf=1, hist=[[100, 1090], [2000, 8]]), nr_dir(0)),
             [qclass(300, dropped=2, wait_sum_ns=5_000_000, wait_max_ns=200_000),
              qclass(20, wait_sum_ns=11_000_000, wait_max_ns=3_000_000, queued=4), qclass(0)])
# B -> C: 10 more URLLC uplink packets in bin 2 (<= 0.15 ms), nothing else
C = snapshot((nr_dir(160, hist=[[2, 10], [10, 149], [30, 1]]), nr_dir(10, hist=[[4, 10]])),
             (nr_dir(1098, harq=2, buf=1, hist=[[100, 1090], [2000, 8]]), nr_dir(0)),
             [qclass(300, dropped=2, wait_sum_ns=5_000_000, wait_max_ns=200_000),
              qclass(20, wait_sum_ns=11_000_000, wait_max_ns=3_000_000, queued=4), qclass(0)])


@dataclass(frozen=True)
class Sl:
    name: str
    latency_bound_ms: float
    reliability_target_pct: float


SLICES = [Sl("urllc", 1.0, 99.0), Sl("embb", 50.0, 99.0)]


# --- samples -------------------------------------------------------------------------------------
def test_sample_from_two_snapshots() -> None:
    urllc = sample_slice(A, B, QUEUES, "urllc")
    # uplink delta: 99 packets in bin 10 (<= 0.55 ms), 1 in bin 30: p99 is rank 99 of 100 -> 0.55 ms
    assert urllc.ran["uplink"] == RanFigures(out=100, dropped_harq=0, dropped_buffer=0, p99_ms=0.55)
    assert urllc.ran["downlink"] == RanFigures(out=10, dropped_harq=0, dropped_buffer=0, p99_ms=0.25)
    t = urllc.transport["bh_gnb1/uplink"]
    # 200 taken, wait 4 ms over them = 0.02 ms mean; wait_max did not grow: the mean stands in
    assert (t.taken, t.dropped, t.max_wait_exact, t.queued) == (200, 2, False, 0)
    assert t.mean_wait_ms == pytest.approx(0.02) and t.max_wait_ms == pytest.approx(0.02)
    assert urllc.missing == ()

    embb = sample_slice(A, B, QUEUES, "embb")
    # 90 in bin 100 (<= 5.05 ms), 8 in the overflow bin: rank ceil(0.99 * 98) = 98 -> its lower edge
    assert embb.ran["uplink"] == RanFigures(out=98, dropped_harq=1, dropped_buffer=1, p99_ms=100.0)
    assert embb.ran["downlink"] == RanFigures(out=0, dropped_harq=0, dropped_buffer=0, p99_ms=None)
    t = embb.transport["bh_gnb1/uplink"]
    assert (t.taken, t.mean_wait_ms, t.max_wait_ms, t.max_wait_exact, t.queued) == (10, 1.0, 3.0, True, 4)
    json.dumps(embb.to_record())  # JSON-ready


def test_p99_moves_to_the_tail_bin_with_one_more_tail_packet() -> None:
    assert hist_quantile({0.55: 99, 1.55: 1}) == 0.55
    assert hist_quantile({0.55: 99, 1.55: 2}) == 1.55  # rank ceil(99.99) = 100
    assert hist_quantile({0.55: 297, 1.55: 3}) == 0.55  # rank 297 exactly, despite 0.99 * 300 rounding
    assert hist_quantile({}) is None


def test_fifo_links_and_unknown_slices_are_not_attributed() -> None:
    mmtc = sample_slice(A, B, QUEUES, "mmtc")
    assert mmtc.ran == {} and mmtc.transport == {}
    assert sample_slice(A, B, {}, "urllc").transport == {}


def test_unavailable_cell_is_missing_and_a_restart_counts_from_zero() -> None:
    down = copy.deepcopy(B)
    down["nr_cells"]["gnb1"] = {"unavailable": "RelayError: dead"}
    s = sample_slice(A, down, QUEUES, "urllc")
    assert s.ran == {} and s.missing == ("nr:gnb1",)
    restarted = copy.deepcopy(A)
    restarted["nr_cells"]["gnb1"]["slices"][0]["uplink"] = nr_dir(3, hist=[[1, 3]])
    classes = restarted["links"]["bh_gnb1"]["uplink"]["classes"]
    classes[0] = qclass(5, wait_sum_ns=500_000, wait_max_ns=100_000)
    s = sample_slice(B, restarted, QUEUES, "urllc")
    assert s.ran["uplink"] == RanFigures(out=3, dropped_harq=0, dropped_buffer=0, p99_ms=0.1)
    t = s.transport["bh_gnb1/uplink"]
    assert (t.taken, t.mean_wait_ms, t.max_wait_ms, t.max_wait_exact) == (5, 0.1, 0.1, True)


def test_queue_class_names_from_engine_configs() -> None:
    config = QueueConfig((QueueClass("urllc", (46,), True, 0), QueueClass("best_effort", (), False, 1)), 1)
    assert queue_class_names({("bh", "uplink"): config, ("bh", "downlink"): None}) == {
        ("bh", "uplink"): ["urllc", "best_effort"]}


# --- classification ------------------------------------------------------------------------------
def synthetic(p99_up: float | None = 0.5, out: int = 100, harq: int = 0, buf: int = 0,
              wait_ms: float | None = None, taken: int = 0, qdrop: int = 0) -> SlaSample:
    ran = {"uplink": RanFigures(out, harq, buf, p99_up), "downlink": RanFigures(0, 0, 0, None)}
    transport = {} if wait_ms is None and not taken and not qdrop else {
        "bh/uplink": TransportFigures(taken, qdrop, wait_ms, wait_ms, False, 0)}
    return SlaSample("urllc", ran, transport)


@pytest.mark.parametrize(("sample", "expected"), [
    # delay: bound 10 ms, at risk above 0.8 x 10 = 8 ms (strictly)
    (synthetic(p99_up=8.0), SlaState("ok", "ran_uplink_p99_ms", 8.0, 10.0)),
    (synthetic(p99_up=8.05), SlaState("at_risk", "ran_uplink_p99_ms", 8.05, 8.0)),
    (synthetic(p99_up=10.0), SlaState("at_risk", "ran_uplink_p99_ms", 10.0, 8.0)),
    (synthetic(p99_up=10.05), SlaState("violated", "ran_uplink_p99_ms", 10.05, 10.0)),
    # the estimate adds the largest transport wait of the slice's class
    (synthetic(p99_up=6.0, wait_ms=4.5, taken=10),
     SlaState("violated", "ran_uplink_p99_ms+transport_wait_ms:bh/uplink", 10.5, 10.0)),
    (synthetic(p99_up=None, wait_ms=8.5, taken=10),
     SlaState("at_risk", "transport_wait_ms:bh/uplink", 8.5, 8.0)),
    # drops: target 99 %: 99 of 100 delivered is at risk, 98 of 100 violated
    (synthetic(out=99, buf=1), SlaState("at_risk", "dropped:ran_uplink_buffer", 99.0, 99.0)),
    (synthetic(out=98, harq=2), SlaState("violated", "dropped:ran_uplink_harq", 98.0, 99.0)),
    (synthetic(out=1000, wait_ms=0.1, taken=98, qdrop=2),
     SlaState("violated", "dropped:transport_queue:bh/uplink", 98.0, 99.0)),
    # everything dropped is a violation, not "no traffic"
    (synthetic(p99_up=None, out=0, buf=3), SlaState("violated", "dropped:ran_uplink_buffer", 0.0, 99.0)),
    (synthetic(p99_up=None, out=0), SlaState("no_traffic", "packets", 0.0, None)),
    (SlaSample("urllc", {}, {}), SlaState("no_traffic", "packets", 0.0, None)),
])
def test_classify_rules(sample: SlaSample, expected: SlaState) -> None:
    got = classify(sample, 10.0, 99.0)
    assert (got.state, got.metric, got.limit) == (expected.state, expected.metric, expected.limit)
    assert got.value == pytest.approx(expected.value)


def test_drops_are_judged_before_delay_and_fraction_is_tunable() -> None:
    assert classify(synthetic(p99_up=20.0, out=98, buf=2), 10.0, 99.0).metric == "dropped:ran_uplink_buffer"
    assert classify(synthetic(p99_up=6.0), 10.0, 99.0, SlaThresholds(0.5)).state == "at_risk"


def test_the_snapshot_samples_classify_as_expected() -> None:
    urllc = classify(sample_slice(A, B, QUEUES, "urllc"), 1.0, 99.0)  # 200 of 202 = 99.01 % >= 99
    assert (urllc.state, urllc.metric) == ("at_risk", "dropped:transport_queue:bh_gnb1/uplink")
    assert urllc.value == pytest.approx(100 * 200 / 202)
    assert classify(sample_slice(A, B, QUEUES, "urllc"), 1.0, 99.5).state == "violated"
    embb = classify(sample_slice(A, B, QUEUES, "embb"), 50.0, 90.0)  # 98 % >= 90: the delay decides
    assert (embb.state, embb.metric, embb.value) == (
        "violated", "ran_uplink_p99_ms+transport_wait_ms:bh_gnb1/uplink", 103.0)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: classify(synthetic(), 0, 99.0), r"latency_bound_ms: got 0; allowed: a number > 0"),
    (lambda: classify(synthetic(), 10.0, 101), r"reliability_target_pct: got 101; allowed: a number in"),
    (lambda: SlaThresholds(1.5), r"at_risk_fraction: got 1\.5; allowed: a number in \(0, 1\]"),
    (lambda: SlaMonitor(dict, dict, SLICES, interval_s=0), r"interval_s: got 0; allowed"),
    (lambda: SlaMonitor(dict, dict, SLICES * 2),
     r"slices: got .*; allowed: at least one slice, names unique"),
])
def test_errors_name_the_field(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


# --- timeline ------------------------------------------------------------------------------------
def _state(name: str) -> SlaState:
    return SlaState(name, "m", 1.0, 2.0)


def make_timeline() -> SlaTimeline:
    tl = SlaTimeline()
    for t, state in [(1, "ok"), (2, "ok"), (3, "at_risk"), (4, "violated"), (5, "violated"), (6, "ok")]:
        tl.feed(float(t), "urllc", _state(state))
    tl.feed(2.0, "embb", _state("no_traffic"))
    tl.feed(6.0, "embb", _state("violated"), t_start_s=4.0)  # a failed read in between: a longer interval
    return tl


def test_timeline_transitions_durations_and_current() -> None:
    tl = make_timeline()
    assert [(r["t_s"], r["slice"], r["from"], r["to"]) for r in tl.to_records()] == [
        (0.0, "urllc", None, "ok"), (2.0, "urllc", "ok", "at_risk"), (3.0, "urllc", "at_risk", "violated"),
        (5.0, "urllc", "violated", "ok"), (0.0, "embb", None, "no_traffic"),
        (4.0, "embb", "no_traffic", "violated")]
    assert tl.seconds()["urllc"] == {"ok": 3.0, "at_risk": 1.0, "violated": 2.0, "no_traffic": 0.0}
    assert tl.seconds()["embb"] == {"ok": 0.0, "at_risk": 0.0, "violated": 2.0, "no_traffic": 2.0}
    assert tl.current()["urllc"] == {"state": "ok", "since_s": 5.0, "metric": "m", "value": 1.0, "limit": 2.0}
    assert tl.summary()["urllc"]["violations"] == 1 and tl.summary()["urllc"]["first_violation_s"] == 3.0
    assert tl.summary()["embb"]["first_violation_s"] == 4.0
    with pytest.raises(ValueError, match=r"t_s: got 5\.0; allowed >= the interval's start 6\.0"):
        tl.feed(5.0, "urllc", _state("ok"))
    with pytest.raises(ValueError, match="state: got 'bad'"):
        SlaState("bad", "m", None, None)


def test_table_and_figure() -> None:
    frame = sla_table(make_timeline())
    assert list(frame.columns) == ["t_s", "slice", "state", "metric", "value", "limit"]
    urllc = frame[frame["slice"] == "urllc"]
    assert urllc["t_s"].tolist() == [0.0, 2.0, 3.0, 5.0, 6.0]  # the closing row at the last sample
    assert urllc["state"].tolist() == ["ok", "at_risk", "violated", "ok", "ok"]
    fig = sla_state_figure(frame, ["urllc", Sl("embb", 1.0, 99.0)], t_switch_s=3.5)
    ax = fig.axes[0]
    assert len(ax.collections) == 4 + 2  # urllc bands [0,2) [2,3) [3,5) [5,6); embb [0,4) [4,6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["URLLC", "eMBB"]
    plt.close(fig)


# --- the sampler ---------------------------------------------------------------------------------
class FakeEngine:
    """read_counters over a list of snapshots (an exception in the list is raised); the clock is
    100 s + reads done, so round k's t_s is k whatever the real timing."""

    def __init__(self, items: list) -> None:
        self.items, self.reads, self.done = items, 0, threading.Event()
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return 100.0 + self.reads

    def read(self) -> dict:
        with self.lock:
            item = self.items[min(self.reads, len(self.items) - 1)]
            self.reads += 1
            if self.reads >= len(self.items):
                self.done.set()
        if isinstance(item, Exception):
            raise item
        return item


def test_monitor_thread_samples_survives_a_failed_read_and_writes_whole_lines(tmp_path: Path) -> None:
    engine = FakeEngine([A, B, RuntimeError("relay gone"), C, C])
    out = tmp_path / "sla_samples.jsonl"
    monitor = SlaMonitor(engine.read, lambda: QUEUES, SLICES, interval_s=0.01, out_path=out,
                         clock=engine.clock)
    monitor.start(100.0)
    assert engine.done.wait(5.0)
    summary = monitor.stop()
    assert not summary["thread_still_running"]
    assert summary["errors"] == 1 and summary["last_error"] == "t_s=2.000: RuntimeError: relay gone"
    rounds = summary["rounds"]
    assert rounds >= 4  # baseline, t=1, t=3, t=4 (+ any no-traffic rounds before stop)
    assert [(r["t_s"], r["slice"], r["from"], r["to"]) for r in summary["transitions"]] == [
        (0.0, "urllc", None, "at_risk"), (0.0, "embb", None, "violated"),
        (1.0, "urllc", "at_risk", "ok"), (1.0, "embb", "violated", "no_traffic"),
        (3.0, "urllc", "ok", "no_traffic")]
    urllc, embb = summary["slices"]["urllc"], summary["slices"]["embb"]
    assert urllc["seconds"]["at_risk"] == 1.0 and urllc["seconds"]["ok"] == 2.0
    assert embb["violations"] == 1 and embb["first_violation_s"] == 0.0 and urllc["violations"] == 0
    assert embb["seconds"]["violated"] == 1.0
    current = monitor.current()
    assert current["urllc"]["state"] == "no_traffic" and current["urllc"]["since_s"] == 3.0

    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 2 * (rounds - 1)  # one per slice per round after the baseline
    first = lines[0]
    assert (first["t_s"], first["t_start_s"], first["slice"], first["state"]) == (
        1.0, 0.0, "urllc", "at_risk")
    assert first["ran"]["uplink"]["p99_ms"] == 0.55 and first["transport"]["bh_gnb1/uplink"]["taken"] == 200
    # the round after the failed read covers (1, 3]: the last good snapshot is the baseline
    assert (lines[2]["t_s"], lines[2]["t_start_s"], lines[2]["state"]) == (3.0, 1.0, "ok")
    assert lines[2]["metric"] == "ran_uplink_p99_ms" and lines[2]["value"] == pytest.approx(0.15)
    frame = sla_table(monitor.timeline())
    assert set(frame["slice"]) == {"urllc", "embb"}


def test_monitor_survives_a_failed_baseline_read() -> None:
    engine = FakeEngine([RuntimeError("not yet"), A, B])
    monitor = SlaMonitor(engine.read, lambda: QUEUES, SLICES[:1], interval_s=0.01, clock=engine.clock)
    monitor.start(100.0)
    assert engine.done.wait(5.0)
    summary = monitor.stop()
    assert summary["errors"] == 1 and "not yet" in summary["last_error"]
    # the baseline was the second read (t=1), the first sample t=2
    assert summary["transitions"][0]["t_s"] == 1.0 and summary["transitions"][0]["to"] == "at_risk"


def test_a_fifo_hop_the_slice_crosses_counts_with_its_serialisers_waits_and_drops() -> None:
    def snap(serialised: int, wait_sum_ns: int, wait_max_ns: int, dropped: int) -> dict:
        return {"links": {"bh": {"uplink": {"serialised": serialised, "wait_sum_ns": wait_sum_ns,
                                            "wait_max_ns": wait_max_ns, "dropped_queue": dropped}}},
                "nr_cells": {}}
    before, after = snap(100, 1_000_000, 2_000_000, 0), snap(200, 41_000_000, 60_000_000, 50)
    s = sample_slice(before, after, {}, "urllc", [("bh", "uplink"), ("leo", "uplink")])
    fifo = s.transport["bh/uplink fifo"]
    assert (fifo.taken, fifo.dropped, fifo.mean_wait_ms, fifo.max_wait_ms) == (100, 50, 0.4, 60.0)
    state = classify(s, 10.0, 99.99)
    assert state.state == "violated" and state.metric == "dropped:transport_queue:bh/uplink fifo"
    assert sample_slice(before, after, {}, "urllc").transport == {}  # not crossed: not attributed
    assert sample_slice(before, before, {}, "urllc", [("bh", "uplink")]).transport == {}  # idle
    nr_cell = snap(0, 0, 0, 0), snap(0, 0, 0, 40)  # an NR cell's link: buffer drops, no serialiser
    assert sample_slice(*nr_cell, {}, "urllc", [("bh", "uplink")]).transport == {}
    classes = {("bh", "uplink"): ["urllc", "best_effort"]}
    queued = sample_slice(before, after, classes, "urllc", [("bh", "uplink")])
    assert "bh/uplink fifo" not in queued.transport  # its classes count instead

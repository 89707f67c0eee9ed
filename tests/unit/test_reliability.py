"""TS 22.104 Annex C service metrics from message outcomes, and RFC 3550 jitter, on hand-computed streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.framework.confidence import ci_pct
from experiments.framework.reliability import JitterAccumulator, jitter_ms, pooled, service_metrics

MS = 1_000_000
LOST = None


def stream(delays_ms: list[float | None], interval_ms: float = 10, bound_ms: float = 10,
           start_ms: float = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(due_ns, arrival_ns, ok): message k sent at start + k interval, due a bound later, arriving
    after its delay (never when the delay is None), successful when it arrives by its due time."""
    send = np.round((start_ms + interval_ms * np.arange(len(delays_ms))) * MS).astype(np.int64)
    due = send + round(bound_ms * MS)
    arrival = np.array([-1 if d is None else s + round(d * MS) for s, d in zip(send, delays_ms, strict=True)],
                       dtype=np.int64)
    return due, arrival, (arrival >= 0) & (arrival <= due)


def metrics(delays_ms: list[float | None], survival_ms: float, window_ms: tuple[float, float] | None = None,
            excluded: list[int] = ()):
    due, arrival, ok = stream(delays_ms)
    start, end = window_ms or (0, 10 * (len(delays_ms) + 1))
    skip = np.isin(np.arange(len(delays_ms)), list(excluded))
    return service_metrics(due, arrival, ok, survival_ms, round(start * MS), round(end * MS), skip)


def test_all_successful() -> None:
    m = metrics([2.0] * 10, 10)                  # window 0..110 ms
    assert m.availability_pct == 100.0 and m.survival_violations == 0 and m.down_s == 0.0
    assert m.mtbf_s is None and m.mtbf_s_at_least == pytest.approx(0.110 / 3)
    assert m.messages_considered == m.deadline_met == 10 and m.deadline_met_pct == 100.0
    assert m.deadline_met_pct_ci95 == ci_pct(10, 10) and m.deadline_met_pct_ci95[1] == 100.0
    assert m.lost == m.deadline_misses == m.messages_down == 0
    assert m.loss_bursts == m.failure_bursts == {} and m.outages == []


def test_one_lost_message_both_sides_of_the_survival_time() -> None:
    # message 5 is due at 60 ms; message 6, sent at 60 ms, arrives 2 ms later: outage 62 - 60 = 2 ms
    delays = [2.0] * 5 + [LOST] + [2.0] * 4
    tolerated = metrics(delays, 10)
    assert tolerated.survival_violations == 0 and tolerated.availability_pct == 100.0
    assert tolerated.lost == 1 and tolerated.loss_bursts == tolerated.failure_bursts == {1: 1}
    assert tolerated.deadline_met == 9 and tolerated.messages_down == 0
    assert metrics(delays, 2.0).survival_violations == 0          # exactly the survival time: not a failure
    failed = metrics(delays, 1.999)
    assert failed.survival_violations == 1 and failed.down_s == pytest.approx(0.002, abs=1e-12)
    assert failed.outages == [[0.060, 0.062]] and failed.messages_down == 1
    assert failed.mtbf_s == pytest.approx(0.108) and failed.mtbf_s_at_least is None
    assert failed.availability_pct == pytest.approx(100 * 108 / 110)
    slow_next = metrics([2.0] * 5 + [LOST, 9.5] + [2.0] * 3, 9.4)   # the next one's delay counts
    assert slow_next.survival_violations == 1 and slow_next.down_s == pytest.approx(0.0095, abs=1e-12)


def test_two_consecutive_losses_are_one_failure() -> None:
    # messages 5 and 6 lost: due 60 ms, message 7 arrives at 70 + 2 = 72 ms: outage 12 ms
    delays = [2.0] * 5 + [LOST, LOST] + [2.0] * 3
    m = metrics(delays, 10)
    assert m.survival_violations == 1 and m.down_s == pytest.approx(0.012, abs=1e-12)
    assert m.up_s == pytest.approx(0.098, abs=1e-12) and m.mtbf_s == pytest.approx(0.098)
    assert m.outages == [[0.060, 0.072]] and m.messages_down == 2 and m.lost == 2
    assert m.loss_bursts == m.failure_bursts == {2: 1}
    assert m.availability_msgs_pct == 80.0 and m.availability_pct_ci95 == ci_pct(8, 10)
    assert metrics(delays, 12).survival_violations == 0


def test_late_message_fails_but_is_not_lost() -> None:
    m = metrics([2.0] * 4 + [LOST, 15.0, LOST] + [2.0] * 3, 10)
    assert m.deadline_misses == 1 and m.lost == 2 and m.deadline_met == 7
    assert m.failure_bursts == {3: 1} and m.loss_bursts == {1: 2}
    # due 50 ms, message 7 arrives at 72 ms: 22 ms down
    assert m.survival_violations == 1 and m.down_s == pytest.approx(0.022, abs=1e-12)
    late_only = metrics([2.0] * 5 + [15.0] + [2.0] * 4, 10)
    assert late_only.deadline_misses == 1 and late_only.lost == 0 and late_only.loss_bursts == {}
    assert late_only.failure_bursts == {1: 1} and late_only.survival_violations == 0


def test_burst_running_to_the_window_end() -> None:
    m = metrics([2.0] * 7 + [LOST] * 3, 10)      # due 80, 90, 100 ms; window ends at 110 ms
    assert m.survival_violations == 1 and m.down_s == pytest.approx(0.030, abs=1e-12)
    assert m.outages == [[0.080, 0.110]]
    assert metrics([2.0] * 9 + [LOST], 10).survival_violations == 0   # 100 -> 110 ms: 10 ms, not more


def test_window_boundaries() -> None:
    # window 35..75 ms holds the messages due at 40, 50, 60, 70 ms (3..6); the rest are ignored
    delays = [LOST, LOST, 2.0, 2.0, 2.0, 2.0, LOST, 2.0, LOST, LOST]
    m = metrics(delays, 4, window_ms=(35, 75))
    assert m.messages_considered == 4 and m.window_s == pytest.approx(0.040)
    assert m.lost == 1 and m.loss_bursts == {1: 1}
    # message 6 (due 70 ms) is cut by the window end at 75 ms: 5 ms > 4 ms, down 70..75 ms
    assert m.survival_violations == 1 and m.down_s == pytest.approx(0.005, abs=1e-12)
    assert m.outages == [[pytest.approx(0.035), pytest.approx(0.040)]]
    assert metrics(delays, 5, window_ms=(35, 75)).survival_violations == 0
    assert metrics(delays, 0, window_ms=(35, 65)).survival_violations == 0


def test_excluded_messages_neither_end_nor_start_a_burst() -> None:
    delays = [2.0] * 3 + [LOST] + [2.0] + [LOST, 2.0, 2.0] + [2.0] * 2
    m = metrics(delays, 10, excluded=[3, 6])
    # 3 (lost) starts nothing; 6 (successful) does not end 5's burst (due 60 ms): 7 does, at 72 ms
    assert m.messages_excluded == 2 and m.messages_considered == 8 and m.lost == 1
    assert m.failure_bursts == {1: 1} and m.survival_violations == 1
    assert m.down_s == pytest.approx(0.012, abs=1e-12)
    assert metrics(delays, 10, excluded=[3]).survival_violations == 0   # 6 counts: 62 - 60 = 2 ms
    joined = metrics([2.0] * 4 + [LOST, 2.0, LOST] + [2.0] * 3, 10, excluded=[5])
    assert joined.failure_bursts == {2: 1} and joined.loss_bursts == {2: 1}
    assert joined.down_s == pytest.approx(0.072 - 0.050, abs=1e-12)


def test_survival_time_zero() -> None:
    m = metrics([2.0] * 2 + [LOST] + [2.0] * 3 + [LOST, LOST] + [2.0] * 2, 0)
    assert m.survival_violations == 2 and m.messages_down == 3
    assert m.down_s == pytest.approx(0.002 + 0.012, abs=1e-12) and m.mtbf_s == pytest.approx(m.up_s / 2)


def test_latency_bound_longer_than_the_interval() -> None:
    # bound 25 ms: message 5 (lost) is due at 75 ms, but message 6 arrives at 62 ms already
    due, arrival, ok = stream([2.0] * 5 + [LOST] + [2.0] * 4, bound_ms=25)
    assert service_metrics(due, arrival, ok, 10, 0, 200 * MS).survival_violations == 0
    zero = service_metrics(due, arrival, ok, 0, 0, 200 * MS)
    assert zero.survival_violations == 1 and zero.down_s == 0.0 and zero.availability_pct == 100.0
    due, arrival, ok = stream([2.0] * 5 + [LOST] * 4 + [2.0], bound_ms=25)   # 9 arrives at 92 ms
    m = service_metrics(due, arrival, ok, 10, 0, 200 * MS)
    assert m.survival_violations == 1 and m.down_s == pytest.approx(0.017, abs=1e-12)


def test_pooled_over_two_flows() -> None:
    a = metrics([2.0] * 5 + [LOST, LOST] + [2.0] * 3, 10)   # 12 ms down of 110
    b = metrics([2.0] * 20, 10)                             # 210 ms up
    p = pooled([a, b])
    assert p["flows"] == 2 and p["window_s"] == pytest.approx(0.320) and p["down_s"] == pytest.approx(0.012)
    assert p["availability_pct"] == round(100 * 308 / 320, 6)
    assert p["survival_violations"] == 1 and p["mtbf_s"] == pytest.approx(0.308)
    assert p["messages_considered"] == 30 and p["messages_down"] == 2 and p["deadline_met"] == 28
    assert p["availability_pct_ci95"] == ci_pct(28, 30) and p["deadline_met_pct_ci95"] == ci_pct(28, 30)
    assert p["loss_bursts"] == {"2": 1} and "outages" not in p
    c = metrics([2.0] * 3 + [LOST] + [2.0] * 6, 10)
    merged = pooled([a, b, c])
    assert merged["loss_bursts"] == {"1": 1, "2": 1} and merged["lost"] == 3
    none = pooled([b, b])
    assert none["mtbf_s"] is None and none["mtbf_s_at_least"] == pytest.approx(0.420 / 3)
    with pytest.raises(ValueError, match="metrics"):
        pooled([])


def test_summary_is_json_ready() -> None:
    m = metrics([2.0] * 5 + [LOST, LOST] + [2.0] * 3, 10)
    summary = m.as_summary()
    assert json.loads(json.dumps(summary)) == summary and "outages" not in summary
    assert summary["availability_pct"] == round(100 * 98 / 110, 6) and summary["failure_bursts"] == {"2": 1}


def _naive(due, arrival, ok, survival_ms, start, end, excluded) -> tuple[int, int, int, dict[int, int]]:
    """Per-message reference: (violations, down ns, messages down, failure bursts)."""
    bursts, current = [], []
    for k in range(due.size):
        if not start <= due[k] < end or excluded[k]:
            continue
        if not ok[k]:
            current.append(k)
        elif current:
            bursts.append((current, int(arrival[k])))
            current = []
    if current:
        bursts.append((current, end))
    violations = down = down_msgs = 0
    hist: dict[int, int] = {}
    for ks, stop in bursts:
        hist[len(ks)] = hist.get(len(ks), 0) + 1
        if stop - due[ks[0]] > survival_ms * MS or survival_ms == 0:
            violations, down_msgs = violations + 1, down_msgs + len(ks)
            down += min(stop, end) - due[ks[0]]
    return violations, down, down_msgs, hist


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_equals_a_per_message_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    state, delays = 0, []
    for _ in range(n):                          # Gilbert-Elliott losses, occasional late messages
        state = rng.random() < (0.6 if state else 0.03)
        delays.append(None if state else float(rng.choice([2.0, 3.5, 12.0], p=[0.7, 0.27, 0.03])))
    due, arrival, ok = stream(delays)
    excluded = rng.random(n) < 0.02
    start, end = 95 * MS, (10 * n - 205) * MS
    for survival in (0, 10, 25, 40):
        m = service_metrics(due, arrival, ok, survival, start, end, excluded)
        violations, down, down_msgs, hist = _naive(due, arrival, ok, survival, start, end, excluded)
        assert (m.survival_violations, m.messages_down, m.failure_bursts) == (violations, down_msgs, hist)
        assert m.down_s == pytest.approx(down / 1e9, abs=1e-12)
        assert sum(e - s for s, e in m.outages) == pytest.approx(m.down_s, abs=1e-9)


@pytest.mark.parametrize("call, name", [
    (lambda d, a, o: service_metrics(d, a[:-1], o, 10, 0, 10**9), "arrival_ns"),
    (lambda d, a, o: service_metrics(d, a, o[:-1], 10, 0, 10**9), "ok"),
    (lambda d, a, o: service_metrics(d, a, o, 10, 0, 10**9, excluded=o[:2]), "excluded"),
    (lambda d, a, o: service_metrics(d, a, o, -1, 0, 10**9), "survival_time_ms"),
    (lambda d, a, o: service_metrics(d, a, o, 10, 10**9, 10**9), "window_end_ns"),
    (lambda d, a, o: service_metrics(d[::-1], a, o, 10, 0, 10**9), "due_ns"),
    (lambda d, a, o: service_metrics(d, np.full(d.size, -1), o, 10, 0, 10**9), "ok"),
    (lambda d, a, o: jitter_ms(d, a[:-1]), "recv_ns"),
    (lambda d, a, o: JitterAccumulator().add(np.zeros(3), d, a), "flow_ids")])
def test_bad_inputs_name_the_argument(call, name: str) -> None:
    due, arrival, ok = stream([2.0] * 5)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call(due, arrival, ok)


# --- jitter ---------------------------------------------------------------------------------------
def test_jitter_of_constant_and_alternating_delays() -> None:
    send = np.arange(100, dtype=np.int64) * 10 * MS
    assert jitter_ms(send, send + 3 * MS) == {"jitter_ms": 0.0, "jitter_rfc3550_ms": 0.0}
    irregular = np.cumsum(np.arange(1, 101, dtype=np.int64)) * MS
    assert jitter_ms(irregular, irregular + 3 * MS)["jitter_ms"] == 0.0
    recv = send + np.where(np.arange(100) % 2 == 0, 1 * MS, 3 * MS)   # |D| = 2 ms every time
    j = jitter_ms(send, recv)
    assert j["jitter_ms"] == 2.0
    assert j["jitter_rfc3550_ms"] == pytest.approx(2.0 * (1 - (15 / 16) ** 99), rel=1e-12)
    assert jitter_ms(send[:1], recv[:1]) == {"jitter_ms": None, "jitter_rfc3550_ms": None}
    assert jitter_ms(send[:0], recv[:0])["jitter_ms"] is None


def _naive_jitter(send: np.ndarray, recv: np.ndarray) -> tuple[float, float]:
    j = total = 0.0
    for i in range(1, send.size):
        d = abs(int(recv[i] - recv[i - 1]) - int(send[i] - send[i - 1]))
        total += d
        j += (d - j) / 16
    return total / (send.size - 1) / 1e6, j / 1e6


@pytest.mark.parametrize("seed", range(3))
def test_accumulator_chunked_equals_whole_equals_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20_000
    flows = rng.choice(np.array([3, 7, 11, 42]), size=n, p=[0.5, 0.3, 0.19, 0.01])
    send = np.cumsum(rng.integers(1, 5 * MS, size=n))
    recv = send + rng.integers(MS, 20 * MS, size=n)
    order = np.argsort(recv, kind="stable")                  # records in arrival order
    flows, send, recv = flows[order], send[order], recv[order]
    chunked = JitterAccumulator()
    cuts = np.sort(rng.choice(np.arange(1, n), size=40, replace=False))
    for part in np.split(np.arange(n), cuts):
        chunked.add(flows[part], send[part], recv[part])
    whole = JitterAccumulator()
    whole.add(flows, send, recv)
    got, once = chunked.result(), whole.result()
    assert set(got) == {3, 7, 11, 42}
    for flow in got:
        mask = flows == flow
        mean, rfc = _naive_jitter(send[mask], recv[mask])
        for result in (got[flow], once[flow], jitter_ms(send[mask], recv[mask])):
            assert result["jitter_ms"] == pytest.approx(mean, rel=1e-12)
            assert result["jitter_rfc3550_ms"] == pytest.approx(rfc, rel=1e-9)


def test_accumulator_string_ids_and_single_packets() -> None:
    acc = JitterAccumulator()
    acc.add(np.array(["a", "b"]), np.array([0, 0]), np.array([MS, MS]))
    acc.add(np.array(["a"]), np.array([10 * MS]), np.array([13 * MS]))
    acc.add(np.array([], dtype=str), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    result = acc.result()
    assert result["a"] == {"jitter_ms": 2.0, "jitter_rfc3550_ms": 2.0 / 16}
    assert result["b"] == {"jitter_ms": None, "jitter_rfc3550_ms": None}

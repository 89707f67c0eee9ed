"""Two-pass exact percentiles over chunks agree with numpy on the whole data (stats.percentile)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.framework.stats import percentile
from experiments.framework.streaming import TwoPassQuantiles, bin_of

QS = (50, 99, 99.9, 100, 0)


def _two_pass(chunks: list[tuple[str, np.ndarray]]) -> TwoPassQuantiles:
    tp = TwoPassQuantiles(QS)
    for group, values in chunks:
        tp.count(group, values)
    tp.plan()
    for group, values in chunks:
        tp.gather(group, values)
    return tp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_numpy_on_the_whole_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = {"urllc": np.concatenate([rng.normal(1.0, 0.05, 20_000), rng.exponential(5.0, 300)]),
            "embb": rng.lognormal(1.5, 0.4, 7_001),
            "odd": np.array([-0.5, 0.0, 0.0, 3.0, np.nan, 1e6])}
    chunks = [(g, part) for g, v in data.items() for part in np.array_split(v, 7)]
    tp = _two_pass(chunks)
    for group, values in data.items():
        for q in QS:
            assert tp.percentile(group, q) == percentile(values, q), (group, q)
    assert tp.kept < 0.2 * sum(v.size for v in data.values())  # pass 2 held a small part
    assert tp.percentile("absent", 50) is None


def test_ties_and_a_single_value() -> None:
    tp = _two_pass([("a", np.full(1000, 2.5)), ("b", np.array([7.0]))])
    assert tp.percentile("a", 99.9) == 2.5 and tp.percentile("b", 50) == 7.0 and tp.n("a") == 1000


def test_bins_are_ordered_like_the_values() -> None:
    values = np.array([-10**12, -5, -1, 0, 1, 2, 3, 1000, 10**15])
    bins = bin_of(values)
    assert np.all(np.diff(bins) >= 0) and bins[3] not in (bins[2], bins[4])


def test_misuse_is_refused() -> None:
    tp = TwoPassQuantiles((50,))
    with pytest.raises(RuntimeError, match="before plan"):
        tp.gather("a", np.ones(3))
    tp.count("a", np.ones(3))
    tp.plan()
    with pytest.raises(RuntimeError, match="after plan"):
        tp.count("a", np.ones(3))
    with pytest.raises(ValueError, match="not planned"):
        tp.percentile("a", 99)


def test_histogram_edges_bound_the_values() -> None:
    values = np.array([0.5, 0.5, 1.0, 3.0, 250.0])  # ms
    tp = TwoPassQuantiles((50,))
    tp.count("a", values)
    edges, counts = tp.histogram("a")
    assert counts.sum() == 5 and np.all(np.diff(edges) > 0)
    # every value is below its bin's upper edge and above the previous bin's (1.1 % bins)
    for v in values:
        i = int(np.searchsorted(edges, v, side="right"))
        assert edges[i] > v and (i == 0 or edges[i - 1] <= v) and edges[i] < v * 1.011
    assert tp.histogram("none")[0].size == 0


def test_a_crowded_bin_is_counted_per_ns_and_stays_exact(monkeypatch) -> None:
    from experiments.framework import streaming

    monkeypatch.setattr(streaming, "KEEP_MAX", 100)  # so the test's bins count instead of keep
    rng = np.random.default_rng(9)
    ns = np.concatenate([1_000_000 + rng.integers(-3000, 3000, 50_000), -rng.integers(1, 500, 300)])
    values = ns / 1e6  # ms on a 1 ns grid, as delays from ns timestamps are
    tp = TwoPassQuantiles(QS)
    for part in np.array_split(values, 5):
        tp.count("g", part)
    tp.plan()
    for part in np.array_split(values, 5):
        tp.gather("g", part)
    assert tp._counted["g"] and tp.kept < values.size  # counters, not values
    for q in QS:
        assert tp.percentile("g", q) == percentile(values, q), q


def test_percentile_intervals_match_the_in_memory_order_statistics() -> None:
    from experiments.framework.confidence import quantile_ci

    rng = np.random.default_rng(5)
    values = rng.lognormal(1.0, 0.6, 20_000).round(6)
    tq = TwoPassQuantiles((99,), ci_percentiles=(99, 99.9))
    chunks = np.array_split(values, 7)
    for chunk in chunks:
        tq.count("a", chunk)
    tq.plan()
    for chunk in chunks:
        tq.gather("a", chunk)
    for q in (99, 99.9):
        expected = [None if v is None else round(float(v), 4) for v in quantile_ci(values, q)]
        assert tq.percentile_ci("a", q) == expected
    # 500 values cannot bound p99.9 from above
    small = TwoPassQuantiles((), ci_percentiles=(99.9,))
    small.count("b", values[:500])
    small.plan()
    small.gather("b", values[:500])
    assert small.percentile_ci("b", 99.9)[1] is None
    with pytest.raises(ValueError, match="not planned"):
        small.percentile_ci("b", 50)

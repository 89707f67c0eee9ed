"""Exact intervals: incomplete beta, Clopper-Pearson, messages needed, verdicts, percentile intervals."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from experiments.framework.confidence import (
    beta_inc,
    beta_ppf,
    ci_pct,
    clopper_pearson,
    messages_needed,
    quantile_ci,
    ranks_for_quantile_ci,
    target_verdict,
)


def _binom_sum(ks: range, n: int, p: float) -> float:
    """P(Bin(n, p) in ks) summed from the definition: exactly (fractions) for small n, else in floats."""
    if n <= 100:
        pf = Fraction(p)
        return float(sum(math.comb(n, i) * pf**i * (1 - pf) ** (n - i) for i in ks))
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in ks)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k)."""
    return _binom_sum(range(k + 1), n, p)


@pytest.mark.parametrize("a", [1, 2, 7, 30])
@pytest.mark.parametrize("b", [1, 3, 12, 45])
@pytest.mark.parametrize("x", [0.001, 0.1, 0.37, 0.5, 0.8, 0.999])
def test_beta_inc_equals_the_binomial_sum(a: int, b: int, x: float) -> None:
    # for integers, I_x(a, b) = P(Bin(a + b - 1, x) >= a)
    exact = _binom_sum(range(a, a + b), a + b - 1, x)
    assert beta_inc(a, b, x) == pytest.approx(exact, rel=1e-12, abs=1e-300)


def test_beta_inc_ends_symmetry_and_half_integers() -> None:
    assert beta_inc(3, 4, 0.0) == 0.0 and beta_inc(3, 4, 1.0) == 1.0
    assert beta_inc(1, 1, 0.3) == pytest.approx(0.3, rel=1e-14)
    assert beta_inc(0.5, 0.5, 0.25) == pytest.approx(2 / math.pi * math.asin(0.5), rel=1e-13)  # arcsine
    for a, b, x in [(2.5, 7.25, 0.2), (1e6, 3.0, 0.999997), (4e8, 6e8, 0.40001)]:
        assert beta_inc(a, b, x) + beta_inc(b, a, 1.0 - x) == pytest.approx(1.0, abs=1e-12)


def test_beta_inc_huge_parameters_look_normal() -> None:
    # Beta(a, a) is nearly normal with sd 1/(2 sqrt(2a + 1)) for a large
    for a in (1e6, 1e9):
        sd = 0.5 / math.sqrt(2 * a + 1)
        for z in (-2.0, 0.5, 1.0):
            assert beta_inc(a, a, 0.5 + z * sd) == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), abs=2e-5)


@pytest.mark.parametrize("a, b", [(1, 1), (3, 9), (0.5, 2), (1e6, 2), (2, 1e6), (1e9, 1e9), (5e8, 7)])
@pytest.mark.parametrize("q", [1e-9, 0.025, 0.5, 0.975])
def test_beta_ppf_inverts_beta_inc(a: float, b: float, q: float) -> None:
    x = beta_ppf(q, a, b)
    assert 0.0 < x < 1.0
    # a step of 1e-12 either side brackets q (the inverse holds to 1e-12 absolute)
    assert beta_inc(a, b, max(x - 1e-12, 0.0)) <= q <= beta_inc(a, b, min(x + 1e-12, 1.0))
    assert beta_ppf(0.0, a, b) == 0.0 and beta_ppf(1.0, a, b) == 1.0


@pytest.mark.parametrize("successes, trials, low, high", [
    (0, 10, 0.0, 0.30850), (10, 10, 0.69150, 1.0), (5, 10, 0.18709, 0.81291),
    (1, 100, 0.000253, 0.054461)])
def test_clopper_pearson_known_values(successes: int, trials: int, low: float, high: float) -> None:
    interval = clopper_pearson(successes, trials)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=1e-4) and interval[1] == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("trials", [1, 2, 5, 13, 30])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_clopper_pearson_against_binomial_sums(trials: int, confidence: float) -> None:
    tail = (1.0 - confidence) / 2
    for successes in range(trials + 1):
        interval = clopper_pearson(successes, trials, confidence)
        assert interval is not None
        low, high = interval
        assert 0.0 <= low < successes / trials < high <= 1.0 or successes in (0, trials)
        if successes > 0:   # P(X >= s | low) = tail
            assert _binom_sum(range(successes, trials + 1), trials, low) == pytest.approx(tail, abs=1e-10)
        else:
            assert low == 0.0
        if successes < trials:   # P(X <= s | high) = tail
            assert _binom_cdf(successes, trials, high) == pytest.approx(tail, abs=1e-10)
        else:
            assert high == 1.0


def test_clopper_pearson_huge_n() -> None:
    interval = clopper_pearson(999_999, 1_000_000)
    assert interval is not None
    low, high = interval
    assert all(math.isfinite(v) for v in interval)
    assert 0.0 < low < 0.999999 < high < 1.0
    # one failure: 1 - high is where P(Bin(n, 1 - high) >= 1) = 0.025, i.e. about -ln(0.975)/n
    assert 1 - high == pytest.approx(-math.log(0.975) / 1_000_000, rel=1e-5)
    assert clopper_pearson(0, 0) is None and ci_pct(0, 0) is None


def test_ci_pct_is_rounded_percent() -> None:
    assert ci_pct(5, 10) == [18.708603, 81.291397]
    assert ci_pct(5, 10, digits=2) == [18.71, 81.29]
    assert ci_pct(np.int64(10), np.int64(10))[1] == 100.0    # numpy integers are counts too


def test_messages_needed() -> None:
    n = messages_needed(99.9999)
    assert 3.68e6 <= n <= 3.70e6
    # the smallest such n: n of n reaches the target, n - 1 of n - 1 does not
    assert target_verdict(n, n, 99.9999) is True and target_verdict(n - 1, n - 1, 99.9999) == "undetermined"
    assert messages_needed(99.9999, confidence=0.99) > n
    targets = [10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999, 99.99999]
    needed = [messages_needed(t) for t in targets]
    assert needed == sorted(needed) and len(set(needed)) == len(needed)
    for t, m in zip(targets, needed, strict=True):
        assert clopper_pearson(m, m)[0] >= t / 100 > clopper_pearson(m - 1, m - 1)[0] or m == 1


def test_verdicts() -> None:
    assert target_verdict(12_000, 12_000, 99.9999) == "undetermined"
    assert target_verdict(100_000, 100_000, 99.9) is True
    assert target_verdict(900, 1000, 99.9) is False
    assert target_verdict(0, 0, 99.9) == "undetermined"
    assert target_verdict(5, 5, 100.0) == "undetermined" and target_verdict(4, 5, 100.0) is False


def test_quantile_ci_covers_the_true_percentile() -> None:
    rng = np.random.default_rng(42)
    true_p99 = -math.log(0.01)          # exponential(1)
    true_p50 = math.log(2.0)
    hits99 = hits50 = 0
    for _ in range(200):
        sample = rng.exponential(1.0, 1000)
        low, high = quantile_ci(sample, 99)
        hits99 += low is not None and high is not None and low <= true_p99 <= high
        low, high = quantile_ci(sample, 50)
        hits50 += low <= true_p50 <= high
    assert hits99 >= 180 and hits50 >= 180


def test_quantile_ci_small_samples_and_nans() -> None:
    values = np.arange(500, dtype=float)
    low, high = quantile_ci(values, 99.9)
    assert high is None and low is not None and low < 500
    assert quantile_ci(np.array([]), 50) == (None, None)
    assert quantile_ci(np.array([np.nan, np.nan]), 50) == (None, None)
    with_nan = np.concatenate([values, np.full(100, np.nan)])
    assert quantile_ci(with_nan, 50) == quantile_ci(values, 50)
    assert quantile_ci(values, 0) == (None, 0.0) and quantile_ci(values, 100) == (499.0, None)


@pytest.mark.parametrize("n, q_pct", [(1, 50), (5, 50), (20, 90), (100, 99), (300, 50), (1000, 99.9)])
def test_ranks_against_binomial_sums(n: int, q_pct: float) -> None:
    tail = 0.025
    p = q_pct / 100
    cdf = list(itertools.accumulate(_binom_sum(range(k, k + 1), n, p) for k in range(n)))
    want_low = max((k for k in range(n) if cdf[k] <= tail), default=None)
    want_high = min((k for k in range(n) if cdf[k] >= 1 - tail), default=None)
    assert ranks_for_quantile_ci(n, q_pct) == (want_low, want_high)


def test_ranks_for_large_n() -> None:
    low, high = ranks_for_quantile_ci(10**8, 50)
    assert low is not None and high is not None
    half = 1.96 * math.sqrt(10**8 * 0.25)       # normal approximation of the order-statistic ranks
    assert abs(low - (5e7 - half)) < 3 and abs(high - (5e7 + half)) < 3
    assert ranks_for_quantile_ci(0, 50) == (None, None)


@pytest.mark.parametrize("call, name", [
    (lambda: beta_inc(0, 1, 0.5), "a"), (lambda: beta_inc(1, -2, 0.5), "b"),
    (lambda: beta_inc(1, 1, 1.5), "x"), (lambda: beta_ppf(-0.1, 1, 1), "q"),
    (lambda: beta_inc(math.inf, 1, 0.5), "a"),
    (lambda: clopper_pearson(-1, 10), "successes"), (lambda: clopper_pearson(11, 10), "successes"),
    (lambda: clopper_pearson(1, -10), "trials"), (lambda: clopper_pearson(1.5, 10), "successes"),
    (lambda: clopper_pearson(1, 10, confidence=1.0), "confidence"),
    (lambda: clopper_pearson(1, 10, confidence=0.0), "confidence"),
    (lambda: messages_needed(100.0), "target_pct"), (lambda: messages_needed(0.0), "target_pct"),
    (lambda: messages_needed(99.0, confidence=95), "confidence"),
    (lambda: target_verdict(1, 2, 101.0), "target_pct"),
    (lambda: ranks_for_quantile_ci(10, 101), "q_pct"), (lambda: ranks_for_quantile_ci(-1, 50), "n"),
    (lambda: quantile_ci(np.ones(3), -1), "q_pct")])
def test_bad_inputs_name_the_argument(call, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call()

"""What a run can claim: exact confidence intervals for shares of messages and for percentiles.

A run sends a finite number of messages, so a measured share (deadline met, availability) is an
estimate. These functions say how far the run's data reach:

- :func:`clopper_pearson` / :func:`ci_pct`: the exact two-sided interval of a binomial proportion
  (Clopper & Pearson, "The use of confidence or fiducial limits illustrated in the case of the
  binomial", Biometrika 26 (1934) 404-413), from the beta quantiles :func:`beta_ppf` of the
  regularized incomplete beta function :func:`beta_inc`;
- :func:`messages_needed`: how many messages, all successful, a run needs before the interval's lower
  bound reaches a target. A 99.9999 % reliability target cannot be claimed from 12,000 packets
  (12,000 of 12,000 gives a lower bound of 99.969 %); it needs about 3.69 million;
- :func:`target_verdict`: met (the whole interval is at or above the target), missed (the whole
  interval is below it) or "undetermined" (the run is too short to tell);
- :func:`quantile_ci` / :func:`ranks_for_quantile_ci`: the distribution-free interval of a percentile
  from two order statistics whose ranks come from the Binomial(n, q) distribution (e.g. Hahn &
  Meeker, Statistical Intervals, Wiley 1991, §5.2). A sample too small has no bound on one side:
  500 values say nothing about how high p99.9 may be.

Pure Python and numpy; no scipy.
"""

from __future__ import annotations

import math
import operator
from statistics import NormalDist

import numpy as np

UNDETERMINED = "undetermined"

_EPS = 2.220446049250313e-16
_TINY = 1e-300
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_CF_MAX_ITER = 1_000_000


# --- regularized incomplete beta function ---------------------------------------------------------
def _stirlerr(z: float) -> float:
    """``lgamma(z) - ((z - 1/2) ln z - z + ln(2 pi)/2)``: the error of Stirling's formula."""
    if z <= 15.0:
        return math.lgamma(z) - ((z - 0.5) * math.log(z) - z + _HALF_LOG_2PI)
    z2 = z * z
    return (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - (1 / 1188 - 691 / 360360 / z2) / z2) / z2) / z2)
            / z2) / z


def _bd0(x: float, m: float) -> float:
    """``x ln(x/m) + m - x`` (>= 0), without cancellation when x is close to m (Loader 2000)."""
    if m <= 0.0:
        return math.inf
    if abs(x - m) < 0.1 * (x + m):
        v = (x - m) / (x + m)
        s = (x - m) * v
        term = 2.0 * x * v
        v2 = v * v
        j = 1
        while True:
            term *= v2
            j += 2
            s_next = s + term / j
            if s_next == s:
                return s
            s = s_next
    return x * math.log(x / m) + m - x


def _log_front(a: float, b: float, x: float) -> float:
    """``ln(x^a (1-x)^b / B(a, b))`` for 0 < x < 1, accurate for huge a and b.

    Stirling's formula with its exact error term for each gamma function, so that the large terms
    ``a ln x`` and ``ln B(a, b)`` cancel analytically instead of in floating point.
    """
    n = a + b
    y = 1.0 - x
    return (-_bd0(a, n * x) - _bd0(b, n * y) + 0.5 * math.log(a * b / n) - _HALF_LOG_2PI
            - _stirlerr(a) - _stirlerr(b) + _stirlerr(n))


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) * a / front (modified Lentz), for x < (a+1)/(a+b+2)."""
    apb, ap1, am1 = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - apb * x / ap1
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_MAX_ITER):
        m2 = 2.0 * m
        coef = m * (b - m) * x / ((am1 + m2) * (a + m2))          # even step
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        h *= c * d
        coef = -(a + m) * (apb + m) * x / ((a + m2) * (ap1 + m2))  # odd step
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        delta = c * d
        h *= delta
        if abs(delta - 1.0) <= _EPS:
            return h
    raise ArithmeticError(f"beta_inc: continued fraction did not converge (a={a}, b={b}, x={x})")


def _check_shape(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_unit(name: str, value: float, *, open_ends: bool = False) -> float:
    value = float(value)
    ok = 0.0 < value < 1.0 if open_ends else 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'(0, 1)' if open_ends else '[0, 1]'}, got {value!r}")
    return value


def beta_inc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) = P(X <= x) for X ~ Beta(a, b).

    Relative error ~1e-14 for moderate a and b; for a or b up to 1e9 the error stays that of moving
    x by a few units in its last place (the function is that steep there).
    """
    a, b = _check_shape("a", a), _check_shape("b", b)
    x = _check_unit("x", x)
    if x == 0.0 or x == 1.0:
        return x
    if x <= (a + 1.0) / (a + b + 2.0):
        return min(1.0, math.exp(_log_front(a, b, x)) * _beta_cf(a, b, x) / a)
    y = 1.0 - x
    return max(0.0, 1.0 - math.exp(_log_front(b, a, y)) * _beta_cf(b, a, y) / b)


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q (the q-quantile of Beta(a, b)); safeguarded Newton, ~1e-14 relative."""
    a, b = _check_shape("a", a), _check_shape("b", b)
    q = _check_unit("q", q)
    if q == 0.0 or q == 1.0:
        return q
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    x = min(max(mean + NormalDist().inv_cdf(q) * sd, 0.01 * mean), 1.0 - 0.01 * (1.0 - mean))
    x = min(max(x, _TINY), 1.0 - _EPS)            # a start strictly inside (0, 1)
    lo, hi = 0.0, 1.0
    for _ in range(2000):
        f = beta_inc(a, b, x) - q
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        log_pdf = _log_front(a, b, x) - math.log(x) - math.log1p(-x)
        new = x - (f / math.exp(log_pdf) if log_pdf > -700.0 else math.copysign(math.inf, f))
        if not lo < new < hi:           # Newton left the bracket: bisect it (geometrically near 0)
            if lo == 0.0 and hi < 0.5:
                new = 0.0625 * hi
            elif 0.0 < lo and 4.0 * lo < hi < 0.5:
                new = math.sqrt(lo * hi)
            else:
                new = 0.5 * (lo + hi)
        tol = max(1e-14 * min(new, 1.0 - new), 4.0 * _EPS * new)
        if abs(new - x) <= tol or hi - lo <= tol:
            return new
        x = new
    return x


# --- binomial proportions -------------------------------------------------------------------------
def _count(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {n}")
    return n


def _check_counts(successes: int, trials: int) -> tuple[int, int]:
    trials = _count("trials", trials)
    successes = _count("successes", successes)
    if successes > trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes}")
    return successes, trials


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Exact two-sided ``confidence`` interval (low, high) of a binomial proportion; None without trials."""
    successes, trials = _check_counts(successes, trials)
    confidence = _check_unit("confidence", confidence, open_ends=True)
    if trials == 0:
        return None
    tail = 0.5 * (1.0 - confidence)
    if successes == trials:
        return tail ** (1.0 / trials), 1.0
    if successes == 0:
        return 0.0, 1.0 - tail ** (1.0 / trials)
    low = beta_ppf(tail, successes, trials - successes + 1)
    high = 1.0 - beta_ppf(tail, trials - successes, successes + 1)
    return low, high


def ci_pct(successes: int, trials: int, confidence: float = 0.95, digits: int = 6) -> list[float] | None:
    """:func:`clopper_pearson` as ``[low_pct, high_pct]`` rounded to ``digits`` (summary.json form)."""
    interval = clopper_pearson(successes, trials, confidence)
    return None if interval is None else [round(100.0 * v, digits) for v in interval]


def _check_target_pct(target_pct: float, *, allow_100: bool) -> float:
    target_pct = float(target_pct)
    if not (0.0 < target_pct < 100.0 or (allow_100 and target_pct == 100.0)):
        raise ValueError(f"target_pct must be in (0, {'100]' if allow_100 else '100)'}, got {target_pct!r}")
    return target_pct


def messages_needed(target_pct: float, confidence: float = 0.95) -> int:
    """Fewest messages n such that n successes of n give a Clopper-Pearson lower bound >= the target.

    The two-sided lower bound for n of n is ``((1 - confidence)/2)^(1/n)``, so
    n = ceil(ln((1 - confidence)/2) / ln(target)): about 3.69 million for 99.9999 % at 95 %.
    """
    target_pct = _check_target_pct(target_pct, allow_100=False)
    confidence = _check_unit("confidence", confidence, open_ends=True)
    tail = 0.5 * (1.0 - confidence)
    target = target_pct / 100.0
    n = max(1, math.ceil(math.log(tail) / math.log1p(-(100.0 - target_pct) / 100.0)))
    while n > 1 and tail ** (1.0 / (n - 1)) >= target:   # the same test clopper_pearson makes
        n -= 1
    while tail ** (1.0 / n) < target:
        n += 1
    return n


def target_verdict(successes: int, trials: int, target_pct: float,
                   confidence: float = 0.95) -> bool | str:
    """True when the interval's lower bound is >= the target, False when its upper bound is below it,
    else ``"undetermined"`` (also without trials)."""
    target_pct = _check_target_pct(target_pct, allow_100=True)
    interval = clopper_pearson(successes, trials, confidence)
    if interval is None:
        return UNDETERMINED
    target = target_pct / 100.0
    if interval[0] >= target:
        return True
    if interval[1] < target:
        return False
    return UNDETERMINED


# --- percentiles ----------------------------------------------------------------------------------
def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k) = I_{1-p}(n - k, k + 1)."""
    return 1.0 if k >= n else beta_inc(n - k, k + 1, 1.0 - p)


def ranks_for_quantile_ci(n: int, q_pct: float, confidence: float = 0.95) -> tuple[int | None, int | None]:
    """0-based ranks (into the sorted sample of ``n`` values) of the bounds of the ``q_pct`` percentile's
    distribution-free interval; a bound is None when ``n`` is too small to have it.

    With K ~ Bin(n, q) the number of values below the true percentile, the lower rank is the largest k
    with P(K <= k) <= (1 - confidence)/2 and the upper rank the smallest k with P(K > k) <= the same,
    so each side misses with probability at most (1 - confidence)/2.
    """
    n = _count("n", n)
    q_pct = float(q_pct)
    if not 0.0 <= q_pct <= 100.0:
        raise ValueError(f"q_pct must be in [0, 100], got {q_pct!r}")
    confidence = _check_unit("confidence", confidence, open_ends=True)
    if n == 0:
        return None, None
    p = q_pct / 100.0
    tail = 0.5 * (1.0 - confidence)
    lower = None
    if _binom_cdf(0, n, p) <= tail:
        lo, hi = 0, n - 1                   # invariant: cdf(lo) <= tail
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _binom_cdf(mid, n, p) <= tail:
                lo = mid
            else:
                hi = mid - 1
        lower = lo
    upper = None
    if _binom_cdf(n - 1, n, p) >= 1.0 - tail:
        lo, hi = 0, n - 1                   # invariant: cdf(hi) >= 1 - tail
        while lo < hi:
            mid = (lo + hi) // 2
            if _binom_cdf(mid, n, p) >= 1.0 - tail:
                hi = mid
            else:
                lo = mid + 1
        upper = hi
    return lower, upper


def quantile_ci(values: np.ndarray, q_pct: float,
                confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Distribution-free ``confidence`` interval (low, high) of the ``q_pct`` percentile of the values'
    distribution, from order statistics; NaNs are left out; a bound is None when the sample is too
    small to have it (the upper bound of p99.9 from 500 values)."""
    array = np.asarray(values, dtype=float).ravel()
    array = np.sort(array[~np.isnan(array)])
    lower, upper = ranks_for_quantile_ci(array.size, q_pct, confidence)
    return (None if lower is None else float(array[lower]),
            None if upper is None else float(array[upper]))

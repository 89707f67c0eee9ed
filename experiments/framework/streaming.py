"""Exact percentiles of data too large to hold: two passes over chunks, memory bounded by one bin.

A run's raw records can be far larger than memory (a 1-hour, 124-UE factory: ~10^8 packets). The
analysis reads them in chunks. :class:`TwoPassQuantiles` gives the same percentiles as
:func:`experiments.framework.stats.percentile` (numpy's linear method), exactly, in two passes:

1. ``count`` every chunk: per group, a histogram over log-spaced bins (64 per octave of the value
   in ns, about 1.1 % wide; zero and negative values have bins of their own);
2. ``plan`` the wanted percentiles: the two ranks numpy interpolates between, and the bins that hold
   them; then ``gather`` every chunk again, keeping only the values in those bins;
3. ``percentile``: the order statistics from the kept values, interpolated as numpy does.

Memory: the histograms (a few thousand counters per group) plus, per planned bin, its values when
it holds at most ``KEEP_MAX`` of them; a more crowded bin (a narrow distribution: most packets in
one 1.1 % bin) is counted instead at 1 ns resolution over its width (at most ``COUNT_MAX_NS``
counters), which is exact for values on a 1 ns grid, as every delay computed from ns timestamps is.
:attr:`TwoPassQuantiles.kept` says how many values and counters pass 2 held.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np

from experiments.framework.confidence import ranks_for_quantile_ci

BINS_PER_OCTAVE = 64
_MAX_OCTAVES = 64                      # |value| up to 2^64 ns
_SIDE = BINS_PER_OCTAVE * _MAX_OCTAVES + 1
_NBINS = 2 * _SIDE + 1                 # negative side, zero, positive side
KEEP_MAX = 1 << 20                     # pass 2 keeps the values of a bin holding at most this many
COUNT_MAX_NS = 1 << 22                 # ... else counts them per ns over a bin at most this wide


def bin_of(values_ns: np.ndarray) -> np.ndarray:
    """Bin index of each value (int64 ns): ordered like the values, 0 for zero."""
    v = np.asarray(values_ns, dtype=np.float64)
    mag = np.floor(np.log2(np.maximum(np.abs(v), 1.0)) * BINS_PER_OCTAVE).astype(np.int64) + 1
    mag = np.minimum(mag, _SIDE - 1)
    return np.where(v > 0, _SIDE + mag, np.where(v < 0, _SIDE - mag, _SIDE))


class TwoPassQuantiles:
    """Exact percentiles per group over chunked data (see the module docstring).

    ``scale_to_ns``: what one unit of the values is in ns (1e6 for values in ms), for binning only;
    the percentiles come back in the values' own unit.
    """

    def __init__(self, percentiles: Iterable[float], scale_to_ns: float = 1e6,
                 ci_percentiles: Iterable[float] = ()) -> None:
        self.qs = tuple(percentiles)
        self.ci_qs = tuple(ci_percentiles)  # also plan their 95 % order-statistic intervals
        self.scale = scale_to_ns
        self._hist: dict[Hashable, np.ndarray] = {}
        self._wanted: dict[Hashable, dict[int, list[int]]] = {}  # group -> bin -> ranks in it
        self._kept: dict[Hashable, dict[int, list[np.ndarray]]] = {}
        self._counted: dict[Hashable, dict[int, tuple[int, np.ndarray]]] = {}  # bin -> (lo ns, counts)
        self._planned = False

    # --- pass 1 ---------------------------------------------------------------------------------
    def count(self, group: Hashable, values: np.ndarray) -> None:
        """Pass 1: count one chunk of ``group``'s values (NaN left out)."""
        if self._planned:
            raise RuntimeError("count() after plan(): start a new TwoPassQuantiles")
        bins = self._bins(values)
        if bins.size:
            hist = self._hist.setdefault(group, np.zeros(_NBINS, dtype=np.int64))
            hist += np.bincount(bins, minlength=_NBINS)

    @property
    def groups(self) -> list[Hashable]:
        """The groups counted so far, in the order they first came."""
        return list(self._hist)

    def n(self, group: Hashable) -> int:
        hist = self._hist.get(group)
        return int(hist.sum()) if hist is not None else 0

    def plan(self) -> None:
        """Between the passes: which bins hold the ranks each percentile needs."""
        self._planned = True
        for group, hist in self._hist.items():
            cum = np.cumsum(hist)
            wanted: dict[int, list[int]] = {}
            ranks = {r for q in self.qs for r in _ranks(int(cum[-1]), q)}
            ranks |= {r for q in self.ci_qs for r in ranks_for_quantile_ci(int(cum[-1]), q) if r is not None}
            for rank in sorted(ranks):
                wanted.setdefault(int(np.searchsorted(cum, rank, side="right")), []).append(rank)
            self._wanted[group] = wanted
            counted = {}
            for b in wanted:
                lo, hi = _bin_ns(b)
                if hist[b] > KEEP_MAX and hi - lo <= COUNT_MAX_NS:
                    counted[b] = (lo, np.zeros(hi - lo + 1, dtype=np.int64))
            self._counted[group] = counted
            self._kept[group] = {b: [] for b in wanted if b not in counted}

    # --- pass 2 ---------------------------------------------------------------------------------
    def gather(self, group: Hashable, values: np.ndarray) -> None:
        """Pass 2: keep ``group``'s values that fall in a planned bin (chunks as in pass 1)."""
        if not self._planned:
            raise RuntimeError("gather() before plan()")
        wanted = self._wanted.get(group)
        if not wanted:
            return
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        ns = np.rint(values * self.scale)
        bins = bin_of(ns)
        for b, kept in self._kept[group].items():
            hit = values[bins == b]
            if hit.size:
                kept.append(hit)
        for b, (lo, counts) in self._counted[group].items():
            hit = ns[bins == b].astype(np.int64) - lo
            if hit.size:
                counts += np.bincount(hit, minlength=counts.size)[:counts.size]

    def histogram(self, group: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """Pass 1's bins of ``group`` that hold values: (upper edge of each bin in the values' unit,
        count); a CDF at 1.1 % resolution (figures draw from it in bounded memory)."""
        hist = self._hist.get(group)
        if hist is None:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        bins = np.flatnonzero(hist)
        mag = bins - _SIDE
        edge_ns = np.where(mag > 0, 2.0 ** (mag / BINS_PER_OCTAVE),
                           np.where(mag < 0, -(2.0 ** ((-mag - 1) / BINS_PER_OCTAVE)), 0.0))
        return edge_ns / self.scale, hist[bins]

    @property
    def kept(self) -> int:
        """Values held by pass 2 (the memory it needed)."""
        return (sum(a.size for per in self._kept.values() for parts in per.values() for a in parts)
                + sum(c.size for per in self._counted.values() for _, c in per.values()))

    def percentile(self, group: Hashable, q: float, digits: int = 4) -> float | None:
        """The ``q``-th percentile of ``group`` (numpy's linear method), rounded; None when empty."""
        cum = self._planned_cum(group, q, self.qs, "percentile")
        if cum is None:
            return None
        lo_rank, hi_rank = _ranks(int(cum[-1]), q)
        lo, hi = self._value(group, cum, lo_rank), self._value(group, cum, hi_rank)
        h = (int(cum[-1]) - 1) * q / 100
        t = h - math.floor(h)
        value = hi - (hi - lo) * (1 - t) if t >= 0.5 else lo + (hi - lo) * t  # as numpy's _lerp
        return round(float(value), digits)

    def percentile_ci(self, group: Hashable, q: float, digits: int = 4) -> list[float | None] | None:
        """The distribution-free 95 % interval of the ``q``-th percentile (confidence.quantile_ci's
        order statistics, exact); a bound the sample is too small to give is None; None when empty."""
        cum = self._planned_cum(group, q, self.ci_qs, "interval of percentile")
        if cum is None:
            return None
        return [None if r is None else round(self._value(group, cum, r), digits)
                for r in ranks_for_quantile_ci(int(cum[-1]), q)]

    # --- internals ------------------------------------------------------------------------------
    def _planned_cum(self, group: Hashable, q: float, planned: tuple[float, ...], what: str
                     ) -> np.ndarray | None:
        """``group``'s cumulative counts for a read of ``q`` (None when empty); ``q`` must be planned."""
        if q not in planned:
            raise ValueError(f"{what} {q} was not planned; planned: {planned}")
        hist = self._hist.get(group)
        return None if hist is None else np.cumsum(hist)

    def _bins(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return bin_of(np.rint(values[~np.isnan(values)] * self.scale))

    def _value(self, group: Hashable, cum: np.ndarray, rank: int) -> float:
        b = int(np.searchsorted(cum, rank, side="right"))
        below = int(cum[b - 1]) if b else 0
        if b in self._counted[group]:
            lo, counts = self._counted[group][b]
            return (lo + int(np.searchsorted(np.cumsum(counts), rank - below, side="right"))) / self.scale
        values = np.sort(np.concatenate(self._kept[group][b]))
        return float(values[rank - below])


def _bin_ns(b: int) -> tuple[int, int]:
    """The smallest and largest integer ns value of bin ``b`` (bin_of's inverse)."""
    mag = abs(b - _SIDE)
    if mag == 0:
        return 0, 0
    pos = _SIDE + mag  # the positive bin of the same magnitude

    def inside(v: int) -> bool:
        return int(bin_of(np.array([v]))[0]) == pos

    lo = max(1, math.floor(2.0 ** ((mag - 1) / BINS_PER_OCTAVE)))
    hi = max(lo, math.ceil(2.0 ** (mag / BINS_PER_OCTAVE)))
    while lo > 1 and inside(lo - 1):  # float edges: settle on the exact ones (a step or two)
        lo -= 1
    while not inside(lo):
        lo += 1
    while inside(hi + 1):
        hi += 1
    while not inside(hi):
        hi -= 1
    return (lo, hi) if b > _SIDE else (-hi, -lo)


def _ranks(n: int, q: float) -> tuple[int, int]:
    """The 0-based order statistics numpy's linear percentile interpolates between."""
    h = (n - 1) * q / 100
    return math.floor(h), math.ceil(h)

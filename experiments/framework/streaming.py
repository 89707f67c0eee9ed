"""Exact percentiles of data too large to hold: two passes over chunks, memory bounded by one bin.

A run's raw records can be far larger than memory (a 1-hour, 124-UE factory: ~10^8 packets). The
analysis reads them in chunks. :class:`TwoPassQuantiles` gives the same percentiles as
:func:`experiments.framework.stats.percentile` (numpy's linear method), exactly, in two passes:

1. ``count`` every chunk: per group, a histogram over log-spaced bins (64 per octave of the value
   in ns, about 1.1 % wide; zero and negative values have bins of their own);
2. ``plan`` the wanted percentiles: the two ranks numpy interpolates between, and the bins that hold
   them; then ``gather`` every chunk again, keeping only the values in those bins;
3. ``percentile``: the order statistics from the kept values, interpolated as numpy does.

Memory: the histograms (a few thousand counters per group) plus the values of the planned bins.
A bin holds at most its share of the data; with percentiles spread over the distribution that is
a small part of it (:attr:`TwoPassQuantiles.kept` says how many values were held).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np

BINS_PER_OCTAVE = 64
_MAX_OCTAVES = 64                      # |value| up to 2^64 ns
_SIDE = BINS_PER_OCTAVE * _MAX_OCTAVES + 1
_NBINS = 2 * _SIDE + 1                 # negative side, zero, positive side


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

    def __init__(self, percentiles: Iterable[float], scale_to_ns: float = 1e6) -> None:
        self.qs = tuple(percentiles)
        self.scale = scale_to_ns
        self._hist: dict[Hashable, np.ndarray] = {}
        self._wanted: dict[Hashable, dict[int, list[int]]] = {}  # group -> bin -> ranks in it
        self._kept: dict[Hashable, dict[int, list[np.ndarray]]] = {}
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

    def n(self, group: Hashable) -> int:
        hist = self._hist.get(group)
        return int(hist.sum()) if hist is not None else 0

    def plan(self) -> None:
        """Between the passes: which bins hold the ranks each percentile needs."""
        self._planned = True
        for group, hist in self._hist.items():
            cum = np.cumsum(hist)
            wanted: dict[int, list[int]] = {}
            for rank in sorted({r for q in self.qs for r in _ranks(int(cum[-1]), q)}):
                wanted.setdefault(int(np.searchsorted(cum, rank, side="right")), []).append(rank)
            self._wanted[group] = wanted
            self._kept[group] = {b: [] for b in wanted}

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
        bins = bin_of(np.rint(values * self.scale))
        for b, kept in self._kept[group].items():
            hit = values[bins == b]
            if hit.size:
                kept.append(hit)

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
        return sum(a.size for per in self._kept.values() for parts in per.values() for a in parts)

    def percentile(self, group: Hashable, q: float, digits: int = 4) -> float | None:
        """The ``q``-th percentile of ``group`` (numpy's linear method), rounded; None when empty."""
        hist = self._hist.get(group)
        if hist is None or q not in self.qs:
            if q not in self.qs:
                raise ValueError(f"percentile {q} was not planned; planned: {self.qs}")
            return None
        cum = np.cumsum(hist)
        lo_rank, hi_rank = _ranks(int(cum[-1]), q)
        lo, hi = self._value(group, cum, lo_rank), self._value(group, cum, hi_rank)
        h = (int(cum[-1]) - 1) * q / 100
        t = h - math.floor(h)
        value = hi - (hi - lo) * (1 - t) if t >= 0.5 else lo + (hi - lo) * t  # as numpy's _lerp
        return round(float(value), digits)

    # --- internals ------------------------------------------------------------------------------
    def _bins(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return bin_of(np.rint(values[~np.isnan(values)] * self.scale))

    def _value(self, group: Hashable, cum: np.ndarray, rank: int) -> float:
        b = int(np.searchsorted(cum, rank, side="right"))
        below = int(cum[b - 1]) if b else 0
        values = np.sort(np.concatenate(self._kept[group][b]))
        return float(values[rank - below])


def _ranks(n: int, q: float) -> tuple[int, int]:
    """The 0-based order statistics numpy's linear percentile interpolates between."""
    h = (n - 1) * q / 100
    return math.floor(h), math.ceil(h)

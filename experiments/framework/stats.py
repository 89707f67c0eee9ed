"""Small statistics shared by every kind and benchmark (one definition of a percentile)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentile(values: Iterable[float] | np.ndarray, q: float, digits: int = 4) -> float | None:
    """The ``q``-th percentile (numpy's linear method) rounded to ``digits``; None when empty.

    NaN values (lost packets, missing replies) are left out.
    """
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return round(float(np.percentile(array, q)), digits) if array.size else None


def share_pct(count: int, total: int, digits: int = 4) -> float | None:
    """``100 * count / total`` rounded; None when there is nothing to divide by."""
    return round(100.0 * count / total, digits) if total else None


def number_text(value: float | None, digits: int = 2) -> str:
    """A summary figure for the terminal: ``digits`` decimals, ``-`` where there is none."""
    return "-" if value is None else f"{value:.{digits}f}"

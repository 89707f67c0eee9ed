"""Figures from tidy tables. One function per figure; one style table for every slice."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# The one slice -> (colour, label) table used by every figure (colour-blind safe, Okabe-Ito).
SLICE_STYLE: dict[str, tuple[str, str]] = {
    "urllc": ("#D55E00", "URLLC"),
    "embb": ("#0072B2", "eMBB"),
    "mmtc": ("#009E73", "mMTC"),
}
_FALLBACK = ("#7F7F7F", None)


def slice_style(name: str) -> tuple[str, str]:
    colour, label = SLICE_STYLE.get(name, _FALLBACK)
    return colour, label or name


def owd_cdf(packets: pd.DataFrame, bounds_ms: dict[str, float]) -> plt.Figure:
    """Per-slice CDF of one-way delay (received packets), with each slice's bound dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for name, group in packets.groupby("slice", sort=True):
        owd = np.sort(group["owd_ms"].to_numpy())
        if owd.size == 0:
            continue
        colour, label = slice_style(str(name))
        y = np.arange(1, owd.size + 1) / owd.size
        ax.plot(owd, y, color=colour, label=f"{label} (n={owd.size})", linewidth=1.6)
        if name in bounds_ms:
            ax.axvline(bounds_ms[name], color=colour, linestyle="--", linewidth=0.9, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("one-way delay (ms, log scale); dashed: slice latency bound")
    ax.set_ylabel("CDF of received packets")
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def save(fig: plt.Figure, path_stem: Path) -> list[Path]:
    """Save ``fig`` as PNG and PDF next to each other; return the paths."""
    paths = [path_stem.with_suffix(".png"), path_stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths

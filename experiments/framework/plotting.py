"""Plotting conventions shared by every figure: the Agg backend, one slice style table, saving.

Import matplotlib through this module (``from experiments.framework.plotting import plt``) so the
non-interactive backend is selected before pyplot loads.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def save(fig: plt.Figure, path_stem: Path) -> list[Path]:
    """Save ``fig`` as PNG and PDF next to each other; return the paths."""
    paths = [path_stem.with_suffix(".png"), path_stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


__all__ = ["SLICE_STYLE", "plt", "save", "slice_style"]

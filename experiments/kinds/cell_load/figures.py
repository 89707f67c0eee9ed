"""The cell_load figures: delay CDF per slice at each load step, and per-slice p99 and deadline
share against the offered load."""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.framework.plotting import plt, slice_style


def cdf_per_step(delays: dict[tuple[int, str], dict[str, Any]], points: list[dict[str, Any]],
                 bounds_ms: dict[str, float]) -> plt.Figure:
    names = list(points[0]["slices"]) if points else []
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.4 * max(1, len(names)), 3.8), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis")
    for j, name in enumerate(names):
        ax = axes[0][j]
        for p in points:
            x = np.sort(delays.get((p["step"], name), {}).get("owd", np.zeros(0)))
            if not len(x):
                continue
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=cmap(p["step"] / max(1, len(points) - 1)),
                    linewidth=1.2, label=f"{p['cameras']} cam, {p['offered_mbps']:.0f} Mbit/s")
        if name in bounds_ms:
            ax.axvline(bounds_ms[name], color="#D55E00", linestyle="--", linewidth=0.9)
        ax.set_xscale("log")
        ax.set_title(slice_style(name)[1])
        ax.set_xlabel("one-way delay (ms, log); dashed: bound")
        ax.set_ylabel("CDF")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    return fig


def p99_vs_load(points: list[dict[str, Any]], bounds_ms: dict[str, float]) -> plt.Figure:
    names = list(points[0]["slices"]) if points else []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True, layout="constrained")
    load = [p["offered_mbps"] for p in points]
    for name in names:
        colour, label = slice_style(name)
        p99 = [p["slices"][name]["owd_ms_p99"] for p in points]
        met = [p["slices"][name]["deadline_met_pct"] for p in points]
        top.plot(load, [np.nan if v is None else v for v in p99], "o-", color=colour, label=label)
        if name in bounds_ms:
            top.axhline(bounds_ms[name], color=colour, linestyle="--", linewidth=0.8)
        bottom.plot(load, [np.nan if v is None else v for v in met], "o-", color=colour, label=label)
    top.set_yscale("log")
    top.set_ylabel("one-way delay p99 (ms, log)\ndashed: bound")
    bottom.set_ylabel("packets within bound (%)")
    bottom.set_xlabel("load offered in the cell (Mbit/s, payload), cameras added one per step")
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    return fig

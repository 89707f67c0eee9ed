"""The isolation figures: each slice's delay CDF with enforcement off and on, and each slice's share of
packets within its bound per second across the run (the switch marked)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.plotting import plt, slice_style
from experiments.kinds.cell_load.steps import PacketSchedule
from experiments.kinds.isolation.arms import ARMS

ARM_LINE = {"off": ":", "on": "-"}


def cdf_per_arm(delays: dict[tuple[int, str], dict[str, Any]], arm_summary: dict[str, Any],
                bounds_ms: dict[str, float]) -> plt.Figure:
    names = list(arm_summary[ARMS[0]]["slices"])
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.4 * max(1, len(names)), 3.8), squeeze=False,
                             layout="constrained")
    for j, name in enumerate(names):
        ax = axes[0][j]
        colour, label = slice_style(name)
        for k, arm in enumerate(ARMS):
            x = np.sort(delays.get((k, name), {}).get("owd", np.zeros(0)))
            if not len(x):
                continue
            met = arm_summary[arm]["slices"][name]["deadline_met_pct"]
            text = f"enforcement {arm}" + ("" if met is None else f": {met:.3f} % within bound")
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colour, linestyle=ARM_LINE[arm],
                    linewidth=1.4, label=text)
        if name in bounds_ms:
            ax.axvline(bounds_ms[name], color="#D55E00", linestyle="--", linewidth=0.9)
        ax.set_xscale("log")
        ax.set_title(label)
        ax.set_xlabel("one-way delay (ms, log); dashed: bound")
        ax.set_ylabel("CDF")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    return fig


def share_per_second(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, duration_s: float
                     ) -> dict[str, pd.DataFrame]:
    """slice -> per second of scheduled send time: packets received and on time (a lost packet is
    missing from ``received``; the figure divides by the packets due)."""
    schedule = PacketSchedule(flows)
    seconds = int(np.ceil(duration_s))
    out: dict[str, np.ndarray] = {}
    for chunk in chunks:
        t = schedule.times_s(chunk)
        sec = np.clip(np.floor(t).astype(int), 0, seconds - 1)
        for name, idx in chunk.groupby("slice", observed=True).indices.items():
            acc = out.setdefault(str(name), np.zeros(seconds))
            np.add.at(acc, sec[idx], chunk["on_time"].to_numpy()[idx])
    due: dict[str, np.ndarray] = {}
    for f in flows.itertuples():
        n = int(np.floor((duration_s - f.start_offset_s) / (f.interval_ms / 1000)))
        t = f.start_offset_s + np.arange(max(0, n)) * f.interval_ms / 1000
        acc = due.setdefault(str(f.slice), np.zeros(seconds))
        np.add.at(acc, np.clip(np.floor(t).astype(int), 0, seconds - 1), 1)
    return {name: pd.DataFrame({"t_s": np.arange(seconds), "due": due[name],
                                "on_time": out.get(name, np.zeros(seconds))}) for name in due}


def timeline(per_second: dict[str, pd.DataFrame], arm_s: float, verdict: dict[str, Any]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.2, 3.8), layout="constrained")
    for name, frame in per_second.items():
        colour, label = slice_style(name)
        share = np.where(frame["due"] > 0, 100 * frame["on_time"] / frame["due"].clip(lower=1), np.nan)
        ax.plot(frame["t_s"] + 0.5, np.minimum(share, 100), "o-", color=colour, markersize=2.5, linewidth=1,
                label=label)
    ax.axvline(arm_s, color="black", linewidth=1)
    ax.text(arm_s, 1.01, " enforcement on", transform=ax.get_xaxis_transform(), fontsize=8, va="bottom")
    ax.axhline(verdict["threshold_pct"], color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xlabel("time since traffic start (s), by scheduled send time")
    ax.set_ylabel("packets within bound per second (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig

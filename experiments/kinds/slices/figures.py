"""Figures from tidy tables. One function per figure; one style table for every slice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.framework.plotting import SLICE_STYLE, plt, slice_style


def owd_cdf(hists: dict[str, tuple[np.ndarray, np.ndarray]], bounds_ms: dict[str, float],
            left_out: int = 0, fidelity_note: str | None = None) -> plt.Figure:
    """Per-slice CDF of one-way delay from binned counts (``hists[slice] = (upper bin edge ms,
    packets)``, bins 1.1 % wide: streaming.TwoPassQuantiles.histogram), each slice's bound
    dashed; ``left_out`` packets a host stall touched are named in the axis label;
    ``fidelity_note`` (a run whose own error check did not hold) is written on the figure."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    order = {name: i for i, name in enumerate(SLICE_STYLE)}
    for name in sorted(hists, key=lambda n: (order.get(n, 99), n)):
        edges, counts = hists[name]
        total = int(np.sum(counts))
        if total == 0:
            continue
        colour, label = slice_style(name)
        ax.step(edges, np.cumsum(counts) / total, where="post", color=colour,
                label=f"{label} (n={total})", linewidth=1.6)
        if name in bounds_ms:
            ax.axvline(bounds_ms[name], color=colour, linestyle="--", linewidth=0.9, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("one-way delay (ms, log scale, 1.1 % bins); dashed: slice latency bound")
    ax.set_ylabel("CDF of received packets" + (f"\n({left_out} touched by host stalls left out)"
                                                if left_out else ""))
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    if fidelity_note:
        ax.set_title(fidelity_note, fontsize=8, color="#D55E00")
    return fig


def rtt_timeline(rtt: pd.DataFrame, schedule: pd.DataFrame | None) -> plt.Figure:
    """Measured probe RTT over time, the modelled RTT of the LEO schedule, and handover instants."""
    fig, ax = plt.subplots(figsize=(8.0, 4.0), layout="constrained")
    for (source, target), group in rtt.groupby(["source", "target"], sort=True):
        got = group.dropna(subset=["rtt_ms"])
        ax.plot(got["t_s"], got["rtt_ms"], ".", markersize=2, color="#0072B2",
                label=f"measured RTT {source} -> {target}")
        lost = group[group["rtt_ms"].isna()]
        if len(lost):  # drawn as ticks just above the time axis
            ax.plot(lost["t_s"], np.full(len(lost), 2.0), "|", color="#D55E00", markersize=10,
                    markeredgewidth=1.5, label=f"lost probes ({len(lost)})")
    if schedule is not None and len(schedule):
        up = schedule[schedule["direction"] == "uplink"].set_index("t_s")["delay_ms"]
        down = schedule[schedule["direction"] == "downlink"].set_index("t_s")["delay_ms"]
        modelled = (up + down).dropna()
        ax.step(modelled.index, modelled.to_numpy(), where="post", color="#000000", linewidth=0.8,
                alpha=0.7, label="modelled RTT (LEO schedule, one-way up + down)")
        if "slot_index" in schedule:
            slots = schedule.drop_duplicates("slot_index")["t_s"]
            for t in slots.iloc[1:]:
                ax.axvline(t, color="#7F7F7F", linewidth=0.5, alpha=0.5)
    if len(rtt):
        ax.set_xlim(0, max(1.0, float(rtt["t_s"].max())))
    ax.set_xlabel("time since traffic start (s); grey: LEO reconfiguration instants")
    ax.set_ylabel("RTT (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    return fig

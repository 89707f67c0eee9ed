"""The leo_failover figures: the whole run (heartbeat RTT, cloud-bound one-way delay per slice, the
active path) and a zoom on one reconfiguration and one outage per arm."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.plotting import plt, slice_style

OUTAGE_SHADE = "#D55E00"
WINDOW_SHADE = "#999999"
STATE_COLOUR = {"ok": "#009E73", "violated": "#D55E00", "no_traffic": "#DDDDDD"}


def path_steps(block: dict[str, Any], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(t_s, 0 = LEO / 1 = backup) of the protected slices' path, from the controller's applied times
    (a change the controller never applied is left out)."""
    t, via = [0.0], [0]
    for c in block["path_changes"]:
        if c.get("applied_s") is not None:
            t.append(c["applied_s"])
            via.append(1 if c["via"] == "backup" else 0)
    t.append(end_s)
    via.append(via[-1])
    return np.asarray(t), np.asarray(via)


def _shade(ax: Any, block: dict[str, Any], lo: float, hi: float) -> None:
    for a, b in block["boundary_windows_s"]:
        if b >= lo and a <= hi:
            ax.axvspan(a, b, color=WINDOW_SHADE, alpha=0.25, linewidth=0)
    for a, b in block["outages_s"]:
        if b >= lo and a <= hi:
            ax.axvspan(a, b, color=OUTAGE_SHADE, alpha=0.15, linewidth=0)
    ax.axvline(block["arm_s"], color="#000000", linewidth=0.8, linestyle="--")


def _panels(axes: Any, block: dict[str, Any], got: pd.DataFrame, rtt: pd.DataFrame | None,
            states: pd.DataFrame, lo: float, hi: float, marker: float) -> None:
    rtt_ax, owd_ax, path_ax, sla_ax = axes
    if rtt is not None and len(rtt):
        r = rtt[(rtt["t_s"] >= lo) & (rtt["t_s"] <= hi)]
        ok = r.dropna(subset=["rtt_ms"])
        rtt_ax.plot(ok["t_s"], ok["rtt_ms"], ".", markersize=marker, color="#0072B2",
                    label="heartbeat RTT (LEO)")
        lost = r[r["rtt_ms"].isna()]
        if len(lost):
            rtt_ax.plot(lost["t_s"], np.zeros(len(lost)), "|", color=OUTAGE_SHADE, markersize=8,
                        label=f"lost heartbeats ({len(lost)})")
    rtt_ax.set_ylabel("RTT (ms)")
    g = got[(got["t_s"] >= lo) & (got["t_s"] <= hi)]
    for name, part in g.groupby("slice", sort=True):
        colour, label = slice_style(str(name))
        tag = " (protected)" if name in block["protected_slices"] else ""
        owd_ax.plot(part["t_s"], part["owd_ms"], ".", markersize=marker, color=colour, label=f"{label}{tag}")
    owd_ax.set_ylabel("one-way delay (ms)")
    t, via = path_steps(block, block["duration_s"])
    path_ax.step(t, via, where="post", color="#009E73", linewidth=1.4)
    path_ax.set_yticks([0, 1], ["LEO", "backup"])
    path_ax.set_ylim(-0.3, 1.3)
    path_ax.set_ylabel("protected\nslices' path")
    names = sorted(set(states["slice"]))
    starts = np.unique(states["t_s"].to_numpy(dtype=float))
    width = float(np.diff(starts).min()) if len(starts) > 1 else 1.0  # the bins' width
    for row, name in enumerate(names):
        part = states[(states["slice"] == name) & (states["t_s"] <= hi) & (states["t_s"] + width >= lo)]
        for state, colour in STATE_COLOUR.items():
            s = part[part["state"] == state]
            if len(s):
                sla_ax.broken_barh([(t, width) for t in s["t_s"]], (row - 0.4, 0.8), color=colour,
                                   label=state if row == 0 else None)
    sla_ax.set_yticks(range(len(names)), [slice_style(n)[1] for n in names])
    sla_ax.set_ylabel("SLA state\n(measured)")
    sla_ax.set_xlabel("time since traffic start (s); grey: reconfiguration windows, red: outage, "
                       "dashed: adaptation on")
    for ax in axes:
        _shade(ax, block, lo, hi)
        ax.set_xlim(lo, hi)
        ax.grid(True, alpha=0.3)
    for ax in (rtt_ax, owd_ax, sla_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right", markerscale=3)


def timeline(block: dict[str, Any], got: pd.DataFrame, rtt: pd.DataFrame | None, states: pd.DataFrame
             ) -> plt.Figure:
    """``states``: analysis.sla_bins of the cloud-bound slices (a bin is violated if one packet missed)."""
    fig, axes = plt.subplots(4, 1, figsize=(10.0, 8.0), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": [2, 2, 1, 1]})
    _panels(axes, block, got, rtt, states, 0.0, block["duration_s"], 1.5)
    v = block["verdict"]
    axes[0].set_title("adaptation off | on; reconfiguration spikes removed: "
                      + ("yes" if v["spikes_removed"] else "no"), fontsize=9)
    return fig


def zoom_spans(block: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Per arm: its first boundary window after settling (+-1 s), its first outage and its first fade
    (-1 s .. end + 3 s)."""
    spans = []
    for arm, a in block["arms"].items():
        lo, hi = a["window_s"]
        w = next(((x, y) for x, y in block["boundary_windows_s"] if lo <= x and y <= hi), None)
        if w is not None:
            spans.append((f"{arm}: reconfiguration at {w[0]:.2f} s", w[0] - 1.0, w[1] + 1.0))
        faults = block.get("outages") or [{"start_s": x, "end_s": y} for x, y in block["outages_s"]]
        for kind in ("outage", "fade"):
            o = next((f for f in faults if f.get("kind", "outage") == kind and lo <= f["start_s"] < hi), None)
            if o is not None:
                what = "outage" if kind == "outage" else f"fade {o['loss_pct']:g} %"
                spans.append((f"{arm}: {what} {o['start_s']:g}-{o['end_s']:g} s", o["start_s"] - 1.0,
                              o["end_s"] + 3.0))
    return spans


def zoom(block: dict[str, Any], got: pd.DataFrame, rtt: pd.DataFrame | None, states: pd.DataFrame
         ) -> plt.Figure:
    spans = zoom_spans(block) or [("whole run", 0.0, block["duration_s"])]
    fig, axes = plt.subplots(4, len(spans), figsize=(3.6 * len(spans), 7.5), layout="constrained",
                             squeeze=False, gridspec_kw={"height_ratios": [2, 2, 1, 1]})
    for j, (title, lo, hi) in enumerate(spans):
        _panels(axes[:, j], block, got, rtt, states, lo, hi, 3.0)
        axes[0][j].set_title(title, fontsize=9)
        if j:
            for ax in axes[:, j]:
                ax.set_ylabel("")
        axes[-1][j].set_xlabel("time (s)")
    return fig

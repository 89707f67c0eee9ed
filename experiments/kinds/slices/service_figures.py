"""TS 22.104 figures from a run's tidy tables: availability timeline, failure bursts, cycle times.

One function per figure (returning the figure); :func:`draw` reads the run folder and saves those
whose data the run has (``outages.parquet``, ``summary.json`` ``flows``, ``cycles.parquet``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.plotting import SLICE_STYLE, plt, save, slice_style


def _flow_order(flows: dict[str, dict[str, Any]], slice_of: dict[str, str]) -> list[str]:
    order = {name: i for i, name in enumerate(SLICE_STYLE)}
    return sorted(flows, key=lambda n: (order.get(slice_of.get(n, ""), 99), n))


def availability_timeline(outages: pd.DataFrame, flows: dict[str, dict[str, Any]],
                          slice_of: dict[str, str], duration_s: float) -> plt.Figure:
    """One row per flow: up (thin line, slice colour) and its DOWN intervals (red bars), with the
    flow's availability and survival-time violations as its label."""
    names = _flow_order(flows, slice_of)
    fig, ax = plt.subplots(figsize=(7.2, 0.9 + 0.32 * max(1, len(names))), layout="constrained")
    for row, name in enumerate(names):
        colour, _ = slice_style(slice_of.get(name, ""))
        ax.hlines(row, 0, duration_s, color=colour, linewidth=1.5)
        mine = outages[outages["flow"] == name] if not outages.empty else outages
        if len(mine):
            ax.broken_barh([(s, max(e - s, duration_s / 2000)) for s, e in zip(mine["start_s"], mine["end_s"],
                                                                               strict=True)],
                           (row - 0.35, 0.7), color="#CC0000")
        f = flows[name]
        avail = f.get("availability_pct")
        ax.text(duration_s * 1.01, row, f"{avail:.4f} %  ({f.get('survival_violations', 0)} viol.)"
                if avail is not None else "n/a", va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlim(0, duration_s * 1.3)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.invert_yaxis()
    ax.set_xlabel("time since traffic start (s); red: service DOWN (outage longer than the survival time, "
                  "TS 22.104 Annex C)", fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def burst_histogram(flows: dict[str, dict[str, Any]], slice_of: dict[str, str]) -> plt.Figure:
    """Per slice: how many failure bursts (consecutive unsuccessful messages) of each length, and
    of those how many were all lost (loss bursts)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    per_slice: dict[str, dict[str, dict[int, int]]] = {}
    for name, f in flows.items():
        mine = per_slice.setdefault(slice_of.get(name, ""), {"failure": {}, "loss": {}})
        for key, out in (("failure_bursts", "failure"), ("loss_bursts", "loss")):
            for length, count in (f.get(key) or {}).items():
                mine[out][int(length)] = mine[out].get(int(length), 0) + int(count)
    slices = [s for s in SLICE_STYLE if s in per_slice] + sorted(set(per_slice) - set(SLICE_STYLE))
    width = 0.8 / max(1, len(slices))
    drawn = False
    for i, name in enumerate(slices):
        colour, label = slice_style(name)
        fail = per_slice[name]["failure"]
        if not fail:
            continue
        lengths = np.array(sorted(fail))
        ax.bar(lengths + (i - (len(slices) - 1) / 2) * width, [fail[k] for k in lengths], width,
               color=colour, alpha=0.45, label=f"{label}: failure bursts")
        loss = per_slice[name]["loss"]
        if loss:
            lk = np.array(sorted(loss))
            ax.bar(lk + (i - (len(slices) - 1) / 2) * width, [loss[k] for k in lk], width * 0.5,
                   color=colour, label=f"{label}: loss bursts")
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no failed message in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("burst length (consecutive unsuccessful messages)")
    ax.set_ylabel("bursts")
    ax.set_yscale("log" if drawn else "linear")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    return fig


def cycle_cdf(cycles: pd.DataFrame, bounds_ms: dict[int, float]) -> plt.Figure:
    """CDF of every control loop's cycle time (command scheduled -> status received), each loop's
    cycle bound dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for fid, group in cycles.groupby("flow_id"):
        values = np.sort(group["cycle_ms"].to_numpy(dtype=float))
        ax.step(values, np.arange(1, values.size + 1) / values.size, where="post",
                label=f"{group['ue'].iloc[0]} (n={values.size})", linewidth=1.3)
        if int(fid) in bounds_ms:
            ax.axvline(bounds_ms[int(fid)], color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("control-loop cycle time (ms, log scale): command scheduled -> status received;\n"
                  "dashed: cycle bound")
    ax.set_ylabel("CDF of cycles")
    ax.set_ylim(0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def draw(run_dir: Path) -> list[Path]:
    """The run's TS 22.104 figures (those its tables allow)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    flows = summary.get("flows") or {}
    if not flows:
        return []
    table = pd.read_parquet(run_dir / "flows.parquet")
    ids = {int(f["flow_id"]): name for name, f in flows.items()}
    slice_of = {ids[int(r.flow_id)]: str(r.slice) for r in table.itertuples() if int(r.flow_id) in ids}
    meta = json.loads((run_dir / "metadata.json").read_text()) if (run_dir / "metadata.json").exists() else {}
    duration = float(meta.get("duration_s") or 0) or 1.0
    paths: list[Path] = []
    outages = pd.read_parquet(run_dir / "outages.parquet") if (run_dir / "outages.parquet").exists() \
        else pd.DataFrame(columns=["flow_id", "start_s", "end_s"])
    outages = outages.assign(flow=outages["flow_id"].map(ids)) if len(outages) else \
        outages.assign(flow=pd.Series(dtype=str))
    paths += save(availability_timeline(outages, flows, slice_of, duration),
                  run_dir / "availability_timeline")
    paths += save(burst_histogram(flows, slice_of), run_dir / "failure_bursts")
    if (run_dir / "cycles.parquet").exists():
        cycles = pd.read_parquet(run_dir / "cycles.parquet")
        if len(cycles):
            bounds = {int(r.flow_id): float(r.message_bound_ms) for r in table.itertuples()
                      if getattr(r, "model", "") == "status"}
            paths += save(cycle_cdf(cycles, bounds), run_dir / "cycle_time_cdf")
    return paths

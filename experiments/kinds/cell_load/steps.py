"""Per load step and slice: one-way delay percentiles, loss and share within the bound, from the
stored packets and flows (pure: the kind's summary and its figures both call it).

Step k covers traffic time [k * step_s + settle_s, (k + 1) * step_s): k cameras of the cell are on
(camera i starts at (i + 1) * step_s), the first ``settle_s`` of each step left out (queues settle).
A packet belongs to the step of its *scheduled* send time (``start_offset + seq * interval``), so a
lost packet counts in the step it was due; ``loss_pct`` and ``deadline_met_pct`` are of the packets
due in the window (a lost or late packet misses its deadline, as in the slices kind). Packets a host
stall touched are left out of the delays and the deadline share unless ``include_stalls``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.stats import percentile, share_pct


def due_in(offset_s: float, interval_s: float, duration_s: float, a: float, b: float) -> int:
    """Sends of a flow (first at ``offset_s``, every ``interval_s``, while < ``duration_s``) in [a, b)."""
    lo, hi = max(a, offset_s), min(b, duration_s)
    if hi <= lo:
        return 0
    first = math.ceil((lo - offset_s) / interval_s - 1e-9)
    return max(0, math.ceil((hi - offset_s) / interval_s - 1e-9) - first)


def windows(n_steps: int, step_s: float, settle_s: float) -> list[tuple[float, float]]:
    return [(k * step_s + settle_s, (k + 1) * step_s) for k in range(n_steps)]


def step_delays(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, n_steps: int, step_s: float,
                settle_s: float, include_stalls: bool) -> dict[tuple[int, str], dict[str, Any]]:
    """(step, slice) -> {"owd": delays (ms) of the packets timed, "received", "on_time", "stalled"}."""
    sched = flows.set_index("flow_id")
    offset = sched["start_offset_s"].to_dict() if "start_offset_s" in sched else {}
    interval = (sched["interval_ms"] / 1000).to_dict()
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for chunk in chunks:
        chunk = chunk[chunk["flow_id"].isin(sched.index)]
        if chunk.empty:
            continue
        t = chunk["flow_id"].map(offset).fillna(0.0) + chunk["seq"] * chunk["flow_id"].map(interval)
        step = np.floor(t / step_s).astype(int)
        inside = (t - step * step_s >= settle_s) & (step < n_steps)
        chunk = chunk.assign(step=step)[inside]
        for (k, name), group in chunk.groupby(["step", "slice"], observed=True):
            c = out.setdefault((int(k), str(name)), {"owd": [], "received": 0, "on_time": 0, "stalled": 0})
            stalled = group["host_stall"].to_numpy(dtype=bool) if "host_stall" in group else \
                np.zeros(len(group), dtype=bool)
            timed = group if include_stalls else group[~stalled]
            c["received"] += len(group)
            c["stalled"] += int(stalled.sum())
            c["on_time"] += int(timed["on_time"].sum())
            c["owd"].append(timed["owd_ms"].to_numpy(dtype=np.float64))
    for c in out.values():
        c["owd"] = np.concatenate(c["owd"]) if c["owd"] else np.zeros(0)
    return out


def step_points(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, cameras: list[str], step_s: float,
                settle_s: float, duration_s: float, include_stalls: bool) -> list[dict[str, Any]]:
    """summary.json ``points``: per step, its cameras, offered load and per-slice figures."""
    n_steps = len(cameras) + 1
    delays = step_delays(chunks, flows, n_steps, step_s, settle_s, include_stalls)
    points = []
    for k, (a, b) in enumerate(windows(n_steps, step_s, settle_s)):
        on = flows[flows["start_offset_s"] <= a] if "start_offset_s" in flows else flows
        offered = float((on["payload_bytes"] * 8 / (on["interval_ms"] * 1000)).sum())
        slices: dict[str, Any] = {}
        for name, group in flows.groupby("slice", sort=False):
            due = sum(due_in(f.start_offset_s, f.interval_ms / 1000, duration_s, a, b)
                      for f in group.itertuples())
            c = delays.get((k, str(name)), {"owd": np.zeros(0), "received": 0, "on_time": 0, "stalled": 0})
            slices[str(name)] = {
                "packets": due, "packets_received": c["received"],
                "owd_ms_p50": percentile(c["owd"], 50), "owd_ms_p99": percentile(c["owd"], 99),
                "loss_pct": share_pct(due - c["received"], due),
                "deadline_met_pct": share_pct(c["on_time"], due - (0 if include_stalls else c["stalled"])),
            }
        points.append({"step": k, "cameras": k, "camera_ues": cameras[:k], "offered_mbps": round(offered, 3),
                       "window_s": [round(a, 3), round(b, 3)], "slices": slices})
    return points

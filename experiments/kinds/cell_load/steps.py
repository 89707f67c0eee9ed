"""Per load step and slice: one-way delay percentiles, loss and share within the bound, from the
stored packets and flows (pure: the kind's summary and its figures both call it).

Step k covers traffic time [k * step_s + settle_s, (k + 1) * step_s): k cameras of the cell are on
(camera i starts at (i + 1) * step_s), the first ``settle_s`` of each step left out (queues settle).
A packet belongs to the step of its *scheduled* send time (``start_offset + seq * interval``), so a
lost packet counts in the step it was due; ``loss_pct`` and ``deadline_met_pct`` are of the packets
due in the window (a lost or late packet misses its deadline, as in the slices kind). Packets a host
stall touched are **kept** here (counted in ``packets_host_stall``), unlike the run's per-slice
summary: a stall adds at most its own length (a few ms) to a delay, while the steps measure queues
of up to a second, whose long flights a busy host's stalls touch almost always; leaving them out
would leave out exactly the overloaded steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.stats import percentile, share_pct
from experiments.kinds.slices.counts import planned_packets


def scheduled_s(offset_s: float, interval_s: float, duration_s: float) -> np.ndarray:
    """Every scheduled send time of a flow, as the senders schedule them (counts.planned_packets)."""
    n = planned_packets(duration_s - offset_s, interval_s * 1000)
    return offset_s + np.arange(n) * interval_s


def step_of(t: np.ndarray, n_steps: int, step_s: float, settle_s: float) -> np.ndarray:
    """The step of each scheduled send time, -1 where it is in no window (settling, or past the end):
    the one rule for received packets and scheduled ones alike."""
    step = np.floor(t / step_s).astype(int)
    inside = (t - step * step_s >= settle_s) & (step < n_steps) & (step >= 0)
    return np.where(inside, step, -1)


def windows(n_steps: int, step_s: float, settle_s: float) -> list[tuple[float, float]]:
    return [(k * step_s + settle_s, (k + 1) * step_s) for k in range(n_steps)]


class PacketSchedule:
    """Each packet's *scheduled* send time (s from traffic start): ``start_offset + seq * interval``
    of its flow (``flows``: the run's flows table)."""

    def __init__(self, flows: pd.DataFrame) -> None:
        sched = flows.set_index("flow_id")
        self.flow_ids = sched.index
        self.offset = sched["start_offset_s"].to_dict() if "start_offset_s" in sched else {}
        self.interval = (sched["interval_ms"] / 1000).to_dict()

    def times_s(self, chunk: pd.DataFrame) -> np.ndarray:
        """The scheduled times of ``chunk``'s packets (its flow_id and seq columns)."""
        return (chunk["flow_id"].map(self.offset).fillna(0.0)
                + chunk["seq"] * chunk["flow_id"].map(self.interval)).to_numpy()


def due_per_step(flows: pd.DataFrame, n_steps: int, step_s: float, settle_s: float, duration_s: float
                 ) -> dict[tuple[int, str], int]:
    """(step, slice) -> packets scheduled in the step's window."""
    due: dict[tuple[int, str], int] = {}
    for f in flows.itertuples():
        steps = step_of(scheduled_s(f.start_offset_s, f.interval_ms / 1000, duration_s), n_steps, step_s,
                        settle_s)
        for k, n in enumerate(np.bincount(steps[steps >= 0], minlength=n_steps)):
            due[(k, str(f.slice))] = due.get((k, str(f.slice)), 0) + int(n)
    return due


def step_delays(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, n_steps: int, step_s: float,
                settle_s: float) -> dict[tuple[int, str], dict[str, Any]]:
    """(step, slice) -> {"owd": delays (ms) of every received packet, "received", "on_time",
    "on_time_unstalled" (on time and touched by no host stall), "host_stall"} (packets a host stall
    touched are kept: see the module docstring)."""
    schedule = PacketSchedule(flows)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for chunk in chunks:
        chunk = chunk[chunk["flow_id"].isin(schedule.flow_ids)]
        if chunk.empty:
            continue
        step = step_of(schedule.times_s(chunk), n_steps, step_s, settle_s)
        chunk = chunk.assign(step=step)[step >= 0]
        for (k, name), group in chunk.groupby(["step", "slice"], observed=True):
            c = out.setdefault((int(k), str(name)), {"owd": [], "received": 0, "on_time": 0,
                                                     "on_time_unstalled": 0, "host_stall": 0})
            on_time = group["on_time"].to_numpy(dtype=bool)
            stalled = (group["host_stall"].to_numpy(dtype=bool) if "host_stall" in group
                       else np.zeros(len(group), dtype=bool))
            c["received"] += len(group)
            c["host_stall"] += int(stalled.sum())
            c["on_time"] += int(on_time.sum())
            c["on_time_unstalled"] += int((on_time & ~stalled).sum())
            c["owd"].append(group["owd_ms"].to_numpy(dtype=np.float64))
    for c in out.values():
        c["owd"] = np.concatenate(c["owd"]) if c["owd"] else np.zeros(0)
    return out


def step_points(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, cameras: list[str], step_s: float,
                settle_s: float, duration_s: float) -> list[dict[str, Any]]:
    """summary.json ``points``: per step, its cameras, offered load and per-slice figures."""
    n_steps = len(cameras) + 1
    delays = step_delays(chunks, flows, n_steps, step_s, settle_s)
    due = due_per_step(flows, n_steps, step_s, settle_s, duration_s)
    points = []
    for k, (a, b) in enumerate(windows(n_steps, step_s, settle_s)):
        on = flows[flows["start_offset_s"] <= a]
        offered = float((on["payload_bytes"] * 8 / (on["interval_ms"] * 1000)).sum())
        slices: dict[str, Any] = {}
        for name in flows["slice"].drop_duplicates():
            n = due.get((k, str(name)), 0)
            c = delays.get((k, str(name)), {"owd": np.zeros(0), "received": 0, "on_time": 0, "host_stall": 0})
            slices[str(name)] = {
                "packets": n, "packets_received": c["received"], "packets_host_stall": c["host_stall"],
                "owd_ms_p50": percentile(c["owd"], 50), "owd_ms_p99": percentile(c["owd"], 99),
                "loss_pct": share_pct(n - c["received"], n), "deadline_met_pct": share_pct(c["on_time"], n),
                "deadline_met_pct_without_stalls": share_pct(c.get("on_time_unstalled", 0),
                                                             n - c["host_stall"]),
            }
        points.append({"step": k, "cameras": k, "camera_ues": cameras[:k], "offered_mbps": round(offered, 3),
                       "window_s": [round(a, 3), round(b, 3)], "slices": slices})
    return points

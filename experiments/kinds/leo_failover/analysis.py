"""Per arm, slice and period: what the LEO link's reconfigurations and outages did to cloud-bound
traffic, and how fast adaptation reacted (pure: the kind's summary and figures call it).

Periods of a packet, by its *scheduled* send time ``t`` (a lost packet counts where it was due):
``outage`` inside a scripted outage (``[[leo.outages]]``: the link down), ``fade`` inside a scripted
fade (``loss_pct`` below 100), ``boundary`` inside a reconfiguration's boundary window [I - before,
I + after) of the LEO model (topologies/leo/config.py ``Handover``), ``other`` elsewhere. A packet
reaches and crosses the LEO link some time after ``t`` (radio, grants, backhaul, the link's own
delay), so each window is taken to open ``LEAD_S`` earlier (a packet scheduled just before it meets
it) and to close when it closes (a packet scheduled just before the end still does). Arms as in the
isolation kind: [k * arm_s + settle_s, (k + 1) * arm_s), off then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.stats import percentile, share_pct
from experiments.kinds.cell_load.steps import PacketSchedule, scheduled_s, step_of, windows

ARMS = ("off", "on")  # adaptation off, then on
PERIODS = ("boundary", "outage", "fade", "other")
# Upper bound of the time from a packet's scheduled send to the end of its LEO crossing: the
# scenario's uplink radio and backhaul (a few ms, p99 of the cell model below ~30 ms) plus the LEO
# link's one-way delay (~16 ms).
LEAD_S = 0.05
COLUMNS = ["slice", "flow_id", "seq", "owd_ms", "on_time"]


def period_of(t_s: np.ndarray, boundary: list[tuple[float, float]], outages: list[tuple[float, float]],
              fades: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """``"outage"`` | ``"fade"`` | ``"boundary"`` | ``"other"`` per scheduled time (in that order of
    precedence; each window [a, b) is taken as [a - LEAD_S, b))."""
    t = np.asarray(t_s, dtype=float)
    out = np.full(t.shape, "other", dtype=object)
    for period, spans in (("boundary", boundary), ("fade", fades), ("outage", outages)):
        for a, b in spans:
            out[(t >= a - LEAD_S) & (t < b)] = period
    return out


def due_times(flows: pd.DataFrame, duration_s: float) -> pd.DataFrame:
    """Every scheduled packet of ``flows``: slice, flow_id, t_s."""
    parts = []
    for f in flows.itertuples():
        t = scheduled_s(float(getattr(f, "start_offset_s", 0.0) or 0.0), f.interval_ms / 1000, duration_s)
        parts.append(pd.DataFrame({"slice": f.slice, "flow_id": f.flow_id, "t_s": t}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["slice", "flow_id", "t_s"])


def received(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame) -> pd.DataFrame:
    """The received packets of ``flows`` (slice, flow_id, t_s scheduled, owd_ms, on_time)."""
    schedule = PacketSchedule(flows)
    ids = set(flows["flow_id"])
    parts = []
    for chunk in chunks:
        chunk = chunk[chunk["flow_id"].isin(ids)]
        if len(chunk):
            parts.append(pd.DataFrame({"slice": chunk["slice"].astype(str).to_numpy(),
                                       "flow_id": chunk["flow_id"].to_numpy(),
                                       "t_s": schedule.times_s(chunk), "owd_ms": chunk["owd_ms"].to_numpy(),
                                       "on_time": chunk["on_time"].to_numpy(dtype=bool)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["slice", "flow_id", "t_s", "owd_ms", "on_time"])


def period_figures(got: pd.DataFrame, due: pd.DataFrame, arm_s: float, settle_s: float,
                   boundary: list[tuple[float, float]], outages: list[tuple[float, float]],
                   fades: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
    """{off|on: {window_s, slices: {name: {period: figures}}}}: packets due and received, loss, one-way
    delay p50 / p99 / max (received packets), share on time (of those due)."""
    arm_got = step_of(got["t_s"].to_numpy(dtype=float), len(ARMS), arm_s, settle_s)
    arm_due = step_of(due["t_s"].to_numpy(dtype=float), len(ARMS), arm_s, settle_s)
    per_got = period_of(got["t_s"].to_numpy(dtype=float), boundary, outages, fades)
    per_due = period_of(due["t_s"].to_numpy(dtype=float), boundary, outages, fades)
    got_slice, due_slice = got["slice"].astype(str).to_numpy(), due["slice"].astype(str).to_numpy()
    out: dict[str, Any] = {}
    for k, (a, b) in enumerate(windows(len(ARMS), arm_s, settle_s)):
        slices: dict[str, Any] = {}
        for name in sorted(set(due["slice"].astype(str))):
            slices[name] = {}
            for period in PERIODS:
                g = got[(arm_got == k) & (per_got == period) & (got_slice == name)]
                n = int(((arm_due == k) & (per_due == period) & (due_slice == name)).sum())
                owd = g["owd_ms"].to_numpy(dtype=float)
                slices[name][period] = {
                    "packets": n, "packets_received": len(g), "lost_pkts": max(0, n - len(g)),
                    "loss_pct": share_pct(n - len(g), n), "owd_ms_p50": percentile(owd, 50),
                    "owd_ms_p99": percentile(owd, 99), "owd_ms_max": percentile(owd, 100),
                    "deadline_met_pct": share_pct(int(g["on_time"].sum()), n)}
        out[ARMS[k]] = {"window_s": [round(a, 3), round(b, 3)], "slices": slices}
    return out


def sla_bins(got: pd.DataFrame, due: pd.DataFrame, duration_s: float, bin_s: float) -> pd.DataFrame:
    """The measured SLA state per slice and bin of scheduled time: ``violated`` where a packet due in
    the bin was lost or late, ``ok`` where every one was on time, ``no_traffic`` where none was due
    (columns slice, t_s = bin start, due, on_time, state)."""
    edges = np.arange(0.0, duration_s + bin_s, bin_s)
    rows = []
    for name in sorted(set(due["slice"].astype(str))):
        d = np.histogram(due.loc[due["slice"].astype(str) == name, "t_s"], edges)[0]
        g = got[(got["slice"].astype(str) == name) & got["on_time"].astype(bool)]
        met = np.histogram(g["t_s"], edges)[0]
        for t0, n, m in zip(edges[:-1], d, met, strict=True):
            rows.append({"slice": name, "t_s": round(float(t0), 6), "due": int(n), "on_time": int(m),
                         "state": "no_traffic" if n == 0 else "ok" if m >= n else "violated"})
    return pd.DataFrame(rows, columns=["slice", "t_s", "due", "on_time", "state"])


def lost_between(got: pd.DataFrame, due: pd.DataFrame, slices: Iterable[str], a: float, b: float
                 ) -> dict[str, int]:
    """Per slice: packets scheduled in [a, b) that never arrived."""
    out = {}
    for name in slices:
        d = due[(due["slice"].astype(str) == name) & (due["t_s"] >= a) & (due["t_s"] < b)]
        g = got[(got["slice"].astype(str) == name) & (got["t_s"] >= a) & (got["t_s"] < b)]
        out[name] = max(0, len(d) - len(g))
    return out


def reactions(outages: list[tuple[float, float]], changes: list[Mapping[str, Any]],
              detections: list[Mapping[str, Any]], arm_s: float, got: pd.DataFrame, due: pd.DataFrame,
              protected: list[str]) -> list[dict[str, Any]]:
    """Per scripted outage: when it was detected, when the protected slices were on the backup
    (``changes[].applied_s``: the controller had sent the rules) and back on LEO, the reaction time
    (fault -> new path) and the protected slices' packets lost before the new path and in the whole
    outage."""
    out = []
    for start, end in outages:
        arm = ARMS[min(len(ARMS) - 1, int(start // arm_s))]
        down = next((d["t_s"] for d in detections if d["state"] == "down" and start <= d["t_s"] < end), None)
        up = next((d["t_s"] for d in detections if d["state"] == "up" and d["t_s"] >= end), None)
        before = [c for c in changes if c["t_s"] < start]
        already = bool(before) and before[-1]["via"] == "backup"
        moved = next((c["applied_s"] for c in changes if c["via"] == "backup" and start <= c["t_s"] < end),
                     None)
        steered = start if already else moved
        back = None if steered is None else next(  # the first move back once the outage is over
            (c["applied_s"] for c in changes if c["via"] == "leo" and c["t_s"] >= end), None)
        out.append({
            "arm": arm, "start_s": start, "end_s": end,
            "detected_s": down, "detect_ms": None if down is None else round((down - start) * 1000, 3),
            "on_backup_s": steered, "already_on_backup": already,
            "reaction_ms": None if steered is None else round((steered - start) * 1000, 3),
            "recovery_detected_s": up, "back_on_leo_s": back,
            "lost_before_new_path_pkts": lost_between(got, due, protected, start - LEAD_S,
                                                      end if steered is None else steered),
            "lost_in_outage_pkts": lost_between(got, due, protected, start - LEAD_S, end)})
    return out


def unresolved_failures(changes: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The path changes the switches refused that no retry made good: refused ones whose next
    accepted change is not to the same path (a refusal while a switch resyncs, retried 100 ms later
    and accepted, is resolved)."""
    out = []
    for i, c in enumerate(changes):
        if c.get("error"):
            accepted = next((d for d in changes[i + 1:] if d.get("error") is None), None)
            if accepted is None or accepted.get("via") != c.get("via"):
                out.append(c)
    return out


def verdict(arms: Mapping[str, Any], protected: list[str], tolerance_ms: float) -> dict[str, Any]:
    """Per protected slice and arm: the reconfiguration spike (boundary p99 - other p99) and the
    boundary loss; ``spikes_removed``: within ``tolerance_ms`` and no boundary loss with adaptation
    on, not so with it off, for every protected slice."""
    per: dict[str, Any] = {}
    for name in protected:
        per[name] = {}
        for arm in ARMS:
            p = arms[arm]["slices"].get(name, {})
            bnd, oth = p.get("boundary", {}), p.get("other", {})
            spike = (None if bnd.get("owd_ms_p99") is None or oth.get("owd_ms_p99") is None
                     else round(bnd["owd_ms_p99"] - oth["owd_ms_p99"], 4))
            clean = None if spike is None or not bnd.get("packets") else (
                spike <= tolerance_ms and bnd["lost_pkts"] == 0)
            per[name][arm] = {"spike_ms_p99": spike, "boundary_lost_pkts": bnd.get("lost_pkts"),
                              "boundary_packets": bnd.get("packets"), "clean": clean}
    removed = bool(protected) and all(per[n]["on"]["clean"] is True and per[n]["off"]["clean"] is False
                                      for n in protected)
    return {"tolerance_ms": tolerance_ms, "slices": per, "spikes_removed": removed}

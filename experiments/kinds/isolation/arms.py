"""Per arm and slice: one-way delay percentiles, loss and share within the bound, from the stored
packets (pure: the kind's summary and its figures both call it).

The run's traffic time is split into equal arms, in order (``ARMS``: enforcement off, then on); arm
k covers [k * arm_s + settle_s, (k + 1) * arm_s), the first ``settle_s`` left out (the queues of
the previous arm drain, the new policy takes hold). A packet belongs to the arm of its *scheduled*
send time, so a lost packet counts in the arm it was due in. Packets a host stall touched are
**kept** (counted in ``packets_host_stall``), as in the cell_load kind and unlike the run's per-slice
summary: an overloaded slice's flights last long enough that nearly all of them overlap a stall of
this busy host, and leaving them out would leave out exactly the overload; for the protected slice
keeping them is the conservative choice (the emulator's own stalls count against enforcement).
``deadline_met_pct_without_stalls`` is the share with them left out, for comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.confidence import ci_pct, target_verdict
from experiments.framework.stats import percentile, share_pct
from experiments.kinds.cell_load.steps import due_per_step, step_delays, windows

ARMS = ("off", "on")  # enforcement off, then on
COLUMNS = ["slice", "flow_id", "seq", "owd_ms", "on_time", "host_stall"]


def arm_delays(chunks: Iterable[pd.DataFrame], flows: pd.DataFrame, arm_s: float, settle_s: float
               ) -> dict[tuple[int, str], dict[str, Any]]:
    """(arm, slice) -> {"owd": delays (ms) of the received packets, "received", "on_time",
    "on_time_unstalled" (on time and no host stall touched it), "host_stall"}: the cell_load kind's
    per-step figures with the arms as its steps."""
    return step_delays(chunks, flows, len(ARMS), arm_s, settle_s)


def due_per_arm(flows: pd.DataFrame, arm_s: float, settle_s: float, duration_s: float
                ) -> dict[tuple[int, str], int]:
    """(arm, slice) -> packets scheduled in the arm's window."""
    return due_per_step(flows, len(ARMS), arm_s, settle_s, duration_s)


def arm_summary(delays: dict[tuple[int, str], dict[str, Any]], due: dict[tuple[int, str], int],
                flows: pd.DataFrame, targets: dict[str, float], arm_s: float, settle_s: float
                ) -> dict[str, Any]:
    """summary.json ``arms``: {off|on: {window_s, slices: {name: figures}}}. ``deadline_met_pct`` is of
    the packets due in the window (lost and late ones miss), with its exact 95 % interval and whether
    the slice's reliability target (``targets``) is met (confidence.target_verdict)."""
    bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=False))
    out: dict[str, Any] = {}
    for k, (a, b) in enumerate(windows(len(ARMS), arm_s, settle_s)):
        slices: dict[str, Any] = {}
        for name in flows["slice"].drop_duplicates():
            name = str(name)
            n = due.get((k, name), 0)
            c = delays.get((k, name), {"owd": np.zeros(0), "received": 0, "on_time": 0,
                                       "on_time_unstalled": 0, "host_stall": 0})
            met = min(c["on_time"], n)
            target = targets.get(name)
            slices[name] = {
                "packets": n, "packets_received": c["received"], "packets_on_time": met,
                "packets_host_stall": c["host_stall"],
                "latency_bound_ms": bounds.get(name),
                "owd_ms_p50": percentile(c["owd"], 50), "owd_ms_p99": percentile(c["owd"], 99),
                "owd_ms_p9999": percentile(c["owd"], 99.99), "owd_ms_max": percentile(c["owd"], 100),
                "loss_pct": share_pct(n - c["received"], n),
                "deadline_met_pct": share_pct(met, n),
                "deadline_met_pct_ci95": ci_pct(met, n) if n else None,
                "deadline_met_pct_without_stalls": share_pct(c["on_time_unstalled"], n - c["host_stall"]),
                "reliability_target_pct": target,
                "target_met": target_verdict(met, n, float(target)) if n and target is not None else None,
            }
        out[ARMS[k]] = {"window_s": [round(a, 3), round(b, 3)], "slices": slices}
    return out


def verdict(arms: dict[str, Any], protected: str, threshold_pct: float) -> dict[str, Any]:
    """Does enforcement isolate ``protected``: its share within bound >= ``threshold_pct`` with
    enforcement on and below it with enforcement off. ``holds``: the point estimates; ``confident``:
    what the exact 95 % interval allows (true / false / "undetermined": the arm had too few packets
    to tell, confidence.target_verdict)."""
    figures = {arm: arms[arm]["slices"].get(protected, {}) for arm in ARMS}
    share = {arm: f.get("deadline_met_pct") for arm, f in figures.items()}
    holds = {arm: None if v is None else v >= threshold_pct for arm, v in share.items()}
    confident = {arm: target_verdict(f["packets_on_time"], f["packets"], threshold_pct) if f.get("packets")
                 else None for arm, f in figures.items()}
    return {"slice": protected, "threshold_pct": threshold_pct, "deadline_met_pct": share,
            "deadline_met_pct_ci95": {arm: f.get("deadline_met_pct_ci95") for arm, f in figures.items()},
            "holds": holds, "isolation_shown": holds["on"] is True and holds["off"] is False,
            "confident": confident,
            "isolation_shown_confident": confident["on"] is True and confident["off"] is False}

"""Timeline stage: row times and per-row geometry of the chosen path (one row per instant).

Rows fall on the ``step_s`` grid plus three extra times per reconfiguration instant I:
I - handover.before_s, I, and I + handover.after_s, so a replayed schedule (each row holds until
the next) reproduces the short boundary windows exactly. ``t_s`` is relative to the schedule
start; the schedule starts ``start_offset_s`` after the configuration epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation, build_constellation
from topologies.leo.geometry import elevation_deg, ground_point_ecef_km, slant_range_km
from topologies.leo.isl import path_length_km
from topologies.leo.selection import (
    Selector,
    SlotDecision,
    decide_slots,
    instants_in_window_s,
    slot_index_at,
    slot_start_s,
)
from topologies.validate import ConfigError, check_number

TARGETS = ("cloud", "serving_sat", "compute_sat")
_ROUND = 6  # decimals of t_s (microseconds) used to merge grid and boundary rows
# Rows per direction of one schedule; the frame (~25 columns, both directions) is held in memory.
MAX_ROWS = 500_000
MAX_DURATION_S = 7 * 86400.0
MAX_START_OFFSET_S = 366 * 86400.0


def check_window(config: LeoOrbitConfig, duration_s: float, start_offset_s: float = 0.0,
                 duration_key: str = "duration_s", start_key: str = "start_offset_s") -> int:
    """Check a schedule window before computing it; return the estimated rows per direction.

    Errors name ``duration_key`` / ``start_key`` (e.g. the CLI's ``--duration-s``) or, when the
    rows would not fit in memory, ``leo.orbit.step_s``.
    """
    check_number(duration_key, duration_s, min=0, max=MAX_DURATION_S, min_exclusive=True,
                 why="one week: the schedule is held in memory")
    check_number(start_key, start_offset_s, min=-MAX_START_OFFSET_S, max=MAX_START_OFFSET_S,
                 why="a year either side of epoch_utc: move epoch_utc instead")
    rows = int(duration_s / config.step_s) + 1 + 3 * (int(duration_s / config.reconfiguration.interval_s) + 1)
    if rows > MAX_ROWS:
        raise ConfigError("leo.orbit.step_s", config.step_s,
                          f"a step giving at most {MAX_ROWS} rows per direction over the "
                          f"{duration_s:g} s schedule (here ~{rows}): the schedule is held in memory")
    return rows


def row_times_s(config: LeoOrbitConfig, duration_s: float, start_offset_s: float = 0.0) -> np.ndarray:
    """Sorted row times (relative ``t_s``) in ``[0, duration_s)``."""
    grid = np.arange(0.0, duration_s - 1e-9, config.step_s)
    instants = instants_in_window_s(config, start_offset_s, start_offset_s + duration_s) - start_offset_s
    h = config.handover
    extra = np.concatenate([instants - h.before_s, instants, instants + h.after_s])
    times = np.round(np.concatenate([grid, extra]), _ROUND)
    return np.unique(times[(times >= 0.0) & (times < duration_s)])


def boundary_flags(config: LeoOrbitConfig, abs_t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(in window [I - before_s, I + after_s) of the nearest instant I, slot index starting at I)."""
    nearest = np.round((abs_t_s - slot_start_s(config, 0)) / config.reconfiguration.interval_s)
    nearest = nearest.astype(np.int64)
    instant = slot_start_s(config, nearest)
    h = config.handover
    inside = (abs_t_s >= instant - h.before_s - 1e-9) & (abs_t_s < instant + h.after_s - 1e-9)
    return inside, nearest


def resolve_compute_sat(config: LeoOrbitConfig, decisions: dict[int, SlotDecision], t0_s: float) -> int:
    """The designated computing satellite: configured index, or the serving satellite at start."""
    if config.compute.sat_index >= 0:
        return config.compute.sat_index
    return decisions[int(slot_index_at(config, t0_s))].serving_sat


def geometry_frame(
    config: LeoOrbitConfig,
    duration_s: float,
    start_offset_s: float = 0.0,
    target: str = "cloud",
    constellation: Constellation | None = None,
) -> pd.DataFrame:
    """Per-row geometry of the path from the terminal to ``target`` (see ``TARGETS``)."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: allowed {TARGETS}")
    check_window(config, duration_s, start_offset_s)
    const = constellation or build_constellation(config)
    t0, t1 = start_offset_s, start_offset_s + duration_s
    decisions = decide_slots(config, const, t0, t1)
    selector = Selector(config, const)
    compute_sat = resolve_compute_sat(config, decisions, t0) if target == "compute_sat" else -1

    t_rel = row_times_s(config, duration_s, start_offset_s)
    t_abs = t_rel + start_offset_s
    slots = slot_index_at(config, t_abs)
    n = len(t_rel)
    cols = {name: np.full(n, np.nan) for name in
            ("elevation_deg", "slant_range_km", "isl_km", "gs_elevation_deg", "gs_slant_range_km")}
    serving = np.full(n, -1, dtype=np.int64)
    last_sat = np.full(n, -1, dtype=np.int64)
    hops = np.zeros(n, dtype=np.int64)
    kind = np.empty(n, dtype=object)
    up = np.zeros(n, dtype=bool)
    ut = ground_point_ecef_km(config.site.lat_deg, config.site.lon_deg)
    gs = ground_point_ecef_km(config.ground_station.lat_deg, config.ground_station.lon_deg)

    for k in np.unique(slots):
        rows = np.flatnonzero(slots == k)
        d = decisions[int(k)]
        if target == "cloud":
            path, kind_k = d.path, d.path_kind
        elif target == "serving_sat":
            path = (d.serving_sat,) if d.serving_sat >= 0 else ()
            kind_k = "serving_sat" if path else "none"
        else:
            path = selector.path_to_sat(d, compute_sat)
            kind_k = ("isl" if len(path) > 1 else "serving_sat") if path else "none"
        kind[rows] = kind_k
        if not path:
            continue
        pos = const.positions_ecef_km(t_abs[rows], np.array(path))
        serving[rows], last_sat[rows], hops[rows] = path[0], path[-1], len(path) - 1
        cols["elevation_deg"][rows] = elevation_deg(ut, pos[:, 0])
        cols["slant_range_km"][rows] = slant_range_km(ut, pos[:, 0])
        cols["isl_km"][rows] = path_length_km(pos, list(range(len(path))))
        ok = cols["elevation_deg"][rows] >= config.shell.min_elevation_deg - 1e-9
        if target == "cloud":
            cols["gs_elevation_deg"][rows] = elevation_deg(gs, pos[:, -1])
            cols["gs_slant_range_km"][rows] = slant_range_km(gs, pos[:, -1])
            ok &= cols["gs_elevation_deg"][rows] >= config.ground_station.min_elevation_deg - 1e-9
        up[rows] = ok

    in_boundary, nearest = boundary_flags(config, t_abs)
    changed = {k: decisions[k].serving_sat != decisions[k - 1].serving_sat
               for k in decisions if k - 1 in decisions}
    frame = pd.DataFrame({
        "t_s": t_rel,
        "slot_index": slots,
        "serving_sat": np.where(up, serving, -1),
        "last_sat": np.where(up, last_sat, -1),
        "path_kind": kind,
        "isl_hops": hops,
        **cols,
        "up": up,
        "in_boundary": in_boundary,
        # the serving satellite changes at the instant nearest to this row
        "sat_changed": np.array([changed.get(int(m), False) for m in nearest]),
    })
    frame.attrs["compute_sat"] = compute_sat
    frame.attrs["target"] = target
    return frame

"""Selection stage: the serving satellite and the space path, decided at reconfiguration instants.

At each instant of the grid (default :12/:27/:42/:57) the terminal is assigned one satellite for
the whole 15 s slot. Candidates are satellites above the terminal's mask for the whole slot
(falling back to those above it at the instant). If a candidate also sees the ground station for
the whole slot, the path is a bent pipe through the best such candidate; otherwise the best
candidate serves and traffic crosses +Grid ISLs to the satellite that minimises ISL length plus
its slant range to the ground station. "Best" follows the policy: highest elevation at the
instant, or longest remaining time above the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation
from topologies.leo.geometry import elevation_deg, ground_point_ecef_km, slant_range_km
from topologies.leo.isl import adjacency, isl_lengths_km, path_to, plus_grid_edges, shortest_paths_km

VISIBILITY_HORIZON_S = 900.0  # look-ahead for "longest_visibility" (a 550 km pass lasts < 10 min)
_EPS_S = 1e-6


@dataclass(frozen=True)
class SlotDecision:
    """What serves the terminal from ``start_s`` to ``end_s`` (seconds after the epoch)."""

    slot_index: int
    start_s: float
    end_s: float
    serving_sat: int  # -1: no satellite above the mask
    path: tuple[int, ...]  # serving ... last satellite; () if none
    path_kind: str  # "bent_pipe", "isl" or "none"


def epoch_phase_s(config: LeoOrbitConfig) -> float:
    """Seconds of the epoch past its UTC minute (the grid is anchored on wall-clock seconds)."""
    e = config.epoch
    return e.second + e.microsecond / 1e6


def slot_index_at(config: LeoOrbitConfig, t_s: np.ndarray | float) -> np.ndarray:
    """Index of the reconfiguration slot containing ``t_s`` (seconds after the epoch)."""
    r = config.reconfiguration
    x = (np.asarray(t_s, dtype=float) + epoch_phase_s(config) - r.offset_s) / r.interval_s
    return np.floor(x + _EPS_S).astype(np.int64)


def slot_start_s(config: LeoOrbitConfig, slot: np.ndarray | int) -> np.ndarray:
    """Instant (seconds after the epoch) at which ``slot`` starts."""
    r = config.reconfiguration
    return np.asarray(slot) * r.interval_s + r.offset_s - epoch_phase_s(config)


def instants_in_window_s(config: LeoOrbitConfig, t0_s: float, t1_s: float) -> np.ndarray:
    """Reconfiguration instants in ``[t0_s, t1_s)`` (seconds after the epoch)."""
    first = int(np.ceil((t0_s + epoch_phase_s(config) - config.reconfiguration.offset_s)
                        / config.reconfiguration.interval_s - _EPS_S))
    starts = slot_start_s(config, np.arange(first, int(slot_index_at(config, t1_s)) + 1))
    return starts[(starts >= t0_s - _EPS_S) & (starts < t1_s - _EPS_S)]


class Selector:
    """Holds the constellation, ground points and ISL graph; decides slot after slot."""

    def __init__(self, config: LeoOrbitConfig, constellation: Constellation) -> None:
        self.config = config
        self.const = constellation
        self.ut = ground_point_ecef_km(config.site.lat_deg, config.site.lon_deg)
        self.gs = ground_point_ecef_km(config.ground_station.lat_deg, config.ground_station.lon_deg)
        self.ut_mask = config.shell.min_elevation_deg
        self.gs_mask = config.ground_station.min_elevation_deg
        grid = constellation.planes is not None and constellation.sats_per_plane is not None
        self.edges = plus_grid_edges(constellation.planes, constellation.sats_per_plane) if grid else None

    def check_times_s(self, start_s: float) -> np.ndarray:
        step = min(1.0, self.config.step_s)
        return start_s + np.arange(0.0, self.config.reconfiguration.interval_s + _EPS_S, step)

    def remaining_visibility_s(self, start_s: float, sats: np.ndarray) -> np.ndarray:
        """Seconds each satellite in ``sats`` stays above the terminal mask after ``start_s``."""
        t = start_s + np.arange(0.0, VISIBILITY_HORIZON_S, 1.0)
        el = elevation_deg(self.ut, self.const.positions_ecef_km(t, sats))
        below = el < self.ut_mask
        first_below = np.where(below.any(axis=0), below.argmax(axis=0), len(t))
        return first_below.astype(float)

    def _best(self, start_s: float, cands: np.ndarray, el_now: np.ndarray) -> int:
        if self.config.policy == "longest_visibility":
            score = self.remaining_visibility_s(start_s, cands) + el_now[cands] / 1000.0
        else:
            score = el_now[cands]
        return int(cands[int(np.argmax(score))])

    def decide(self, slot: int) -> SlotDecision:
        """Serving satellite and path for one slot."""
        start = float(slot_start_s(self.config, slot))
        end = start + self.config.reconfiguration.interval_s
        pos = self.const.positions_ecef_km(self.check_times_s(start))
        el_ut = elevation_deg(self.ut, pos)
        el_gs = elevation_deg(self.gs, pos)
        ut_all = (el_ut >= self.ut_mask).all(axis=0)
        cands = np.flatnonzero(ut_all) if ut_all.any() else np.flatnonzero(el_ut[0] >= self.ut_mask)
        if cands.size == 0:
            return SlotDecision(slot, start, end, -1, (), "none")
        gs_all = (el_gs >= self.gs_mask).all(axis=0)
        gs_ok = gs_all if gs_all.any() else el_gs[0] >= self.gs_mask
        bent = cands[gs_ok[cands]]
        if bent.size:
            sat = self._best(start, bent, el_ut[0])
            return SlotDecision(slot, start, end, sat, (sat,), "bent_pipe")
        sat = self._best(start, cands, el_ut[0])
        if self.edges is None or not gs_ok.any():
            return SlotDecision(slot, start, end, sat, (), "none")
        adj = adjacency(self.const.n_sats, self.edges, isl_lengths_km(pos[0], self.edges))
        dist, prev = shortest_paths_km(adj, sat)
        egress = np.flatnonzero(gs_ok)
        cost = dist[egress] + slant_range_km(self.gs, pos[0, egress])
        target = int(egress[int(np.argmin(cost))])
        if not np.isfinite(cost.min()):
            return SlotDecision(slot, start, end, sat, (), "none")
        return SlotDecision(slot, start, end, sat, tuple(path_to(prev, sat, target)), "isl")

    def path_to_sat(self, decision: SlotDecision, target: int) -> tuple[int, ...]:
        """Shortest +Grid path from the slot's serving satellite to ``target`` at the slot start."""
        if decision.serving_sat < 0:
            return ()
        if decision.serving_sat == target:
            return (target,)
        if self.edges is None:
            return ()
        pos = self.const.positions_ecef_km(np.array([decision.start_s]))[0]
        adj = adjacency(self.const.n_sats, self.edges, isl_lengths_km(pos, self.edges))
        _, prev = shortest_paths_km(adj, decision.serving_sat)
        return tuple(path_to(prev, decision.serving_sat, target))


def decide_slots(config: LeoOrbitConfig, constellation: Constellation, t0_s: float, t1_s: float
                 ) -> dict[int, SlotDecision]:
    """Decisions for every slot touching ``[t0_s, t1_s)`` plus one either side (for change flags)."""
    selector = Selector(config, constellation)
    first = int(slot_index_at(config, t0_s)) - 1
    last = int(slot_index_at(config, max(t0_s, t1_s - _EPS_S))) + 1
    return {k: selector.decide(k) for k in range(first, last + 1)}

"""Orbit-derived schedules for the scenario's LEO links, and their replay on the link engine.

Link ``leo`` (user terminal -> ground station -> cloud) replays ``topologies.leo.leo_schedule``;
link ``orbit_compute`` (user terminal -> in-orbit compute host) replays
``compute_satellite_schedule``. ``uplink`` rows drive direction ``ab`` (terminal -> far end).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from topologies.leo import (
    compute_satellite_schedule,
    leo_schedule,
    schedule_records,
    serving_satellite_schedule,
)
from topologies.links import DirectionParams, LinkEngine, ScheduleRow
from topologies.scenario import LinkPair, Scenario

DIRECTION_OF = {"ab": "uplink", "ba": "downlink"}


@dataclass
class LeoSchedules:
    """Schedules per emulated link name, one-way values per direction."""

    frames: dict[str, pd.DataFrame]

    def rows(self, link_name: str, direction: str) -> list[ScheduleRow]:
        records = schedule_records(self.frames[link_name], DIRECTION_OF[direction])
        return [ScheduleRow(**record) for record in records]

    def initial(self) -> dict[str, LinkPair]:
        """Each link's values at t = 0, used when the link is created."""
        out = {}
        for name in self.frames:
            first = {d: self.rows(name, d)[0] for d in DIRECTION_OF}
            out[name] = LinkPair(*(_params(first[d]) for d in ("ab", "ba")))
        return out

    def apply(self, engine: LinkEngine, t0_monotonic_s: float) -> None:
        """Start replaying every schedule against the shared monotonic start ``t0``."""
        for name in self.frames:
            for direction in DIRECTION_OF:
                engine.set_schedule(name, direction, self.rows(name, direction), t0_monotonic_s)

    def save(self, path: Path) -> None:
        frames = [df.assign(link=name) for name, df in self.frames.items()]
        pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def build_leo_schedules(scenario: Scenario, duration_s: float) -> LeoSchedules | None:
    """Schedules covering ``duration_s`` from the orbit epoch, or None for a fixed LEO link."""
    config = scenario.leo.orbit
    if config is None:
        return None
    frames = {"leo": leo_schedule(config, duration_s)}
    if scenario.leo.compute_host:
        schedule = (serving_satellite_schedule if scenario.leo.compute_attach == "serving_satellite"
                    else compute_satellite_schedule)
        frames["orbit_compute"] = schedule(config, duration_s)
    return LeoSchedules(frames)


def _params(row: ScheduleRow) -> DirectionParams:
    return DirectionParams(delay_ms=row.delay_ms, jitter_ms=row.jitter_ms, loss_pct=row.loss_pct,
                           rate_mbps=row.rate_mbps, up=row.up)

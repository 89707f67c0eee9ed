"""Replay of a scenario's orbit-derived link schedules on the link engine during a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from topologies.leo_links import scenario_link_schedules, schedule_rows, start_links
from topologies.links import DIRECTIONS, LinkEngine, ScheduleRow
from topologies.scenario import LinkPair, Scenario


@dataclass
class LeoSchedules:
    """Schedules per emulated link name, one-way values per direction."""

    frames: dict[str, pd.DataFrame]

    def rows(self, link_name: str, direction: str) -> list[ScheduleRow]:
        return schedule_rows(self.frames[link_name], direction)

    def initial(self) -> dict[str, LinkPair]:
        """Each link's values at t = 0, used when the link is created."""
        return start_links(self.frames)

    def apply(self, engine: LinkEngine, t0_monotonic_s: float) -> None:
        """Start replaying every schedule against the shared monotonic start ``t0``."""
        for name in self.frames:
            for direction in DIRECTIONS:
                engine.set_schedule(name, direction, self.rows(name, direction), t0_monotonic_s)

    def save(self, path: Path) -> None:
        frames = [df.assign(link=name) for name, df in self.frames.items()]
        pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def build_leo_schedules(scenario: Scenario, duration_s: float) -> LeoSchedules | None:
    """Schedules covering ``duration_s`` from the orbit epoch, or None for a fixed LEO link."""
    frames = scenario_link_schedules(scenario, duration_s)
    return LeoSchedules(frames) if frames else None

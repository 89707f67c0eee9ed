"""Which orbit schedule drives which link of a scenario (shared by the runner and ``mn``)."""

from __future__ import annotations

import pandas as pd

from topologies.backup import with_outages
from topologies.leo import (
    compute_satellite_schedule,
    leo_schedule,
    schedule_records,
    serving_satellite_schedule,
)
from topologies.links import DIRECTIONS, DirectionParams, ScheduleRow
from topologies.scenario import LinkPair, Scenario


def scenario_link_schedules(scenario: Scenario, duration_s: float) -> dict[str, pd.DataFrame]:
    """Schedules per link name covering ``duration_s`` from the orbit epoch ({} if fixed).

    ``leo``: terminal -> ground station -> PoP -> cloud. ``orbit_compute``: terminal -> the
    in-orbit compute host, on the designated computing satellite or the serving one. Both are
    down in each of ``[[leo.outages]]`` (topologies/backup.py).
    """
    config = scenario.leo.orbit
    if config is None:
        return {}
    frames = {"leo": leo_schedule(config, duration_s)}
    if scenario.leo.compute_host:
        schedule = (serving_satellite_schedule if scenario.leo.compute_attach == "serving_satellite"
                    else compute_satellite_schedule)
        frames["orbit_compute"] = schedule(config, duration_s)
    # an outage cuts the terminal's satellite link: every orbit-driven link is down in it
    return {name: with_outages(frame, scenario.leo.outages) for name, frame in frames.items()}


def schedule_rows(frame: pd.DataFrame, direction: str) -> list[ScheduleRow]:
    """Link-engine rows of one link direction (``uplink`` or ``downlink``)."""
    return [ScheduleRow(**r) for r in schedule_records(frame, direction)]


def start_links(frames: dict[str, pd.DataFrame]) -> dict[str, LinkPair]:
    """Each scheduled link's values at t = 0, used when the link is created."""
    out = {}
    for name, frame in frames.items():
        first = {d: schedule_rows(frame, d)[0] for d in DIRECTIONS}
        out[name] = LinkPair(**{d: DirectionParams(delay_ms=r.delay_ms, jitter_ms=r.jitter_ms,
                                                   loss_pct=r.loss_pct, rate_mbps=r.rate_mbps, up=r.up)
                                for d, r in first.items()})
    return out

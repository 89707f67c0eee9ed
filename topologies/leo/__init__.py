"""LEO backhaul model: orbits -> geometry -> serving satellite -> delay model -> link schedule.

Stages (one module each): ``config`` (validated ``[leo.orbit]``), ``tle`` (checked TLE files),
``constellation`` (Walker / sgp4 positions), ``geometry`` (frames, elevation, slant range),
``isl`` (+Grid graph), ``selection`` (serving satellite at reconfiguration instants),
``timeline`` (row times and path geometry; window and size checks), ``delay_model`` (delay terms
with sources), ``schedule`` (link-engine table), ``compute`` (in-orbit compute targets).
"""

from topologies.leo.compute import compute_satellite_schedule, serving_satellite_schedule
from topologies.leo.config import LeoOrbitConfig
from topologies.leo.schedule import leo_schedule, modelled_rtt, schedule_records, schedule_summary

__all__ = [
    "LeoOrbitConfig",
    "compute_satellite_schedule",
    "leo_schedule",
    "modelled_rtt",
    "schedule_records",
    "schedule_summary",
    "serving_satellite_schedule",
]

"""In-orbit compute: schedules from the terminal to a compute host on a satellite.

Two attachment points, so an experiment can compare factory edge vs in-orbit vs ground cloud:

* ``serving_satellite_schedule``: compute on the satellite serving the terminal (it changes at
  reconfiguration instants, so the host's state would have to follow it; the schedule only
  models the network).
* ``compute_satellite_schedule``: compute on one designated satellite (``[leo.orbit.compute]
  sat_index``; -1 = the satellite serving at the schedule start), reached from the serving
  satellite over +Grid laser ISLs at 100 Gbit/s (ADA Space "Three-Body Computing Constellation",
  launched May 2025: 100 Gbit/s laser ISLs, up to 744 TOPS per satellite; DESIGN.md reference
  figures). The designated satellite keeps orbiting, so its ISL distance grows as it leaves.

Delay terms are those of :mod:`topologies.leo.delay_model` without the ground segment: terminal
slant + ISL path light-time, access delay and the handover effect (the terminal link still
reconfigures every 15 s). Rows and columns are as in :func:`topologies.leo.schedule.leo_schedule`
(``gs_*`` columns are NaN, ``terrestrial_ms`` is 0, ``last_sat`` is the compute satellite).
"""

from __future__ import annotations

import pandas as pd

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation
from topologies.leo.delay_model import apply_delay_model
from topologies.leo.timeline import geometry_frame


def serving_satellite_schedule(
    config: LeoOrbitConfig,
    duration_s: float,
    start_offset_s: float = 0.0,
    constellation: Constellation | None = None,
) -> pd.DataFrame:
    """One-way terminal <-> serving-satellite schedule (compute host on the serving satellite)."""
    frame = geometry_frame(config, duration_s, start_offset_s, "serving_sat", constellation)
    return apply_delay_model(config, frame, start_offset_s)


def compute_satellite_schedule(
    config: LeoOrbitConfig,
    duration_s: float,
    start_offset_s: float = 0.0,
    constellation: Constellation | None = None,
) -> pd.DataFrame:
    """One-way terminal <-> designated computing satellite schedule, over ISLs.

    ``df.attrs["compute_sat"]`` holds the computing satellite's index.
    """
    frame = geometry_frame(config, duration_s, start_offset_s, "compute_sat", constellation)
    df = apply_delay_model(config, frame, start_offset_s)
    df.attrs["compute_sat"] = frame.attrs["compute_sat"]
    return df

"""Schedule stage: the per-direction link schedule the link engine replays on the LEO link.

``leo_schedule`` returns one row per (t_s, direction); each row holds until the next row's t_s.
Values are ONE-WAY, between the factory's user terminal and the cloud host behind the ground
station (uplink = terminal -> cloud, downlink = cloud -> terminal). Columns:

  t_s, direction, delay_ms, jitter_ms, loss_pct, rate_mbps, up      (link-engine fields)
  serving_sat, elevation_deg, slant_range_km                        (geometry of the access link)
  path_kind ("bent_pipe" | "isl" | "none"), isl_hops, isl_km, last_sat (gateway-side satellite),
  gs_elevation_deg, gs_slant_range_km, slot_index, in_boundary, sat_changed,
  propagation_ms, access_ms, terrestrial_ms, handover_ms            (delay terms; they sum to delay_ms)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation
from topologies.leo.delay_model import DIRECTIONS, apply_delay_model
from topologies.leo.timeline import geometry_frame

LINK_FIELDS = ("t_s", "delay_ms", "jitter_ms", "loss_pct", "rate_mbps", "up")


def leo_schedule(
    config: LeoOrbitConfig,
    duration_s: float,
    start_offset_s: float = 0.0,
    constellation: Constellation | None = None,
) -> pd.DataFrame:
    """Terminal <-> cloud schedule for ``duration_s`` seconds starting ``start_offset_s`` after the epoch."""
    frame = geometry_frame(config, duration_s, start_offset_s, "cloud", constellation)
    return apply_delay_model(config, frame, start_offset_s)


def schedule_records(df: pd.DataFrame, direction: str) -> list[dict]:
    """Plain dicts with exactly the link engine's ScheduleRow fields, for one direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: allowed {DIRECTIONS}")
    part = df[df["direction"] == direction].sort_values("t_s")
    return [
        {
            "t_s": float(r.t_s),
            "delay_ms": float(r.delay_ms),
            "jitter_ms": float(r.jitter_ms),
            "loss_pct": float(r.loss_pct),
            "rate_mbps": float(r.rate_mbps),
            "up": bool(r.up),
        }
        for r in part[list(LINK_FIELDS)].itertuples(index=False)
    ]


def modelled_rtt(df: pd.DataFrame) -> pd.DataFrame:
    """Per t_s: uplink + downlink one-way delay (rtt_ms) and the serving satellite."""
    wide = df.pivot_table(index="t_s", columns="direction", values="delay_ms", observed=True)
    out = pd.DataFrame({"t_s": wide.index, "rtt_ms": (wide["uplink"] + wide["downlink"]).to_numpy()})
    first = df[df["direction"] == "uplink"].set_index("t_s")
    for col in ("serving_sat", "elevation_deg", "slant_range_km", "in_boundary", "up"):
        out[col] = first.loc[out["t_s"], col].to_numpy()
    return out


def schedule_summary(df: pd.DataFrame) -> dict[str, float]:
    """Headline numbers: time-weighted RTT median / p95, boundary RTT, handovers, availability."""
    rtt = modelled_rtt(df)
    t = rtt["t_s"].to_numpy()
    hold = np.diff(np.append(t, t[-1] + (np.median(np.diff(t)) if len(t) > 1 else 1.0)))
    up = rtt["up"].to_numpy()
    values, weights = rtt["rtt_ms"].to_numpy()[up], hold[up]
    serving = rtt["serving_sat"].to_numpy()
    changes = int(np.count_nonzero((serving[1:] != serving[:-1]) & (serving[1:] >= 0) & (serving[:-1] >= 0)))
    boundary = rtt.loc[rtt["in_boundary"] & rtt["up"], "rtt_ms"]
    steady = rtt.loc[~rtt["in_boundary"] & rtt["up"], "rtt_ms"]
    return {
        "rtt_median_ms": _weighted_quantile(values, weights, 0.5),
        "rtt_p95_ms": _weighted_quantile(values, weights, 0.95),
        "rtt_steady_median_ms": float(steady.median()) if len(steady) else float("nan"),
        "rtt_boundary_median_ms": float(boundary.median()) if len(boundary) else float("nan"),
        "rtt_boundary_max_ms": float(boundary.max()) if len(boundary) else float("nan"),
        "handovers": float(changes),
        "availability_pct": float(100.0 * hold[up].sum() / hold.sum()),
        "isl_share_pct": float(100.0 * (df["path_kind"] == "isl").mean()),
    }


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0:
        return float("nan")
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])

"""Delay-model stage: turns per-row geometry into one-way delay, jitter, loss and rate per direction.

One-way delay of a row = propagation + access + terrestrial + handover, each a separate column:

* propagation_ms: (terminal slant + ISL path + gateway slant) / c, from the orbit geometry
  (light in vacuum; DESIGN.md slant-range formula). Same both ways for the same geometry.
* access_ms: medium-access / scheduling delay of the terminal<->satellite link, one log-normal draw
  per direction per 15 s period (stable within a period, changing at period edges: Casparsen et
  al., arXiv:2601.08439, 2026), calibrated to SpaceX's FCC filing (terminal<->PoP RTT median
  30 ms, p95 42 ms, Sept 2020); see ``config.AccessDelay``. jitter_ms is the per-packet standard
  deviation around it inside the period.
* terrestrial_ms: gateway -> PoP over fibre (great circle x route factor x n / c; SMF-28 group
  index) plus PoP -> cloud (same metro). Zero for in-orbit targets.
* handover_ms: extra delay in the boundary window [I - 75 ms, I + 140 ms) of every reconfiguration
  instant I (windows: Casparsen et al. 2026; magnitudes: assumption, see ``config.Handover``), with
  a loss burst ``handover.loss_pct`` in the same window (Kassem et al., IMC 2022: loss bursts
  correlated with handovers).

Rates: one log-normal draw per direction per period around the Starlink medians (uplink ~16,
downlink ~110 Mbit/s; DESIGN.md, Mohan et al. WWW 2024), scaled by the optional rain fade
(uplink capacity ~50 % in rain; DESIGN.md). Draws are seeded by (seed, slot index, direction),
so the same seed gives the same schedule whatever the window start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.geometry import fibre_delay_ms, great_circle_km, light_time_ms

DIRECTIONS = ("uplink", "downlink")
# The link engine's bounds (topologies.links.ScheduleRow): a log-normal draw far in its tail is
# clipped to them rather than failing the run.
MAX_DELAY_MS = 3_600_000.0
MAX_RATE_MBPS = 1_000_000.0
_SLOT_SEED_OFFSET = 2**40  # keeps slot indices before the epoch non-negative for SeedSequence


def propagation_ms(frame: pd.DataFrame) -> np.ndarray:
    """One-way light-time (ms) over terminal slant + ISLs + gateway slant (gateway term may be NaN)."""
    gs = np.nan_to_num(frame["gs_slant_range_km"].to_numpy(), nan=0.0)
    total_km = frame["slant_range_km"].to_numpy() + frame["isl_km"].to_numpy() + gs
    return light_time_ms(total_km)


def terrestrial_ms(config: LeoOrbitConfig) -> float:
    """Gateway -> PoP fibre plus PoP -> cloud (one way, ms)."""
    g, p, t = config.ground_station, config.terrestrial.pop, config.terrestrial
    km = great_circle_km(g.lat_deg, g.lon_deg, p.lat_deg, p.lon_deg)
    return fibre_delay_ms(km, t.fibre_group_index, t.route_factor) + t.pop_to_cloud_delay_ms


def period_draws(config: LeoOrbitConfig, slots: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slot standard-normal draws: keys access_<dir>, rate_<dir>; reproducible per slot."""
    uniq, inverse = np.unique(slots, return_inverse=True)
    z = np.empty((len(uniq), 4))
    for i, k in enumerate(uniq):
        rng = np.random.default_rng([config.seed, int(k) + _SLOT_SEED_OFFSET])
        z[i] = rng.standard_normal(4)
    names = ("access_uplink", "access_downlink", "rate_uplink", "rate_downlink")
    return {name: z[inverse, j] for j, name in enumerate(names)}


def access_ms(config: LeoOrbitConfig, z: np.ndarray, direction: str) -> np.ndarray:
    """Log-normal access delay (ms) with the configured median for ``direction``."""
    a = config.access
    median = a.uplink_median_ms if direction == "uplink" else a.downlink_median_ms
    return median * np.exp(a.sigma * z)


def rate_mbps(config: LeoOrbitConfig, z: np.ndarray, direction: str, t_s: np.ndarray,
              start_offset_s: float) -> np.ndarray:
    """Log-normal period rate (Mbit/s) around the median, times the rain-fade factor."""
    r, w = config.rates, config.weather
    median = r.uplink_median_mbps if direction == "uplink" else r.downlink_median_mbps
    rate = median * np.exp(r.sigma * z)
    factor = w.uplink_rate_factor if direction == "uplink" else w.downlink_rate_factor
    return np.where(rain_mask(config, t_s, start_offset_s), rate * factor, rate)


def rain_mask(config: LeoOrbitConfig, t_s: np.ndarray, start_offset_s: float) -> np.ndarray:
    """True for rows inside the weather window (window times are relative to the schedule start)."""
    w = config.weather
    if not w.enabled:
        return np.zeros(len(t_s), dtype=bool)
    return (t_s >= w.start_s) & (t_s < w.start_s + w.duration_s)


def handover_effect(config: LeoOrbitConfig, frame: pd.DataFrame, direction: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(extra delay ms, loss pct) per row from the boundary windows."""
    h = config.handover
    active = frame["in_boundary"].to_numpy()
    if h.only_on_satellite_change:
        active = active & frame["sat_changed"].to_numpy()
    extra = h.uplink_extra_delay_ms if direction == "uplink" else h.downlink_extra_delay_ms
    return np.where(active, extra, 0.0), np.where(active, h.loss_pct, 0.0)


def apply_delay_model(config: LeoOrbitConfig, frame: pd.DataFrame, start_offset_s: float = 0.0
                      ) -> pd.DataFrame:
    """Long table: one row per (t_s, direction) with delay/jitter/loss/rate and their terms."""
    in_orbit = frame.attrs.get("target", "cloud") != "cloud"
    t_s = frame["t_s"].to_numpy()
    z = period_draws(config, frame["slot_index"].to_numpy())
    prop = propagation_ms(frame)
    terr = 0.0 if in_orbit else terrestrial_ms(config)
    up = frame["up"].to_numpy()
    rain = rain_mask(config, t_s, start_offset_s)
    parts = []
    for direction in DIRECTIONS:
        acc = access_ms(config, z[f"access_{direction}"], direction)
        ho_ms, ho_loss = handover_effect(config, frame, direction)
        loss = config.access.baseline_loss_pct + ho_loss + np.where(rain, config.weather.extra_loss_pct, 0.0)
        jitter = config.access.uplink_jitter_ms if direction == "uplink" else config.access.downlink_jitter_ms
        rate = rate_mbps(config, z[f"rate_{direction}"], direction, t_s, start_offset_s)
        if in_orbit:  # laser ISLs (100 Gbit/s) never bind before the terminal link does
            rate = np.minimum(rate, config.compute.isl_rate_gbps * 1000.0)
        part = frame.copy()
        part.insert(1, "direction", direction)
        part["propagation_ms"] = prop
        part["access_ms"] = acc
        part["terrestrial_ms"] = terr
        part["handover_ms"] = ho_ms
        # while down, delay holds its last value (packets are dropped anyway: loss 100 %, up False)
        delay = pd.Series(np.where(up, prop + acc + terr + ho_ms, np.nan)).ffill().fillna(0.0)
        part["delay_ms"] = np.minimum(delay.to_numpy(), MAX_DELAY_MS)
        part["jitter_ms"] = jitter
        part["loss_pct"] = np.where(up, np.minimum(loss, 100.0), 100.0)
        part["rate_mbps"] = np.minimum(rate, MAX_RATE_MBPS)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["direction"] = pd.Categorical(out["direction"], categories=list(DIRECTIONS))
    return out.sort_values(["t_s", "direction"], kind="stable").reset_index(drop=True)

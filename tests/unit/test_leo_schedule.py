"""Properties of the LEO link schedule: mask, handover grid, delay terms, seeds, directions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from topologies.leo.config import GroundPoint, LeoOrbitConfig, Weather
from topologies.leo.delay_model import terrestrial_ms
from topologies.leo.geometry import (
    SPEED_OF_LIGHT_KM_PER_S,
    ground_point_ecef_km,
    slant_range_at_elevation_km,
)
from topologies.leo.schedule import (
    LINK_FIELDS,
    leo_schedule,
    modelled_rtt,
    schedule_records,
    schedule_summary,
)

CONFIG = LeoOrbitConfig.default()


@pytest.fixture(scope="module")
def ten_minutes() -> pd.DataFrame:
    return leo_schedule(CONFIG, 600.0)


@pytest.fixture(scope="module")
def isl_schedule() -> pd.DataFrame:
    # gateway on the Canary Islands, ~3,200 km away: no satellite sees both ends above 25 deg
    far = dataclasses.replace(CONFIG, ground_station=GroundPoint(28.1, -15.4, 25.0))
    return leo_schedule(far, 120.0)


def on_grid(config: LeoOrbitConfig, t_s: np.ndarray, start_offset_s: float = 0.0) -> np.ndarray:
    phase = config.epoch.second + t_s + start_offset_s - config.reconfiguration.offset_s
    return np.isclose(np.mod(phase + 1e-9, config.reconfiguration.interval_s), 0.0, atol=1e-6)


def test_one_row_per_time_and_direction(ten_minutes: pd.DataFrame) -> None:
    assert not ten_minutes.duplicated(["t_s", "direction"]).any()
    counts = ten_minutes.groupby("direction", observed=True).size()
    assert counts["uplink"] == counts["downlink"] >= 600
    for col in ("t_s", "direction", "delay_ms", "jitter_ms", "loss_pct", "rate_mbps", "up",
                "serving_sat", "elevation_deg", "slant_range_km"):
        assert col in ten_minutes.columns
    assert ten_minutes["t_s"].min() == 0.0 and ten_minutes["t_s"].max() < 600.0


def test_elevation_above_mask_whenever_serving(ten_minutes: pd.DataFrame) -> None:
    serving = ten_minutes[ten_minutes["up"]]
    assert len(serving) > 0.99 * len(ten_minutes)
    assert (serving["serving_sat"] >= 0).all()
    assert (serving["elevation_deg"] >= CONFIG.shell.min_elevation_deg).all()
    assert (serving["gs_elevation_deg"] >= CONFIG.ground_station.min_elevation_deg).all()
    # slant range is the closed-form function of elevation (spherical Earth, circular orbits)
    expected = slant_range_at_elevation_km(550.0, serving["elevation_deg"].to_numpy())
    np.testing.assert_allclose(serving["slant_range_km"], expected, rtol=1e-9)


@pytest.mark.parametrize("policy", ["highest_elevation", "longest_visibility"])
def test_handovers_only_on_reconfiguration_grid(policy: str) -> None:
    config = dataclasses.replace(CONFIG, policy=policy)
    up = leo_schedule(config, 300.0, start_offset_s=7.0)
    up = up[(up["direction"] == "uplink") & up["up"]].reset_index(drop=True)
    change = np.flatnonzero(up["serving_sat"].to_numpy()[1:] != up["serving_sat"].to_numpy()[:-1]) + 1
    assert len(change) >= 3  # 20 slots: the terminal does change satellite
    assert on_grid(config, up["t_s"].to_numpy()[change], 7.0).all()


def test_bent_pipe_propagation_rtt_in_bounds(ten_minutes: pd.DataFrame) -> None:
    bent = ten_minutes[(ten_minutes["path_kind"] == "bent_pipe") & ten_minutes["up"]]
    assert len(bent) == len(ten_minutes)  # default gateway ~470 km away: always a bent pipe
    rtt_prop = 2 * bent["propagation_ms"]
    assert rtt_prop.between(7.3, 15.0).all()
    km = bent["slant_range_km"] + bent["gs_slant_range_km"]
    np.testing.assert_allclose(bent["propagation_ms"], km / SPEED_OF_LIGHT_KM_PER_S * 1000, rtol=1e-12)


def test_delay_terms_sum_and_directions_differ(ten_minutes: pd.DataFrame) -> None:
    d = ten_minutes
    total = d["propagation_ms"] + d["access_ms"] + d["terrestrial_ms"] + d["handover_ms"]
    np.testing.assert_allclose(d["delay_ms"], total, rtol=1e-12)
    assert np.allclose(d["terrestrial_ms"], terrestrial_ms(CONFIG))
    med = d.groupby("direction", observed=True)[["delay_ms", "rate_mbps"]].median()
    assert med.loc["uplink", "delay_ms"] > med.loc["downlink", "delay_ms"]
    assert 12 < med.loc["uplink", "rate_mbps"] < 20 and 90 < med.loc["downlink", "rate_mbps"] < 130


def test_median_rtt_and_spikes_at_boundaries(ten_minutes: pd.DataFrame) -> None:
    s = schedule_summary(ten_minutes)
    assert 25.0 <= s["rtt_median_ms"] <= 60.0  # published Starlink medians (DESIGN.md)
    assert s["rtt_boundary_median_ms"] - s["rtt_steady_median_ms"] >= 40.0
    rtt = modelled_rtt(ten_minutes)
    spikes = rtt[rtt["rtt_ms"] > s["rtt_median_ms"] + 40.0]
    assert spikes["in_boundary"].all() and len(spikes) >= 2 * 39
    # loss only inside the boundary windows
    loss = ten_minutes["loss_pct"].to_numpy()
    assert (loss[ten_minutes["in_boundary"]] == CONFIG.handover.loss_pct).all()
    assert (loss[~ten_minutes["in_boundary"]] == 0.0).all()


def test_boundary_rows_bracket_each_instant(ten_minutes: pd.DataFrame) -> None:
    t = np.unique(ten_minutes["t_s"])
    instants = t[on_grid(CONFIG, t)]
    assert len(instants) == 40
    h = CONFIG.handover
    for i in instants:
        assert np.isclose(t, i - h.before_s).any() and np.isclose(t, i + h.after_s).any()


def test_same_seed_same_schedule_other_seed_differs() -> None:
    a, b = leo_schedule(CONFIG, 90.0), leo_schedule(CONFIG, 90.0)
    pd.testing.assert_frame_equal(a, b)
    c = leo_schedule(dataclasses.replace(CONFIG, seed=2), 90.0)
    assert not np.allclose(a["access_ms"], c["access_ms"])
    np.testing.assert_array_equal(a["serving_sat"], c["serving_sat"])  # geometry is seed-free


def test_window_start_does_not_change_values() -> None:
    whole = leo_schedule(CONFIG, 120.0)
    part = leo_schedule(CONFIG, 60.0, start_offset_s=30.0)
    sub = whole[(whole["t_s"] >= 30.0) & (whole["t_s"] < 90.0)].reset_index(drop=True)
    np.testing.assert_allclose(sub["t_s"] - 30.0, part["t_s"], atol=1e-9)
    for col in ("serving_sat", "delay_ms", "rate_mbps", "loss_pct"):
        np.testing.assert_allclose(sub[col].astype(float), part[col].astype(float), rtol=1e-9)


def test_isl_path_when_no_common_satellite(isl_schedule: pd.DataFrame) -> None:
    up = isl_schedule[isl_schedule["up"]]
    assert len(up) == len(isl_schedule) and (up["path_kind"] == "isl").all()
    assert (up["isl_hops"] >= 1).all() and (up["last_sat"] != up["serving_sat"]).all()
    assert (up["gs_elevation_deg"] >= 25.0).all()
    # path is never shorter than the straight line between terminal and gateway
    ut, gs = ground_point_ecef_km(48.25, 11.65), ground_point_ecef_km(28.1, -15.4)
    path_km = up["slant_range_km"] + up["isl_km"] + up["gs_slant_range_km"]
    assert (path_km > np.linalg.norm(ut - gs)).all()
    np.testing.assert_allclose(up["propagation_ms"], path_km / SPEED_OF_LIGHT_KM_PER_S * 1000, rtol=1e-12)


def test_weather_fade_halves_uplink_rate_in_window() -> None:
    rain = dataclasses.replace(CONFIG, weather=Weather(enabled=True, start_s=10.0, duration_s=20.0))
    dry, wet = leo_schedule(CONFIG, 60.0), leo_schedule(rain, 60.0)
    inside = (dry["t_s"] >= 10.0) & (dry["t_s"] < 30.0)
    ratio = wet["rate_mbps"] / dry["rate_mbps"]
    up, down = dry["direction"] == "uplink", dry["direction"] == "downlink"
    np.testing.assert_allclose(ratio[inside & up], 0.5)
    np.testing.assert_allclose(ratio[inside & down], 1.0)
    np.testing.assert_allclose(ratio[~inside], 1.0)


def test_schedule_records_have_link_engine_fields(ten_minutes: pd.DataFrame) -> None:
    for direction in ("uplink", "downlink"):
        rec = schedule_records(ten_minutes, direction)
        assert len(rec) == (ten_minutes["direction"] == direction).sum()
        assert all(tuple(r) == LINK_FIELDS for r in rec)
        assert [r["t_s"] for r in rec] == sorted(r["t_s"] for r in rec)
        assert isinstance(rec[0]["up"], bool) and isinstance(rec[0]["delay_ms"], float)
    with pytest.raises(ValueError):
        schedule_records(ten_minutes, "sideways")

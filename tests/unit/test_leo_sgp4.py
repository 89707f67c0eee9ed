"""Walker-delta positions agree with sgp4 propagation of the same elements (TLE path)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sgp4.api import Satrec

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import (
    Constellation,
    build_constellation,
    load_tle_file,
    walker_satrecs,
    walker_tle_text,
)
from topologies.leo.schedule import leo_schedule

CONFIG = LeoOrbitConfig.default()


def test_walker_matches_sgp4_over_an_hour() -> None:
    walker = build_constellation(CONFIG)
    sgp4 = Constellation(CONFIG.epoch, walker.names, records=walker_satrecs(CONFIG.shell, CONFIG.epoch))
    t = np.arange(0.0, 3601.0, 300.0)
    gap_km = np.linalg.norm(walker.positions_ecef_km(t) - sgp4.positions_ecef_km(t), axis=-1)
    # SGP4 adds short-period J2 terms (~10 km); neighbouring satellites are ~1,970 km apart
    assert gap_km.max() < 20.0
    # after 6 h the J2 drift matters: with it < 30 km from sgp4, without it > 80 km
    six_h = np.array([6 * 3600.0])
    plain = dataclasses.replace(CONFIG.shell, j2_secular=False)
    drift = Constellation(CONFIG.epoch, walker.names, shell=plain)
    reference = sgp4.positions_ecef_km(six_h)
    assert np.linalg.norm(walker.positions_ecef_km(six_h) - reference, axis=-1).max() < 30.0
    assert np.linalg.norm(drift.positions_ecef_km(six_h) - reference, axis=-1).max() > 80.0


def test_circular_orbit_against_hand_written_tle() -> None:
    # ISS-like circular orbit, 51.6 deg, 15.5 rev/day, written by hand (independent of our exporter)
    line1 = "1 99999U 25001A   25153.50000000  .00000000  00000-0  00000-0 0  9990"
    line2 = "2 99999  51.6000  10.0000 0000001   0.0000  20.0000 15.50000000    01"
    rec = Satrec.twoline2rv(line1, line2)
    _, r0, _ = rec.sgp4(rec.jdsatepoch, rec.jdsatepochF)
    n_rad_s = 15.5 * 2 * np.pi / 86400
    a_km = (398600.4418 / n_rad_s**2) ** (1 / 3)
    assert np.linalg.norm(r0) == pytest.approx(a_km, abs=25.0)  # circular: radius ~ semi-major axis
    shell = dataclasses.replace(CONFIG.shell, altitude_km=a_km - 6371.0, inclination_deg=51.6,
                                planes=1, sats_per_plane=1, phasing_f=0)
    # rotate our single Walker satellite to RAAN 10 deg, argument of latitude 20 deg
    from topologies.leo.constellation import walker_positions_eci_km

    p = walker_positions_eci_km(shell, np.array([0.0]))[0, 0]
    raan, u, inc = np.radians(10.0), np.radians(20.0), np.radians(51.6)
    expected = a_km * np.array([
        np.cos(raan) * np.cos(u) - np.sin(raan) * np.sin(u) * np.cos(inc),
        np.sin(raan) * np.cos(u) + np.cos(raan) * np.sin(u) * np.cos(inc),
        np.sin(u) * np.sin(inc),
    ])
    assert np.linalg.norm(expected - np.asarray(r0)) < 25.0
    assert np.linalg.norm(p) == pytest.approx(a_km, abs=1e-6)


def test_tle_file_schedule_matches_walker(tmp_path: Path) -> None:
    path = tmp_path / "shell1.tle"
    path.write_text(walker_tle_text(CONFIG.shell, CONFIG.epoch))
    names, records = load_tle_file(path)
    assert len(records) == 1584 and names[0] == "sat0"
    tle_config = dataclasses.replace(CONFIG, tle_file=path)
    const = build_constellation(tle_config)
    assert const.records is not None and const.planes == 72  # +Grid kept: count matches the shell
    a, b = leo_schedule(CONFIG, 120.0), leo_schedule(tle_config, 120.0)
    same = (a["serving_sat"] == b["serving_sat"]).mean()
    assert same >= 0.8
    both = a["serving_sat"] == b["serving_sat"]
    assert (a.loc[both, "slant_range_km"] - b.loc[both, "slant_range_km"]).abs().max() < 20.0
    assert (b.loc[b["up"], "elevation_deg"] >= 25.0).all()


def test_malformed_tle_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.tle"
    path.write_text("sat0\n1 00001U only one line\n")
    with pytest.raises(ValueError, match="malformed"):
        load_tle_file(path)

"""Golden geometry of the LEO model: slant range, elevation, GMST, Walker shell, +Grid ISLs."""

from __future__ import annotations

import numpy as np
import pytest
from sgp4.propagation import gstime

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import build_constellation, walker_positions_eci_km
from topologies.leo.geometry import (
    EARTH_RADIUS_KM,
    SPEED_OF_LIGHT_KM_PER_S,
    coverage_half_angle_deg,
    elevation_deg,
    gmst_rad,
    ground_point_ecef_km,
    slant_range_at_elevation_km,
    slant_range_km,
)
from topologies.leo.isl import adjacency, isl_lengths_km, path_to, plus_grid_edges, shortest_paths_km


def test_slant_range_closed_form_golden_values() -> None:
    assert slant_range_at_elevation_km(550.0, 90.0) == pytest.approx(550.0, abs=1e-9)
    # DESIGN.md: ~1,123 km at 25 deg for a 550 km shell
    assert slant_range_at_elevation_km(550.0, 25.0) == pytest.approx(1123, abs=1.0)


def _sat_at(lat_deg: float, lon_deg: float, central_deg: float, altitude_km: float) -> tuple:
    """Ground point and a satellite ``central_deg`` north of it along its meridian."""
    ground = ground_point_ecef_km(lat_deg, lon_deg)
    sat = ground_point_ecef_km(lat_deg + central_deg, lon_deg, altitude_km)
    return ground, sat


def test_vector_geometry_at_zenith_and_at_mask() -> None:
    ground, sat = _sat_at(48.0, 11.0, 0.0, 550.0)
    assert slant_range_km(ground, sat) == pytest.approx(550.0, abs=1e-6)
    assert elevation_deg(ground, sat) == pytest.approx(90.0, abs=1e-6)
    # a satellite at the edge of coverage (central angle from the closed form) sits at 25 deg
    lam = coverage_half_angle_deg(550.0, 25.0)
    ground, sat = _sat_at(30.0, -40.0, lam, 550.0)
    assert elevation_deg(ground, sat) == pytest.approx(25.0, abs=1e-6)
    assert slant_range_km(ground, sat) == pytest.approx(slant_range_at_elevation_km(550.0, 25.0), abs=1e-6)


def test_bent_pipe_propagation_rtt_bounds() -> None:
    # both legs at zenith vs both legs at the 25 deg mask: 7.3 .. 15 ms round trip
    best = 4 * 550.0 / SPEED_OF_LIGHT_KM_PER_S * 1000
    worst = 4 * slant_range_at_elevation_km(550.0, 25.0) / SPEED_OF_LIGHT_KM_PER_S * 1000
    assert 7.3 <= best < 7.4
    assert 14.9 < worst <= 15.0


def test_gmst_matches_sgp4_reference_implementation() -> None:
    for jd in (2451545.0, 2460828.0, 2460828.3721):
        assert gmst_rad(jd) == pytest.approx(gstime(jd), abs=1e-9)


def test_walker_shell_layout() -> None:
    shell = LeoOrbitConfig.default().shell
    pos = walker_positions_eci_km(shell, np.array([0.0, 600.0]))
    radius = np.linalg.norm(pos, axis=-1)
    np.testing.assert_allclose(radius, EARTH_RADIUS_KM + 550.0, atol=1e-6)
    # satellite 0 starts at the ascending node of plane 0 (RAAN 0): +x axis
    np.testing.assert_allclose(pos[0, 0], [EARTH_RADIUS_KM + 550.0, 0, 0], atol=1e-6)
    # inclination bounds latitude
    lat = np.degrees(np.arcsin(pos[..., 2] / radius))
    assert lat.max() <= 53.0 + 1e-6
    # 72 distinct RAANs, 22 satellites each
    assert pos.shape == (2, 1584, 3)


def test_plus_grid_isl_lengths() -> None:
    config = LeoOrbitConfig.default()
    edges = plus_grid_edges(72, 22)
    assert len(edges) == 2 * 1584  # 4 ISLs per satellite, each counted once
    degree = np.bincount(edges.ravel(), minlength=1584)
    assert (degree == 4).all()
    pos = build_constellation(config).positions_ecef_km(np.array([0.0]))[0]
    lengths = isl_lengths_km(pos, edges)
    a = EARTH_RADIUS_KM + 550.0
    intra = edges[:, 1] - edges[:, 0]
    in_plane = (edges[:, 0] // 22) == (edges[:, 1] // 22)
    # in-plane neighbours: chord of 360/22 degrees, independent of time
    np.testing.assert_allclose(lengths[in_plane], 2 * a * np.sin(np.pi / 22), rtol=1e-9)
    assert (intra[in_plane] > 0).all()
    # cross-plane links are shorter than the in-plane spacing's 1.5x and longer than 0
    assert 0 < lengths[~in_plane].min() and lengths[~in_plane].max() < 1.5 * 2 * a * np.sin(np.pi / 22)


def test_dijkstra_path_along_a_plane() -> None:
    edges = plus_grid_edges(72, 22)
    pos = build_constellation(LeoOrbitConfig.default()).positions_ecef_km(np.array([0.0]))[0]
    dist, prev = shortest_paths_km(adjacency(1584, edges, isl_lengths_km(pos, edges)), 0)
    path = path_to(prev, 0, 3)
    assert path == [0, 1, 2, 3]  # three in-plane hops, the only short way within the plane
    assert dist[3] == pytest.approx(3 * 2 * (EARTH_RADIUS_KM + 550) * np.sin(np.pi / 22), rel=1e-9)

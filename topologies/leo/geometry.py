"""Geometry stage: frames, ground points, elevation, slant range and light-time.

Conventions: spherical Earth of radius ``EARTH_RADIUS_KM`` (the convention of DESIGN.md's
slant-range formula); positions in km, arrays shaped ``(..., 3)``; angles in degrees at the API.
ECI is TEME (sgp4's output frame); ECEF is obtained by a rotation through Greenwich mean sidereal
time (polar motion and UT1-UTC ignored: < 1 s of Earth rotation, i.e. < 0.5 km at the equator).
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0  # mean Earth radius (IUGG); DESIGN.md slant-range formula uses R = 6371 km
SPEED_OF_LIGHT_KM_PER_S = 299_792.458  # exact, SI definition
MU_EARTH_KM3_PER_S2 = 398_600.4418  # WGS-84 gravitational parameter
J2_EARTH = 1.08262668e-3  # WGS-84 / EGM-96 second zonal harmonic
J2_REFERENCE_RADIUS_KM = 6378.137  # WGS-84 equatorial radius (the radius J2 is defined with)
UNIX_EPOCH_JD = 2440587.5  # Julian date of 1970-01-01T00:00:00 UTC


def ground_point_ecef_km(lat_deg: float, lon_deg: float, alt_km: float = 0.0) -> np.ndarray:
    """ECEF position (km) of a point at geocentric ``lat_deg``/``lon_deg`` on the sphere."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    r = EARTH_RADIUS_KM + alt_km
    return np.array([r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)])


def gmst_rad(jd_ut1: np.ndarray | float, fraction: np.ndarray | float = 0.0) -> np.ndarray:
    """Greenwich mean sidereal time (IAU-82; Vallado, Fundamentals of Astrodynamics, eq. 3-47)."""
    t_cent = ((np.asarray(jd_ut1) - 2451545.0) + np.asarray(fraction)) / 36525.0
    seconds = (
        -6.2e-6 * t_cent**3
        + 0.093104 * t_cent**2
        + (876600.0 * 3600.0 + 8640184.812866) * t_cent
        + 67310.54841
    )
    return np.mod(np.radians(seconds / 240.0), 2.0 * np.pi)


def eci_to_ecef_km(r_eci_km: np.ndarray, gmst: np.ndarray) -> np.ndarray:
    """Rotate TEME/ECI positions ``(T, N, 3)`` by GMST ``(T,)`` into ECEF."""
    cos_g, sin_g = np.cos(gmst)[:, None], np.sin(gmst)[:, None]
    x, y, z = r_eci_km[..., 0], r_eci_km[..., 1], r_eci_km[..., 2]
    return np.stack([cos_g * x + sin_g * y, -sin_g * x + cos_g * y, z], axis=-1)


def slant_range_km(ground_ecef_km: np.ndarray, sat_ecef_km: np.ndarray) -> np.ndarray:
    """Distance (km) from a ground point ``(3,)`` to satellites ``(..., 3)``."""
    return np.linalg.norm(sat_ecef_km - ground_ecef_km, axis=-1)


def elevation_deg(ground_ecef_km: np.ndarray, sat_ecef_km: np.ndarray) -> np.ndarray:
    """Elevation (deg) of satellites ``(..., 3)`` above the local horizon of a ground point."""
    up = ground_ecef_km / np.linalg.norm(ground_ecef_km)
    los = sat_ecef_km - ground_ecef_km
    sin_el = (los @ up) / np.linalg.norm(los, axis=-1)
    return np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))


def slant_range_at_elevation_km(altitude_km: float, elevation_deg: float | np.ndarray) -> np.ndarray:
    """Closed form d = sqrt((R+h)^2 - R^2 cos^2 e) - R sin e (DESIGN.md reference figures)."""
    r, e = EARTH_RADIUS_KM, np.radians(elevation_deg)
    return np.sqrt((r + altitude_km) ** 2 - (r * np.cos(e)) ** 2) - r * np.sin(e)


def coverage_half_angle_deg(altitude_km: float, min_elevation_deg: float) -> float:
    """Earth-central angle from the sub-satellite point to the edge of coverage at the mask."""
    r, e = EARTH_RADIUS_KM, np.radians(min_elevation_deg)
    return float(np.degrees(np.arccos(r * np.cos(e) / (r + altitude_km)) - e))


def great_circle_km(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Great-circle distance (km) on the sphere (haversine)."""
    p1, p2 = np.radians(lat1_deg), np.radians(lat2_deg)
    dp, dl = p2 - p1, np.radians(lon2_deg - lon1_deg)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return float(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h)))


def light_time_ms(distance_km: np.ndarray | float) -> np.ndarray:
    """One-way propagation delay (ms) in vacuum over ``distance_km``."""
    return np.asarray(distance_km) / SPEED_OF_LIGHT_KM_PER_S * 1000.0


def fibre_delay_ms(distance_km: float, group_index: float, route_factor: float) -> float:
    """One-way delay (ms) over fibre: route length = geodesic x route factor, speed c / n."""
    return float(distance_km * route_factor * group_index / SPEED_OF_LIGHT_KM_PER_S * 1000.0)

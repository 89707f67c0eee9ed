"""Constellation stage: satellite positions over time, from a Walker-delta shell or a TLE file.

Walker positions are analytic circular orbits (optionally with secular J2 drift), fully
vectorised over time and satellites. TLE input is propagated with the ``sgp4`` package
(``SatrecArray``, vectorised C++); no SGP4 code lives here. Satellite index = plane *
sats_per_plane + slot for Walker shells, file order for TLEs. Times are seconds since the
configuration epoch (UTC, treated as UT1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec, SatrecArray
from sgp4.exporter import export_tle

from topologies.leo.config import LeoOrbitConfig, WalkerShell
from topologies.leo.geometry import (
    EARTH_RADIUS_KM,
    J2_EARTH,
    J2_REFERENCE_RADIUS_KM,
    MU_EARTH_KM3_PER_S2,
    UNIX_EPOCH_JD,
    eci_to_ecef_km,
    gmst_rad,
)
from topologies.leo.tle import SGP4_ERRORS, TLE_KEY, load_tle_file
from topologies.validate import ConfigError

SGP4_EPOCH_JD = 2433281.5  # sgp4init epochs count days from 1949-12-31 00:00 UT


def julian_date_split(when: datetime) -> tuple[float, float]:
    """(whole Julian day ending in .5, day fraction) of an aware UTC datetime."""
    jd = UNIX_EPOCH_JD + when.timestamp() / 86400.0
    whole = np.floor(jd - 0.5) + 0.5
    return float(whole), float(jd - whole)


def walker_elements_rad(shell: WalkerShell) -> tuple[np.ndarray, np.ndarray]:
    """RAAN and initial argument of latitude (rad) of every satellite of a Walker-delta shell."""
    planes, per_plane, total = shell.planes, shell.sats_per_plane, shell.total_sats
    plane = np.repeat(np.arange(planes), per_plane)
    slot = np.tile(np.arange(per_plane), planes)
    raan = 2.0 * np.pi * plane / planes
    arg_lat = 2.0 * np.pi * slot / per_plane + 2.0 * np.pi * shell.phasing_f * plane / total
    return raan, np.mod(arg_lat, 2.0 * np.pi)


def walker_rates_rad_per_s(shell: WalkerShell) -> tuple[float, float]:
    """(RAAN rate, argument-of-latitude rate) in rad/s for a circular orbit, with secular J2.

    J2 secular rates for e = 0 (Vallado, Fundamentals of Astrodynamics, sec. 9.6):
    RAAN' = -3/2 n J2 (Re/a)^2 cos i;  (w + M)' = n [1 + 3/4 J2 (Re/a)^2 (8 cos^2 i - 2)].
    """
    a = EARTH_RADIUS_KM + shell.altitude_km
    n = np.sqrt(MU_EARTH_KM3_PER_S2 / a**3)
    if not shell.j2_secular:
        return 0.0, float(n)
    k = J2_EARTH * (J2_REFERENCE_RADIUS_KM / a) ** 2
    cos_i = np.cos(np.radians(shell.inclination_deg))
    raan_rate = -1.5 * n * k * cos_i
    # argument of perigee rate 3/4 n k (5 cos^2 i - 1) plus mean-anomaly rate n (1 + 3/4 k (3 cos^2 i - 1))
    arg_lat_rate = n * (1.0 + 0.75 * k * (5 * cos_i**2 - 1) + 0.75 * k * (3 * cos_i**2 - 1))
    return float(raan_rate), float(arg_lat_rate)


def walker_positions_eci_km(
    shell: WalkerShell, t_s: np.ndarray, sat_idx: np.ndarray | None = None
) -> np.ndarray:
    """ECI (TEME-aligned) positions ``(T, N, 3)`` of Walker satellites at ``t_s`` after epoch."""
    raan0, u0 = walker_elements_rad(shell)
    if sat_idx is not None:
        raan0, u0 = raan0[sat_idx], u0[sat_idx]
    raan_rate, u_rate = walker_rates_rad_per_s(shell)
    t = np.asarray(t_s, dtype=float)[:, None]
    raan = raan0[None, :] + raan_rate * t
    u = u0[None, :] + u_rate * t
    a = EARTH_RADIUS_KM + shell.altitude_km
    inc = np.radians(shell.inclination_deg)
    cos_u, sin_u, cos_o, sin_o = np.cos(u), np.sin(u), np.cos(raan), np.sin(raan)
    x = a * (cos_o * cos_u - sin_o * sin_u * np.cos(inc))
    y = a * (sin_o * cos_u + cos_o * sin_u * np.cos(inc))
    z = a * sin_u * np.sin(inc)
    return np.stack([x, y, z], axis=-1)


def walker_satrecs(shell: WalkerShell, epoch: datetime) -> list[Satrec]:
    """sgp4 records with the same (mean) elements as the Walker satellites, e.g. to write TLEs."""
    raan, u0 = walker_elements_rad(shell)
    a = EARTH_RADIUS_KM + shell.altitude_km
    n_rad_per_min = np.sqrt(MU_EARTH_KM3_PER_S2 / a**3) * 60.0
    whole, frac = julian_date_split(epoch)
    epoch_days = whole + frac - SGP4_EPOCH_JD
    records = []
    for i in range(shell.total_sats):
        rec = Satrec()
        rec.sgp4init(
            WGS72, "i", i + 1, epoch_days, 0.0, 0.0, 0.0, 0.0, 0.0,
            np.radians(shell.inclination_deg), float(u0[i]), float(n_rad_per_min), float(raan[i]),
        )
        records.append(rec)
    return records


def walker_tle_text(shell: WalkerShell, epoch: datetime) -> str:
    """Three-line TLE text (name + 2 lines) for every satellite of a Walker shell."""
    lines = []
    for i, rec in enumerate(walker_satrecs(shell, epoch)):
        line1, line2 = export_tle(rec)
        lines += [f"sat{i}", line1, line2]
    return "\n".join(lines) + "\n"


@dataclass
class Constellation:
    """Satellite positions on demand; build with :func:`build_constellation`."""

    epoch: datetime
    names: list[str]
    shell: WalkerShell | None = None  # set for Walker shells
    records: list[Satrec] | None = None  # set for TLE input
    tle_file: Path | None = None  # where the records came from (named in errors)
    planes: int | None = None  # +Grid structure, when known
    sats_per_plane: int | None = None

    @property
    def n_sats(self) -> int:
        return len(self.names)

    def positions_eci_km(self, t_s: np.ndarray, sat_idx: np.ndarray | None = None) -> np.ndarray:
        """Positions ``(T, N, 3)`` in TEME/ECI at ``t_s`` seconds after the epoch."""
        t_s = np.atleast_1d(np.asarray(t_s, dtype=float))
        if self.shell is not None:
            return walker_positions_eci_km(self.shell, t_s, sat_idx)
        assert self.records is not None
        recs = self.records if sat_idx is None else [self.records[i] for i in np.atleast_1d(sat_idx)]
        whole, frac = julian_date_split(self.epoch)
        err, r, _ = SatrecArray(recs).sgp4(np.full(t_s.shape, whole), frac + t_s / 86400.0)
        if np.any(err):
            codes = sorted(int(c) for c in set(err.ravel()) - {0})
            raise ConfigError(TLE_KEY, str(self.tle_file),
                              "TLEs sgp4 can propagate over the schedule ("
                              + "; ".join(SGP4_ERRORS.get(c, f"error {c}") for c in codes)
                              + f" at {self.epoch.isoformat()} + up to {float(t_s.max()):g} s: "
                              "are the TLE epochs close to epoch_utc?)")
        return np.transpose(r, (1, 0, 2))

    def gmst(self, t_s: np.ndarray) -> np.ndarray:
        whole, frac = julian_date_split(self.epoch)
        return gmst_rad(whole, frac + np.atleast_1d(np.asarray(t_s, dtype=float)) / 86400.0)

    def positions_ecef_km(self, t_s: np.ndarray, sat_idx: np.ndarray | None = None) -> np.ndarray:
        """Earth-fixed positions ``(T, N, 3)`` at ``t_s`` seconds after the epoch."""
        return eci_to_ecef_km(self.positions_eci_km(t_s, sat_idx), self.gmst(t_s))


def build_constellation(config: LeoOrbitConfig) -> Constellation:
    """Walker shell from ``config.shell``, or the TLE file when ``config.tle_file`` is set.

    A TLE file gets +Grid ISLs only if it holds exactly planes x sats_per_plane satellites, in
    plane-major order (as :func:`walker_tle_text` writes them); otherwise it is bent-pipe only.
    """
    shell = config.shell
    if config.tle_file is None:
        names = [f"sat{i}" for i in range(shell.total_sats)]
        return Constellation(config.epoch, names, shell=shell, planes=shell.planes,
                             sats_per_plane=shell.sats_per_plane)
    names, records = load_tle_file(config.tle_file)
    grid = len(records) == shell.total_sats
    return Constellation(config.epoch, names, records=records, tle_file=config.tle_file,
                         planes=shell.planes if grid else None,
                         sats_per_plane=shell.sats_per_plane if grid else None)

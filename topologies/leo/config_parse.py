"""Parse ``[leo.orbit]`` into :class:`~topologies.leo.config.LeoOrbitConfig` (defaults for all keys).

Layout of the table (every key optional)::

    [leo.orbit]            epoch_utc, step_s, policy, seed, tle_file
    [leo.orbit.shell]      altitude_km, inclination_deg, planes, sats_per_plane, phasing_f,
                           min_elevation_deg, j2_secular
    [leo.orbit.site]       lat_deg, lon_deg   (user terminal; its mask is shell.min_elevation_deg)
    [leo.orbit.ground_station]  lat_deg, lon_deg, min_elevation_deg
    [leo.orbit.terrestrial]     pop_lat_deg, pop_lon_deg, fibre_group_index, route_factor,
                                pop_to_cloud_delay_ms
    [leo.orbit.reconfiguration] interval_s, offset_s
    [leo.orbit.handover]   before_s, after_s, uplink_extra_delay_ms, downlink_extra_delay_ms,
                           loss_pct, only_on_satellite_change
    [leo.orbit.access]     uplink_median_ms, downlink_median_ms, sigma, uplink_jitter_ms,
                           downlink_jitter_ms, baseline_loss_pct
    [leo.orbit.rates]      uplink_median_mbps, downlink_median_mbps, sigma
    [leo.orbit.weather]    enabled, start_s, duration_s, uplink_rate_factor, downlink_rate_factor,
                           extra_loss_pct
    [leo.orbit.compute]    sat_index, isl_rate_gbps
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from topologies.leo import config as c
from topologies.validate import ConfigError, Table

if TYPE_CHECKING:
    from topologies.leo.config import LeoOrbitConfig


def _shell(t: Table) -> c.WalkerShell:
    d = c.WalkerShell()
    with t:
        planes = t.int("planes", d.planes, min=1)
        shell = c.WalkerShell(
            altitude_km=t.number("altitude_km", d.altitude_km, min=100.0, max=40000.0),
            inclination_deg=t.number("inclination_deg", d.inclination_deg, min=0.0, max=180.0),
            planes=planes,
            sats_per_plane=t.int("sats_per_plane", d.sats_per_plane, min=1),
            phasing_f=t.int("phasing_f", d.phasing_f, min=0, max=planes - 1),
            min_elevation_deg=t.number("min_elevation_deg", d.min_elevation_deg, min=0.0, max=89.0),
            j2_secular=t.bool("j2_secular", d.j2_secular),
        )
    return shell


def _point(t: Table, d: c.GroundPoint, with_mask: bool) -> c.GroundPoint:
    with t:
        lat = t.number("lat_deg", d.lat_deg, min=-90.0, max=90.0)
        lon = t.number("lon_deg", d.lon_deg, min=-180.0, max=180.0)
        mask = d.min_elevation_deg
        if with_mask:
            mask = t.number("min_elevation_deg", d.min_elevation_deg, min=0.0, max=89.0)
    return c.GroundPoint(lat, lon, mask)


def _terrestrial(t: Table) -> c.Terrestrial:
    d = c.Terrestrial()
    with t:
        value = c.Terrestrial(
            pop=c.GroundPoint(
                t.number("pop_lat_deg", d.pop.lat_deg, min=-90.0, max=90.0),
                t.number("pop_lon_deg", d.pop.lon_deg, min=-180.0, max=180.0),
                0.0,
            ),
            fibre_group_index=t.number("fibre_group_index", d.fibre_group_index, min=1.0, max=2.0),
            route_factor=t.number("route_factor", d.route_factor, min=1.0, max=5.0),
            pop_to_cloud_delay_ms=t.number("pop_to_cloud_delay_ms", d.pop_to_cloud_delay_ms, min=0.0),
        )
    return value


def _reconfiguration(t: Table) -> c.Reconfiguration:
    d = c.Reconfiguration()
    with t:
        interval = t.number("interval_s", d.interval_s, min=1.0, max=3600.0)
        value = c.Reconfiguration(
            interval_s=interval,
            offset_s=t.number("offset_s", d.offset_s, min=0.0, max=60.0),
        )
    return value


def _handover(t: Table, interval_s: float) -> c.Handover:
    d = c.Handover()
    with t:
        value = c.Handover(
            before_s=t.number("before_s", d.before_s, min=0.0, max=interval_s / 2),
            after_s=t.number("after_s", d.after_s, min=0.0, max=interval_s / 2),
            uplink_extra_delay_ms=t.number("uplink_extra_delay_ms", d.uplink_extra_delay_ms, min=0.0),
            downlink_extra_delay_ms=t.number("downlink_extra_delay_ms", d.downlink_extra_delay_ms, min=0.0),
            loss_pct=t.number("loss_pct", d.loss_pct, min=0.0, max=100.0),
            only_on_satellite_change=t.bool("only_on_satellite_change", d.only_on_satellite_change),
        )
    return value


def _access(t: Table) -> c.AccessDelay:
    d = c.AccessDelay()
    with t:
        value = c.AccessDelay(
            uplink_median_ms=t.number("uplink_median_ms", d.uplink_median_ms, min=0.0),
            downlink_median_ms=t.number("downlink_median_ms", d.downlink_median_ms, min=0.0),
            sigma=t.number("sigma", d.sigma, min=0.0, max=3.0),
            uplink_jitter_ms=t.number("uplink_jitter_ms", d.uplink_jitter_ms, min=0.0),
            downlink_jitter_ms=t.number("downlink_jitter_ms", d.downlink_jitter_ms, min=0.0),
            baseline_loss_pct=t.number("baseline_loss_pct", d.baseline_loss_pct, min=0.0, max=100.0),
        )
    return value


def _rates(t: Table) -> c.Rates:
    d = c.Rates()
    with t:
        value = c.Rates(
            uplink_median_mbps=t.number(
                "uplink_median_mbps", d.uplink_median_mbps, min=0.0, min_exclusive=True
            ),
            downlink_median_mbps=t.number(
                "downlink_median_mbps", d.downlink_median_mbps, min=0.0, min_exclusive=True
            ),
            sigma=t.number("sigma", d.sigma, min=0.0, max=3.0),
        )
    return value


def _weather(t: Table) -> c.Weather:
    d = c.Weather()
    with t:
        value = c.Weather(
            enabled=t.bool("enabled", d.enabled),
            start_s=t.number("start_s", d.start_s, min=0.0),
            duration_s=t.number("duration_s", d.duration_s, min=0.0),
            uplink_rate_factor=t.number("uplink_rate_factor", d.uplink_rate_factor, min=0.0, max=1.0),
            downlink_rate_factor=t.number("downlink_rate_factor", d.downlink_rate_factor, min=0.0, max=1.0),
            extra_loss_pct=t.number("extra_loss_pct", d.extra_loss_pct, min=0.0, max=100.0),
        )
    return value


def _compute(t: Table, total_sats: int | None) -> c.Compute:
    d = c.Compute()
    with t:
        max_index = None if total_sats is None else total_sats - 1
        value = c.Compute(
            sat_index=t.int("sat_index", d.sat_index, min=-1, max=max_index),
            isl_rate_gbps=t.number("isl_rate_gbps", d.isl_rate_gbps, min=0.0, min_exclusive=True),
        )
    return value


def parse_orbit_table(cls: type[LeoOrbitConfig], t: Table, base_dir: Path | None) -> LeoOrbitConfig:
    """Build a config from ``t``; raises :class:`ConfigError` naming key path, value and allowed."""
    d = cls()
    with t:
        epoch_utc = t.str("epoch_utc", d.epoch_utc)
        c.parse_epoch(epoch_utc, t.key("epoch_utc"))
        tle_text = t.get("tle_file", None)
        tle_file: Path | None = None
        if tle_text is not None:
            if not isinstance(tle_text, str) or not tle_text:
                raise ConfigError(t.key("tle_file"), tle_text, "a path to a TLE file (string)")
            tle_file = Path(tle_text)
            if not tle_file.is_absolute() and base_dir is not None:
                tle_file = base_dir / tle_file
            if not tle_file.is_file():
                raise ConfigError(t.key("tle_file"), tle_text, "an existing TLE file")
        shell = _shell(t.table("shell", {}))
        reconf = _reconfiguration(t.table("reconfiguration", {}))
        step_s = t.number("step_s", d.step_s, min=0.0, max=1.0, min_exclusive=True)
        if reconf.interval_s / step_s < 2:
            raise ConfigError(t.key("step_s"), step_s, "at most half of reconfiguration.interval_s")
        config = cls(
            shell=shell,
            tle_file=tle_file,
            site=_point(t.table("site", {}), d.site, with_mask=False),
            ground_station=_point(t.table("ground_station", {}), d.ground_station, with_mask=True),
            terrestrial=_terrestrial(t.table("terrestrial", {})),
            epoch_utc=epoch_utc,
            step_s=step_s,
            reconfiguration=reconf,
            policy=t.str("policy", d.policy, choices=c.POLICIES),
            seed=t.int("seed", d.seed, min=0),
            handover=_handover(t.table("handover", {}), reconf.interval_s),
            access=_access(t.table("access", {})),
            rates=_rates(t.table("rates", {})),
            weather=_weather(t.table("weather", {})),
            compute=_compute(t.table("compute", {}), None if tle_file else shell.total_sats),
        )
    return config

"""Validation of the [leo.orbit] table."""

from __future__ import annotations

from pathlib import Path

import pytest

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import walker_tle_text
from topologies.validate import ConfigError, Table


def parse(raw: dict, base_dir: Path | None = None) -> LeoOrbitConfig:
    return LeoOrbitConfig.from_table(Table(raw, "leo.orbit"), base_dir=base_dir)


def test_defaults_are_starlink_shell_1() -> None:
    c = LeoOrbitConfig.default()
    assert (c.shell.altitude_km, c.shell.inclination_deg) == (550.0, 53.0)
    assert (c.shell.planes, c.shell.sats_per_plane, c.shell.total_sats) == (72, 22, 1584)
    assert c.shell.min_elevation_deg == 25.0
    assert (c.reconfiguration.interval_s, c.reconfiguration.offset_s) == (15.0, 12.0)
    assert c.policy == "highest_elevation" and c.step_s == 1.0 and c.tle_file is None
    assert c.rates.uplink_median_mbps < c.rates.downlink_median_mbps


def test_values_are_read() -> None:
    c = parse({
        "epoch_utc": "2025-01-01T00:00:30Z", "step_s": 0.5, "policy": "longest_visibility", "seed": 7,
        "shell": {"altitude_km": 540, "planes": 10, "sats_per_plane": 10, "phasing_f": 3},
        "ground_station": {"lat_deg": 50.0, "lon_deg": 8.0, "min_elevation_deg": 20},
        "weather": {"enabled": True, "start_s": 5},
        "compute": {"sat_index": 99},
    })
    assert c.shell.altitude_km == 540.0 and c.shell.total_sats == 100 and c.shell.phasing_f == 3
    assert c.ground_station.min_elevation_deg == 20.0 and c.weather.enabled and c.compute.sat_index == 99
    assert c.epoch.second == 30 and c.policy == "longest_visibility" and c.seed == 7


@pytest.mark.parametrize(
    ("raw", "path", "allowed"),
    [
        ({"step_s": 2.0}, "leo.orbit.step_s", "<= 1.0"),
        ({"policy": "nearest"}, "leo.orbit.policy", "'highest_elevation'"),
        ({"shell": {"planes": 0}}, "leo.orbit.shell.planes", ">= 1"),
        ({"shell": {"altitude_km": "550"}}, "leo.orbit.shell.altitude_km", "a number"),
        ({"shell": {"altitud_km": 550}}, "leo.orbit.shell.altitud_km", "no such key"),
        ({"site": {"lat_deg": 91}}, "leo.orbit.site.lat_deg", "<= 90.0"),
        ({"site": {"min_elevation_deg": 10}}, "leo.orbit.site.min_elevation_deg", "no such key"),
        ({"epoch_utc": "yesterday"}, "leo.orbit.epoch_utc", "ISO 8601"),
        ({"tle_file": "/nonexistent/x.tle"}, "leo.orbit.tle_file", "an existing TLE file"),
        ({"compute": {"sat_index": 1584}}, "leo.orbit.compute.sat_index", "<= 1583"),
        ({"handover": {"after_s": 9.0}}, "leo.orbit.handover.after_s", "<= 7.5"),
        # bounds that follow other keys, and rules across keys
        ({"shell": {"planes": 3, "phasing_f": 3}}, "leo.orbit.shell.phasing_f", ">= 0 and <= 2"),
        ({"shell": {"planes": 1}}, "leo.orbit.shell.phasing_f", "<= 0"),  # the default F = 1 too
        ({"reconfiguration": {"interval_s": 2.0}, "handover": {"before_s": -1}},
         "leo.orbit.handover.before_s", ">= 0.0 and <= 1.0"),
        ({"shell": {"planes": 2, "sats_per_plane": 2}, "compute": {"sat_index": 4}},
         "leo.orbit.compute.sat_index", ">= -1 and <= 3"),
        ({"reconfiguration": {"interval_s": 1.5}}, "leo.orbit.step_s", "at most half"),
        ({"epoch_utc": 2025}, "leo.orbit.epoch_utc", "a string"),
        ({"terrestrial": {"pop_lat_deg": 95}}, "leo.orbit.terrestrial.pop_lat_deg", "<= 90.0"),
        ({"terrestrial": {"pop": {"lat_deg": 50}}}, "leo.orbit.terrestrial.pop", "no such key"),
        ({"ground_station": {"min_elevation_deg": 90}}, "leo.orbit.ground_station.min_elevation_deg",
         "<= 89.0"),
        ({"rates": {"uplink_median_mbps": 0}}, "leo.orbit.rates.uplink_median_mbps", "> 0.0"),
        ({"weather": {"enabled": 1}}, "leo.orbit.weather.enabled", "true or false"),
        ({"tle_file": 3}, "leo.orbit.tle_file", "a path to a TLE file"),
    ],
)
def test_errors_name_path_value_and_allowed(raw: dict, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert err.value.path == path
    assert allowed in err.value.allowed
    assert path in str(err.value)


def test_site_keeps_its_mask_and_pop_its_keys() -> None:
    c = parse({"site": {"lat_deg": 47.0}, "terrestrial": {"pop_lat_deg": 51.0, "pop_lon_deg": 7.0}})
    assert (c.site.lat_deg, c.site.lon_deg, c.site.min_elevation_deg) == (47.0, 11.65, 25.0)
    assert (c.terrestrial.pop.lat_deg, c.terrestrial.pop.lon_deg, c.terrestrial.pop.min_elevation_deg) \
        == (51.0, 7.0, 0.0)


def test_rules_across_keys_hold_for_objects_built_in_code() -> None:
    with pytest.raises(ConfigError) as err:
        LeoOrbitConfig(step_s=10.0)
    assert err.value.path == "step_s"
    with pytest.raises(ConfigError, match="ISO 8601"):
        LeoOrbitConfig(epoch_utc="yesterday")


def test_tle_file_sets_the_sat_index_bound(tmp_path: Path) -> None:
    config = LeoOrbitConfig.default()
    small = parse({"shell": {"planes": 2, "sats_per_plane": 3, "phasing_f": 0}}).shell
    (tmp_path / "shell.tle").write_text(walker_tle_text(small, config.epoch))
    # the bound is the file's size (6 TLEs), not the shell's (1584 satellites)
    with pytest.raises(ConfigError) as err:
        parse({"tle_file": "shell.tle", "compute": {"sat_index": 6}}, base_dir=tmp_path)
    assert err.value.path == "leo.orbit.compute.sat_index"
    assert "0..5" in err.value.allowed
    c = parse({"tle_file": "shell.tle", "compute": {"sat_index": 5}}, base_dir=tmp_path)
    assert c.compute.sat_index == 5


def test_relative_tle_file_resolves_against_base_dir(tmp_path: Path) -> None:
    config = LeoOrbitConfig.default()
    small = parse({"shell": {"planes": 2, "sats_per_plane": 3, "phasing_f": 0}}).shell
    (tmp_path / "shell.tle").write_text(walker_tle_text(small, config.epoch))
    c = parse({"tle_file": "shell.tle"}, base_dir=tmp_path)
    assert c.tle_file == tmp_path / "shell.tle"


def test_sample_file_spells_out_the_defaults() -> None:
    import tomllib

    sample = Path(__file__).resolve().parents[2] / "topologies" / "leo_default.toml"
    raw = tomllib.loads(sample.read_text())
    assert parse(raw["leo"]["orbit"], base_dir=sample.parent) == LeoOrbitConfig.default()

"""Scenario model: the embedded default, and clear errors for bad input."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest

from topologies.scenario import load_scenario, parse_scenario
from topologies.validate import ConfigError


@pytest.fixture()
def raw() -> dict:
    return tomllib.loads(resources.files("topologies").joinpath("default_scenario.toml").read_text())


def fixed_leo(raw: dict) -> dict:
    """The default scenario with a fixed (not orbit-driven) LEO link."""
    raw = copy.deepcopy(raw)
    raw["leo"] = {"uplink": {"delay_ms": 15.0, "jitter_ms": 2.0, "rate_mbps": 15.0},
                  "downlink": {"delay_ms": 15.0, "rate_mbps": 100.0}}
    raw["cloud"]["terrestrial"] = {"uplink": {"delay_ms": 5.0}, "downlink": {"delay_ms": 5.0}}
    return raw


def test_default_scenario_loads_with_expected_parts() -> None:
    s = load_scenario(None)
    assert s.source == "embedded default"
    assert [x.name for x in s.slices] == ["urllc", "embb", "mmtc"]
    assert [c.name for c in s.cells] == ["gnb1", "gnb2"]
    names = [u.name for u in s.ues]
    assert names == ["agv1", "agv2", "agv3", "agv4", "cam1", "cam2",
                     "sensor1", "sensor2", "sensor3", "sensor4"]
    assert s.leo.orbit is not None and s.leo.compute_host == "sat1"
    assert "sat1" in s.host_names() and "cloud1" in s.host_names()
    cam = next(u for u in s.ues if u.kind == "camera")
    assert cam.traffic.rate_mbps == pytest.approx(8.0)
    assert all(u.traffic.destination == "cloud1" for u in s.ues if u.kind == "sensor")


def test_fixed_leo_link_values_per_direction(raw) -> None:
    s = parse_scenario(fixed_leo(raw))
    assert s.leo.orbit is None and s.leo.compute_host is None
    assert s.leo.link.uplink.delay_ms == 15.0 and s.leo.link.uplink.rate_mbps == 15.0
    assert s.leo.link.downlink.rate_mbps == 100.0 and s.leo.link.downlink.jitter_ms == 0.0
    assert s.cloud.terrestrial.uplink.delay_ms == 5.0


@pytest.mark.parametrize(
    ("mutate", "path", "allowed"),
    [
        (lambda r: r["leo"].__setitem__("uplink", {"delay_ms": 5.0}), "leo.uplink", "orbit model"),
        (lambda r: r["cloud"].__setitem__("terrestrial", {"uplink": {"delay_ms": 5.0}}),
         "cloud.terrestrial", "orbit model"),
        (lambda r: r["leo"]["orbit"].__setitem__("step_s", 5.0), "leo.orbit.step_s", "<= 1"),
        (lambda r: r["leo"].__setitem__("compute_host", "Sat 1"), "leo.compute_host", "lowercase"),
        (lambda r: r["leo"].__setitem__("compute_attach", "nearest"), "leo.compute_attach",
         "'serving_satellite'"),
    ],
)
def test_orbit_mode_errors(raw, mutate, path, allowed) -> None:
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert info.value.path == path
    assert allowed in info.value.allowed


@pytest.mark.parametrize(
    ("mutate", "path", "allowed"),
    [
        (lambda r: r["leo"]["uplink"].__setitem__("loss_burst", {"p_good_to_bad_pct": 1}),
         "leo.uplink.loss_burst.p_bad_to_good_pct", "this key is required"),
        (lambda r: r["leo"]["downlink"].__setitem__("queue_limit_pkts", True),
         "leo.downlink.queue_limit_pkts",
         "a whole number >= 1 and <= 1000000 "
         "(netem's 32-bit limit must also hold the packets in its delay line)"),
        (lambda r: r["cloud"]["terrestrial"]["uplink"].__setitem__("jitter_distribution", "gauss"),
         "cloud.terrestrial.uplink.jitter_distribution", "one of 'uniform', 'normal', 'pareto'"),
    ],
)
def test_link_errors_carry_the_scenario_key_path(raw, mutate, path, allowed) -> None:
    bad = fixed_leo(raw)
    mutate(bad)
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert (info.value.path, info.value.allowed) == (path, allowed)


def test_orbit_errors_carry_the_scenario_key_path(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["leo"]["orbit"].setdefault("shell", {}).update(planes=4, phasing_f=4)
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert (info.value.path, info.value.allowed) == ("leo.orbit.shell.phasing_f",
                                                     "a whole number >= 0 and <= 3")


def test_compute_host_needs_orbit(raw) -> None:
    bad = fixed_leo(raw)
    bad["leo"]["compute_host"] = "sat1"
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert info.value.path == "leo.compute_host"


def test_file_round_trip(tmp_path, raw) -> None:
    path = tmp_path / "s.toml"
    path.write_text(resources.files("topologies").joinpath("default_scenario.toml").read_text())
    assert load_scenario(path).ues == load_scenario(None).ues


@pytest.mark.parametrize(
    ("mutate", "path", "allowed"),
    [
        (lambda r: r["slices"][0].__setitem__("dscp", 64), "slices[0].dscp", "<= 63"),
        (lambda r: r["slices"][2].__setitem__("dscp", 46), "slices[2].dscp", "no other slice"),
        (lambda r: r["slices"][1].__setitem__("latency_bound_ms", 0), "slices[1].latency_bound_ms", "> 0"),
        (lambda r: r["ue_groups"][0].__setitem__("slice", "gold"), "ue_groups[0].slice", "'urllc'"),
        (lambda r: r["ue_groups"][0].__setitem__("cell", "gnb9"), "ue_groups[0].cell", "'gnb1'"),
        (lambda r: r["ue_groups"][0].__setitem__("kind", "drone"), "ue_groups[0].kind", "'agv'"),
        (lambda r: r["ue_groups"][0]["traffic"].__setitem__("destination", "nas1"),
         "ue_groups[0].traffic.destination", "'edge1'"),
        (lambda r: r["site"].__setitem__("link_backend", "tc"), "site.link_backend", "'relay'"),
        (lambda r: r["site"].__setitem__("colour", "red"), "site.colour", "no such key"),
        (lambda r: r["leo"]["uplink"].__setitem__("delay_ms", -1), "leo.uplink.delay_ms", ">= 0"),
        (lambda r: r["leo"]["uplink"].__setitem__("loss_pct", 150), "leo.uplink.loss_pct", "<= 100"),
        (lambda r: r["cells"].append(dict(r["cells"][0])), "cells", "unique"),
        (lambda r: r["cells"][0].__setitem__("name", "GNB 1"), "cells[0].name", "lowercase"),
        (lambda r: r.pop("leo"), "leo", "required"),
    ],
)
def test_bad_input_names_key_value_and_allowed(raw, mutate, path, allowed) -> None:
    bad = fixed_leo(raw)
    mutate(bad)
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert info.value.path == path
    assert allowed in info.value.allowed


def test_unreadable_and_invalid_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="readable TOML"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\nname = 1")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_scenario(broken)


def test_periodic_and_rate_keys_are_exclusive(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["ue_groups"][0]["traffic"]["rate_mbps"] = 1.0  # periodic takes interval_ms only
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert info.value.path == "ue_groups[0].traffic.rate_mbps"


def test_switch_names_must_leave_room_for_interface_names(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["cells"][0]["name"] = "assembly01"  # 10 characters, valid as a name
    for group in bad["ue_groups"]:
        if group["cell"] == "gnb1":
            group["cell"] = "assembly01"
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad)
    assert info.value.path == "cells[0].name" and "at most 6 characters" in info.value.allowed
    bad["cells"][0]["name"] = "assy1"
    for group in bad["ue_groups"]:
        if group["cell"] == "assembly01":
            group["cell"] = "assy1"
    assert parse_scenario(bad).cells[0].name == "assy1"


def test_slice_max_rate_is_optional_and_bounded(raw) -> None:
    assert all(s.max_rate_mbps is None for s in parse_scenario(copy.deepcopy(raw)).slices)  # default: no cap
    raw["slices"][1]["max_rate_mbps"] = 50
    assert [s.max_rate_mbps for s in parse_scenario(copy.deepcopy(raw)).slices] == [None, 50.0, None]
    for bad in (0, 100_001, "50", True):
        raw["slices"][1]["max_rate_mbps"] = bad
        with pytest.raises(ConfigError) as err:
            parse_scenario(copy.deepcopy(raw))
        assert err.value.path == "slices[1].max_rate_mbps" and "0.001" in str(err.value)

"""Every class of bad input is rejected with one line naming the key or file and what is allowed.

Classes: names that become file/interface names, files (missing, folder, not UTF-8, not TOML),
an empty UE list, numbers (non-finite, past an upper bound, with its reason), times without a
time zone, malformed orbit inputs (TLE files, schedule windows), cross-field rules, and the
warnings for settings that work oddly.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from experiments.framework.definition import Experiment, load_experiment
from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation, walker_tle_text
from topologies.leo.schedule import leo_schedule
from topologies.leo.tle import load_tle_file
from topologies.scenario import load_scenario, parse_scenario
from topologies.validate import ConfigError, Table, check_number

EXPERIMENT = '[experiment]\nname = "{name}"\nduration_s = 5.0\n'


@pytest.fixture()
def raw() -> dict:
    return tomllib.loads(resources.files("topologies").joinpath("default_scenario.toml").read_text())


def error(call, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)  # one line
    return info.value


def orbit(raw_orbit: dict, base_dir: Path | None = None) -> LeoOrbitConfig:
    return LeoOrbitConfig.from_table(Table(raw_orbit, "leo.orbit"), base_dir)


# --- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../tmp/x", "/tmp/x", "demo\n", "a/b", "", "x" * 65, "1st"])
def test_experiment_names_are_plain_identifiers(tmp_path: Path, name: str) -> None:
    path = tmp_path / "experiment.toml"
    path.write_text(EXPERIMENT.format(name=name.replace("\n", "\\n")))
    err = error(Experiment.from_file, path)
    assert err.path == "experiment.name"
    assert "results/<name>/" in err.allowed


@pytest.mark.parametrize("key, value", [("name", "gnb1\n"), ("name", "gnb 1"), ("name", "Gnb1")])
def test_node_names_need_a_full_match(raw: dict, key: str, value: str) -> None:
    raw["cells"][0][key] = value
    err = error(parse_scenario, raw)
    assert err.path == "cells[0].name"
    assert "1-10 lowercase letters/digits" in err.allowed


def test_default_node_names_are_checked_too(raw: dict) -> None:
    raw["core"]["edge"] = "edge1\n"
    assert error(parse_scenario, raw).path == "core.edge"


# --- files ----------------------------------------------------------------------------------------
def test_scenario_file_problems_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[site]\nname = "f\xe4brik"\n')
    err = error(load_scenario, bad)
    assert (err.path, err.value) == ("scenario", str(bad))
    assert "UTF-8" in err.allowed and "line 2" in err.allowed
    err = error(load_scenario, tmp_path)
    assert "not a folder" in err.allowed
    err = error(load_scenario, tmp_path / "missing.toml")
    assert "readable TOML file" in err.allowed and "No such file" in err.allowed
    (tmp_path / "broken.toml").write_text("[site\n")
    assert "valid TOML" in error(load_scenario, tmp_path / "broken.toml").allowed


def test_experiment_file_problems_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "experiment.toml"
    bad.write_bytes(b"\xff\xfe[experiment]\n")
    err = error(Experiment.from_file, bad)
    assert (err.path, err.value) == ("experiment", str(bad)) and "UTF-8" in err.allowed
    empty = tmp_path / "empty"
    empty.mkdir()
    err = error(load_experiment, str(empty))
    assert err.path == "experiment" and "holding an experiment.toml" in err.allowed
    (tmp_path / "p.toml").write_text("params = 3\n" + EXPERIMENT.format(name="x"))
    assert error(Experiment.from_file, tmp_path / "p.toml").path == "params"


def test_experiment_file_may_have_any_name_and_is_remembered(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(EXPERIMENT.format(name="mine"))
    assert load_experiment(str(path)).file == path  # the run copies this file, not experiment.toml


# --- empty UE list --------------------------------------------------------------------------------
def test_a_scenario_needs_a_ue(raw: dict) -> None:
    raw["ue_groups"] = []
    err = error(parse_scenario, raw)
    assert err.path == "ue_groups" and "at least one [[ue_groups]]" in err.allowed


def test_the_slices_kind_says_it_needs_a_ue() -> None:
    from experiments.kinds.slices.kind import SlicesKind

    scenario = replace(load_scenario(None), ue_groups=())
    err = error(SlicesKind().check, None, scenario, None)
    assert err.path == "ue_groups" and "kind 'slices'" in err.allowed


# --- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_numbers_must_be_finite(value: float) -> None:
    err = error(check_number, "k", value, min=0, max=10)
    assert err.allowed == "a finite number >= 0 and <= 10"


def test_config_schema_rejects_non_finite_values() -> None:
    err = error(orbit, {"handover": {"before_s": math.inf}})
    assert err.path == "leo.orbit.handover.before_s" and "finite" in err.allowed


def test_site_seed_is_32_bit(raw: dict) -> None:
    raw["site"]["seed"] = 2**32
    err = error(parse_scenario, raw)
    assert err.path == "site.seed"
    assert "<= 4294967295" in err.allowed and "32-bit" in err.allowed
    raw["site"]["seed"] = 2**32 - 1
    assert parse_scenario(raw).seed == 2**32 - 1
    assert "<= 4294967295" in error(orbit, {"seed": -1}).allowed


@pytest.mark.parametrize("raw_orbit, path, text", [
    ({"shell": {"planes": 10**6}}, "leo.orbit.shell.planes", "<= 30000 (the largest filed"),
    ({"shell": {"planes": 1000, "sats_per_plane": 100}}, "leo.orbit.shell.sats_per_plane",
     "planes x sats_per_plane <= 30000"),
    ({"step_s": 0.001}, "leo.orbit.step_s", "held in memory"),
    ({"reconfiguration": {"interval_s": 3600.0}}, "leo.orbit.reconfiguration.interval_s",
     "held in memory"),
    ({"access": {"uplink_median_ms": 1e9}}, "leo.orbit.access.uplink_median_ms", "<= 10000.0 (10 s"),
    ({"rates": {"uplink_median_mbps": 1e9}}, "leo.orbit.rates.uplink_median_mbps", "largest rate"),
    ({"weather": {"duration_s": 1e12}}, "leo.orbit.weather.duration_s", "one week"),
    ({"terrestrial": {"pop_to_cloud_delay_ms": 1e7}}, "leo.orbit.terrestrial.pop_to_cloud_delay_ms",
     "<= 10000.0"),
    ({"compute": {"isl_rate_gbps": 1e9}}, "leo.orbit.compute.isl_rate_gbps", "1 Tbit/s"),
])
def test_orbit_numbers_are_bounded_above_with_a_reason(raw_orbit: dict, path: str, text: str) -> None:
    err = error(orbit, raw_orbit)
    assert err.path == path
    assert text in err.allowed


def test_every_orbit_and_offload_number_has_an_upper_bound() -> None:
    import dataclasses

    from experiments.kinds.offload.model import OffloadParams, Target
    from topologies.config_schema import METADATA_KEY

    seen, todo, missing = set(), [LeoOrbitConfig, OffloadParams, Target], []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(default):
                todo.append(type(default))
            elif f.type in ("int", "float", "float | None", "int | None"):
                spec = f.metadata.get(METADATA_KEY)
                if spec is None or spec.max is None:
                    missing.append(f"{cls.__name__}.{f.name}")
    assert len(seen) > 10 and missing == []


def test_experiment_duration_bound_states_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[experiment]\nname = "x"\nduration_s = inf\n')
    err = error(Experiment.from_file, path)
    assert err.path == "experiment.duration_s" and "one hour" in err.allowed


def test_schedule_window_is_bounded() -> None:
    config = LeoOrbitConfig.default()
    err = error(leo_schedule, config, 1e9)
    assert err.path == "duration_s" and "one week" in err.allowed
    assert error(leo_schedule, config, math.nan).path == "duration_s"
    assert error(leo_schedule, config, 10.0, 1e12).path == "start_offset_s"
    fine = replace(config, step_s=0.02)  # 0.02 s is fine for a few seconds, not for a week
    assert len(leo_schedule(fine, 2.0)) > 0
    err = error(leo_schedule, fine, 6 * 86400.0)
    assert err.path == "leo.orbit.step_s" and "at most 500000 rows" in err.allowed


# --- times ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["2025-06-02T12:00:00", "2025-06-02", "2025-06-02 12:00"])
def test_times_need_a_time_zone(text: str) -> None:
    err = error(orbit, {"epoch_utc": text})
    assert err.path == "leo.orbit.epoch_utc"
    assert "no time zone" in err.allowed and "'Z'" in err.allowed


def test_offsets_are_converted_to_utc() -> None:
    assert orbit({"epoch_utc": "2025-06-02T14:00:00+02:00"}).epoch == orbit({}).epoch
    assert error(orbit, {"epoch_utc": "3025-06-02T12:00:00Z"}).path == "leo.orbit.epoch_utc"


# --- TLE files ------------------------------------------------------------------------------------
def tle_lines(n_sats: int = 2) -> list[str]:
    config = LeoOrbitConfig.default()
    shell = replace(config.shell, planes=1, sats_per_plane=n_sats, phasing_f=0)
    return walker_tle_text(shell, config.epoch).splitlines()


@pytest.mark.parametrize("mutate, text", [
    (lambda lines: lines[:2], "malformed near line 2"),
    (lambda lines: [lines[0], lines[1][:40], lines[2]], "69 characters (line 2 has 40)"),
    (lambda lines: [lines[0], lines[1][:68] + str((int(lines[1][68]) + 1) % 10), lines[2]],
     "correct checksum (line 2"),
    (lambda lines: [], "at least one TLE"),
    (lambda lines: ["# nothing but a name"], "malformed near line 1"),
])
def test_malformed_tle_files_are_one_line_errors(tmp_path: Path, mutate, text: str) -> None:
    path = tmp_path / "bad.tle"
    path.write_text("\n".join(mutate(tle_lines())) + "\n")
    err = error(orbit, {"tle_file": "bad.tle"}, tmp_path)
    assert (err.path, err.value) == ("leo.orbit.tle_file", str(path))
    assert text in err.allowed


def test_tle_file_not_utf8_and_sgp4_rejections(tmp_path: Path) -> None:
    path = tmp_path / "x.tle"
    path.write_bytes(b"\xff" + "\n".join(tle_lines()).encode())
    assert "UTF-8" in error(load_tle_file, path).allowed
    lines = tle_lines(1)
    line2 = lines[2][:52] + "00.00000000" + lines[2][63:68]  # mean motion 0
    line2 += str(sum(int(c) if c.isdigit() else c == "-" for c in line2) % 10)
    path.write_text("\n".join([lines[0], lines[1], line2]) + "\n")
    err = error(load_tle_file, path)
    assert "sgp4 accepts" in err.allowed


def test_sgp4_propagation_failure_names_the_tle_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ok.tle"
    path.write_text("\n".join(tle_lines()) + "\n")
    names, records = load_tle_file(path)
    const = Constellation(LeoOrbitConfig.default().epoch, names, records=records, tle_file=path)

    class Failing:
        def __init__(self, recs) -> None:
            self.n = len(recs)

        def sgp4(self, jd, fr):
            return np.full((self.n, len(jd)), 6), np.zeros((self.n, len(jd), 3)), None

    monkeypatch.setattr("topologies.leo.constellation.SatrecArray", Failing)
    err = error(const.positions_eci_km, np.array([0.0, 60.0]))
    assert (err.path, err.value) == ("leo.orbit.tle_file", str(path))
    assert "decayed" in err.allowed


# --- cross-field rules and warnings ---------------------------------------------------------------
def test_probe_to_its_own_source_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(EXPERIMENT.format(name="x") + '[[probes]]\nsource = "edge1"\ntarget = "edge1"\n')
    err = error(Experiment.from_file(path).check, load_scenario(None))
    assert err.path == "probes[0].target"


def test_the_default_scenario_and_experiments_have_no_warnings() -> None:
    scenario = load_scenario(None)
    assert scenario.warnings == ()
    for name in ("demo", "leo_rtt", "offload"):
        assert load_experiment(name).check(scenario) == ()


def fixed_radio(raw: dict) -> dict:
    """``raw`` with every cell on the fixed radio model (the slices' typed-in radio tables)."""
    raw = copy.deepcopy(raw)
    for cell in raw["cells"]:
        cell.pop("nr", None)
        cell["radio_model"] = "fixed"
    raw.pop("mobility", None)  # handovers need NR cells
    return raw


def fixed(raw: dict) -> dict:
    raw = fixed_radio(raw)
    raw["leo"] = {"uplink": {"delay_ms": 15.0, "rate_mbps": 15.0}, "downlink": {"delay_ms": 15.0}}
    raw["cloud"]["terrestrial"] = {"uplink": {"delay_ms": 5.0}, "downlink": {"delay_ms": 5.0}}
    return raw


def test_warnings_for_settings_that_work_oddly(raw: dict) -> None:
    raw = fixed(raw)
    raw["leo"]["downlink"]["up"] = False
    raw["cells"][1]["backhaul"]["uplink"]["rate_mbps"] = 0.1  # 6 UEs on gnb2 offer more
    raw["slices"][2]["radio"] = {}  # the sensors' slice
    raw["slices"][0]["latency_bound_ms"] = 1.0  # AGVs: 0.8 ms radio + 0.2 ms backhaul
    warnings = parse_scenario(raw).warnings
    assert len(warnings) == 5, warnings
    down, radio, load, deadline, deadline2 = warnings
    assert down.startswith("leo.downlink.up: false for the whole run")
    assert radio.startswith("slices[2].radio: not set")
    assert load.startswith("cells[1].backhaul.uplink.rate_mbps: 0.1 Mbit/s but the UEs offer")
    assert deadline.startswith("ue_groups[0]: the fixed one-way delay to edge1 is 1 ms")
    assert deadline2.startswith("ue_groups[1]: ")


def test_a_cells_capacity_is_shared_by_its_ues(raw: dict) -> None:
    raw = fixed_radio(raw)
    raw["cells"][0]["capacity"] = {"uplink": {"rate_mbps": 10.0}}  # 2 cameras x 8 Mbit/s + 2 AGVs
    scenario = parse_scenario(raw)
    assert scenario.cells[0].capacity.uplink.rate_mbps == 10.0
    assert scenario.cells[0].capacity.downlink.is_transparent()
    assert scenario.cells[1].capacity.uplink.rate_mbps is None
    (load,) = scenario.warnings
    assert load.startswith("cells[0].capacity.uplink.rate_mbps: 10 Mbit/s but the UEs offer 16.")
    raw["cells"][0]["capacity"] = {"uplink": {"rate_mbps": -1}}
    with pytest.raises(ConfigError, match=r"cells\[0\]\.capacity\.uplink\.rate_mbps"):
        parse_scenario(raw)


def test_offered_load_over_the_leo_median_rate_warns(raw: dict) -> None:
    raw["leo"]["orbit"]["rates"] = {"uplink_median_mbps": 0.1}
    (warning,) = parse_scenario(raw).warnings
    assert warning.startswith("leo.orbit.rates.uplink_median_mbps: 0.1 Mbit/s")


def test_experiment_warnings_drain_and_weather(raw: dict, tmp_path: Path) -> None:
    raw = fixed(raw)
    raw["leo"]["uplink"]["delay_ms"] = 3000.0
    scenario = parse_scenario(raw)
    path = tmp_path / "e.toml"
    path.write_text(EXPERIMENT.format(name="x"))
    warnings = Experiment.from_file(path).check(scenario)
    assert any(w.startswith("experiment.drain_s: 2 s, shorter than") for w in warnings), warnings
    raw = tomllib.loads(resources.files("topologies").joinpath("default_scenario.toml").read_text())
    raw["leo"]["orbit"]["weather"] = {"enabled": True, "start_s": 100.0}
    (warning,) = Experiment.from_file(path).check(parse_scenario(raw))
    assert warning.startswith("leo.orbit.weather.start_s: 100 s, not before the end of the 5 s run")
    assert Experiment.from_file(path).check(parse_scenario(raw), duration_s=200.0) == ()


# --- NR cells (topologies/nr) -------------------------------------------------------------------
def test_default_cells_run_the_nr_model_with_their_profile_and_overrides(raw: dict) -> None:
    scenario = parse_scenario(raw)
    cell = scenario.cells[0]
    assert cell.radio_model == "nr" and cell.nr.profile == "low_latency"
    assert cell.nr.bandwidth_mhz == 100.0 and cell.nr.prb_count == 273  # override; TS 38.101-1
    assert cell.nr.tdd_pattern == "DDSU" and cell.nr.configured_grant  # from the profile
    plan = scenario.nr_plan("gnb1")
    assert [n for n, _ in plan.slices] == ["urllc", "embb", "mmtc"]
    assert plan.wire_lines()[2].startswith("slice 0 27 27 273 10 ")  # 10 % of 273 PRBs dedicated
    assert scenario.slice("urllc").ran.uplink_grant == "configured"


@pytest.mark.parametrize(("edit", "path", "allowed"), [
    (lambda r: r["cells"][0].update(radio_model="analog"), r"cells\[0\]\.radio_model", "nr"),
    (lambda r: r["cells"][0]["nr"].update(profile="fast"), r"cells\[0\]\.nr\.profile", "commercial"),
    (lambda r: r["cells"][0]["nr"].update(tdd_pattern="DDXU"), r"cells\[0\]\.nr\.tdd_pattern", "D, S, U"),
    (lambda r: r["cells"][0]["nr"].update(special_slot_symbols=[10, 2, 3]),
     r"cells\[0\]\.nr\.special_slot_symbols", "summing to 14"),
    (lambda r: r["cells"][0]["nr"].update(bandwidth_mhz=33.0), r"cells\[0\]\.nr\.bandwidth_mhz",
     "TS 38.101"),
    (lambda r: r["cells"][0]["nr"].update(sr_period_slots=3),
     r"cells\[0\]\.nr\.sr_period_slots", "TS 38.331"),
    (lambda r: r["cells"][0]["nr"].update(sr_offset_slots=0), r"cells\[0\]\.nr\.sr_offset_slots",
     "uplink symbols"),
    (lambda r: r["cells"][0]["nr"].update(numerology=2, k1_slots=2, k2_slots=1), r"cells\[0\]\.nr\.k2_slots",
     "at least 2: N2 is 23 symbols"),
    (lambda r: r["cells"][0]["nr"].update(layers_dl=9), r"cells\[0\]\.nr\.layers_dl", "9|8"),
    (lambda r: r["cells"][0].update(capacity={"uplink": {"rate_mbps": 5}}), r"cells\[0\]\.capacity",
     "NR model gives the capacity"),
    (lambda r: r["cells"][0].update(radio_model="fixed"), r"cells\[0\]\.nr", 'only with radio_model = "nr"'),
    (lambda r: r["slices"][0]["ran"].update(min_pct=5), r"slices\[0\]\.ran\.min_pct", "10"),
    (lambda r: r["slices"][0]["ran"].update(cg_repetitions=3), r"slices\[0\]\.ran\.cg_repetitions", "repK"),
    (lambda r: r["slices"][0]["ran"].update(uplink_grant="granted"), r"slices\[0\]\.ran\.uplink_grant",
     "configured"),
    (lambda r: r["slices"][2]["ran"].update(min_pct=20, max_pct=60)
     or r["slices"][1]["ran"].update(min_pct=80),
     r"slices\[\*\]\.ran\.min_pct", "TS 28.541"),
])
def test_bad_nr_settings_name_the_key_and_what_is_allowed(raw: dict, edit, path: str, allowed: str) -> None:
    raw = copy.deepcopy(raw)
    edit(raw)
    with pytest.raises(ConfigError, match=path) as exc:
        parse_scenario(raw)
    assert re.search(allowed, str(exc.value)), str(exc.value)


def test_more_uplink_load_than_an_nr_cells_capacity_warns(raw: dict) -> None:
    raw["cells"][0]["nr"]["bandwidth_mhz"] = 20.0  # 51 PRBs: 12.3 Mbit/s up, 2 cameras offer 16
    (warning,) = parse_scenario(raw).warnings
    assert warning.startswith("cells[0].nr (uplink capacity): 12.299 Mbit/s but the UEs offer 16.8")

"""Floor plan and handovers (topologies/mobility.py): TR 38.901 InF path loss against hand-computed
values, positions along a route, the A3 decision (hysteresis, time-to-trigger), scenario checks."""

from __future__ import annotations

import copy
import math
import re
import tomllib
from importlib import resources

import pytest

from topologies.mobility import CellSite, MobilityConfig, Route, mobility_schedule, path_loss_db
from topologies.scenario import parse_scenario
from topologies.validate import ConfigError


def test_path_loss_is_tr_38_901_indoor_factory() -> None:
    # InF-LOS at 10 m, 3.5 GHz: 31.84 + 21.5 * 1 + 19 * log10(3.5)
    assert path_loss_db("inf_los", 10.0, 3.5) == pytest.approx(31.84 + 21.5 + 19 * math.log10(3.5))
    # InF-SL at 100 m, 3.5 GHz: max(LOS, 33 + 25.5 * 2 + 20 * log10(3.5)) = the NLOS branch
    assert path_loss_db("inf_sl", 100.0, 3.5) == pytest.approx(33 + 51 + 20 * math.log10(3.5))
    assert all(path_loss_db("inf_sl", d, 3.5) >= path_loss_db("inf_los", d, 3.5) for d in (1, 10, 100, 600))
    assert path_loss_db("inf_los", 0.2, 3.5) == path_loss_db("inf_los", 1.0, 3.5)  # clamped at 1 m


def test_a_route_is_driven_at_its_speed_and_loops() -> None:
    r = Route("agv1", ((0.0, 0.0), (10.0, 0.0)), speed_mps=2.0, loop=True)
    assert r.position_m(0.0) == (0.0, 0.0)
    assert r.position_m(2.5) == pytest.approx((5.0, 0.0))
    assert r.position_m(7.5) == pytest.approx((5.0, 0.0))  # on the way back (loop: 20 m a lap)
    assert r.position_m(10.0) == pytest.approx((0.0, 0.0))
    once = Route("agv1", ((0.0, 0.0), (10.0, 0.0)), speed_mps=2.0, loop=False)
    assert once.position_m(100.0) == (10.0, 0.0)


SITES = {"a": CellSite((0.0, 0.0)), "b": CellSite((100.0, 0.0))}
FC = {"a": 3.5, "b": 3.5}


def schedule(**config):
    cfg = MobilityConfig(shadow_fading=False, **config)
    route = Route("agv1", ((0.0, 0.0), (100.0, 0.0)), speed_mps=10.0, loop=False)
    return mobility_schedule(cfg, (route,), SITES, FC, {"agv1": "a"}, 10.0, seed=1)


def test_a3_hands_over_once_the_neighbour_is_stronger_by_the_hysteresis_for_the_time_to_trigger() -> None:
    # equal cells: the neighbour is stronger past the midpoint (50 m, t = 5 s); +3 dB needs more
    # distance, then 160 ms of time to trigger; measured every 20 ms
    (h,) = schedule(hysteresis_db=3.0, time_to_trigger_ms=160).handovers
    assert (h.source, h.target, h.interruption_ms) == ("a", "b", 30.0)
    (h0,) = schedule(hysteresis_db=0.0, time_to_trigger_ms=0).handovers
    assert 5.0 < h0.t_s <= 5.04  # just past the midpoint
    # where +3 dB holds first on the InF-SL slope (25.5 dB/decade in both distances)
    k = 10 ** (3 / 25.5)
    x3 = 100 * k / (1 + k)  # d_a / d_b = k (the 8 m - 1.5 m height difference shifts it a little)
    assert x3 / 10 < h.t_s < x3 / 10 + 0.16 + 0.2
    (h_ttt,) = schedule(hysteresis_db=3.0, time_to_trigger_ms=640).handovers
    assert h_ttt.t_s == pytest.approx(h.t_s + 0.64 - 0.16, abs=0.021)


def test_no_handover_while_the_neighbour_is_not_better_by_the_hysteresis() -> None:
    assert schedule(hysteresis_db=30.0).handovers == []


def test_samples_record_every_cell_and_the_serving_one() -> None:
    sched = schedule()
    at0 = [s for s in sched.samples if s["t_s"] == 0.0]
    assert {s["cell"] for s in at0} == {"a", "b"} and [s["cell"] for s in at0 if s["serving"]] == ["a"]
    last = [s for s in sched.samples if s["t_s"] == 10.0]
    assert [s["cell"] for s in last if s["serving"]] == ["b"]


def test_shadow_fading_is_seeded_and_correlated() -> None:
    cfg = MobilityConfig()
    route = Route("agv1", ((0.0, 0.0), (100.0, 0.0)), speed_mps=10.0, loop=False)
    a = mobility_schedule(cfg, (route,), SITES, FC, {"agv1": "a"}, 10.0, seed=3)
    b = mobility_schedule(cfg, (route,), SITES, FC, {"agv1": "a"}, 10.0, seed=3)
    assert a.samples == b.samples and a.handovers == b.handovers
    rsrp = [s["rsrp_dbm"] for s in a.samples if s["cell"] == "a"]
    steps = [abs(x - y) for x, y in zip(rsrp, rsrp[1:], strict=False)]
    assert max(steps) < 3.0  # 0.2 m apart: no independent 5.7 dB draws between neighbours


def default_raw() -> dict:
    text = resources.files("topologies").joinpath("default_scenario.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_default_scenario_drives_two_agvs_across_the_hall() -> None:
    scenario = parse_scenario(default_raw())
    sched = scenario.mobility_schedule(30.0)
    assert {(h.ue, h.source, h.target) for h in sched.handovers} >= {("agv1", "gnb1", "gnb2"),
                                                                      ("agv3", "gnb2", "gnb1")}


@pytest.mark.parametrize(("edit", "path", "allowed"), [
    (lambda r: r["mobility"]["routes"][0].update(ue="agv9"), r"mobility\.routes\[0\]\.ue", "agv1"),
    (lambda r: r["mobility"]["routes"][0].update(waypoints_m=[[0, 0]]), r"mobility\.routes\[0\]\.waypoints_m",
     "two or more"),
    (lambda r: r["mobility"].update(time_to_trigger_ms=150), r"mobility\.time_to_trigger_ms", "160"),
    (lambda r: r["mobility"].update(hysteresis_db=1.2), r"mobility\.hysteresis_db", "0.5 dB"),
    (lambda r: r["mobility"].update(path_loss_model="free"), r"mobility\.path_loss_model", "inf_sl"),
    (lambda r: r["mobility"].update(speed=1), r"mobility\.speed", "unknown|allowed"),
    (lambda r: r["cells"][1].pop("position_m"), r"cells\[1\]\.position_m", "floor plan|place"),
    (lambda r: r["cells"][0].update(radio_model="fixed") or r["cells"][0].pop("nr"),
     r"cells\[0\]\.radio_model", "every cell"),
    (lambda r: r["mobility"]["routes"][1].update(ue="agv1"), r"mobility\.routes\[\*\]\.ue", "unique|once"),
    (lambda r: r["cells"][0].update(position_m=[0, 900]), r"cells\[0\]\.position_m", "500"),
])
def test_bad_mobility_settings_name_the_key(edit, path: str, allowed: str) -> None:
    raw = copy.deepcopy(default_raw())
    edit(raw)
    with pytest.raises(ConfigError, match=path) as exc:
        parse_scenario(raw)
    assert re.search(allowed, str(exc.value)), str(exc.value)

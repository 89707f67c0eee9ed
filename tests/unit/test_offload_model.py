"""Offload params validation, compute model and the model's response prediction."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from experiments.framework.definition import load_experiment
from experiments.kinds.offload.model import (
    OVS_ONE_WAY_MS,
    OffloadParams,
    Target,
    check_scenario,
    parse_params,
    predict_response_ms,
)
from topologies.nr.sim import unloaded_median_ms
from topologies.scenario import load_scenario
from topologies.validate import ConfigError


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(None)


def test_shipped_experiment_params_parse_and_match_the_scenario(scenario) -> None:
    experiment = load_experiment("offload")
    assert experiment.kind == "offload" and experiment.duration_s <= 60
    params = parse_params(experiment.params)
    assert [t.host for t in params.targets] == ["edge1", "sat1", "cloud1"]
    assert params.deadline_ms == 100.0 and 50_000 <= params.request_bytes <= 200_000
    check_scenario(params, scenario)


@pytest.mark.parametrize("raw, path", [
    ({"reqest_bytes": 1000}, "params.reqest_bytes"),
    ({"request_bytes": 0}, "params.request_bytes"),
    ({"request_bytes": "80 kB"}, "params.request_bytes"),
    ({"reply_bytes": 2000}, "params.reply_bytes"),
    ({"deadline_ms": 0}, "params.deadline_ms"),
    ({"timeout_ms": 60_000}, "params.timeout_ms"),
    ({"targets": {}}, "params.targets"),
    ({"targets": {"edge1": {"hardware": "x", "peak_top": 5}}}, "params.targets.edge1.peak_tops"),
    ({"targets": {"edge1": {"hardware": "x", "peak_tops": 5, "tops": 1}}}, "params.targets.edge1.tops"),
    ({"targets": {"edge1": {"hardware": "x", "peak_tops": -1}}}, "params.targets.edge1.peak_tops"),
    ({"targets": {"edge1": {"hardware": "x", "peak_tops": 1, "utilisation_pct": 150}}},
     "params.targets.edge1.utilisation_pct"),
])
def test_bad_params_fail_with_the_key_path(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert err.value.path == path
    assert path in str(err.value) and "allowed" in str(err.value)


def test_unknown_key_error_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"compute_tops": 5})
    assert "request_bytes" in err.value.allowed and "inference_gop" in err.value.allowed


def test_targets_and_client_must_exist_in_the_scenario(scenario) -> None:
    bad_target = parse_params({"targets": {"gpu9": {"hardware": "x", "peak_tops": 1}}})
    with pytest.raises(ConfigError) as err:
        check_scenario(bad_target, scenario)
    assert err.value.path == "params.targets.gpu9" and "sat1" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        check_scenario(parse_params({"client": "edge1"}), scenario)
    assert err.value.path == "params.client" and "cam1" in err.value.allowed


def test_compute_time_is_ops_over_effective_rate() -> None:
    t = Target("edge1", "x", peak_tops=100.0, utilisation_pct=10.0)
    assert t.compute_ms(10.0) == pytest.approx(1.0)  # 10e9 ops / 10e12 op/s = 1 ms
    assert Target("a", "x", 200.0, 10.0).compute_ms(10.0) == pytest.approx(0.5)
    assert Target("a", "x", 100.0, 5.0).compute_ms(10.0) == pytest.approx(2.0)
    p = OffloadParams(inference_gop=8.7)
    ms = p.compute_ms()
    # 8.7 GOP on 137.5 dense TOPS at 5 %: 1.2655 ms; the satellite (744 TOPS) is fastest.
    assert ms["edge1"] == pytest.approx(8.7e9 / (137.5e12 * 0.05) * 1e3)
    assert ms["sat1"] < ms["cloud1"] < ms["edge1"]


def _flat_schedule(delay_up: float, delay_down: float, rate_up: float, rate_down: float
                   ) -> pd.DataFrame:
    rows = []
    for t in (0.0, 5.0, 10.0):
        rows.append({"t_s": t, "direction": "uplink", "delay_ms": delay_up, "rate_mbps": rate_up,
                     "up": True})
        rows.append({"t_s": t, "direction": "downlink", "delay_ms": delay_down,
                     "rate_mbps": rate_down, "up": True})
    return pd.DataFrame(rows)


def test_prediction_adds_path_delays_serialisation_switches_and_compute(scenario) -> None:
    params = OffloadParams(request_bytes=13_760, reply_bytes=1000)  # 10 fragments of 1376 B
    frames = {"leo": _flat_schedule(20.0, 15.0, 10.0, 100.0),
              "orbit_compute": _flat_schedule(12.0, 8.0, 10.0, 100.0)}
    got = predict_response_ms(params, scenario, frames, duration_s=10.0)
    cam = next(u for u in scenario.ues if u.name == "cam1")
    plan = scenario.nr_plan(cam.cell)  # gnb1 is an NR cell in the default scenario
    air_ms = unloaded_median_ms(plan, plan.slice_index(cam.slice), "uplink")
    assert 1.0 < air_ms < 10.0  # the model's unloaded median, not a typed-in delay
    access_up = air_ms + 0.2  # gnb1 backhaul, default scenario
    edge = got["edge1"]
    wire_bits = 10 * (1400 + 42) * 8
    cell_ms = wire_bits / (plan.cell.capacity_mbps("uplink") * 1e3)  # the cell is the edge path's bottleneck
    # OVS switches crossed: the UPF (+ user terminal, ground station); a gNB is a cell in the relay
    assert edge["uplink_ms"] == pytest.approx(access_up + cell_ms + 1 * OVS_ONE_WAY_MS, abs=1e-3)
    serialise_ms = wire_bits / 10e3  # at the 10 Mbit/s LEO uplink
    sat, cloud = got["sat1"], got["cloud1"]
    assert sat["uplink_ms"] == pytest.approx(access_up + 12.0 + serialise_ms + 2 * OVS_ONE_WAY_MS,
                                             abs=1e-3)
    assert cloud["uplink_ms"] == pytest.approx(access_up + 20.0 + serialise_ms + 3 * OVS_ONE_WAY_MS,
                                               abs=1e-3)
    for v in got.values():
        assert v["response_ms"] == pytest.approx(v["uplink_ms"] + v["compute_ms"] + v["downlink_ms"],
                                                 abs=2e-3)
    bigger = predict_response_ms(replace(params, request_bytes=27_520), scenario, frames, 10.0)
    assert bigger["cloud1"]["uplink_ms"] - cloud["uplink_ms"] == pytest.approx(serialise_ms, abs=1e-3)
    assert bigger["edge1"]["uplink_ms"] - edge["uplink_ms"] == pytest.approx(cell_ms, abs=1e-3)


def test_prediction_uses_time_weighted_medians_of_the_run_window(scenario) -> None:
    frame = _flat_schedule(20.0, 15.0, 10.0, 100.0)
    frame.loc[frame["t_s"] == 10.0, "delay_ms"] = 500.0  # after the run's 8 s window: ignored
    frames = {"leo": frame, "orbit_compute": frame}
    short = predict_response_ms(OffloadParams(), scenario, frames, duration_s=8.0)
    long_ = predict_response_ms(OffloadParams(), scenario, frames, duration_s=40.0)
    assert short["cloud1"]["uplink_ms"] < 200 < long_["cloud1"]["uplink_ms"]


def test_interval_too_long_for_every_target_to_get_a_request(scenario) -> None:
    from experiments.kinds.offload.kind import OffloadKind

    experiment = load_experiment("offload")
    kind = OffloadKind()
    params = kind.parse_params({**experiment.params, "interval_ms": 1000.0})
    kind.check(experiment, scenario, params)  # 60 s at 1 request/s: every target gets ~20
    with pytest.raises(ConfigError, match=r"params\.interval_ms: got 1000.0; allowed: <= 666\.667"):
        kind.check(replace(experiment, duration_s=2.0), scenario, params)

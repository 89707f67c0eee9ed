"""The scaled factory of `factorysat bench scale`: counts, cells, jitter 0 and the per-packet model."""

from __future__ import annotations

import json

import pytest

from experiments.bench import scale


@pytest.mark.parametrize(("n", "agvs", "cams", "cells"),
                         [(124, 100, 20, 2), (10, 5, 1, 1), (250, 205, 41, 4)])
def test_factory_counts_and_cells(n: int, agvs: int, cams: int, cells: int) -> None:
    scenario = scale.factory(n)
    kinds = [ue.kind for ue in scenario.ues]
    assert len(kinds) == n and kinds.count("agv") == agvs and kinds.count("camera") == cams
    assert kinds.count("sensor") == scale.SENSORS and len(scenario.cells) == cells
    per_cell = [sum(ue.cell == c.name for ue in scenario.ues) for c in scenario.cells]
    assert max(per_cell) - min(per_cell) <= scale.SENSORS + 1  # spread evenly (sensors sit in gnb1)
    for s in scenario.slices:
        assert s.radio.uplink.jitter_ms == 0 and s.radio.downlink.jitter_ms == 0


def test_model_is_radio_plus_backhaul_plus_edge_link() -> None:
    scenario = scale.factory(30)
    model = scale.modelled_owd_ms(scenario)
    agv = next(ue.name for ue in scenario.ues if ue.kind == "agv")
    cam = next(ue.name for ue in scenario.ues if ue.kind == "camera")
    assert model[agv] == pytest.approx(0.8 + 0.2 + 0.0) and model[cam] == pytest.approx(4.0 + 0.2)
    assert not any(ue.kind == "sensor" and ue.name in model for ue in scenario.ues)  # LEO path: left out


def test_too_small_a_factory_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 6 UEs"):
        scale.factory_raw(5)


def test_split_goals_and_memory_guard(monkeypatch) -> None:
    assert scale.split_evenly(7, 3) == [3, 2, 2] and sum(scale.split_evenly(100, 8)) == 100
    sizes = [{"ues": 10, "started": True, "fidelity_held": True},
             {"ues": 124, "started": True, "err_ms_p99": 0.3, "err_ms_p999": 2.0, "bringup_s": 20.0,
              "emulator_loss_pct": 0.0, "fidelity_held": False}]
    goals = scale.goals_of(sizes)
    assert goals["largest_ues_fidelity_held"] == 10 and goals["err_ms_p99_at_124"] == 0.3
    assert scale.check("err_ms_p99_at_124", 0.3) == (False, "goal <= 0.1 ms: missed by 0.2 ms")
    assert scale.check("largest_ues_fidelity_held", 250)[0]
    assert scale.check("bringup_s_at_124", None) == (False, "goal <= 15.0 s: not measured")
    monkeypatch.setattr(scale, "memory_available_mb", lambda: 1000.0)
    assert "not started" in scale.size_ok(scale.factory(124), python_agents=True)
    assert scale.size_ok(scale.factory(10), python_agents=True) is None
    assert scale.size_ok(scale.factory(124), python_agents=False) is None  # one C engine process


def test_figure_with_and_without_measured_sizes(tmp_path) -> None:
    from experiments.bench import scale_run

    measured = {"ues": 10, "err_ms_p50": 0.2, "err_ms_p99": 1.2, "err_ms_p999": 1.7, "err_ms_max": 2.4}
    nothing = {"ues": 500, "started": True, "err_ms_p99": None}
    for i, sizes in enumerate(([measured, nothing], [nothing])):
        out = tmp_path / str(i)
        out.mkdir()
        paths = scale_run.figure(sizes, out)
        assert all(p.stat().st_size > 1000 for p in paths)


def test_both_ovs_realtime_settings_run_side_by_side_and_goals_come_from_the_first(
        monkeypatch, tmp_path, capsys) -> None:
    from experiments.bench import scale_run

    ran: list[tuple[int, bool]] = []

    def fake_run_size(n: int, duration_s: float, out, ovs_realtime: bool = True) -> dict:
        ran.append((n, ovs_realtime))
        if n == 250 and not ovs_realtime:
            return {"ues": n, "ovs_realtime": ovs_realtime, "started": False, "failure": "did not start"}
        return {"ues": n, "ovs_realtime": ovs_realtime, "cells": 1, "started": True, "bringup_s": 5.0,
                "err_ms_p50": 0.1, "err_ms_p99": 0.5 if ovs_realtime else 9.0, "err_ms_p999": 1.0,
                "err_ms_max": 2.0, "err_ms_p99_all_packets": 1.0, "host_stall_flagged_pct": 1.0,
                "emulator_loss_pct": 0.0, "fidelity_held": False}

    monkeypatch.setattr(scale_run, "run_size", fake_run_size)
    assert scale_run.main((124, 250, 500), 1.0, tmp_path, (True, False)) == 0
    assert ran == [(124, True), (124, False), (250, True), (250, False)]  # stops after 250: one did not start
    summary = json.loads(next(tmp_path.glob("bench_scale/*/summary.json")).read_text())
    assert summary["err_ms_p99_at_124"] == 0.5  # the goals judge the default (first) setting
    assert " on" in capsys.readouterr().out

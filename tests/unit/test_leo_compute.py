"""In-orbit compute schedules and the ``factorysat leo schedule`` command."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.cli import leo as cmd_leo
from topologies.leo.compute import compute_satellite_schedule, serving_satellite_schedule
from topologies.leo.config import Compute, LeoOrbitConfig
from topologies.leo.geometry import SPEED_OF_LIGHT_KM_PER_S
from topologies.leo.schedule import leo_schedule

CONFIG = LeoOrbitConfig.default()


def test_serving_satellite_is_nearer_than_the_cloud() -> None:
    cloud, sat = leo_schedule(CONFIG, 60.0), serving_satellite_schedule(CONFIG, 60.0)
    np.testing.assert_array_equal(cloud["t_s"], sat["t_s"])
    np.testing.assert_array_equal(cloud["serving_sat"], sat["serving_sat"])
    assert (sat["delay_ms"] < cloud["delay_ms"]).all()
    assert (sat["terrestrial_ms"] == 0).all() and sat["gs_slant_range_km"].isna().all()
    np.testing.assert_allclose(sat["propagation_ms"], sat["slant_range_km"] / SPEED_OF_LIGHT_KM_PER_S * 1e3)


def test_designated_compute_satellite_over_isls() -> None:
    config = dataclasses.replace(CONFIG, compute=Compute(sat_index=100))
    df = compute_satellite_schedule(config, 60.0)
    assert df.attrs["compute_sat"] == 100
    up = df[df["up"]]
    assert (up["last_sat"] == 100).all()
    far = up["serving_sat"] != 100
    assert far.any() and (up.loc[far, "isl_hops"] >= 1).all() and (up.loc[far, "isl_km"] > 0).all()
    km = up["slant_range_km"] + up["isl_km"]
    np.testing.assert_allclose(up["propagation_ms"], km / SPEED_OF_LIGHT_KM_PER_S * 1e3)
    sat = serving_satellite_schedule(config, 60.0)
    assert (df["delay_ms"] >= sat["delay_ms"] - 1e-9).all()


def test_default_compute_satellite_is_the_first_serving_one() -> None:
    df = compute_satellite_schedule(CONFIG, 30.0)
    assert df.attrs["compute_sat"] == int(df["serving_sat"].iloc[0])
    assert df.loc[df["t_s"] < 1.0, "isl_hops"].eq(0).all()


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd_leo.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_parquet_and_figure(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('[leo.orbit]\nseed = 3\n[leo.orbit.shell]\nmin_elevation_deg = 30.0\n')
    out, fig = tmp_path / "leo.parquet", tmp_path / "leo.png"
    rc = _run(["leo", "schedule", "--scenario", str(scenario), "--duration-s", "40",
               "--out", str(out), "--figure", str(fig)])
    assert rc == 0 and fig.stat().st_size > 0 and fig.with_suffix(".pdf").stat().st_size > 0
    df = pd.read_parquet(out)
    assert {"t_s", "direction", "delay_ms", "serving_sat"} <= set(df.columns)
    assert (df.loc[df["up"], "elevation_deg"] >= 30.0).all()
    expected = leo_schedule(dataclasses.replace(CONFIG, seed=3, shell=dataclasses.replace(
        CONFIG.shell, min_elevation_deg=30.0)), 40.0)
    np.testing.assert_allclose(df["delay_ms"], expected["delay_ms"])


def test_cli_rejects_invalid_scenario(tmp_path: Path, capsys) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[leo.orbit]\npolicy = "closest"\n')
    rc = _run(["leo", "schedule", "--scenario", str(scenario), "--duration-s", "10",
               "--out", str(tmp_path / "x.parquet")])
    assert rc == 2
    assert "leo.orbit.policy" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()

"""The kind plug-in contract end to end as root: a kind defined in tests/, registered only here,
runs through the one run skeleton to a complete run folder whose figures redraw, and leaves nothing."""

from __future__ import annotations

import json
import os
import pwd

import pytest
from netstate import snapshot

from experiments.framework.definition import Experiment
from experiments.framework.results import is_complete
from experiments.framework.session import RunOptions
from experiments.framework.skeleton import kind_of_run, run_experiment
from experiments.kinds import kind_names, registered
from topologies import ownership
from topologies.validate import ConfigError

EXPERIMENT = """
[experiment]
name = "echo_example"
kind = "echo_example"
duration_s = 3.0
drain_s = 0.5

[params]
source = "agv1"
target = "edge1"
interval_ms = 10.0
"""


def _experiment(tmp_path, text: str = EXPERIMENT) -> Experiment:
    path = tmp_path / "my-echo.toml"  # any file name works
    path.write_text(text)
    return Experiment.from_file(path)


def test_unregistered_kind_is_a_config_error(tmp_path) -> None:
    assert "echo_example" not in kind_names()
    with pytest.raises(ConfigError, match="experiment.kind"):
        _experiment(tmp_path)


def test_bad_params_fail_before_anything_starts(tmp_path) -> None:
    with registered("echo_example", "example_kind:EchoKind"):
        experiment = _experiment(tmp_path, EXPERIMENT.replace('target = "edge1"', 'target = "nope"'))
        with pytest.raises(ConfigError, match="params.target"):
            run_experiment(experiment, RunOptions(results_root=tmp_path / "results", progress=False))
    assert not (tmp_path / "results").exists()  # no run folder was made


@pytest.mark.root
def test_example_kind_runs_end_to_end(tmp_path, monkeypatch) -> None:
    before = snapshot()
    user = pwd.getpwnam("nobody")  # as if a normal user had started the run through sudo
    monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
    monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
    results_root = tmp_path / "results"
    with registered("echo_example", "example_kind:EchoKind"):
        result = run_experiment(_experiment(tmp_path),
                                RunOptions(results_root=results_root, progress=False))
        run_dir = result.run_dir
        assert is_complete(run_dir)
        # At exit the run folder (and results/<experiment>/, results/ that root made) is the user's.
        assert (run_dir, results_root) in ownership.pending()
        ownership.hand_over_with_parents(run_dir, results_root)
        for path in [results_root, run_dir.parent, *run_dir.rglob("*")]:
            assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (user.pw_uid, user.pw_gid), path
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["probes_received"] > 200 and summary["received_pct"] > 90
        assert 0 < summary["rtt_ms_p50"] < 50
        assert (run_dir / "rtt.parquet").is_file() and (run_dir / "metadata.json").is_file()
        for path in result.figure_paths:
            path.unlink()
        redrawn = kind_of_run(run_dir).draw_figures(run_dir)  # from the stored table only
        assert all(p.stat().st_size > 1000 for p in redrawn)
    assert "echo_example" not in kind_names()
    after = snapshot()
    assert after["manifests"] <= before["manifests"]
    assert after["bridges"] <= before["bridges"]
    assert after["netns"] <= before["netns"]

"""Experiment definitions: kinds from the registry, controller apps by name, any file name."""

from __future__ import annotations

import pytest

from experiments.framework.definition import Experiment, available_experiments, load_experiment
from experiments.kinds import REGISTRY, kind_names
from topologies.validate import ConfigError

BASE = '[experiment]\nname = "x"\nduration_s = 5.0\n'


def _load(tmp_path, text: str) -> Experiment:
    path = tmp_path / "custom-name.toml"
    path.write_text(text)
    return Experiment.from_file(path)


def test_builtin_definitions_load_and_name_registered_kinds() -> None:
    assert set(available_experiments()) >= {"demo", "leo_rtt", "offload"}
    for name in available_experiments():
        assert load_experiment(name).kind in REGISTRY


def test_kind_choices_come_from_the_registry(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, BASE + 'kind = "nope"\n')
    assert "experiment.kind" in str(err.value) and all(k in str(err.value) for k in kind_names())


def test_controller_apps_by_name(tmp_path) -> None:
    assert _load(tmp_path, BASE).controller_apps == ("slice_switch",)
    exp = _load(tmp_path, BASE + '[controller]\napps = ["slice_monitor"]\n')
    assert exp.controller_apps == ("slice_monitor",)
    assert exp.file == tmp_path / "custom-name.toml"
    with pytest.raises(ConfigError, match=r"controller.apps\[0\]"):
        _load(tmp_path, BASE + '[controller]\napps = ["no_such_app"]\n')
    with pytest.raises(ConfigError, match="controller.apps"):
        _load(tmp_path, BASE + '[controller]\napps = "slice_switch"\n')

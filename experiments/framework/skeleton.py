"""The one run skeleton every experiment kind goes through (see :mod:`experiments.framework.kind`).

inputs checked -> network up -> kind's traffic -> network down -> tidy tables -> summary ->
figures -> ``COMPLETE``. A run that stops anywhere before the end has no ``COMPLETE`` marker.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from experiments.framework.definition import Experiment
from experiments.framework.kind import Kind
from experiments.framework.results import write_json, write_parquet
from experiments.framework.session import RunOptions, RunResult, RunSession
from experiments.kinds import REGISTRY


def get_kind(name: str) -> Kind:
    """A fresh instance of the kind registered as ``name`` (KeyError names the known kinds)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"no experiment kind {name!r}; known: {', '.join(REGISTRY)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def run_experiment(experiment: Experiment, options: RunOptions = RunOptions()) -> RunResult:
    """Run ``experiment`` through its kind; the run is complete only if this returns."""
    kind = get_kind(experiment.kind)
    params = kind.parse_params(experiment.params)  # bad keys fail before anything is computed
    session = RunSession(experiment, options)
    experiment.check(session.scenario)
    kind.check(experiment, session.scenario, params)
    with session:
        kind.run_traffic(session, params)
    tables = kind.collect(session, params)
    for name, frame in tables.items():
        write_parquet(session.run_dir / f"{name}.parquet", frame)
    summary = kind.summarise(tables, session, params)
    write_json(session.run_dir / "summary.json", summary)
    paths = kind.draw_figures(session.run_dir)
    session.complete()
    return RunResult(session.run_dir, summary, paths)


def kind_of_run(run_dir: Path) -> Kind:
    """The kind that produced a stored run (from its copy of experiment.toml)."""
    experiment = Experiment.from_file(run_dir / "experiment.toml")
    return get_kind(experiment.kind)

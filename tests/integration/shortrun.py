"""A short run of an experiment kind for the root tests: its experiment.toml text written to
``tmp_path``, run by the one run skeleton into ``tmp_path/results``, checked complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.framework.definition import Experiment
from experiments.framework.results import is_complete
from experiments.framework.session import RunOptions
from experiments.framework.skeleton import run_experiment


def run_short(tmp_path: Path, name: str, experiment_toml: str, **options: Any) -> tuple[Path, dict[str, Any]]:
    """Run the experiment ``experiment_toml`` (RunOptions ``options``, no progress bar); its complete
    run folder and summary.json."""
    path = tmp_path / f"{name}.toml"
    path.write_text(experiment_toml)
    result = run_experiment(Experiment.from_file(path), RunOptions(
        results_root=tmp_path / "results", progress=False, **options))
    run_dir = Path(result.run_dir)
    assert is_complete(run_dir)
    return run_dir, json.loads((run_dir / "summary.json").read_text())

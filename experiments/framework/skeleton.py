"""The one run skeleton every experiment kind goes through (see :mod:`experiments.framework.kind`).

inputs checked -> network up (watched) -> kind's traffic -> network down -> tidy tables -> summary
-> figures -> ``COMPLETE``. A run that stops anywhere before the end (an exception, a component
death, Ctrl-C, SIGTERM, a full disk, teardown problems) gets a ``FAILED`` marker saying why, and no
``COMPLETE``; only SIGKILL leaves neither.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import replace
from pathlib import Path

from experiments.framework.definition import Experiment
from experiments.framework.kind import Kind
from experiments.framework.results import StoredTable, write_json, write_parquet
from experiments.framework.session import RunOptions, RunResult, RunSession, SigtermUnwinds, disk_failure
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
    session.warnings = [*experiment.check(session.scenario, session.duration_s),
                        *session.network.backend_warnings]
    kind.check(replace(experiment, duration_s=session.duration_s), session.scenario, params)
    for warning in session.warnings:  # settings that work, but oddly: said, and kept in metadata
        print(f"factorysat: warning: {warning}", file=sys.stderr, flush=True)
    with SigtermUnwinds():  # SIGTERM in any stage unwinds through the FAILED marker
        try:
            with session:
                kind.run_traffic(session, params)
            tables = kind.collect(session, params)
            for name, frame in tables.items():
                if not isinstance(frame, StoredTable):  # else the kind wrote it, in chunks
                    write_parquet(session.run_dir / f"{name}.parquet", frame)
            if session.pcap.check(session.run_dir, session.metadata):  # --pcap: pcap/cross_check.json
                session.save_metadata()
            summary = kind.summarise(tables, session, params)
            write_json(session.run_dir / "summary.json", summary)
            held = (summary.get("fidelity") or {}).get("held")
            if held is False:  # the run's own error check (framework/fidelity.py)
                print(f"factorysat: warning: emulator fidelity not held: "
                      f"{'; '.join(summary['fidelity']['causes'])}", file=sys.stderr, flush=True)
            paths = kind.draw_figures(session.run_dir)
            kind.require_reconciled(tables, session, params)  # RunFailed: no COMPLETE
            session.complete()
        except BaseException as exc:
            failure = disk_failure(exc, session.run_dir)
            session.fail(failure or exc)  # FAILED marker (printed if even that cannot be written)
            with contextlib.suppress(AttributeError):
                (failure or exc).run_dir = session.run_dir  # for the CLI's last line
            if failure is not None:
                raise failure from exc
            raise
    return RunResult(session.run_dir, summary, paths)


def kind_of_run(run_dir: Path) -> Kind:
    """The kind that produced a stored run (from its copy of experiment.toml)."""
    experiment = Experiment.from_file(run_dir / "experiment.toml")
    return get_kind(experiment.kind)

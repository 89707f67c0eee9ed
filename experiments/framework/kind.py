"""The experiment-kind contract: what a kind provides, and in which order the framework calls it.

A *kind* is the code behind ``kind = "..."`` in an ``experiment.toml``: what traffic runs, what is
measured, which tables, summary and figures come out. Every kind goes through ONE run skeleton
(:func:`experiments.framework.skeleton.run_experiment`):

1. ``parse_params(raw)``: validate the experiment's ``[params]`` table into a typed object;
   unknown keys and bad values raise :class:`~topologies.validate.ConfigError`.
2. ``check(experiment, scenario, params)``: cross-checks against the scenario (hosts exist, …)
   *before anything is created*; raise ConfigError.
3. ``run_traffic(session, params)``: with the network up, start the kind's agents, call
   ``session.start_clock()`` (link schedules and the shared start instant), show
   ``session.progress()``, wait, stop the agents. Anything started is recorded and killed in a
   ``finally``. The framework tears the network down afterwards, whatever happened.
4. ``collect(session, params)``: raw files in ``session.raw_dir`` -> tidy tables, returned by
   name; the framework writes each as ``<name>.parquet`` in the run folder (atomically). A table
   too large to hold (analysis memory must not grow with run length) the kind writes itself in
   chunks with :func:`~experiments.framework.results.write_parquet_chunks` and returns as the
   :class:`~experiments.framework.results.StoredTable` it gets back (the slices kind's packets).
5. ``summarise(tables, session, params)``: the ``summary.json`` dict (the framework writes it).
6. ``draw_figures(run_dir)``: (re)draw every figure from the stored Parquet/JSON only, so that
   ``factorysat figures RUN_DIR`` redraws a finished run; return the paths.
7. ``print_summary(summary)``: the table ``factorysat run`` prints.
8. ``reconcile(tables, session, params)``: count checks (every scheduled packet sent or its send
   error recorded, every sent packet received or counted lost, no duplicates, no packet received
   that was never sent, raw files complete); a non-empty list of problems fails the run
   (:meth:`Kind.require_reconciled` raises RunFailed). A kind also records the same block in its
   summary (``reconciliation``), so a failed run still shows the numbers.

Only after all of that is the ``COMPLETE`` marker written. To add a kind see the README,
"Extending factorysat": one folder under ``experiments/kinds/`` and one line in
``experiments/kinds/__init__.py``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from topologies.errors import RunFailed
from topologies.scenario import Scenario
from topologies.validate import ConfigError

if TYPE_CHECKING:
    from experiments.framework.definition import Experiment
    from experiments.framework.session import RunSession


class Kind(ABC):
    """Base class of every experiment kind (see the module docstring for the call order)."""

    #: the name used in ``experiment.toml`` (``[experiment] kind = ...``) and in the registry
    name: ClassVar[str]

    def parse_params(self, raw: Mapping[str, Any]) -> Any:
        """Validate the ``[params]`` table; the default accepts none."""
        if raw:
            raise ConfigError("params", dict(raw), f"no [params] keys for kind {self.name!r}")
        return None

    def check(self, experiment: Experiment, scenario: Scenario, params: Any) -> None:
        """Cross-check the experiment against the scenario before anything starts (default: none)."""
        return None

    @abstractmethod
    def run_traffic(self, session: RunSession, params: Any) -> None:
        """Start, time and stop the kind's traffic inside the running network."""

    @abstractmethod
    def collect(self, session: RunSession, params: Any) -> dict[str, pd.DataFrame]:
        """Raw records -> tidy tables by name (written as ``<name>.parquet``)."""

    @abstractmethod
    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any
                  ) -> dict[str, Any]:
        """The run's ``summary.json`` content."""

    @abstractmethod
    def draw_figures(self, run_dir: Path) -> list[Path]:
        """(Re)draw every figure of a run from its stored tables; return the paths."""

    def print_summary(self, summary: dict[str, Any]) -> str:
        """Text for the terminal; the default prints the summary as JSON."""
        return json.dumps(summary, indent=2)

    def reconcile(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any) -> list[str]:
        """Count problems that make the run's numbers untrustworthy (default: none checked)."""
        return []

    def require_reconciled(self, tables: dict[str, pd.DataFrame], session: RunSession,
                           params: Any) -> None:
        """Raise RunFailed naming the problems if :meth:`reconcile` finds any (before COMPLETE)."""
        problems = self.reconcile(tables, session, params)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
            raise RunFailed(f"counts do not reconcile: {shown} (see summary.json 'reconciliation')",
                            component="reconciliation")

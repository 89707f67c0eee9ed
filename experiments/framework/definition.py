"""Experiment definitions: ``experiments/<name>/experiment.toml`` validated into a typed object.

Every error is one line (:class:`~topologies.validate.ConfigError`) naming the file or key; the
experiment's name becomes the ``results/<name>/`` folder, so it is a plain identifier.
:meth:`Experiment.check` cross-checks against the scenario and returns the warnings of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controllers.apps import DEFAULT_APPS, resolve_apps
from experiments.kinds import kind_names
from topologies.scenario import Scenario, load_scenario
from topologies.scenario_warnings import uplink_path
from topologies.validate import (
    EXPERIMENT_NAME_RE,
    EXPERIMENT_NAME_TEXT,
    ConfigError,
    Table,
    check_name,
    read_toml_file,
)

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1]
MAX_DURATION_S = 3600.0
DURATION_WHY = "one hour: link schedules and raw records are held in memory"
MAX_DRAIN_S = 60.0


@dataclass(frozen=True)
class ProbeSpec:
    """Round-trip probes from ``source`` to an echo server on ``target``."""

    source: str
    target: str
    interval_ms: float
    payload_bytes: int


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    scenario_ref: str
    duration_s: float
    drain_s: float
    folder: Path
    kind: str = "slices"
    probes: tuple[ProbeSpec, ...] = ()
    params: dict = field(default_factory=dict)  # kind-specific [params] table, validated by the kind
    controller_apps: tuple[str, ...] = tuple(DEFAULT_APPS)  # [controller] apps, by name
    sla_monitor: bool = False  # [controller] sla_monitor: the live per-slice SLA monitor (sla_monitor.py)
    file: Path | None = None  # the experiment.toml this was read from

    def load_scenario(self) -> Scenario:
        if self.scenario_ref == "default":
            return load_scenario(None)
        return load_scenario(self.folder / self.scenario_ref)

    def check(self, scenario: Scenario, duration_s: float | None = None) -> tuple[str, ...]:
        """Cross-check against ``scenario`` before anything starts; return the run's warnings.

        Errors (ConfigError): a probe endpoint that is not a host, a probe to its own source.
        Warnings (one line each, the scenario's first): see :func:`run_warnings`.
        ``duration_s`` is the traffic duration if overridden (default: the experiment's).
        """
        hosts = scenario.host_names()
        for i, spec in enumerate(self.probes):
            for key in ("source", "target"):
                if getattr(spec, key) not in hosts:
                    raise ConfigError(f"probes[{i}].{key}", getattr(spec, key), "one of " + ", ".join(hosts))
            if spec.target == spec.source:
                raise ConfigError(f"probes[{i}].target", spec.target,
                                  "a host other than the probe's source (a probe must cross the network)")
        return scenario.warnings + run_warnings(self, scenario, duration_s or self.duration_s)

    @classmethod
    def from_file(cls, path: Path) -> Experiment:
        """Parse and validate one experiment file (any file name)."""
        path = Path(path)
        raw = read_toml_file(path, "experiment")
        with Table(raw, "") as root:
            with root.table("experiment") as t:
                fields_ = dict(
                    name=check_name(t.key("name"), t.get("name"), EXPERIMENT_NAME_RE, EXPERIMENT_NAME_TEXT),
                    description=t.str("description", ""),
                    scenario_ref=t.str("scenario", "default"),
                    duration_s=t.number("duration_s", min=1, max=MAX_DURATION_S, why=DURATION_WHY),
                    drain_s=t.number("drain_s", 2.0, min=0, max=MAX_DRAIN_S,
                                     why="one minute: in-flight packets arrive within it"),
                    kind=t.str("kind", "slices", choices=kind_names()),
                )
            probes = tuple(_probe(p) for p in root.tables("probes", []))
            params = dict(root.table("params", {}).raw)
            apps, sla_monitor = tuple(DEFAULT_APPS), False
            if root.has("controller"):
                with root.table("controller") as c:
                    raw_apps = c.get("apps", list(DEFAULT_APPS))
                    resolve_apps(raw_apps)  # unknown apps fail here, with the allowed names
                    apps = tuple(raw_apps)
                    sla_monitor = c.bool("sla_monitor", False)
        return cls(folder=path.parent, file=path, probes=probes, params=params, controller_apps=apps,
                   sla_monitor=sla_monitor, **fields_)


def available_experiments() -> list[str]:
    return sorted(p.parent.name for p in EXPERIMENTS_DIR.glob("*/experiment.toml"))


def load_experiment(ref: str) -> Experiment:
    """``ref`` is a built-in experiment name or a folder/file path holding experiment.toml."""
    path = Path(ref)
    if path.is_dir():
        path = path / "experiment.toml"
        if not path.is_file():
            raise ConfigError("experiment", ref, "a folder holding an experiment.toml (this one has "
                                                 "none), a built-in name or an experiment file")
    elif not path.is_file():
        path = EXPERIMENTS_DIR / ref / "experiment.toml"
        if not path.is_file():
            raise ConfigError("experiment", ref, "one of " + ", ".join(available_experiments())
                              + " or a path to an experiment.toml")
    return Experiment.from_file(path)


def run_warnings(experiment: Experiment, scenario: Scenario, duration_s: float) -> tuple[str, ...]:
    """Settings of the experiment that work oddly with this scenario (one line each).

    * the drain is shorter than a UE path's fixed one-way delay plus jitter: packets still in
      flight when the receivers stop count as lost;
    * a rain fade (``[leo.orbit.weather]``) that starts after the run ends never happens.
    """
    out = []
    for i, group in enumerate(scenario.ue_groups):
        worst_ms = sum(p.delay_ms + 3 * p.jitter_ms for _, p in uplink_path(scenario, group))
        if worst_ms > experiment.drain_s * 1000:
            out.append(f"experiment.drain_s: {experiment.drain_s:g} s, shorter than the fixed one-way "
                       f"delay + 3 x jitter of ue_groups[{i}]'s path ({worst_ms:g} ms): packets in "
                       "flight at the end count as lost")
    orbit = scenario.leo.orbit
    if orbit is not None and orbit.weather.enabled and orbit.weather.start_s >= duration_s:
        out.append(f"leo.orbit.weather.start_s: {orbit.weather.start_s:g} s, not before the end of "
                   f"the {duration_s:g} s run: the rain fade never happens")
    return tuple(out)


def _probe(t: Table) -> ProbeSpec:
    with t:
        return ProbeSpec(source=t.str("source"), target=t.str("target"),
                         interval_ms=t.number("interval_ms", 20.0, min=1, max=10_000),
                         payload_bytes=t.int("payload_bytes", 64, min=20, max=1400))

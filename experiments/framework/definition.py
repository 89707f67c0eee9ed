"""Experiment definitions: ``experiments/<name>/experiment.toml`` validated into a typed object."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from controllers.apps import DEFAULT_APPS, resolve_apps
from experiments.kinds import kind_names
from topologies.scenario import Scenario, load_scenario
from topologies.validate import ConfigError, Table

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1]


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
    file: Path | None = None  # the experiment.toml this was read from

    def load_scenario(self) -> Scenario:
        if self.scenario_ref == "default":
            return load_scenario(None)
        return load_scenario(self.folder / self.scenario_ref)

    def check(self, scenario: Scenario) -> None:
        """Probe endpoints must be hosts of ``scenario`` (checked before anything starts)."""
        hosts = scenario.host_names()
        for i, spec in enumerate(self.probes):
            for key in ("source", "target"):
                if getattr(spec, key) not in hosts:
                    raise ConfigError(f"probes[{i}].{key}", getattr(spec, key), "one of " + ", ".join(hosts))

    @classmethod
    def from_file(cls, path: Path) -> Experiment:
        """Parse and validate one experiment file (any file name)."""
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("experiment", str(path), f"valid TOML ({exc})") from None
        with Table(raw, "") as root:
            with root.table("experiment") as t:
                fields_ = dict(
                    name=t.str("name"),
                    description=t.str("description", ""),
                    scenario_ref=t.str("scenario", "default"),
                    duration_s=t.number("duration_s", min=1, max=3600),
                    drain_s=t.number("drain_s", 2.0, min=0, max=60),
                    kind=t.str("kind", "slices", choices=kind_names()),
                )
            probes = tuple(_probe(p) for p in root.tables("probes", []))
            params = dict(root.get("params", {}))
            apps = tuple(DEFAULT_APPS)
            if root.has("controller"):
                with root.table("controller") as c:
                    raw_apps = c.get("apps", list(DEFAULT_APPS))
                    resolve_apps(raw_apps)  # unknown apps fail here, with the allowed names
                    apps = tuple(raw_apps)
        return cls(folder=path.parent, file=path, probes=probes, params=params, controller_apps=apps,
                   **fields_)


def available_experiments() -> list[str]:
    return sorted(p.parent.name for p in EXPERIMENTS_DIR.glob("*/experiment.toml"))


def load_experiment(ref: str) -> Experiment:
    """``ref`` is a built-in experiment name or a folder/file path holding experiment.toml."""
    path = Path(ref)
    if path.is_dir():
        path = path / "experiment.toml"
    elif not path.is_file():
        path = EXPERIMENTS_DIR / ref / "experiment.toml"
        if not path.is_file():
            raise ConfigError("experiment", ref, "one of " + ", ".join(available_experiments())
                              + " or a path to an experiment.toml")
    return Experiment.from_file(path)


def _probe(t: Table) -> ProbeSpec:
    with t:
        return ProbeSpec(source=t.str("source"), target=t.str("target"),
                         interval_ms=t.number("interval_ms", 20.0, min=1, max=10_000),
                         payload_bytes=t.int("payload_bytes", 64, min=20, max=1400))

"""Experiment kinds: the registry, the only place where a kind is named.

Each entry maps the name used in ``experiment.toml`` (``[experiment] kind = "..."``) to the
``module:Class`` implementing :class:`experiments.framework.kind.Kind`. Modules are imported only
when a kind is used (``experiments.framework.skeleton.get_kind``), so the command line stays fast
and this module imports nothing of the framework. To add a kind: one folder
``experiments/kinds/<name>/`` and one line here (README, "Extending factorysat").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

REGISTRY: dict[str, str] = {
    "slices": "experiments.kinds.slices:SlicesKind",
    "offload": "experiments.kinds.offload:OffloadKind",
    "cell_load": "experiments.kinds.cell_load:CellLoadKind",
    "isolation": "experiments.kinds.isolation:IsolationKind",
    "leo_failover": "experiments.kinds.leo_failover:LeoFailoverKind",
}


def kind_names() -> tuple[str, ...]:
    """Every registered kind, in registry order."""
    return tuple(REGISTRY)


@contextmanager
def registered(name: str, target: str) -> Iterator[None]:
    """Register ``name -> "module:Class"`` for the duration of a ``with`` block (tests, plug-ins)."""
    if name in REGISTRY:
        raise ValueError(f"experiment kind {name!r} is already registered")
    REGISTRY[name] = target
    try:
        yield
    finally:
        del REGISTRY[name]

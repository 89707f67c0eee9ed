"""Experiment kinds: the registry, the only place where a kind is named.

Each entry maps the name used in ``experiment.toml`` (``[experiment] kind = "..."``) to the
``module:Class`` implementing :class:`experiments.framework.kind.Kind`. Modules are imported only
when a kind is used, so the command line stays fast. To add a kind: one folder
``experiments/kinds/<name>/`` and one line here (README, "Extending factorysat").
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.framework.kind import Kind

REGISTRY: dict[str, str] = {
    "slices": "experiments.kinds.slices:SlicesKind",
    "offload": "experiments.kinds.offload:OffloadKind",
}


def kind_names() -> tuple[str, ...]:
    """Every registered kind, in registry order."""
    return tuple(REGISTRY)


def get_kind(name: str) -> Kind:
    """A fresh instance of the kind registered as ``name`` (KeyError names the known kinds)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"no experiment kind {name!r}; known: {', '.join(REGISTRY)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


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

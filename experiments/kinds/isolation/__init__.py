"""The ``isolation`` kind: per-slice delay with slice enforcement off, then on, in one run (kind.py)."""

from experiments.kinds.isolation.kind import IsolationKind

__all__ = ["IsolationKind"]

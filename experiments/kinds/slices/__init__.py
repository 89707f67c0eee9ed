"""The ``slices`` kind: per-slice delay, loss and deadlines of every UE's flow (see kind.py)."""

from experiments.kinds.slices.kind import SlicesKind

__all__ = ["SlicesKind"]

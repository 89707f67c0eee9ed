"""The ``offload`` kind: inference offload to edge, orbit or cloud (see kind.py)."""

from experiments.kinds.offload.kind import OffloadKind

__all__ = ["OffloadKind"]

"""The ``cell_load`` kind: one cell's per-slice delay as cameras are added step by step (kind.py)."""

from experiments.kinds.cell_load.kind import CellLoadKind

__all__ = ["CellLoadKind"]

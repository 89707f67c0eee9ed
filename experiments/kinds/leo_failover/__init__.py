"""The ``leo_failover`` kind: cloud-bound slices across LEO reconfigurations and outages, adaptation
off then on (kind.py)."""

from experiments.kinds.leo_failover.kind import LeoFailoverKind

__all__ = ["LeoFailoverKind"]

"""``python -m experiments`` is the same as the ``factorysat`` command (see experiments/cli)."""

from __future__ import annotations

import sys

from experiments.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

"""Where the project lives: the one definition of the repository root for every package."""

from __future__ import annotations

from pathlib import Path

# topologies/ sits at the top of the checkout; in-host agents and helper processes are started
# with this as their working directory and PYTHONPATH.
REPO_ROOT = Path(__file__).resolve().parents[1]

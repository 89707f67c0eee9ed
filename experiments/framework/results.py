"""Run folders: ``results/<experiment>/<run_id>/`` with metadata and a completion marker.

A run folder is complete only when ``COMPLETE`` exists; it is written last, after every other
file has been flushed. A folder without it is visibly incomplete (killed, failed or running).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import subprocess
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from topologies.paths import REPO_ROOT

COMPLETE_MARKER = "COMPLETE"
PACKAGES = ("os-ken", "scapy", "pandas", "pyarrow", "matplotlib", "numpy", "sgp4", "pyroute2")


def default_results_root() -> Path:
    return Path(os.environ.get("FACTORYSAT_RESULTS", REPO_ROOT / "results"))


def new_run_dir(experiment: str, results_root: Path | None = None) -> tuple[str, Path]:
    """Create and return ``(run_id, path)`` for a new run of ``experiment``."""
    root = (results_root or default_results_root()) / experiment
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{secrets.token_hex(2)}"
    path = root / run_id
    (path / "raw").mkdir(parents=True)
    (path / "logs").mkdir()
    return run_id, path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename) so readers never see half a file."""
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a tidy table as Parquet atomically (temp file, fsync, rename)."""
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def mark_complete(run_dir: Path) -> None:
    """Write the completion marker; call only after every other file is written."""
    write_json(run_dir / COMPLETE_MARKER,
               {"finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETE_MARKER).is_file()


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the checkout the code runs from (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def tool_version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else None


def base_metadata() -> dict[str, Any]:
    """Everything about the machine and software that a figure's reader may need."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import mininet.net

        versions["mininet"] = mininet.net.VERSION
    except ImportError:
        versions["mininet"] = None
    versions["python"] = platform.python_version()
    versions["ovs-vswitchd"] = tool_version(["ovs-vswitchd", "--version"])
    return {
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "versions": versions,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "clock": "CLOCK_REALTIME, shared by all emulated hosts (one kernel)",
    }

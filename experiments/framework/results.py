"""Run folders: ``results/<experiment>/<run_id>/`` with metadata and a completion marker.

A run folder is complete only when ``COMPLETE`` exists; it is written last, after every other
file has been flushed. A run that ended without success has ``FAILED`` instead (JSON: reason,
component, log path, time); never both. A folder with neither was killed (SIGKILL) or is running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from topologies.errors import UserError
from topologies.ownership import hand_over_at_exit
from topologies.paths import REPO_ROOT

COMPLETE_MARKER = "COMPLETE"
FAILED_MARKER = "FAILED"  # a run that ended without success: why, which component, its log
DISK_RESERVE_BYTES = 256 * 1024  # less free space than this on the results disk counts as full
PACKAGES = ("os-ken", "scapy", "pandas", "pyarrow", "matplotlib", "numpy", "sgp4", "pyroute2")


def default_results_root() -> Path:
    return Path(os.environ.get("FACTORYSAT_RESULTS", REPO_ROOT / "results"))


def new_run_dir(experiment: str, results_root: Path | None = None) -> tuple[str, Path]:
    """Create and return ``(run_id, path)`` for a new run of ``experiment``."""
    if experiment in ("", ".", "..") or "/" in experiment or "\0" in experiment:  # never outside root
        raise UserError(f"experiment.name: got {experiment!r}; allowed: a plain name (no '/', not '..')")
    results_root = results_root or default_results_root()
    root = results_root / experiment
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{secrets.token_hex(2)}"
    path = root / run_id
    (path / "raw").mkdir(parents=True)
    (path / "logs").mkdir()
    hand_over_at_exit(path, results_root)  # through sudo: the user's, not root's (ownership.py)
    return run_id, path


def new_bench_dir(results_root: Path, bench: str) -> tuple[str, Path]:
    """``(run_id, results_root/<bench>/<run_id>)`` for a benchmark's output, created."""
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
    out = results_root / bench / run_id
    try:
        out.mkdir(parents=True)
        hand_over_at_exit(out, results_root)
    except OSError as exc:
        raise UserError(f"--results {results_root}: not a writable folder ({exc.strerror})") from exc
    return run_id, out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename) so readers never see half a file."""
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a tidy table as Parquet atomically (temp file, fsync, rename)."""
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


@dataclass(frozen=True)
class StoredTable:
    """A tidy table a kind wrote itself (too large to hold: :func:`write_parquet_chunks`)."""

    path: Path
    rows: int


def write_parquet_chunks(path: Path, chunks: Iterable[pd.DataFrame]) -> StoredTable:
    """Write a table given as DataFrame chunks (at least one, possibly empty; same columns), one
    row group each, atomically (temp file, fsync, rename); only one chunk is held at a time."""
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                rows += len(chunk)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError(f"{path.name}: no chunk to write (give at least one, possibly empty)")

    _atomic_write(path, write)
    return StoredTable(path, rows)


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave half a file (it may be what filled the disk)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mark_complete(run_dir: Path) -> None:
    """Write the completion marker; call only after every other file is written."""
    if (run_dir / FAILED_MARKER).exists():
        raise RuntimeError(f"{run_dir} is marked FAILED; it cannot also be COMPLETE")
    write_json(run_dir / COMPLETE_MARKER,
               {"finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETE_MARKER).is_file()


def is_failed(run_dir: Path) -> bool:
    return (run_dir / FAILED_MARKER).is_file()


def disk_full(path: Path, reserve_bytes: int = DISK_RESERVE_BYTES) -> bool:
    """True when the filesystem holding ``path`` has less than ``reserve_bytes`` left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < reserve_bytes


def mark_failed(run_dir: Path, failure: dict[str, Any]) -> Path | None:
    """Write ``FAILED`` (JSON: reason, component, log_path, time, ...) and remove any COMPLETE.

    On a full disk our own half-written ``*.tmp`` files are removed and the write retried; if it
    still fails, the reason is printed to stderr. Returns the marker's path, or None if unwritten.
    """
    record = {**failure, "failed_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    marker = run_dir / FAILED_MARKER
    (run_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    for attempt in range(2):
        try:
            write_json(marker, record)
            return marker
        except OSError as exc:
            if attempt == 0:
                for tmp in run_dir.rglob("*.tmp"):  # our own unfinished outputs
                    tmp.unlink(missing_ok=True)
                continue
            print(f"factorysat: could not write {marker} ({exc}); the run FAILED: "
                  f"{record.get('reason')}", file=sys.stderr)
    return None


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

"""Validation of a run manifest read from disk (topologies/manifest.py): nothing in a manifest is
believed before its owner, mode, place and content are checked.

A manifest names objects that ``factorysat clean`` will remove as root, so a file that is not
exactly what a run writes is rejected with one line and nothing it names is touched: owner root (or
the running user), not group/world-writable, a regular file in the state folder, and every field of
the expected type, with every object name one of its own run's names.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from topologies.errors import UserError
from topologies.runobjects import boot_id, proc_start_time

FORMAT = 2
KINDS = ("process", "sched", "ovs_bridge", "netns", "link")  # also the removal order
EMPTY_GRACE_S = 60.0  # an empty manifest older than this has no writer (writes take microseconds)

# Run tags: "fs" + 2 characters for runs (experiments/framework/network.py; up to 6 for scratch
# runs in tests), a letter + 6 hex digits for benchmarks and test beds. Every object name of a run
# starts with "fs" + the tag without its "fs" (run fsab: bridges fsabgnb1, ports fsabgnb1-eth3,
# netns fsabrly, fsabhopA), so a manifest can never name another run's objects or anyone else's.
TAG_RE = re.compile(r"fs[a-z0-9]{2,6}|[a-z][0-9a-f]{6}")
FILE_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")  # any manifest's tag (a file name)
_PROC_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}")
_BOOT_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
IFNAME_MAX = 15
_KEYS = {"format", "tag", "run_id", "boot_id", "owner_pid", "owner_start", "entries"}


class ManifestError(UserError):
    """A file in the state folder that is not a valid run manifest (message: one line).
    ``removable``: it records nothing and its writer is gone, so it may be deleted."""

    def __init__(self, path: Path, problem: str, removable: bool = False) -> None:
        self.path, self.problem, self.removable = path, problem, removable
        self.owner_running = False  # its owner fields name a running process (of this boot)
        super().__init__(f"{path}: {problem}")


def object_prefix(tag: str) -> str:
    """The prefix of every object name of run ``tag`` ("fsab" -> "fsab", "t1a2b3c" -> "fst1a2b3c")."""
    return "fs" + tag.removeprefix("fs")


def read_manifest(path: Path, state_root: Path) -> dict[str, Any]:
    """The content of manifest ``path`` once it passed every check; ManifestError otherwise."""
    try:
        st = os.lstat(path)
        raw = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
    except OSError as exc:
        raise ManifestError(path, f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(path, "not a regular file")
    if path.parent.resolve() != state_root.resolve():
        raise ManifestError(path, f"not in the state folder {state_root}")
    if st.st_uid not in (0, os.geteuid()):
        raise ManifestError(path, f"owner uid {st.st_uid}; allowed: root or uid {os.geteuid()}")
    if st.st_mode & 0o022:
        raise ManifestError(path, f"mode {stat.S_IMODE(st.st_mode):o} is group/world-writable")
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except ValueError:
        raise ManifestError(path, "not valid JSON (truncated or corrupt); left for inspection") from None
    if data is None:
        raise ManifestError(path, "empty (a writer stopped before its first write)",
                            removable=_writer_gone(st.st_mtime, {}))
    try:
        _check_content(path, data)
    except ManifestError as exc:
        empty = isinstance(data, dict) and data.get("entries") == []
        gone = _writer_gone(st.st_mtime, data if isinstance(data, dict) else {})
        exc.removable, exc.owner_running = empty and gone, isinstance(data, dict) and not gone
        raise
    return data


def _check_content(path: Path, data: Any) -> None:
    def bad(problem: str) -> ManifestError:
        return ManifestError(path, problem)

    if not isinstance(data, dict) or set(data) != _KEYS:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise bad(f"keys {keys}; allowed: {sorted(_KEYS)} (format {FORMAT})")
    tag = data["tag"]
    if data["format"] != FORMAT:
        raise bad(f"format {data['format']!r}; allowed: {FORMAT}")
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag) or path.name != f"{tag}.json":
        raise bad(f"tag {tag!r}; allowed: 'fs' + 2-6 lowercase letters/digits, or a letter + 6 "
                  "hex digits, matching the file name")
    if not isinstance(data["run_id"], str) or not re.fullmatch(rf"{tag}-[0-9a-f]{{8}}", data["run_id"]):
        raise bad(f"run_id {data['run_id']!r}; allowed: '{tag}-' + 8 hex digits")
    if not isinstance(data["boot_id"], str) or not _BOOT_RE.fullmatch(data["boot_id"]):
        raise bad(f"boot_id {data['boot_id']!r}; allowed: a kernel boot id (uuid)")
    if not _is_int(data["owner_pid"]) or data["owner_pid"] < 1:
        raise bad(f"owner_pid {data['owner_pid']!r}; allowed: a pid (integer >= 1)")
    if data["owner_start"] is not None and not _is_int(data["owner_start"]):
        raise bad(f"owner_start {data['owner_start']!r}; allowed: an integer or null")
    if not isinstance(data["entries"], list):
        raise bad("entries is not a list")
    for i, entry in enumerate(data["entries"]):
        problem = _entry_problem(entry, object_prefix(tag))
        if problem:
            raise bad(f"entries[{i}]: {problem}")


def _entry_problem(entry: Any, prefix: str) -> str | None:
    """Why ``entry`` is not a valid record of run objects named ``prefix...``, or None."""
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
        kind = entry.get("kind") if isinstance(entry, dict) else entry
        return f"kind {kind!r}; allowed: {', '.join(KINDS)}"
    kind, name = entry["kind"], entry.get("name")
    if kind == "process":
        if set(entry) != {"kind", "name", "pid", "start"}:
            return f"process keys {sorted(entry)}; allowed: kind, name, pid, start"
        if not isinstance(name, str) or not _PROC_RE.fullmatch(name):
            return f"process name {name!r}; allowed: 1-80 letters, digits, '_.:-'"
        if not _is_int(entry["pid"]) or entry["pid"] < 2:
            return f"pid {entry['pid']!r}; allowed: an integer >= 2"
        if entry["start"] is not None and not _is_int(entry["start"]):
            return f"start {entry['start']!r}; allowed: an integer or null"
        return None
    if kind == "sched":
        return _sched_problem(entry)
    if set(entry) != {"kind", "name"}:
        return f"{kind} keys {sorted(entry)}; allowed: kind, name"
    if kind == "netns":
        ok = isinstance(name, str) and re.fullmatch(rf"{prefix}[A-Za-z0-9]{{1,24}}", name)
    else:
        ok = (isinstance(name, str) and len(name) <= IFNAME_MAX
              and re.fullmatch(rf"{prefix}[A-Za-z0-9]+(-eth[0-9]+)?", name))
    return None if ok else f"{kind} name {name!r}; allowed: this run's names ({prefix}...)"


_SCHED_KEYS = {"kind", "name", "pid", "start", "policy", "priority", "set_priority"}
_RESTORABLE = (0, 3, 5)  # SCHED_OTHER, SCHED_BATCH, SCHED_IDLE: what a thread may be put back to


def _sched_problem(entry: dict[str, Any]) -> str | None:
    """A thread whose scheduling the run changed (topologies/schedprio.py)."""
    if set(entry) != _SCHED_KEYS:
        return f"sched keys {sorted(entry)}; allowed: {', '.join(sorted(_SCHED_KEYS))}"
    if not isinstance(entry["name"], str) or not _PROC_RE.fullmatch(entry["name"]):
        return f"sched name {entry['name']!r}; allowed: 1-80 letters, digits, '_.:-'"
    if not _is_int(entry["pid"]) or entry["pid"] < 2 or not _is_int(entry["start"]):
        return f"sched pid {entry['pid']!r} / start {entry['start']!r}; allowed: integers, pid >= 2"
    if entry["policy"] not in _RESTORABLE or entry["priority"] != 0:
        return (f"sched policy {entry['policy']!r} priority {entry['priority']!r}; allowed: policy "
                f"{', '.join(map(str, _RESTORABLE))} with priority 0")
    if not _is_int(entry["set_priority"]) or not 1 <= entry["set_priority"] <= 98:
        return f"sched set_priority {entry['set_priority']!r}; allowed: 1..98"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _writer_gone(mtime: float, data: dict) -> bool:
    """Whether the writer of an incomplete manifest is gone: its owner fields say so, else its age."""
    pid, start, boot = data.get("owner_pid"), data.get("owner_start"), data.get("boot_id")
    if _is_int(pid) and (boot is None or isinstance(boot, str)):
        if boot is not None and boot != boot_id():
            return True
        return start is None or proc_start_time(pid) != start
    return time.time() - mtime > EMPTY_GRACE_S

"""A record of every kernel object, OVS bridge and process a run creates, so cleanup touches nothing else.

Each run owns one JSON file ``<tag>.json`` under ``STATE_ROOT`` (``/var/lib/factorysat/runs``, or
``$FACTORYSAT_STATE_DIR``; persistent, because OVS bridges outlive a reboot in ovsdb). A name is
recorded *before* its object is created, after checking that no object of that name exists (a clash
fails the run, :class:`NameClash`); the object is then tagged with the run id where it lives
(:mod:`topologies.runobjects`). An object is removed only if both hold: the manifest records it and
it carries this run's tag. Processes are recorded by pid and kernel start time; so are threads of
other processes whose scheduling the run changed (kind ``sched``, :mod:`topologies.schedprio`),
which removal puts back as they were. The manifest keeps
the boot id: after a reboot its owner is known dead, its processes, namespaces and links are known
gone, and only its bridges are left to remove. Files are written whole (temporary file, then
rename), so no reader ever sees a half-written manifest; :meth:`Manifest.load` validates owner,
mode, place and content before anything in a manifest is believed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies import runobjects, schedprio
from topologies.errors import UserError
from topologies.manifest_check import (
    EMPTY_GRACE_S,
    FILE_TAG_RE,
    FORMAT,
    KINDS,
    TAG_RE,
    ManifestError,
    object_prefix,
    read_manifest,
)
from topologies.runobjects import boot_id, proc_start_time, stop_process

# Names other modules import from here.
__all__ = ["EMPTY_GRACE_S", "KINDS", "STATE_ROOT", "TAG_RE", "Manifest", "ManifestError", "NameClash",
           "Step", "boot_id", "leftover_manifests", "object_prefix", "proc_start_time", "scan",
           "stale_tmp_files", "state_dir", "stop_process"]

log = logging.getLogger(__name__)

STATE_ENV = "FACTORYSAT_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/factorysat/runs")
STATE_ROOT = Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)
_ORDER = {kind: i for i, kind in enumerate(KINDS)}  # removal order: processes first, links last


class NameClash(UserError):
    """An object the run is about to create already exists (it is not the run's: left alone)."""


def state_dir() -> Path:
    """``STATE_ROOT``, created if missing; refused unless owned by root (or us) and not writable by others."""
    if not STATE_ROOT.exists():
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(STATE_ROOT, 0o755)
    st = os.lstat(STATE_ROOT)
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"state folder {STATE_ROOT} (${STATE_ENV}) is not a folder")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise UserError(f"state folder {STATE_ROOT} (${STATE_ENV}): owner uid {st.st_uid}, mode "
                        f"{stat.S_IMODE(st.st_mode):o}; allowed: owned by root or uid {os.geteuid()}, "
                        "not group/world-writable")
    return STATE_ROOT


@dataclass(frozen=True)
class Step:
    """What removal does with one entry: ``remove`` it, ``keep`` it (not ours), it is ``gone``, or an
    ``error`` (its state could not be read)."""

    entry: dict[str, Any]
    action: str
    why: str = ""

    def __str__(self) -> str:
        e = self.entry
        what = f"{e['kind']} {e['name']}" + (f" (pid {e['pid']})" if e["kind"] == "process" else "")
        if e["kind"] == "sched":
            what = f"real-time priority of {e['name']} (back to policy {e['policy']})"
        return f"{what}: {self.why}" if self.why else what


@dataclass
class Manifest:
    """The objects one run created. Thread-unsafe; one per run."""

    tag: str
    path: Path = field(init=False)
    entries: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""
    boot: str = ""
    owner_pid: int = 0
    owner_start: int | None = None
    notes: list[str] = field(default_factory=list)  # what remove_all left because it was not ours

    def __post_init__(self) -> None:
        self.path = STATE_ROOT / f"{self.tag}.json"

    @classmethod
    def create(cls, tag: str) -> Manifest:
        """Claim ``tag`` (FileExistsError if a manifest has it) with a complete first version."""
        if not FILE_TAG_RE.fullmatch(tag):
            raise ValueError(f"manifest tag {tag!r}; allowed: letters, digits, '-' (at most 32)")
        root = state_dir()
        me = os.getpid()
        manifest = cls(tag, run_id=f"{tag}-{secrets.token_hex(4)}", boot=boot_id(), owner_pid=me,
                       owner_start=proc_start_time(me))
        tmp = manifest._write_tmp(durable=True)
        try:  # link() is an exclusive create of a complete file: never a 0-byte manifest
            os.link(tmp, manifest.path)
        except FileExistsError:
            raise FileExistsError(f"{manifest.path} exists: run tag {tag!r} is in use") from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(root)
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read and validate ``path`` (ManifestError, one line, if anything is wrong)."""
        path = Path(path)
        data = read_manifest(path, STATE_ROOT)
        manifest = cls(data["tag"], entries=list(data["entries"]), run_id=data["run_id"],
                       boot=data["boot_id"], owner_pid=data["owner_pid"], owner_start=data["owner_start"])
        manifest.path = path
        return manifest

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "tag": self.tag, "run_id": self.run_id, "boot_id": self.boot,
                "owner_pid": self.owner_pid, "owner_start": self.owner_start, "entries": self.entries}

    def _write_tmp(self, durable: bool) -> Path:
        tmp = self.path.with_name(f".{self.tag}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, json.dumps(self.to_dict(), indent=1).encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def _save(self, durable: bool = False) -> None:
        """Replace the file whole; ``durable``: fsync first (entries that outlive a reboot)."""
        os.replace(self._write_tmp(durable), self.path)

    # --- recording ---------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        """The interface alias that tags this run's links and its namespaces' ``lo``."""
        return runobjects.alias(self.run_id)

    def add(self, kind: str, name: str, **extra: Any) -> None:
        """Record an object about to be created (``kind`` in KINDS). NameClash if an object of that
        name exists already (it is not this run's: the run must not create, use or remove it)."""
        if kind not in KINDS:
            raise ValueError(f"manifest kind {kind!r}; allowed: {', '.join(KINDS)}")
        if kind not in ("process", "sched"):  # a sched entry names a thread that exists
            if any(e["kind"] == kind and e["name"] == name for e in self.entries):
                return  # already recorded (several parts of a run may record the same object)
            if runobjects.exists(kind, name):
                raise NameClash(f"name clash: {kind} {name!r} already exists and was not made by run "
                                f"{self.tag}; it is left alone. If it is a leftover of a killed run, "
                                "`factorysat clean` (or `clean --orphans` for bridges) removes it")
        self.entries.append({"kind": kind, "name": name, **extra})
        self._save(durable=kind == "ovs_bridge")

    def add_process(self, name: str, pid: int) -> None:
        """Record a started process by pid and kernel start time."""
        self.add("process", name, pid=pid, start=proc_start_time(pid))

    def tag_link(self, name: str) -> None:
        """Tag root-namespace link ``name`` (just created) as this run's."""
        runobjects.tag_link(name, self.run_id)

    def discard(self, kind: str, name: str) -> None:
        self.entries = [e for e in self.entries if not (e["kind"] == kind and e["name"] == name)]
        self._save()

    # --- removal -----------------------------------------------------------------------------
    def rebooted(self) -> bool:
        """True if the manifest was written before the current boot."""
        return self.boot != boot_id()

    def owner_alive(self) -> bool:
        return (not self.rebooted() and self.owner_start is not None
                and proc_start_time(self.owner_pid) == self.owner_start)

    def plan(self, entries: list[dict[str, Any]] | None = None) -> list[Step]:
        """What removing ``entries`` (default: all, in removal order) would do, object by object."""
        steps, bridges = [], None
        for entry in sorted(self.entries if entries is None else entries, key=lambda e: _ORDER[e["kind"]]):
            kind, name = entry["kind"], entry["name"]
            if kind != "ovs_bridge" and self.rebooted():
                steps.append(Step(entry, "gone", "gone with the reboot (manifest of an earlier boot)"))
                continue
            try:
                if kind == "sched":
                    steps.append(Step(entry, *schedprio.restore_step(entry)))
                    continue
                if kind == "process":
                    start = entry.get("start")
                    alive = start is not None and proc_start_time(entry["pid"]) == start
                    steps.append(Step(entry, "remove") if alive else Step(entry, "gone"))
                    continue
                if kind == "ovs_bridge":
                    bridges = runobjects.bridge_tags() if bridges is None else bridges
                    found = bridges.get(name)
                else:
                    found = (runobjects.netns_tag if kind == "netns" else runobjects.link_tag)(name)
            except runobjects.ObjectError as exc:
                steps.append(Step(entry, "error", str(exc)))
                continue
            if found is None:
                steps.append(Step(entry, "gone"))
            elif found == self.run_id:
                steps.append(Step(entry, "remove"))
            else:
                whose = f"the tag of run {found}" if found else "no factorysat tag"
                steps.append(Step(entry, "keep", f"exists with {whose}: not made by run {self.tag} "
                                                 "(it existed before, or the run died before tagging "
                                                 "it); left in place"))
        return steps

    def execute(self, steps: list[Step], release: bool = True) -> list[str]:
        """Carry out ``steps``; drop every resolved entry; return what could not be removed.
        ``release``: delete the manifest (and so free its tag) once nothing is left in it."""
        failures = []
        for step in steps:
            entry = step.entry
            if step.action == "remove":
                try:
                    if entry["kind"] == "process":
                        stop_process(entry["pid"], entry.get("start"))
                    elif entry["kind"] == "sched":
                        schedprio.restore(entry)
                    else:
                        runobjects.delete(entry["kind"], entry["name"])
                except Exception as exc:  # keep going: remove as much as possible
                    failures.append(f"{entry['kind']} {entry['name']}: {exc}")
                    continue
            elif step.action == "error":
                failures.append(str(step))
                continue
            elif step.action == "keep":
                self.notes.append(str(step))
            if entry in self.entries:
                self.entries.remove(entry)
        if self.entries or failures or not release:
            self._save()
        else:
            self.path.unlink(missing_ok=True)
        return failures

    def remove_all(self) -> list[str]:
        """Remove every recorded object that is still there and carries this run's tag; return
        what could not be removed (objects without the tag are left and listed in ``notes``)."""
        self.notes = []
        failures = self.execute(self.plan())
        for note in self.notes:
            log.warning("%s", note)
        return failures

    def remove(self, kind: str, name: str) -> str | None:
        """Remove one recorded object as :meth:`remove_all` would; the failure, or None."""
        entries = [e for e in self.entries if e["kind"] == kind and e["name"] == name]
        if not entries:
            return None
        failures = self.execute(self.plan(entries), release=False)  # the run goes on
        return "; ".join(failures) or None


def scan() -> tuple[list[Manifest], list[ManifestError]]:
    """Every manifest in the state folder: the valid ones, and the problem with each other file."""
    if not STATE_ROOT.exists():
        return [], []
    state_dir()
    valid, bad = [], []
    for path in sorted(STATE_ROOT.glob("*.json")):
        try:
            valid.append(Manifest.load(path))
        except ManifestError as exc:
            bad.append(exc)
    return valid, bad


def stale_tmp_files() -> list[Path]:
    """Temporary files (``.<tag>.<pid>.tmp``) whose writer is gone."""
    if not STATE_ROOT.exists():
        return []
    found = []
    for path in STATE_ROOT.glob(".*.tmp"):
        pid = path.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or proc_start_time(int(pid)) is None:
            found.append(path)
    return found


def leftover_manifests() -> list[Manifest]:
    """Valid manifests of runs whose owning process is gone (killed runs, or an earlier boot)."""
    return [m for m in scan()[0] if not m.owner_alive()]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

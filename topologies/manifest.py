"""A record of every kernel object and process a run creates, so cleanup touches nothing else.

Each run owns one JSON file under ``STATE_ROOT`` (``/run/factorysat/<tag>.json``). Entries are
appended *before* the object is created (so a crash in between leaves a harmless stale entry,
never an orphan), and removed objects are dropped from the file. ``factorysat clean`` replays
the files of runs whose owner process is gone. Nothing is ever matched by pattern.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path(os.environ.get("FACTORYSAT_STATE_DIR", "/run/factorysat"))

KINDS = ("process", "ovs_bridge", "netns", "link")
# Removal order: stop processes first, then bridges, namespaces, and root-namespace links.
_ORDER = {kind: i for i, kind in enumerate(KINDS)}


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of a running ``pid`` (clock ticks since boot), to detect pid reuse.

    None if there is no such process or it has exited (a zombie waiting to be reaped).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (no-op otherwise)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass
class Manifest:
    """The objects one run created. Thread-unsafe; one per run."""

    tag: str
    path: Path = field(init=False)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = STATE_ROOT / f"{self.tag}.json"

    @classmethod
    def create(cls, tag: str) -> Manifest:
        manifest = cls(tag)
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        try:  # exclusive create: two runs can never own the same tag
            os.close(os.open(manifest.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise FileExistsError(f"{manifest.path} exists: run tag {tag!r} is in use") from None
        manifest._save()
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        manifest = cls(data["tag"])
        manifest.path = path
        manifest.entries = data["entries"]
        return manifest

    def _save(self) -> None:
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tag": self.tag, "owner_pid": os.getpid(),
                                   "owner_start": proc_start_time(os.getpid()),
                                   "entries": self.entries}, indent=1))
        os.replace(tmp, self.path)

    # --- recording ---------------------------------------------------------------------------
    def add(self, kind: str, name: str, **extra: Any) -> None:
        """Record an object about to be created (``kind`` in KINDS)."""
        if kind not in KINDS:
            raise ValueError(f"manifest kind {kind!r}; allowed: {', '.join(KINDS)}")
        if kind != "process" and any(e["kind"] == kind and e["name"] == name for e in self.entries):
            return  # already recorded (several parts of a run may record the same object)
        self.entries.append({"kind": kind, "name": name, **extra})
        self._save()

    def add_process(self, name: str, pid: int) -> None:
        """Record a started process by pid and kernel start time."""
        self.add("process", name, pid=pid, start=proc_start_time(pid))

    def discard(self, kind: str, name: str) -> None:
        self.entries = [e for e in self.entries if not (e["kind"] == kind and e["name"] == name)]
        self._save()

    # --- removal -----------------------------------------------------------------------------
    def remove_all(self) -> list[str]:
        """Remove every recorded object still present; return what could not be removed."""
        failures: list[str] = []
        for entry in sorted(self.entries, key=lambda e: _ORDER[e["kind"]]):
            try:
                remove_entry(entry)
            except Exception as exc:  # keep going: remove as much as possible
                failures.append(f"{entry['kind']} {entry['name']}: {exc}")
        if not failures:
            self.entries = []
            self.path.unlink(missing_ok=True)
        else:
            self._save()
        return failures

    def owner_alive(self) -> bool:
        data = json.loads(self.path.read_text())
        pid, start = data.get("owner_pid"), data.get("owner_start")
        return pid is not None and proc_start_time(pid) == start and start is not None


def remove_entry(entry: dict[str, Any]) -> None:
    """Remove one recorded object if it still exists (idempotent)."""
    kind, name = entry["kind"], entry["name"]
    if kind == "process":
        stop_process(entry["pid"], entry.get("start"))
    elif kind == "ovs_bridge":
        subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name],
                       check=True, capture_output=True)
        from topologies.switches import destroy_noop_qos  # QoS rows outlive their ports

        destroy_noop_qos(name)
    elif kind == "netns":
        if Path(f"/run/netns/{name}").exists():
            subprocess.run(["ip", "netns", "delete", name], check=True, capture_output=True)
    elif kind == "link":
        # A veth vanishes by itself when its peer's namespace goes, asynchronously: a failed
        # delete of a link that is gone a moment later is success.
        if Path(f"/sys/class/net/{name}").exists():
            out = subprocess.run(["ip", "link", "delete", name], capture_output=True, text=True)
            deadline = time.monotonic() + 2.0
            while out.returncode != 0 and Path(f"/sys/class/net/{name}").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ip link delete {name}: {out.stderr.strip()}")
                time.sleep(0.05)


def stop_process(pid: int, start: int | None, timeout_s: float = 3.0) -> None:
    """SIGTERM then SIGKILL ``pid`` if it is still the process we started."""
    if start is None or proc_start_time(pid) != start:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc_start_time(pid) != start:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def leftover_manifests() -> list[Manifest]:
    """Manifests of runs whose owning process is gone (killed runs)."""
    if not STATE_ROOT.is_dir():
        return []
    found = []
    for path in sorted(STATE_ROOT.glob("*.json")):
        manifest = Manifest.load(path)
        if not manifest.owner_alive():
            found.append(manifest)
    return found

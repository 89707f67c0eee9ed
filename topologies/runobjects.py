"""The live objects a run creates, tagged where they live, and found, checked and removed by name.

A run proves an object is its own in two ways (topologies/manifest.py holds the first): its manifest
records the name, and the object itself carries the run's id:

- OVS bridge: ``external_ids:factorysat-run=<run id>`` (set in the ``add-br`` transaction);
- link in the root namespace (veth end, switch port): interface alias ``factorysat:<run id>``;
- named network namespace: the alias ``factorysat:<run id>`` on its ``lo``.

An object of a recorded name without the run's tag existed before (a name clash) and is never
removed. Processes are known by pid and kernel start time (pids are reused), within one boot.
Every external command here has a timeout: ``ovs-vsctl`` waits at most ``OVS_TIMEOUT_S`` for
ovsdb, and every process is killed after ``CMD_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

OVS_RUN_KEY = "factorysat-run"       # Bridge external_ids key: the run id that created it
QOS_OWNER_KEY = "factorysat_bridge"  # QoS external_ids key: the bridge a noop QoS row was made for
ALIAS_PREFIX = "factorysat:"         # interface alias of a run's links and of its namespaces' lo
OVS_TIMEOUT_S = 10                   # ovs-vsctl --timeout: how long to wait for ovsdb
CMD_TIMEOUT_S = 20                   # any external command: killed after this long
SYS_NET = Path("/sys/class/net")     # links of this process's (the root) network namespace
NETNS_DIR = Path("/run/netns")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


class ObjectError(RuntimeError):
    """An external command failed or did not answer in time (one line: what and why)."""


def run(argv: list[str], timeout_s: float = CMD_TIMEOUT_S, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` with a timeout; ObjectError if it cannot start, times out or (``check``) fails."""
    try:
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ObjectError(f"{' '.join(argv[:4])}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise ObjectError(f"{argv[0]}: {exc.strerror}") from None
    if check and out.returncode != 0:
        raise ObjectError(f"{' '.join(argv[:5])}: {(out.stderr or out.stdout).strip()[:200]}")
    return out


def vsctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``ovs-vsctl --timeout=OVS_TIMEOUT_S args`` (ObjectError when ovsdb does not answer)."""
    return run(["ovs-vsctl", f"--timeout={OVS_TIMEOUT_S}", *args], timeout_s=OVS_TIMEOUT_S + 5,
               check=check)


def alias(run_id: str) -> str:
    """The interface alias that marks a link (or a namespace's ``lo``) as made by run ``run_id``."""
    return ALIAS_PREFIX + run_id


def ovs_tag_opts(run_id: str) -> str:
    """``ovs-vsctl set Bridge`` words that mark a bridge as made by run ``run_id``."""
    return f"external_ids:{OVS_RUN_KEY}={run_id}"


# --- processes (pid + kernel start time) and the boot they belong to ------------------------------
def boot_id() -> str:
    """This boot's id (changes at every reboot)."""
    return BOOT_ID_FILE.read_text().strip()


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


# --- tagging -------------------------------------------------------------------------------------
def tag_link(name: str, run_id: str) -> None:
    """Mark root-namespace link ``name`` as made by ``run_id`` (its alias, written through sysfs)."""
    try:
        (SYS_NET / name / "ifalias").write_text(alias(run_id))
    except OSError as exc:
        raise ObjectError(f"cannot tag link {name} with alias {alias(run_id)}: {exc.strerror}") from None


# --- probing: None = absent, "" = present without a tag, else the run id it carries -----------
def link_tag(name: str) -> str | None:
    """The run id of root-namespace link ``name``: None if absent, "" if it has no run alias."""
    try:
        text = (SYS_NET / name / "ifalias").read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return "" if (SYS_NET / name).exists() else None
    return text.removeprefix(ALIAS_PREFIX) if text.startswith(ALIAS_PREFIX) else ""


def netns_tag(name: str) -> str | None:
    """The run id on the ``lo`` of namespace ``name``: None if absent, "" if none."""
    if not (NETNS_DIR / name).exists():
        return None
    out = run(["ip", "-n", name, "-j", "link", "show", "dev", "lo"], check=False)
    if out.returncode != 0:
        return None if not (NETNS_DIR / name).exists() else ""
    try:
        text = str(json.loads(out.stdout)[0].get("ifalias", ""))
    except (ValueError, IndexError, AttributeError):
        return ""
    return text.removeprefix(ALIAS_PREFIX) if text.startswith(ALIAS_PREFIX) else ""


def bridge_tags() -> dict[str, str]:
    """Every OVS bridge now: name -> run id of its ``factorysat-run`` external id ("" if none)."""
    out = vsctl("-f", "json", "--columns=name,external_ids", "list", "Bridge")
    try:
        rows = json.loads(out.stdout)["data"]
        return {str(name): str(dict(ids[1]).get(OVS_RUN_KEY, "")) for name, ids in rows}
    except (ValueError, KeyError, TypeError, IndexError):
        raise ObjectError("ovs-vsctl list Bridge: unexpected output") from None


def bridge_exists(name: str) -> bool:
    """Whether OVS has a bridge ``name`` (ObjectError when ovsdb does not answer)."""
    out = vsctl("br-exists", name, check=False)
    if out.returncode not in (0, 2):
        raise ObjectError(f"ovs-vsctl br-exists {name}: {out.stderr.strip()[:200]}")
    return out.returncode == 0


def exists(kind: str, name: str) -> bool:
    """Whether an object of ``kind`` (not ``process``) named ``name`` exists now."""
    if kind == "ovs_bridge":
        return bridge_exists(name)
    if kind == "netns":
        return (NETNS_DIR / name).exists()
    return (SYS_NET / name).exists()


# --- removal (callers check the tag first) ----------------------------------------------------
def delete_bridge(name: str) -> None:
    """Delete OVS bridge ``name`` and the noop QoS rows made for its ports."""
    vsctl("--if-exists", "del-br", name)
    destroy_noop_qos(name)


def destroy_noop_qos(bridge: str) -> None:
    """Destroy the noop QoS rows made for ``bridge``'s ports (QoS rows outlive their ports)."""
    out = vsctl("--bare", "--columns=_uuid", "find", "QoS", f"external_ids:{QOS_OWNER_KEY}={bridge}")
    words: list[str] = []
    for uuid in out.stdout.split():
        words += ["--", "--if-exists", "destroy", "QoS", uuid]
    if words:
        vsctl(*words)


def delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        run(["ip", "netns", "delete", name])


def delete_link(name: str) -> None:
    """Delete root-namespace link ``name``. A veth vanishes by itself when its peer's namespace
    goes, asynchronously: a failed delete of a link that is gone a moment later is success."""
    if not (SYS_NET / name).exists():
        return
    out = run(["ip", "link", "delete", name], check=False)
    deadline = time.monotonic() + 2.0
    while out.returncode != 0 and (SYS_NET / name).exists():
        if time.monotonic() > deadline:
            raise ObjectError(f"ip link delete {name}: {out.stderr.strip()[:200]}")
        time.sleep(0.05)


def delete(kind: str, name: str) -> None:
    """Remove one object of ``kind`` (not ``process``) if it still exists (idempotent)."""
    {"ovs_bridge": delete_bridge, "netns": delete_netns, "link": delete_link}[kind](name)

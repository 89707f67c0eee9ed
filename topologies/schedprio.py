"""Real-time priority for a process the run did not start (``ovs-vswitchd``): recorded, then
restored at teardown and by ``factorysat clean``.

The userspace OVS datapath reads every port in ``ovs-vswitchd``'s main thread (dpif-netdev polls
non-PMD ports there). Under load that thread competes with the real-time relay and traffic engine
and, when it waits too long, the kernel drops packets at its full receive sockets (measured:
README "Factory scale"). Raising it to SCHED_FIFO for the run, between the traffic engine and the
relay, is chosen by its measured effect (same section).

Each thread changed is written to the run's manifest **before** it is changed (kind ``sched``:
thread id, kernel start time, the policy and priority it had, the priority set). Restoring puts
the old policy back only if the thread is still the same one (start time) and still has exactly
the priority the run set: a thread that someone else changed since is left alone, and said so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from topologies.runobjects import proc_start_time

# SCHED_FIFO priorities of the run's data path, highest first: the host-stall sentinel (20,
# topologies/hoststall.py), the relay (10, relay/relay.c), ovs-vswitchd's packet thread (9, here),
# the traffic engine (8, relay/traffic_engine.c). Below the relay: OVS never delays a relay departure.
OVS_RT_PRIO = 9
RESTORABLE = (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE)  # policies a thread may be put back to


def thread_sched(tid: int) -> tuple[int, int]:
    """``(policy, priority)`` of thread ``tid`` now (OSError if it is gone)."""
    return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority


def main_thread_ids(pid: int) -> list[int]:
    """The thread of ``pid`` that polls the userspace datapath's ports: its main thread."""
    return [pid] if Path(f"/proc/{pid}/task/{pid}").exists() else []


def raise_to_fifo(manifest: Any, label: str, tids: list[int], priority: int) -> list[dict[str, Any]]:
    """Put each of ``tids`` on SCHED_FIFO ``priority``, each recorded in ``manifest`` first.

    A thread already real-time (someone else's choice) is left alone. Returns, per thread, what was
    done: ``{"tid", "from": [policy, priority], "to": [policy, priority] | None, "why"}``."""
    done = []
    for tid in tids:
        start = proc_start_time(tid)
        try:
            policy, prio = thread_sched(tid)
        except OSError as exc:
            done.append({"tid": tid, "from": None, "to": None, "why": f"gone ({exc.strerror})"})
            continue
        if start is None or policy not in RESTORABLE:
            done.append({"tid": tid, "from": [policy, prio], "to": None,
                         "why": "already real-time: left as it is" if start else "gone"})
            continue
        name = f"{label}:{tid}"
        manifest.add("sched", name, pid=tid, start=start, policy=policy, priority=prio,
                     set_priority=priority)
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as exc:
            manifest.discard("sched", name)
            done.append({"tid": tid, "from": [policy, prio], "to": None,
                         "why": f"not changed: {exc.strerror}"})
            continue
        done.append({"tid": tid, "from": [policy, prio], "to": [os.SCHED_FIFO, priority], "why": ""})
    return done


def restore_step(entry: dict[str, Any]) -> tuple[str, str]:
    """What removal does with a ``sched`` entry: ``("remove", "")`` to restore it, ``("gone", ..)``
    or ``("keep", why)`` when someone else changed the thread since."""
    if proc_start_time(entry["pid"]) != entry["start"]:
        return "gone", ""
    try:
        now = thread_sched(entry["pid"])
    except OSError:
        return "gone", ""
    if now != (os.SCHED_FIFO, entry["set_priority"]):
        return "keep", (f"scheduling changed since the run set it (now policy {now[0]} priority "
                        f"{now[1]}): left as it is")
    return "remove", ""


def restore(entry: dict[str, Any]) -> None:
    """Give the thread of a ``sched`` entry back the policy and priority it had."""
    os.sched_setscheduler(entry["pid"], entry["policy"], os.sched_param(entry["priority"]))


class SaturationGuard:
    """Decides when a real-time ``ovs-vswitchd`` must get its normal priority back: once the
    machine has had (almost) no idle time for ``window_s``. Above the traffic engine's priority,
    a saturated real-time data path would otherwise starve the engine and the run's own control
    (in a 124-UE trial the engine, below a real-time OVS, fell behind by 0.25 s every second);
    giving OVS back to the normal scheduler shares the overload instead, and the run says when
    and why.

    Pure: :meth:`saturated` takes samples ``(t_s, idle_ticks, total_ticks)`` from ``/proc/stat``.
    """

    def __init__(self, window_s: float = 3.0, idle_share: float = 0.03) -> None:
        self.window_s, self.idle_share = window_s, idle_share
        self._samples: list[tuple[float, int, int]] = []

    def saturated(self, t_s: float, idle_ticks: int, total_ticks: int) -> bool:
        """Add a sample; True if, over the last ``window_s`` (fully covered), idle time (idle +
        iowait, all CPUs) stayed at or below ``idle_share`` of all time."""
        self._samples.append((t_s, idle_ticks, total_ticks))
        while len(self._samples) > 2 and self._samples[1][0] <= t_s - self.window_s:
            self._samples.pop(0)
        t0, idle0, total0 = self._samples[0]
        if t_s - t0 < self.window_s or total_ticks <= total0:
            return False
        return (idle_ticks - idle0) <= self.idle_share * (total_ticks - total0)


def idle_and_total_ticks() -> tuple[int, int] | None:
    """``(idle + iowait, all)`` clock ticks of all CPUs since boot (``/proc/stat``), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)

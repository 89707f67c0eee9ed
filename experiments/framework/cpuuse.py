"""CPU use of each emulator component while the traffic runs (``cpu_during_traffic`` in
metadata.json): where the machine's CPUs went, so an emulator error can be put on a cause.

Read from ``/proc``: a process's ``utime + stime`` (all its threads) and the machine's busy time
(``/proc/stat``, all CPUs, minus idle and iowait), at the start and end of the window. Figures are
% of one CPU (a 2-CPU machine has 200 %). Software interrupt work is charged to whichever process
was running when it ran (e.g. a veth transmit delivers the packet in the sender's context), so
components also pay for part of their peers' kernel work: ``system_pct`` says how much.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from topologies.manifest import proc_start_time
from topologies.schedprio import idle_and_total_ticks


def process_ticks(pid: int) -> tuple[int, int] | None:
    """``(user, system)`` clock ticks of ``pid`` (all threads); None if it is gone."""
    try:
        words = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(words[11]), int(words[12])
    except (OSError, ValueError, IndexError):
        return None


def machine_ticks() -> int | None:
    """Busy clock ticks of all CPUs (``/proc/stat``: everything but idle and iowait)."""
    ticks = idle_and_total_ticks()
    return None if ticks is None else ticks[1] - ticks[0]


class CpuMeter:
    """CPU use of named groups of processes over one window (:meth:`start` .. :meth:`stop`).

    ``components``: name -> pids. A process that exits (or whose pid is reused) inside the window
    is left out of its component and named in ``incomplete``.
    """

    def __init__(self, components: Mapping[str, Sequence[int | None]]) -> None:
        self.components = {name: [p for p in pids if p] for name, pids in components.items()}
        self._start: dict[int, tuple[int | None, tuple[int, int] | None]] = {}
        self._machine: int | None = None
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine = machine_ticks()
        self._start = {pid: (proc_start_time(pid), process_ticks(pid))
                       for pids in self.components.values() for pid in pids}

    def stop(self) -> dict[str, Any]:
        """``{"window_s", "cpus", "cpu_pct": {component: % of one CPU}, "system_pct": {...},
        "incomplete": [component, ...]}`` with ``cpu_pct["machine"]`` for the whole machine."""
        window = max(time.monotonic() - self._t0, 1e-9)
        hz = os.sysconf("SC_CLK_TCK")

        def pct(ticks: float) -> float:
            return round(100.0 * ticks / hz / window, 1)

        cpu: dict[str, float | None] = {}
        system: dict[str, float | None] = {}
        incomplete = []
        for name, pids in self.components.items():
            user_t = sys_t = 0
            whole = bool(pids)
            for pid in pids:
                start, before = self._start.get(pid, (None, None))
                after = process_ticks(pid)
                if before is None or after is None or proc_start_time(pid) != start:
                    whole = False
                    continue
                user_t += after[0] - before[0]
                sys_t += after[1] - before[1]
            if pids and not whole:
                incomplete.append(name)
            cpu[name] = pct(user_t + sys_t) if pids else None
            system[name] = pct(sys_t) if pids else None
        end = machine_ticks()
        cpu["machine"] = pct(end - self._machine) if end is not None and self._machine is not None else None
        return {"window_s": round(window, 3), "cpus": os.cpu_count(), "cpu_pct": cpu,
                "system_pct": system, "incomplete": incomplete}

"""Liveness of a run: every component it started is watched for the whole run.

A :class:`Watchdog` thread polls registered checks every ``interval_s`` (0.2 s). A check returns
None while its component runs, or a :class:`~topologies.errors.RunFailed` naming the component and
its log once it has died. On the first death the watchdog records the failure and interrupts the
main thread (SIGUSR1, whose handler raises that RunFailed), so the run stops within about a
second wherever it waits; teardown runs as for Ctrl-C. Normal ends are not deaths: a process the
run stops itself is unwatched first (:meth:`Watchdog.unwatch`), and a process that is meant to end
by itself (a sender) may exit with code 0.

One watchdog is active per process at a time (:func:`active`): agents started through
:mod:`experiments.framework.agent_procs` register with it without the kinds passing it around.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from topologies.errors import RunFailed
from topologies.links.backend import describe_exit
from topologies.manifest import proc_start_time

log = logging.getLogger(__name__)

Check = Callable[[], RunFailed | None]
POLL_INTERVAL_S = 0.2  # a death is noticed within this, and the run interrupted at once
OVS_RUN_DIR = Path("/var/run/openvswitch")
OVS_LOG_DIR = Path("/var/log/openvswitch")
OVS_DAEMONS = ("ovsdb-server", "ovs-vswitchd")

_active: Watchdog | None = None


def active() -> Watchdog | None:
    """The watchdog of the run in progress in this process, if any."""
    return _active


def process_check(name: str, proc: subprocess.Popen, log_path: Path | None,
                  ends_by_itself: bool = False) -> Check:
    """A check for a child process: dead once it has exited (with code 0 only if it must not)."""
    def check() -> RunFailed | None:
        code = proc.poll()
        if code is None or (ends_by_itself and code == 0):
            return None
        return RunFailed(f"{name} (pid {proc.pid}) {describe_exit(code)} mid-run; see {log_path}",
                         component=name, log_path=str(log_path) if log_path else None)
    return check


def pid_check(name: str, pid: int, log_path: Path | None) -> Check | None:
    """A check for a process that is not our child (by pid and kernel start time); None if gone."""
    start = proc_start_time(pid)
    if start is None:
        return None

    def check() -> RunFailed | None:
        if proc_start_time(pid) == start:
            return None
        return RunFailed(f"{name} (pid {pid}) is gone; see {log_path}", component=name,
                         log_path=str(log_path) if log_path else None)
    return check


def ovs_daemon_pid(daemon: str, run_dir: Path = OVS_RUN_DIR) -> int | None:
    """The pid in OVS daemon ``daemon``'s pidfile (e.g. ``ovs-vswitchd``), or None if unreadable."""
    try:
        return int((run_dir / f"{daemon}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ovs_daemon_checks(run_dir: Path = OVS_RUN_DIR) -> dict[str, Check]:
    """Checks for the running OVS daemons (pids from their pidfiles): watched, never signalled."""
    checks = {}
    for daemon in OVS_DAEMONS:
        pid = ovs_daemon_pid(daemon, run_dir)
        if pid is None:
            log.warning("not watching %s: no readable pidfile in %s", daemon, run_dir)
            continue
        check = pid_check(daemon, pid, OVS_LOG_DIR / f"{daemon}.log")
        if check is not None:
            checks[daemon] = check
    return checks


def flow_packets(bridges: list[str]) -> dict[str, int | None]:
    """Packets matched by the installed flows of each bridge (``ovs-ofctl dump-aggregate``)."""
    counts: dict[str, int | None] = {}
    for bridge in bridges:
        try:
            out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--timeout=2", "dump-aggregate", bridge],
                                 capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        found = re.search(r"packet_count=(\d+)", out)
        counts[bridge] = int(found.group(1)) if found else None
    return counts


def fail_modes(bridges: list[str]) -> dict[str, str | None]:
    """Each bridge's OVS fail mode (``secure``: installed flows stay without a controller)."""
    modes: dict[str, str | None] = {}
    for bridge in bridges:
        try:
            out = subprocess.run(["ovs-vsctl", "--timeout=2", "get-fail-mode", bridge],
                                 capture_output=True, text=True, timeout=5)
            modes[bridge] = out.stdout.strip() or None if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            modes[bridge] = None
    return modes


def data_path_probe(bridges: list[str], interval_s: float = 0.5) -> dict[str, Any]:
    """Whether the switches kept forwarding: flow packet counters ``interval_s`` apart."""
    before = flow_packets(bridges)
    time.sleep(interval_s)
    after = flow_packets(bridges)
    rising = [b for b in bridges if (before[b] is not None and after[b] is not None
                                     and after[b] > before[b])]
    return {"fail_mode": fail_modes(bridges), "interval_s": interval_s,
            "flow_packets_before": before, "flow_packets_after": after,
            "bridges_forwarding": rising, "kept_forwarding": bool(rising)}


class Watchdog:
    """Polls checks in a thread; on the first death records it and interrupts the main thread.

    ``protected``: code objects during which the interrupt must not raise (teardown); the failure
    is still recorded and returned by :meth:`stop`.
    """

    def __init__(self, interval_s: float = POLL_INTERVAL_S,
                 on_death: Callable[[RunFailed], None] | None = None) -> None:
        self.interval_s = interval_s
        self.on_death = on_death  # runs in the watchdog thread before the interrupt (e.g. counters)
        self.protected: set[CodeType] = set()
        self.failure: RunFailed | None = None
        self.detected_monotonic: float | None = None
        self._checks: dict[Any, tuple[str, Check]] = {}
        self.history: list[str] = []  # every component watched during the run, in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main_ident: int | None = None
        self._previous_handler: Any = None
        self._raised = False
        self._announced = threading.Event()  # set once a death is recorded and on_death has run

    # --- registration ---------------------------------------------------------------------------
    def watch(self, key: Any, name: str, check: Check) -> None:
        """Watch ``check`` under ``key`` (used to unwatch it) for component ``name``."""
        with self._lock:
            self._checks[key] = (name, check)
            if name not in self.history:
                self.history.append(name)

    def watch_process(self, name: str, proc: subprocess.Popen, log_path: Path | None,
                      ends_by_itself: bool = False) -> None:
        """Watch a child process (key: the Popen object)."""
        self.watch(proc, name, process_check(name, proc, log_path, ends_by_itself))

    def unwatch(self, key: Any) -> RunFailed | None:
        """Stop watching ``key`` (before the run stops that component on purpose).

        Its check runs one last time: a death that happened before is recorded (never lost
        because the run then killed the component) and returned; no interrupt.
        """
        with self._lock:
            entry = self._checks.pop(key, None)
        return self._sweep([entry]) if entry else None

    def watched(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self._checks.values()]

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling; become the active watchdog; arm the main-thread interrupt if possible."""
        global _active
        if threading.current_thread() is threading.main_thread():
            self._main_ident = threading.main_thread().ident
            self._previous_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        _active = self
        self._thread = threading.Thread(target=self._poll, name="factorysat-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> RunFailed | None:
        """Stop polling and disarm the interrupt (idempotent); check everything one last time;
        return the first death recorded, if any."""
        global _active
        with self._lock:
            self._main_ident = None  # no interrupt from now on
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        with self._lock:
            checks, self._checks = list(self._checks.values()), {}
        self._sweep(checks)
        if _active is self:
            _active = None
        if self._previous_handler is not None:
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._previous_handler = None
        return self.failure

    def raise_if_failed(self) -> None:
        """Raise the recorded death (for loops that poll instead of being interrupted)."""
        if self.failure is not None and self._announced.is_set() and not self._raised:
            self._raised = True
            raise self.failure

    # --- internals ------------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                checks = list(self._checks.values())
            failure = self._sweep(checks, interrupt=True)
            if failure is not None:
                return

    def _sweep(self, checks: list[tuple[str, Check]], interrupt: bool = False) -> RunFailed | None:
        """Run ``checks``; record the first death (interrupting the main thread if asked)."""
        for name, check in checks:
            try:
                failure = check()
            except Exception as exc:  # a broken check is a failure, never silence
                failure = RunFailed(f"watching {name} failed: {exc!r}", component=name)
            if failure is not None:
                self._died(failure, interrupt)
                return failure
        return None

    def _died(self, failure: RunFailed, interrupt: bool) -> None:
        with self._lock:
            first = self.failure is None
            if first:  # the first death is the cause; later ones follow from it
                self.failure, self.detected_monotonic = failure, time.monotonic()
                failure.detected_realtime_ns = time.time_ns()  # type: ignore[attr-defined]
        if not first:
            log.debug("also: %s", failure)
            return
        print(f"factorysat: {failure.component} died, stopping the run: {failure}", file=sys.stderr,
              flush=True)
        if self.on_death is not None:
            try:
                self.on_death(failure)
            except Exception as exc:
                log.warning("after %s died: %r", failure.component, exc)
        self._announced.set()
        with self._lock:
            if interrupt and self._main_ident is not None and not self._stop.is_set():
                signal.pthread_kill(self._main_ident, signal.SIGUSR1)

    def _on_signal(self, _signum: int, frame: FrameType | None) -> None:
        if self.failure is None or self._raised or self._main_ident is None:
            return
        if sys.exc_info()[0] is not None:  # already failing (in an except/finally): let it unwind
            return
        while frame is not None:  # never raise inside teardown: it reads self.failure itself
            if frame.f_code in self.protected:
                return
            frame = frame.f_back
        self._raised = True
        raise self.failure

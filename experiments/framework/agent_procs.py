"""Start, wait for and stop in-host agent processes (``python -m experiments.agents.*``).

Every process is recorded in the run's manifest the moment it exists, so teardown and
``factorysat clean`` can stop it by pid, and watched by the run's watchdog
(:mod:`experiments.framework.watchdog`) until the run stops it: an agent that dies mid-run fails
the run within a second, naming the agent and its log.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments.framework import watchdog
from topologies.errors import RunFailed
from topologies.links.backend import describe_exit

# Agent modes that end by themselves after their duration (exit 0 is their normal end); every
# other mode (recv, echo, server) runs until the run stops it, so any exit before that is a death.
FINITE_MODES = ("send", "probe", "client")

KILL_GRACE_S = 2.0  # after an error, agents get this long to flush their data on SIGTERM
_logs: dict[int, Path] = {}  # pid -> log file of every agent started in this process


def start_agent(network: Any, host_name: str, module: str, args: list[str], log_path: Path,
                label: str, ends_by_itself: bool | None = None) -> subprocess.Popen:
    """Start ``python -m module args`` inside emulated host ``host_name``; record and watch it.

    ``ends_by_itself``: the agent exits with code 0 when done (default: its mode, ``args[0]``, is
    one of FINITE_MODES); otherwise any exit before :func:`stop_agent` fails the run.
    """
    with open(log_path, "w") as log_file:
        proc = network.host(host_name).popen([sys.executable, "-m", module, *args],
                                             stdout=log_file, stderr=subprocess.STDOUT)
    network.manifest.add_process(label, proc.pid)
    _logs[proc.pid] = log_path
    if ends_by_itself is None:
        ends_by_itself = bool(args) and args[0] in FINITE_MODES
    dog = watchdog.active()
    if dog is not None:
        dog.watch_process(f"agent {label} on {host_name}", proc, log_path, ends_by_itself)
    return proc


def wait_ready(waits: list[tuple[str, subprocess.Popen, Path]], timeout_s: float) -> None:
    """Wait until each ``(what, process, ready file)`` has written its file, or fail clearly."""
    deadline = time.monotonic() + timeout_s
    for what, proc, ready in waits:
        log_path = _logs.get(proc.pid)
        while not ready.exists():
            if proc.poll() is not None:
                how = describe_exit(proc.returncode)
                raise RunFailed(f"{what} {how} before it was ready; see {log_path}", component=what,
                                log_path=str(log_path) if log_path else None)
            if time.monotonic() > deadline:
                raise RunFailed(f"{what} not ready after {timeout_s:g} s; see {log_path}", component=what,
                                log_path=str(log_path) if log_path else None)
            time.sleep(0.02)


def stop_agent(what: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM an agent that flushes its data on exit; it must exit cleanly in time.

    Unwatched first (our SIGTERM is not a death); if it had already died, that death is raised.
    """
    dog = watchdog.active()
    failure = dog.unwatch(proc) if dog is not None else None
    if failure is not None:
        raise failure
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TimeoutError(f"{what} did not stop; its data may be partial") from None
    if code != 0:
        raise RuntimeError(f"{what} exited with {code}; see {_logs.get(proc.pid)}")


def kill_agents(procs: list[subprocess.Popen], grace_s: float = KILL_GRACE_S) -> None:
    """Stop whichever of ``procs`` still run (teardown after an error): SIGTERM, so each flushes
    the data it holds, then SIGKILL after ``grace_s``; reap them all.

    Each is unwatched first; one that had died on its own is recorded as the run's failure.
    """
    dog = watchdog.active()
    running = []
    for proc in procs:
        if dog is not None:
            dog.unwatch(proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            running.append(proc)
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

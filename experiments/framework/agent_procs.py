"""Start, wait for and stop in-host agent processes (``python -m experiments.agents.*``).

Every process is recorded in the run's manifest the moment it exists, so teardown and
``factorysat clean`` can stop it by pid.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def start_agent(network: Any, host_name: str, module: str, args: list[str], log_path: Path,
                label: str) -> subprocess.Popen:
    """Start ``python -m module args`` inside emulated host ``host_name``; record its pid."""
    with open(log_path, "w") as log_file:
        proc = network.host(host_name).popen([sys.executable, "-m", module, *args],
                                             stdout=log_file, stderr=subprocess.STDOUT)
    network.manifest.add_process(label, proc.pid)
    return proc


def wait_ready(waits: list[tuple[str, subprocess.Popen, Path]], timeout_s: float) -> None:
    """Wait until each ``(what, process, ready file)`` has written its file, or fail clearly."""
    deadline = time.monotonic() + timeout_s
    for what, proc, ready in waits:
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout_s} s")
            time.sleep(0.02)


def stop_agent(what: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM an agent that flushes its data on exit; it must exit cleanly in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TimeoutError(f"{what} did not stop; its data may be partial") from None
    if code != 0:
        raise RuntimeError(f"{what} exited with {code}")


def kill_agents(procs: list[subprocess.Popen]) -> None:
    """Kill and reap whichever of ``procs`` still run (teardown after an error)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

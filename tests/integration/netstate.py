"""What the root tests look at to prove a run left nothing behind (imported by the tests)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

from topologies.manifest import STATE_ROOT


def snapshot() -> dict[str, set[str]]:
    """Network namespaces, root-namespace links, OVS bridges and run manifests right now."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    bridges = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True,
                             text=True).stdout
    return {"netns": {line.split()[0] for line in netns.splitlines() if line.strip()},
            "links": set(os.listdir("/sys/class/net")),
            "bridges": set(bridges.split()),
            "manifests": {p.name for p in STATE_ROOT.glob("*.json")} if STATE_ROOT.exists() else set()}


def traffic_start_ns(results: Path, experiment: str = "demo") -> int | None:
    """The traffic start instant a run under ``results`` wrote in its metadata, once it has."""
    for meta in results.glob(f"{experiment}/*/metadata.json"):
        with contextlib.suppress(ValueError, OSError):
            return json.loads(meta.read_text()).get("traffic_start_realtime_ns")
    return None


def wait_for_traffic(proc: subprocess.Popen, results: Path, after_s: float = 1.5,
                     timeout_s: float = 120.0) -> Path:
    """The run folder once traffic has flowed for ``after_s`` (AssertionError if the run ended or
    traffic did not start within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while (start := traffic_start_ns(results)) is None or time.time_ns() < start + int(after_s * 1e9):
        assert proc.poll() is None, f"run ended before traffic started: {proc.communicate()}"
        assert time.monotonic() < deadline, f"traffic did not start within {timeout_s:g} s"
        time.sleep(0.2)
    return next(results.glob("*/*"))

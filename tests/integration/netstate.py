"""What the root tests look at to prove a run left nothing behind (imported by the tests)."""

from __future__ import annotations

import os
import subprocess

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

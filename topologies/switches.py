"""Open vSwitch datapath selection and the switch class the runner passes to Mininet."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from mininet.node import OVSSwitch

DATAPATHS = ("auto", "kernel", "user")


class OvsNotRunning(RuntimeError):
    """The OVS daemons do not answer."""


def ovs_running(timeout_s: int = 5) -> bool:
    try:
        out = subprocess.run(["ovs-vsctl", f"--timeout={timeout_s}", "show"], capture_output=True)
    except OSError:
        return False
    return out.returncode == 0


def kernel_datapath_available() -> bool:
    """True if the openvswitch kernel module is loaded or loads."""
    if Path("/sys/module/openvswitch").exists():
        return True
    try:
        return subprocess.run(["modprobe", "-q", "openvswitch"], capture_output=True).returncode == 0
    except OSError:
        return False


def select_datapath(requested: str) -> str:
    """``auto`` -> ``kernel`` when the module is there, else ``user`` (userspace, netdev)."""
    if requested not in DATAPATHS:
        raise ValueError(f"ovs_datapath={requested!r}; allowed: {', '.join(DATAPATHS)}")
    if requested == "auto":
        return "kernel" if kernel_datapath_available() else "user"
    if requested == "kernel" and not kernel_datapath_available():
        raise ValueError("ovs_datapath='kernel' but the openvswitch kernel module does not load; "
                         "allowed here: 'user' or 'auto'")
    return requested


def switch_class(datapath: str) -> functools.partial:
    """An OVSSwitch constructor for OpenFlow 1.3, secure fail mode, on ``datapath``."""
    return functools.partial(OVSSwitch, datapath=datapath, protocols="OpenFlow13",
                             failMode="secure")

"""Open vSwitch datapath selection and the switch class the runner passes to Mininet."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from mininet.node import OVSSwitch

from topologies.errors import UserError

DATAPATHS = ("auto", "kernel", "user")  # ovs_datapath choices (scenario, CLI)


class OvsNotRunning(UserError):
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


def keeps_own_qdisc(intf: Any) -> bool:
    """True for an interface whose root qdisc belongs to the link engine (netem links).

    Open vSwitch manages the qdisc of every port it owns: a port with no QoS row gets its root
    qdisc deleted when it is added (ovs-vswitchd netdev_linux_set_qos(): a qdisc of a kind OVS did
    not install is replaced by the default), which silently removes netem from switch ports.
    QoS type ``linux-noop`` tells OVS to leave the port's qdisc alone (ovs-vswitchd.conf.db(5)).
    """
    return bool(getattr(getattr(intf, "link", None), "owns_qdisc", False))


QOS_OWNER_KEY = "factorysat_bridge"  # external_ids key naming the bridge a noop QoS row was made for


def _noop_qos(intf: Any) -> str:
    """ovs-vsctl words giving ``intf``'s Port a linux-noop QoS row, tagged with its bridge's name.

    QoS is a root table in OVSDB: its rows outlive the port and must be destroyed (destroy_noop_qos).
    """
    ref = "fsnoop_" + "".join(c if c.isalnum() else "_" for c in str(intf))
    return (f" -- set Port {intf} qos=@{ref} -- --id=@{ref} create QoS type=linux-noop"
            f" external_ids:{QOS_OWNER_KEY}={intf.node}")


def destroy_noop_qos(bridge: str) -> None:
    """Destroy the noop QoS rows made for ``bridge``'s ports (after the bridge is deleted)."""
    out = subprocess.run(["ovs-vsctl", "--bare", "--columns=_uuid", "find", "QoS",
                          f"external_ids:{QOS_OWNER_KEY}={bridge}"], capture_output=True, text=True)
    argv = ["ovs-vsctl"]
    for uuid in out.stdout.split():
        argv += ["--", "--if-exists", "destroy", "QoS", uuid]
    if len(argv) > 1:
        subprocess.run(argv, capture_output=True)


class FactoryOVSSwitch(OVSSwitch):
    """OVSSwitch that leaves the qdisc of link-engine (netem) ports to the link engine."""

    def intfOpts(self, intf: Any) -> str:  # noqa: N802 (Mininet's name)
        opts = super().intfOpts(intf)
        return opts + _noop_qos(intf) if keeps_own_qdisc(intf) else opts

    def attach(self, intf: Any) -> None:
        """Add a data port at run time (one ovs-vsctl transaction, noop QoS included)."""
        self.vsctl("add-port", self, intf, *(_noop_qos(intf).split() if keeps_own_qdisc(intf) else ()))
        self.cmd("ip", "link", "set", intf, "up")
        self.TCReapply(intf)

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's name)
        super().stop(deleteIntfs)
        destroy_noop_qos(self.name)

    @classmethod
    def batchShutdown(cls, switches: Any, run: Any = None) -> Any:  # noqa: N802 (Mininet's name)
        done = super().batchShutdown(switches) if run is None else super().batchShutdown(switches, run)
        for switch in switches:
            destroy_noop_qos(switch.name)
        return done


def switch_class(datapath: str) -> functools.partial:
    """An OVSSwitch constructor for OpenFlow 1.3, secure fail mode, on ``datapath``."""
    return functools.partial(FactoryOVSSwitch, datapath=datapath, protocols="OpenFlow13",
                             failMode="secure")

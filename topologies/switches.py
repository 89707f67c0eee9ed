"""Open vSwitch datapath selection and the switch class the runner passes to Mininet."""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

from mininet.node import OVSSwitch, Switch
from mininet.util import errRun

from topologies.errors import UserError
from topologies.runobjects import (
    OVS_TIMEOUT_S,
    QOS_OWNER_KEY,
    ObjectError,
    bridge_tags,
    destroy_noop_qos,
    ovs_tag_opts,
    tag_link,
)

log = logging.getLogger(__name__)

DATAPATHS = ("auto", "kernel", "user")  # ovs_datapath choices (scenario, CLI)


class OvsNotRunning(UserError):
    """The OVS daemons do not answer."""


def ovs_running(timeout_s: int = 5) -> bool:
    try:
        out = subprocess.run(["ovs-vsctl", f"--timeout={timeout_s}", "show"], capture_output=True,
                             timeout=timeout_s + 5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def kernel_datapath_available() -> bool:
    """True if the openvswitch kernel module is loaded or loads."""
    if Path("/sys/module/openvswitch").exists():
        return True
    try:
        return subprocess.run(["modprobe", "-q", "openvswitch"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
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


def _noop_qos(intf: Any) -> str:
    """ovs-vsctl words giving ``intf``'s Port a linux-noop QoS row, tagged with its bridge's name.

    QoS is a root table in OVSDB: its rows outlive the port and must be destroyed (destroy_noop_qos).
    """
    ref = "fsnoop_" + "".join(c if c.isalnum() else "_" for c in str(intf))
    return (f" -- set Port {intf} qos=@{ref} -- --id=@{ref} create QoS type=linux-noop"
            f" external_ids:{QOS_OWNER_KEY}={intf.node}")


class FactoryOVSSwitch(OVSSwitch):
    """OVSSwitch that tags what it creates with its run and never waits on ovsdb for ever.

    ``run_id``: the bridge gets ``external_ids:factorysat-run=<run_id>`` in its ``add-br``
    transaction and each root-namespace port the run's interface alias the moment Mininet adds it
    (topologies/runobjects.py), so cleanup can tell them from same-named objects it did not make.
    Every ovs-vsctl call carries ``--timeout``. Ports of link-engine (netem) links keep their qdisc.
    """

    def __init__(self, name: str, run_id: str | None = None, **params: Any) -> None:
        self.run_id = run_id
        super().__init__(name, **params)

    def vsctl(self, *args: Any, **kwargs: Any) -> Any:
        if self.batch:  # queued words are joined behind one "ovs-vsctl" later
            return super().vsctl(*args, **kwargs)
        return super().vsctl(f"--timeout={OVS_TIMEOUT_S}", *args, **kwargs)

    def bridgeOpts(self) -> str:  # noqa: N802 (Mininet's name)
        opts = super().bridgeOpts()
        return opts + " " + ovs_tag_opts(self.run_id) if self.run_id else opts

    def addIntf(self, intf: Any, port: int | None = None, **kwargs: Any) -> None:  # noqa: N802
        super().addIntf(intf, port=port, **kwargs)
        if self.run_id and not self.inNamespace and str(intf) != "lo":
            tag_link(str(intf), self.run_id)

    def intfOpts(self, intf: Any) -> str:  # noqa: N802 (Mininet's name)
        opts = super().intfOpts(intf)
        return opts + _noop_qos(intf) if keeps_own_qdisc(intf) else opts

    def attach(self, intf: Any) -> None:
        """Add a data port at run time (one ovs-vsctl transaction, noop QoS included)."""
        self.vsctl("add-port", self, intf, *(_noop_qos(intf).split() if keeps_own_qdisc(intf) else ()))
        self.cmd("ip", "link", "set", intf, "up")
        self.TCReapply(intf)

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's name)
        # OVSSwitch.stop without its timeout-less "ovs-vsctl del-br", and only for our own bridge
        if _ours([self]):
            self.vsctl("--if-exists", "del-br", self)
            if self.datapath == "user":
                self.cmd("ip link del", self)
            _destroy_noop_qos(self.name)
        Switch.stop(self, deleteIntfs)

    @classmethod
    def batchShutdown(cls, switches: Any, run: Any = errRun) -> Any:  # noqa: N802 (Mininet's name)
        """Delete the bridges that carry their run's tag (a same-named bridge someone else made
        stays), stop every switch's shell; all with ovs-vsctl --timeout."""
        def with_timeout(cmd: str, *args: Any, **kwargs: Any) -> Any:
            cmd = cmd.replace("ovs-vsctl ", f"ovs-vsctl --timeout={OVS_TIMEOUT_S} ", 1)
            return run(cmd, *args, **kwargs)

        ours = _ours(switches)
        if ours:
            super().batchShutdown(ours, with_timeout)
        for switch in switches:
            if switch in ours:
                _destroy_noop_qos(switch.name)
            else:
                switch.terminate()
        return switches


def _ours(switches: Any) -> list[Any]:
    """The switches whose bridge is theirs to delete: untagged switch classes (no ``run_id``) as
    Mininet does, tagged ones only while the bridge carries their run id."""
    if not any(getattr(s, "run_id", None) for s in switches):
        return list(switches)
    try:
        tags = bridge_tags()
    except ObjectError as exc:  # unknown: delete nothing; `factorysat clean` removes them later
        log.warning("OVS bridges not deleted (their tags cannot be read): %s", exc)
        return [s for s in switches if not getattr(s, "run_id", None)]
    return [s for s in switches if not getattr(s, "run_id", None) or tags.get(s.name) == s.run_id]


def _destroy_noop_qos(bridge: str) -> None:
    try:
        destroy_noop_qos(bridge)
    except ObjectError as exc:  # teardown goes on; `factorysat clean` reports what is left
        log.warning("noop QoS rows of bridge %s not destroyed: %s", bridge, exc)


def switch_class(datapath: str, run_id: str | None = None) -> functools.partial:
    """An OVSSwitch constructor for OpenFlow 1.3, secure fail mode, on ``datapath``; ``run_id``
    tags its bridges and ports (Manifest.run_id)."""
    return functools.partial(FactoryOVSSwitch, datapath=datapath, protocols="OpenFlow13",
                             failMode="secure", run_id=run_id)


_SS_PACKET = re.compile(r"\*:(\S+)\s.*?users:\(\(\"ovs-vswitchd\".*?skmem:\(([^)]*)\)")


def ovs_socket_drops(bridges: list[str]) -> dict[str, int]:
    """Per port of ``bridges``: packets the kernel dropped at ``ovs-vswitchd``'s receive socket
    on that port because the socket's buffer was full (the daemon did not read in time).

    Only the userspace datapath reads ports through AF_PACKET sockets; its drops show in no OVS
    counter (``ovs-ofctl dump-ports`` stays 0), but the kernel counts them per socket (``ss -0 -m``,
    the ``d`` field of ``skmem``). With the kernel datapath there are no such sockets: {}. A bridge
    or an ``ss`` that does not answer is left out."""
    ports: set[str] = set()
    for bridge in bridges:
        try:
            proc = subprocess.run(["ovs-vsctl", f"--timeout={OVS_TIMEOUT_S}", "list-ports", bridge],
                                  capture_output=True, text=True, timeout=OVS_TIMEOUT_S + 5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            ports.update(proc.stdout.split())
    if not ports:
        return {}
    try:
        proc = subprocess.run(["ss", "-H", "-0", "-m", "-p"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_socket_drops(proc.stdout, ports) if proc.returncode == 0 else {}


def parse_socket_drops(ss_output: str, ports: set[str]) -> dict[str, int]:
    """``{port: drops}`` from ``ss -H -0 -m -p`` output, for ``ovs-vswitchd``'s sockets on ``ports``."""
    drops: dict[str, int] = {}
    for match in _SS_PACKET.finditer(ss_output):
        port = match[1]
        fields = dict(re.findall(r"([a-z]+)(\d+)", match[2]))
        if port in ports and "d" in fields:
            drops[port] = drops.get(port, 0) + int(fields["d"])
    return drops

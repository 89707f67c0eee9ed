"""The host class the network runner passes to Mininet."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from mininet.node import Host

IPV6_OFF = "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"


class FactoryHost(Host):
    """A Mininet host with IPv6 off in its own namespace, set before any of its interfaces exists.

    The emulated traffic is IPv4 (static ARP). With IPv6 on, every interface sends neighbour and
    router solicitations and MLD reports when it comes up: frames no flow accounts for, crossing the
    emulated links and cells (and reaching a cell before it is wired, counted as dropped_unwired).
    """

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        self.cmd(IPV6_OFF)


def static_arp(hosts: Sequence[Any], timeout_s: float = 30.0) -> None:
    """Every host learns every other host's address: one ``ip -batch`` per host (permanent
    neighbour entries on its default interface), not Mininet's one ``arp -s`` per pair (17,000
    shell round trips at 130 hosts, most of a large factory's bring-up time)."""
    entries = [(h.IP(), h.MAC()) for h in hosts]
    for host in hosts:
        dev = host.defaultIntf().name
        batch = "".join(f"neigh replace {ip} lladdr {mac} dev {dev} nud permanent\n"
                        for ip, mac in entries if ip != host.IP())
        if not batch:
            continue
        proc = host.popen(["ip", "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(batch, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"static ARP entries on {host.name}: ip -batch did not finish in "
                               f"{timeout_s:g} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"static ARP entries on {host.name} ({dev}): ip -batch failed: "
                               f"{err.strip()[:300]}")

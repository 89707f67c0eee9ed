"""The host class the network runner passes to Mininet."""

from __future__ import annotations

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

"""Two Mininet hosts joined by one link-engine link: the test bed the link tests share."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from topologies.hosts import IPV6_OFF
from topologies.links import DirectionParams, LinkEngine
from topologies.links.udpprobe import run_probe
from topologies.manifest import Manifest

SCRATCH = Path(os.environ.get("FACTORYSAT_TEST_SCRATCH") or tempfile.mkdtemp(prefix="factorysat-links-"))
# Timing tolerances are multiplied by this factor. 1 on real machines; `make vm-test` sets it in its
# software-emulated (TCG) guest, where time is distorted: there only the functional assertions
# (counts, order, rows applied, which direction is slower) keep their full strength.
TIMING_SLACK = float(os.environ.get("FACTORYSAT_TEST_TIMING_SLACK", "1"))


def tol(bound: float) -> float:
    """A timing tolerance, widened by ``FACTORYSAT_TEST_TIMING_SLACK`` under emulation."""
    return bound * TIMING_SLACK


def probe(src, dst, pps: float, count: int, size: int = 100, port: int = 5001,
          during=None, fast: bool = False) -> np.ndarray:
    """UDP probe rows (seq, t_send_ns, t_recv_ns); ``fast`` = the C probe (for > ~20 kpps)."""
    return run_probe(src, dst, pps, count, SCRATCH, size=size, port=port, during=during, fast=fast)


@contextlib.contextmanager
def two_hosts(uplink: DirectionParams | None, downlink: DirectionParams | None, backend: str = "relay",
              calibrate: bool = True) -> Iterator[tuple]:
    """h1 -> h2 = uplink over one engine link named 'l1'; yields (net, engine, h1, h2, tag).

    Everything is recorded in a manifest of its own and removed afterwards (asserted)."""
    from mininet.net import Mininet

    tag = "t" + secrets.token_hex(3)
    manifest = Manifest.create(tag)
    engine = LinkEngine(backend, tag, manifest, SCRATCH / tag, seed=7, calibrate=calibrate)
    net = Mininet(topo=None, build=False, controller=None)
    try:
        engine.start()
        h1 = net.addHost("h1", ip="10.0.0.1/24")
        h2 = net.addHost("h2", ip="10.0.0.2/24")
        net.addLink(h1, h2, cls=engine.link_class, link_name="l1", uplink=uplink, downlink=downlink,
                    txo=False)
        net.build()
        net.staticArp()
        yield net, engine, h1, h2, tag
    finally:
        net.stop()
        engine.stop()
        failures = manifest.remove_all()
        assert not failures, failures


@contextlib.contextmanager
def cell_bed(relay_impl: str, nr: Any = None, ues: tuple[str, ...] = ("ue1",)) -> Iterator[tuple]:
    """Cells gnb1 and gnb2 with backhauls (0.2 ms) to a host ``upf`` that bridges them (a Linux
    bridge, learning addresses as a UPF's path switch would) and a server ``srv`` behind it; UEs
    ``ues`` (ue1, ue2, ...; 1 ms radio links) on gnb1. ``nr``: (NrPlan, {ue: slice}): both cells run
    the NR model (transparent radio links). Yields (engine, ue1, srv, {name: host}); everything is
    recorded in a manifest and removed afterwards."""
    from mininet.net import Mininet

    tag = "c" + secrets.token_hex(3)
    manifest = Manifest.create(tag)
    engine = LinkEngine("relay", tag, manifest, SCRATCH / tag, seed=3, relay_impl=relay_impl)
    net = Mininet(topo=None, build=False, controller=None)
    try:
        engine.start()
        hosts = {u: net.addHost(u, ip=f"10.0.0.{i}/24", mac=f"02:00:00:00:00:{i:02x}",
                                **({"slice": nr[1][u]} if nr else {}))
                 for i, u in enumerate(ues, 1)}
        srv = net.addHost("srv", ip="10.0.0.99/24", mac="02:00:00:00:00:99")
        upf = net.addHost("upf")
        for host in (*hosts.values(), srv, upf):  # as the project's hosts: no IPv6 chatter (a UE's
            host.cmd(IPV6_OFF)                     # router solicitation would teach the UPF its cell)
        shared = (DirectionParams(rate_mbps=50), DirectionParams(rate_mbps=50))
        cells = [net.addSwitch(f"{tag}g{i}", cls=engine.cell_class, dpid=f"{i:016x}", scenario_name=f"gnb{i}",
                               cell_capacity=None if nr else shared, nr_plan=nr[0] if nr else None)
                 for i in (1, 2)]
        radio = DirectionParams() if nr else DirectionParams(delay_ms=1.0)
        for u, host in hosts.items():
            net.addLink(host, cells[0], cls=engine.link_class, link_name=f"radio_{u}", uplink=radio,
                        downlink=radio, txo=False)
        for i, cell in enumerate(cells, 1):
            bh = DirectionParams(delay_ms=0.2)
            net.addLink(cell, upf, cls=engine.link_class, link_name=f"bh_gnb{i}", uplink=bh, downlink=bh,
                        txo=False)
        net.addLink(upf, srv, cls=engine.link_class, link_name="n6", txo=False)  # a plain veth pair
        net.build()
        upf.cmd("ip link add br0 type bridge && ip link set br0 up")
        for intf in upf.intfList():
            if intf.name != "lo":
                upf.cmd(f"ip link set {intf.name} master br0")
        net.staticArp()
        yield engine, hosts[ues[0]], srv, hosts
    finally:
        net.stop()
        engine.stop()
        failures = manifest.remove_all()
        assert not failures, failures

"""Two Mininet hosts joined by one link-engine link: the test bed the link tests share."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

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

"""Link engine, netem backend: real run where the kernel has sch_netem (skipped elsewhere)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import numpy as np
import pytest

from topologies.links import DirectionParams, LinkEngine, netem_available
from topologies.links.udpprobe import owd_ms, run_probe
from topologies.manifest import Manifest

pytestmark = pytest.mark.root
SCRATCH = Path(os.environ.get("FACTORYSAT_TEST_SCRATCH", "/work/scratch/links/test"))


def probe(src, dst, pps: float, count: int, port: int = 5001, during=None) -> np.ndarray:
    return run_probe(src, dst, pps, count, SCRATCH, port=port, during=during)


def test_netem_delay_and_hitless_change() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not netem_available():
        pytest.skip("this kernel has no sch_netem (tc qdisc netem fails): the netem backend cannot "
                    "run here; its command generation is unit-tested in tests/unit/test_links_params.py")
    from mininet.net import Mininet

    tag = "t" + secrets.token_hex(3)
    manifest = Manifest.create(tag)
    engine = LinkEngine("netem", tag, manifest, SCRATCH / tag)
    net = Mininet(topo=None, build=False, controller=None)
    try:
        engine.start()
        h1 = net.addHost("h1", ip="10.0.0.1/24")
        h2 = net.addHost("h2", ip="10.0.0.2/24")
        net.addLink(h1, h2, cls=engine.link_class, link_name="l1", ab=DirectionParams(delay_ms=10),
                    ba=DirectionParams(delay_ms=30), txo=False)
        net.build()
        net.staticArp()
        d = owd_ms(probe(h1, h2, 1000, 1000))
        assert len(d) == 1000 and abs(np.median(d) - 10) < 1
        back = owd_ms(probe(h2, h1, 1000, 500, port=5002))
        assert abs(np.median(back) - 30) < 1

        def change() -> None:
            for delay in (50, 5, 30, 1, 10):
                time.sleep(0.3)
                engine.set_params("l1", "ab", DirectionParams(delay_ms=delay))
        rows = probe(h1, h2, 3000, 6000, port=5003, during=change)
        seqs = rows[np.argsort(rows[:, 2], kind="stable"), 0]
        assert len(rows) == 6000 and np.all(np.diff(seqs) > 0)
    finally:
        net.stop()
        engine.stop()
        assert not manifest.remove_all()

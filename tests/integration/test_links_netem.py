"""Link engine, netem backend: real run where the kernel has sch_netem (skipped elsewhere)."""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from linkbed import SCRATCH, probe, tol, two_hosts  # same folder: on sys.path under pytest

from topologies.links import DirectionParams, LinkEngine, ScheduleRow, netem_available
from topologies.links.netem import netem_seed_unsupported_reason
from topologies.links.udpprobe import owd_ms
from topologies.manifest import Manifest
from topologies.switches import (
    QOS_OWNER_KEY,
    kernel_datapath_available,
    select_datapath,
    switch_class,
)

pytestmark = pytest.mark.root


def _need_netem() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not netem_available():
        pytest.skip("this kernel has no sch_netem (tc qdisc netem fails): the netem backend cannot "
                    "run here; its command generation is unit-tested in tests/unit/test_links_*.py")


def test_netem_delay_and_hitless_change() -> None:
    _need_netem()
    with two_hosts(DirectionParams(delay_ms=10), DirectionParams(delay_ms=30), "netem",
                   calibrate=False) as (_, engine, h1, h2, _t):
        d = owd_ms(probe(h1, h2, 1000, 1000))
        assert len(d) == 1000 and abs(np.median(d) - 10) < tol(1)
        back = owd_ms(probe(h2, h1, 1000, 500, port=5002))
        assert abs(np.median(back) - 30) < tol(1)

        def change() -> None:
            for delay in (50, 5, 30, 1, 10):
                time.sleep(0.3)
                engine.set_params("l1", "uplink", DirectionParams(delay_ms=delay))
        rows = probe(h1, h2, 3000, 6000, port=5003, during=change)
        seqs = rows[np.argsort(rows[:, 2], kind="stable"), 0]
        assert len(rows) == 6000 and np.all(np.diff(seqs) > 0)


def _netem_delay_us(dev: str) -> int | None:
    """The delay (µs) of the netem root qdisc on root-namespace ``dev``; None when it has none."""
    out = subprocess.run(["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True, text=True)
    q = next((q for q in json.loads(out.stdout or "[]") if q.get("kind") == "netem"), None)
    return None if q is None else round(q["options"]["delay"]["delay"] * 1e6)


def test_netem_on_ovs_switch_port_survives_switch_start_and_schedules() -> None:
    """netem on a switch port (root namespace) must survive OVS adding the port (OVS resets the
    qdisc of ports without a QoS row), take effect through the switch, and follow a schedule."""
    _need_netem()
    from mininet.net import Mininet

    datapath = select_datapath("auto")
    assert datapath == ("kernel" if kernel_datapath_available() else "user")
    tag = "t" + secrets.token_hex(3)
    sw, port1 = f"fs{tag}", f"fs{tag}-eth1"  # object names start with "fs" + tag (manifest_check)
    manifest = Manifest.create(tag)
    engine = LinkEngine("netem", tag, manifest, SCRATCH / tag)
    net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False)
    try:
        engine.start()
        manifest.add("ovs_bridge", sw)
        manifest.add("link", port1)
        manifest.add("link", f"fs{tag}-eth2")
        s1 = net.addSwitch(sw, cls=switch_class(datapath), failMode="standalone",
                           dpid=secrets.token_hex(8))
        h1 = net.addHost("h1", ip="10.0.0.1/24")
        h2 = net.addHost("h2", ip="10.0.0.2/24")
        txo = datapath != "user"
        net.addLink(h1, s1, cls=engine.link_class, link_name="l1", uplink=DirectionParams(delay_ms=10),
                    downlink=DirectionParams(delay_ms=30), txo=txo)
        net.addLink(h2, s1, cls=engine.link_class, link_name="l2", txo=txo)  # plain veth
        net.build()
        net.start()
        net.staticArp()
        assert _netem_delay_us(port1) == 30_000  # still there after OVS took the port
        d = owd_ms(probe(h1, h2, 500, 500))
        assert len(d) == 500 and abs(np.median(d) - 10) < tol(1.5), np.median(d)
        back = owd_ms(probe(h2, h1, 500, 500, port=5002))  # leaves s1 through port1's netem
        assert len(back) == 500 and abs(np.median(back) - 30) < tol(1.5), np.median(back)
        engine.set_schedule("l1", "downlink", [ScheduleRow(0.3, 5, 0, 0, None, True),
                                               ScheduleRow(0.6, 20, 0, 0, None, True)], time.monotonic())
        deadline = time.monotonic() + 10
        while _netem_delay_us(port1) != 20_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _netem_delay_us(port1) == 20_000
        stats = engine.stats("l1")["downlink"]
        assert stats["tx"] >= 500
        assert stats["schedule"]["rows_applied"] == 2 and stats["schedule"]["errors"] == 0, stats
    finally:
        net.stop()
        engine.stop()
        assert not manifest.remove_all()
    assert subprocess.run(["ovs-vsctl", "br-exists", sw]).returncode == 2
    qos = subprocess.run(["ovs-vsctl", "--bare", "--columns=_uuid", "find", "QoS",
                          f"external_ids:{QOS_OWNER_KEY}={sw}"], capture_output=True, text=True)
    assert qos.returncode == 0 and not qos.stdout.split()  # the noop QoS rows went with the switch


def test_netem_loss_within_binomial_bounds() -> None:
    n, loss_pct = 4000, 10.0
    _need_netem()
    with two_hosts(DirectionParams(delay_ms=1, loss_pct=loss_pct), None, "netem",
                   calibrate=False) as (_, engine, h1, h2, _t):
        got = len(probe(h1, h2, 1000, n))
        engine.set_params("l1", "uplink", DirectionParams(delay_ms=1, up=False))
        down = len(probe(h1, h2, 1000, 200, port=5002))
        engine.set_params("l1", "uplink", DirectionParams(delay_ms=1))
        up_again = len(probe(h1, h2, 1000, 200, port=5003))
        seeding = engine.metadata()["netem_seeding"]  # the bed passes seed=7
    p = loss_pct / 100
    half = 2.5758 * math.sqrt(n * p * (1 - p))  # two-sided 99 % normal approximation
    assert abs((n - got) - n * p) <= half, (n - got, n * p, half)
    assert down == 0 and up_again == 200
    reason = netem_seed_unsupported_reason()  # never silent: seeded, or why not
    assert seeding == ("seeded from site.seed, per qdisc change" if reason is None
                       else f"netem not seeded: {reason}")


def test_netem_queue_limit_bounds_queueing_delay_like_the_relay() -> None:
    """The same load as tests/integration/test_links_shaping.py's queue test (twice the rate for
    2 s, far longer than the 5 ms delay): netem's limit (queue + delay line) gives the relay's queue."""
    _need_netem()
    rate_mbps, size, pkts = 5.0, 1000, 10
    frame_bits = (size + 42) * 8
    params = DirectionParams(delay_ms=5, rate_mbps=rate_mbps, queue_limit_pkts=pkts)
    with two_hosts(params, None, "netem", calibrate=False) as (_, engine, h1, h2, _t):
        rows = probe(h1, h2, 1200, 2400, size=size)  # 10 Mbit/s offered: twice the rate
        stats = engine.stats("l1")["uplink"]
    d = owd_ms(rows)
    max_queue_ms = pkts * frame_bits / (rate_mbps * 1e3)
    assert stats["dropped"] > 800  # about half of the offered load is dropped
    # netem's delay line holds up to 3 frames of 1514 B over 5 ms; ours are 1042 B: ~1 frame slack
    # p90: see test_links_shaping.test_queue_limit_bounds_queueing_delay (tails are the benchmark's)
    assert np.percentile(d, 90) < 5 + max_queue_ms + tol(1.0) + frame_bits / (rate_mbps * 1e3)
    assert np.percentile(d, 90) > 5 + 0.6 * max_queue_ms  # the queue does fill up


def test_netem_schedule_through_tc_batch_is_applied_in_order_and_cleaned_up() -> None:
    """Schedule rows go through one long-lived `tc -batch` per namespace: every row acknowledged,
    none failed, no packet reordered across the changes, the tc process recorded and gone after stop."""
    delays = [10, 40, 5, 30, 1, 20] * 4
    _need_netem()
    with two_hosts(DirectionParams(delay_ms=10), None, "netem", calibrate=False) as (_, engine, h1, h2, tag):
        manifest = engine.manifest
        rows = [ScheduleRow(0.2 + 0.1 * i, d, 0, 0, None, True) for i, d in enumerate(delays)]

        def schedule() -> None:
            engine.set_schedule("l1", "uplink", rows, time.monotonic())
        got = probe(h1, h2, 1000, 4000, during=schedule)
        pids = [e["pid"] for e in manifest.entries if e["name"].startswith(f"tc-batch-{tag}-")]
        assert len(pids) == 1 and Path(f"/proc/{pids[0]}").exists()
        deadline = time.monotonic() + 10
        while (engine.stats("l1")["uplink"]["schedule"]["rows_applied"] < len(rows)
               and time.monotonic() < deadline):
            time.sleep(0.1)
        sched = engine.stats("l1")["uplink"]["schedule"]
        n = len(rows)
        assert (sched["rows_sent"], sched["rows_applied"], sched["errors"]) == (n, n, 0), sched
        assert sched["late_ms_max"] < tol(100) and sched["ack_ms_max"] < tol(100), sched
        assert engine.metadata()["netem_schedule"]["rows_applied"] == len(rows)
        seqs = got[np.argsort(got[:, 2], kind="stable"), 0]
        assert len(got) == 4000 and np.all(np.diff(seqs) > 0)
        assert abs(np.median(owd_ms(probe(h1, h2, 500, 300, port=5002))) - delays[-1]) < tol(1.5)
    assert not Path(f"/proc/{pids[0]}").exists() or "tc" not in Path(f"/proc/{pids[0]}/comm").read_text()
    assert not any(e["kind"] == "process" for e in manifest.entries)

"""Link engine, relay backend, on two Mininet hosts: delay, asymmetry, loss, rate, up/down,
order across live and scheduled changes, teardown. Needs root."""

from __future__ import annotations

import math
import os
import secrets
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from linkbed import SCRATCH, probe, two_hosts  # same folder: on sys.path under pytest

from topologies.links import DirectionParams, LinkEngine, ScheduleRow, select_backend
from topologies.links.relayproc import RelayError, wire_params
from topologies.links.udpprobe import owd_ms
from topologies.manifest import STATE_ROOT, Manifest, proc_start_time

pytestmark = pytest.mark.root
Z99 = 2.5758  # two-sided 99 % normal quantile


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def test_delay_and_asymmetry() -> None:
    with two_hosts(DirectionParams(delay_ms=10), DirectionParams(delay_ms=30)) as (_, engine, h1, h2, _t):
        fwd = owd_ms(probe(h1, h2, 1000, 2000))
        back = owd_ms(probe(h2, h1, 1000, 1000))
        meta = engine.metadata()
    assert len(fwd) == 2000 and len(back) == 1000
    assert abs(fwd.mean() - 10) < 1 and abs(np.median(fwd) - 10) < 1, fwd.mean()
    assert abs(back.mean() - 30) < 1, back.mean()
    # Half the packets leave within 0.3 ms of their modelled time (the calibrated hop included).
    # The tail (goal: p99 <= 0.1 ms, C relay) is the benchmark's (`factorysat bench links`), which
    # leaves out packets that met a host stall: a test cannot tell a stolen CPU from a slow relay.
    q25, q75 = np.percentile(fwd - 10, [25, 75])
    assert -0.3 < q25 and q75 < 0.3, (q25, q75)
    assert meta["backend"] == "relay" and meta["calibration"]["measured"]
    assert meta["relay_implementation"] in ("c", "python")


def test_loss_within_binomial_bounds() -> None:
    n, p = 5000, 0.10
    with two_hosts(DirectionParams(loss_pct=10), None) as (_, engine, h1, h2, _t):
        rows = probe(h1, h2, 5000, n)
        stats = engine.stats("l1")["uplink"]
    lost = n - len(rows)
    half = Z99 * math.sqrt(n * p * (1 - p))
    assert n * p - half <= lost <= n * p + half, lost
    extra = stats["rx"] - n  # other frames the hosts sent (e.g. IPv6 multicast) also cross the relay
    assert 0 <= extra < 20 and lost <= stats["dropped_loss"] <= lost + extra
    assert sum(stats["late_hist"]) == stats["tx"]  # every departure's lateness is in the histogram


def test_rate_within_5pct() -> None:
    rate_mbps, size = 10.0, 1400
    frame = size + 8 + 20 + 14  # UDP + IPv4 + Ethernet headers: what the rate limiter counts
    with two_hosts(DirectionParams(rate_mbps=rate_mbps), None) as (_, engine, h1, h2, _t):
        rows = probe(h1, h2, 1500, 4500, size=size)  # 1.7x the rate, 3 s
        stats = engine.stats("l1")["uplink"]
    t = np.sort(rows[:, 2]) / 1e9
    measured = (len(t) - 1) * frame * 8 / (t[-1] - t[0]) / 1e6
    assert abs(measured - rate_mbps) / rate_mbps < 0.05, measured
    assert stats["dropped_queue"] > 0  # the sender overran the BDP queue: drop-tail worked


def test_link_down_drops_all_and_up_restores() -> None:
    with two_hosts(DirectionParams(delay_ms=2), DirectionParams(delay_ms=2)) as (_, engine, h1, h2, _t):
        engine.set_params("l1", "uplink", DirectionParams(delay_ms=2, up=False))
        down = probe(h1, h2, 1000, 500)
        back = probe(h2, h1, 1000, 200, port=5002)  # the other direction stays up
        engine.set_params("l1", "uplink", DirectionParams(delay_ms=2, up=True))
        up = probe(h1, h2, 1000, 500, port=5003)
        stats = engine.stats("l1")["uplink"]
    assert len(down) == 0 and len(back) == 200 and len(up) == 500
    assert 500 <= stats["dropped_down"] < 520


def _in_order_and_complete(rows: np.ndarray, count: int) -> None:
    seqs = rows[np.argsort(rows[:, 2], kind="stable"), 0]
    assert len(rows) == count, f"lost {count - len(rows)}"
    assert np.all(np.diff(seqs) > 0), "reordered"


def test_no_loss_no_reorder_across_live_changes() -> None:
    delays = [10, 50, 5, 30, 1, 40, 10]
    with two_hosts(DirectionParams(delay_ms=10), None) as (_, engine, h1, h2, _t):
        def change() -> None:
            for d in delays:
                time.sleep(0.3)
                engine.set_params("l1", "uplink", DirectionParams(delay_ms=d))
        rows = probe(h1, h2, 5000, 15000, during=change)
    _in_order_and_complete(rows, 15000)


def test_schedule_switches_in_data_path_without_loss_or_reorder() -> None:
    with two_hosts(DirectionParams(delay_ms=5), None) as (_, engine, h1, h2, _t):
        t0 = time.monotonic() + 0.5
        rows_in = [ScheduleRow(0.0, 5, 0, 0, None, True), ScheduleRow(1.0, 40, 0, 0, None, True),
                   ScheduleRow(2.0, 2, 0, 0, None, True)]
        engine.set_schedule("l1", "uplink", rows_in, t0)
        rows = probe(h1, h2, 2000, 8000)
    _in_order_and_complete(rows, 8000)
    # send times on CLOCK_REALTIME; the schedule is on CLOCK_MONOTONIC: convert with one offset
    offset = time.time() - time.monotonic()
    t_rel = rows[:, 1] / 1e9 - offset - t0
    d = owd_ms(rows)
    mid = (t_rel > 1.05) & (t_rel < 1.95)
    late = t_rel > 2.1 + 0.05  # 40 ms backlog drains after the drop to 2 ms
    assert abs(np.median(d[mid]) - 40) < 1 and abs(np.median(d[late]) - 2) < 1


def test_refused_control_input_changes_nothing_and_keeps_the_channel_in_step() -> None:
    """A ``set`` without ``up`` (once read as 0: link down) and a schedule with a bad row mid-way are
    refused with one reply each; the link keeps its parameters and later commands their replies."""
    with two_hosts(DirectionParams(delay_ms=5), None, calibrate=False) as (_, engine, h1, h2, _t):
        relay, link_id = engine.backend.relay, 1  # the backend numbers its links from 1
        errors = relay.control_stats()["errors"]
        words = wire_params(DirectionParams(delay_ms=40)).split()
        with pytest.raises(RelayError, match="expected 13 numbers, got 12"):
            relay.command(f"set {link_id} uplink {' '.join(words[:12])}")
        t_ns, p = time.monotonic_ns(), " ".join(words)
        rows = [f"{t_ns} {p}", f"{t_ns + 1} {' '.join(words[:12])} nan", f"{t_ns + 2} {p}"]
        with pytest.raises(RelayError, match="row 1: up: got nan"):
            relay.command(f"sched {link_id} uplink 3", rows)
        assert set(relay.stats(link_id)) == {"uplink", "downlink"}  # its own reply, not a late one
        assert relay.control_stats()["errors"] == errors + 2
        d = owd_ms(probe(h1, h2, 500, 500))
    assert len(d) == 500 and abs(np.median(d) - 5) < 1  # still up, still 5 ms


def test_teardown_leaves_nothing() -> None:
    with two_hosts(DirectionParams(delay_ms=1), None, calibrate=False) as (_, engine, _h1, _h2, tag):
        pid = engine.backend.relay.pid
        start = proc_start_time(pid)
        netns = engine.backend.netns
        assert Path(f"/run/netns/{netns}").exists()
    engine.stop()  # idempotent
    assert proc_start_time(pid) != start
    assert not Path(f"/run/netns/{netns}").exists()
    assert not (STATE_ROOT / f"{tag}.json").exists()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns not in names


def test_backend_selection() -> None:
    assert select_backend("relay") == "relay"
    with pytest.raises(ValueError, match="allowed"):
        select_backend("tc")
    from topologies.links import netem_available
    if netem_available():
        assert select_backend("auto") == "netem"
    else:
        assert select_backend("auto") == "relay"
        with pytest.raises(ValueError, match="sch_netem"):
            select_backend("netem")


def test_relay_link_to_a_root_namespace_switch() -> None:
    """A host linked by the relay to a userspace OVS switch (root netns): the port keeps Mininet's name,
    is recorded in the manifest while it exists, and disappears with the relay namespace."""
    from mininet.net import Mininet
    from mininet.node import OVSSwitch

    tag = "t" + secrets.token_hex(3)
    manifest = Manifest.create(tag)
    engine = LinkEngine("relay", tag, manifest, SCRATCH / tag, calibrate=False)
    net = Mininet(topo=None, build=False, controller=None)
    try:
        engine.start()
        h1 = net.addHost("h1", ip="10.0.0.1/24")
        h2 = net.addHost("h2", ip="10.0.0.2/24")
        manifest.add("ovs_bridge", f"s{tag}")
        # a dpid given: Mininet derives one only from digits in the name, and a random tag may have none
        sw = net.addSwitch(f"s{tag}", cls=OVSSwitch, datapath="user", failMode="standalone", dpid="1")
        net.addLink(h1, sw, cls=engine.link_class, link_name="up", uplink=DirectionParams(delay_ms=5),
                    downlink=DirectionParams(delay_ms=5), txo=False)
        net.addLink(h2, sw, cls=engine.link_class, link_name="plain", txo=False)
        net.build()
        sw.start([])
        net.staticArp()
        port = f"s{tag}-eth1"
        assert Path(f"/sys/class/net/{port}").exists()
        assert any(e["kind"] == "link" and e["name"] == port for e in manifest.entries)
        d = owd_ms(probe(h1, h2, 500, 500))
        assert len(d) == 500 and abs(np.median(d) - 5) < 1
    finally:
        net.stop()
        engine.stop()
        failures = manifest.remove_all()
    assert not failures
    assert not Path(f"/sys/class/net/{port}").exists()

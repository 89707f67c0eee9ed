"""DSCP-aware class queues on a relay link (relay/relay.c "qos"), on two Mininet hosts: an EF flow
behind a saturating bulk flow waits for the FIFO without them and for at most one bulk packet with
EF strict; two saturating weighted classes share the rate by weight. Needs root."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from linkbed import SCRATCH, tol, two_hosts  # same folder: on sys.path under pytest

from topologies.links import DirectionParams
from topologies.links.queues import QueueClass, QueueConfig
from topologies.paths import REPO_ROOT

pytestmark = pytest.mark.root

HELPER = Path(__file__).with_name("qostraffic.py")
RATE_MBPS, QLIM = 10.0, 50
HDR = 14 + 20 + 8                      # Ethernet + IPv4 + UDP: the relay's rate counts frames
BULK, EF = 1200, 100                   # UDP payload bytes
BULK_TX_MS = (BULK + HDR) * 8 / (RATE_MBPS * 1e3)  # 0.994 ms: one bulk frame's serialisation
EF_TX_MS = (EF + HDR) * 8 / (RATE_MBPS * 1e3)      # 0.114 ms
SLICES = QueueConfig((QueueClass("urllc", (46,), True, 0), QueueClass("embb", (34,), False, 3),
                      QueueClass("mmtc", (10,), False, 1)), default_class=2)
# The relay's own timing error allowed on top of the model. Measured on this 2-core VM (4 runs): EF
# p99 1.110, 1.111, 1.110 ms alone and 1.546 ms with the unit tests running beside it, against the
# model's worst case BULK_TX_MS + EF_TX_MS = 1.108 ms (mean error 14-40 us). A host stall of a few ms
# lands single packets beyond (max 5 ms seen under load): 1 ms keeps the bound 20x below the FIFO's.
RELAY_ERR_MS = 1.0


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def traffic(h1, h2, duration_s: float, flows: list[str]) -> dict[int, np.ndarray]:
    """Send ``flows`` (PORT:DSCP:SIZE:PPS) h1 -> h2 for ``duration_s``; per port rows (seq,
    t_send_ns, t_recv_ns) sorted by receive time."""
    out = SCRATCH / f"qos-{secrets.token_hex(4)}.npy"
    ready = Path(str(out) + ".ready")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    ports = [f.split(":")[0] for f in flows]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    recv = h2.popen([sys.executable, str(HELPER), "recv", str(out), "1.0", *ports],
                    cwd=str(REPO_ROOT), env=env)
    send = None
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert recv.poll() is None and time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.01)
        send = h1.popen([sys.executable, str(HELPER), "send", h2.IP(), str(duration_s), *flows],
                        cwd=str(REPO_ROOT), env=env)
        send.wait(timeout=duration_s + 30)
        recv.wait(timeout=30)
    finally:
        for proc in (send, recv):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    rows = np.load(out)
    out.unlink()
    ready.unlink()
    return {int(p): rows[rows[:, 0] == int(p)][np.argsort(rows[rows[:, 0] == int(p)][:, 3]), 1:]
            for p in ports}


def ef_delays_ms(rows: np.ndarray, t0_ns: int, skip_s: float = 0.5) -> np.ndarray:
    """One-way delays of the packets sent after the queue built up (``skip_s`` after the first)."""
    keep = rows[:, 1] >= t0_ns + skip_s * 1e9
    return (rows[keep, 2] - rows[keep, 1]) / 1e6


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ef_strict_priority_bounds_its_delay_by_one_bulk_packet() -> None:
    shaped = DirectionParams(rate_mbps=RATE_MBPS, queue_limit_pkts=QLIM)
    flows = [f"6001:34:{BULK}:1300", f"6002:46:{EF}:200"]  # bulk 12.9 Mbit/s > 10; EF every 5 ms
    with two_hosts(shaped, None, calibrate=False) as (_, engine, h1, h2, _t):
        pid = engine.data_path_pids()[0]
        cpu0 = cpu_s(pid)
        fifo = traffic(h1, h2, 3.0, flows)
        fifo_stats = engine.stats("l1")["uplink"]
        engine.set_queues("l1", "uplink", SLICES)
        cpu1 = cpu_s(pid)
        prio = traffic(h1, h2, 3.0, flows)
        stats = engine.stats("l1")["uplink"]
        cpu2 = cpu_s(pid)
        engine.set_queues("l1", "uplink", None)
        assert "classes" in engine.stats("l1")["uplink"]  # was on: the counters stay
    d_fifo = ef_delays_ms(fifo[6002], int(fifo[6001][:, 1].min()))
    d_prio = ef_delays_ms(prio[6002], int(prio[6001][:, 1].min()))
    p99_fifo, p99_prio = np.percentile(d_fifo, 99), np.percentile(d_prio, 99)
    # the relay's own error, EF packets: measured mean delay minus the model's (its mean wait + serialisation)
    urllc = stats["classes"][0]
    all_ef = (prio[6002][:, 2] - prio[6002][:, 1]) / 1e6
    model_ms = urllc["wait_sum_ns"] / urllc["tx"] / 1e6 + EF_TX_MS
    err_ms = all_ef.mean() - model_ms
    print(f"EF mean owd {all_ef.mean():.4f} ms, model {model_ms:.4f} ms: relay error {err_ms * 1e3:.1f} us; "
          f"relay CPU s fifo {cpu1 - cpu0:.2f} qos {cpu2 - cpu1:.2f}")
    print(f"EF owd ms: FIFO p50 {np.median(d_fifo):.3f} p99 {p99_fifo:.3f}; "
          f"strict p50 {np.median(d_prio):.3f} "
          f"p99 {p99_prio:.3f} max {d_prio.max():.3f}; late_hist fifo {fifo_stats['late_hist']} "
          f"qos {stats['late_hist']}; classes {stats['classes']}")
    assert "classes" not in fifo_stats
    # the FIFO serialiser's own wait counters: a full queue of bulk frames in front (QLIM frames)
    assert fifo_stats["serialised"] > 1000
    assert 20 * BULK_TX_MS < fifo_stats["wait_max_ns"] / 1e6 <= (QLIM + 1) * BULK_TX_MS, fifo_stats
    # FIFO: EF waits behind up to QLIM bulk frames (~50 ms); far beyond a few serialisations
    assert p99_fifo > 20 * BULK_TX_MS, p99_fifo
    assert len(d_prio) > 400
    # strict: at most the bulk frame in service plus its own serialisation, plus the relay's error
    assert p99_prio < BULK_TX_MS + EF_TX_MS + tol(RELAY_ERR_MS), p99_prio
    embb = stats["classes"][1]
    assert abs(err_ms) < tol(0.3), err_ms
    assert urllc["dropped_queue"] == 0 and embb["dropped_queue"] > 0  # the bulk class overflowed
    # in the model an EF packet waits for at most the bulk frame in service; the relay decides a start
    # when it runs, and an EF packet still unread in its socket then waits a whole frame plus the time
    # it sat there (seen: +1.2 us): 0.1 ms allowed for that
    assert urllc["wait_max_ns"] <= (BULK_TX_MS + tol(0.1)) * 1e6, urllc
    assert embb["queue_max"] <= QLIM and urllc["tx"] == urllc["rx"] >= 590


def test_weighted_classes_share_the_rate_by_weight() -> None:
    shaped = DirectionParams(rate_mbps=RATE_MBPS, queue_limit_pkts=QLIM)
    flows = [f"6003:34:{BULK}:1000", f"6004:10:{BULK}:1000"]  # each ~10 Mbit/s: both saturate
    with two_hosts(shaped, None, calibrate=False) as (_, engine, h1, h2, _t):
        engine.set_queues("l1", "uplink", SLICES)  # embb weight 3, mmtc weight 1
        got = traffic(h1, h2, 3.0, flows)
        stats = engine.stats("l1")["uplink"]
    t0 = min(int(r[:, 2].min()) for r in got.values())
    lo, hi = t0 + 0.5e9, t0 + 2.5e9  # steady state: both queues full
    mbps = {port: ((r[:, 2] >= lo) & (r[:, 2] < hi)).sum() * (BULK + HDR) * 8 / 2.0 / 1e6
            for port, r in got.items()}
    print(f"weighted shares Mbit/s: {mbps}; classes {stats['classes']}")
    assert abs(mbps[6003] - 0.75 * RATE_MBPS) < 0.1 * 0.75 * RATE_MBPS, mbps
    assert abs(mbps[6004] - 0.25 * RATE_MBPS) < 0.1 * 0.25 * RATE_MBPS, mbps
    assert stats["classes"][1]["dropped_queue"] > 0 and stats["classes"][2]["dropped_queue"] > 0

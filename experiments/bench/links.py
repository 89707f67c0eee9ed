"""``factorysat bench links``: fidelity benchmark of the link engine (issue 3, item 5).

For each backend available here, on two Mininet hosts joined by one engine link, it measures:
delay error at 1/10/50/300 ms x 1k/10k/100k packets/s; max UDP packets/s (1400 B and 64 B
payloads); TCP Mbit/s at 0 and 20 ms one-way; loss accuracy at 1 % and 10 % with the binomial 99 %
interval; packets lost/reordered across delay updates at 1 Hz; and, where netem exists, the same
update test through Mininet's own TCLink.config(). Results: results/bench_links/<run_id>/.

Delay errors are computed on packets no host stall touched (``topologies/hoststall.py``: a
real-time sentinel runs through each backend's measurements); the error over all packets and the
machine's stall rate are reported beside them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from experiments.framework.stats import percentile
from topologies.hoststall import HostStallSentinel, StallRecord, read_record
from topologies.links import DirectionParams, LinkEngine
from topologies.links import available_backends as usable_backends
from topologies.links.udpprobe import owd_ms, run_probe
from topologies.manifest import Manifest

DELAYS_MS = (1, 10, 50, 300)
RATES_PPS = (1_000, 10_000, 100_000)
UPDATE_DELAYS_MS = (10, 50, 5, 30, 1, 40, 20, 15)  # cycled: 10 -> 50 -> 5 -> 30 -> ...
Z99 = 2.5758  # two-sided 99 % quantile of the standard normal


class Testbed:
    """Two hosts h1 (10.0.0.1) and h2 (10.0.0.2) joined by engine link 'bench'."""

    def __init__(self, backend: str, out: Path, seed: int, tclink: bool = False) -> None:
        self.backend, self.out, self.seed, self.tclink = backend, out, seed, tclink
        self.tag = "b" + secrets.token_hex(3)
        self.scratch = out / "scratch"
        self.engine: LinkEngine | None = None
        self.link: Any = None
        self.sentinel = HostStallSentinel(out / f"hoststall-{backend}{'-tclink' if tclink else ''}.txt")

    @contextlib.contextmanager
    def up(self) -> Iterator[Testbed]:
        from mininet.link import TCLink
        from mininet.net import Mininet

        manifest = Manifest.create(self.tag)
        net = Mininet(topo=None, build=False, controller=None)
        try:
            self.h1 = net.addHost("h1", ip="10.0.0.1/24")
            self.h2 = net.addHost("h2", ip="10.0.0.2/24")
            if self.tclink:  # Mininet's own netem path, for the side-by-side update test
                self.link = net.addLink(self.h1, self.h2, cls=TCLink, delay="10ms", txo=False, rxo=False)
            else:
                self.engine = LinkEngine(self.backend, self.tag, manifest, self.out / "logs", seed=self.seed)
                self.engine.start()
                net.addLink(self.h1, self.h2, cls=self.engine.link_class, link_name="bench",
                            uplink=DirectionParams(delay_ms=1), downlink=DirectionParams(delay_ms=1),
                            txo=False)
            net.build()
            net.staticArp()
            self.sentinel.start()
            yield self
        finally:
            if self.sentinel.alive():
                self.sentinel.stop()
            net.stop()
            if self.engine is not None:
                self.engine.stop()
            manifest.remove_all()

    def set(self, uplink: DirectionParams, downlink: DirectionParams | None = None) -> None:
        self.engine.set_params("bench", "uplink", uplink)
        if downlink is not None:
            self.engine.set_params("bench", "downlink", downlink)

    def probe(self, pps: float, count: int, size: int = 100, **kw: Any) -> np.ndarray:
        return run_probe(self.h1, self.h2, pps, count, self.scratch, size=size, fast=True, **kw)

    def stalls(self) -> StallRecord:
        """The sentinel's windows so far (it flushes each one as it happens)."""
        return read_record(self.sentinel.out_path)


def percentiles(err: np.ndarray) -> dict[str, float]:
    """Mean and p50/p99/p99.9 of delay errors (ms, 4 decimals); NaN when nothing arrived."""
    values = {"mean": round(float(err.mean()), 4) if len(err) else None,
              **{key: percentile(err, q) for key, q in (("p50", 50), ("p99", 99), ("p999", 99.9))}}
    return {k: math.nan if v is None else v for k, v in values.items()}


def delay_errors(tb: Testbed, quick: bool, tick: Callable[[str], None]) -> list[dict]:
    """Delay error per (delay, rate): percentiles on packets no host stall touched, p99 over all."""
    rows = []
    for delay in DELAYS_MS:
        tb.set(DirectionParams(delay_ms=delay))
        for pps in RATES_PPS:
            tick(f"delay {delay} ms @ {pps // 1000}k pps")
            duration = (1.0 if pps == 1000 else 0.5) if quick else (2.0 if pps == 1000 else 1.0)
            count = int(pps * duration)
            info: dict = {}
            data = tb.probe(pps, count, info=info)
            err = owd_ms(data) - delay
            # due to arrive at send + the configured delay (the calibrated hop is subtracted)
            stalled = tb.stalls().flag(data[:, 1], data[:, 2], data[:, 1] + round(delay * 1e6))
            sent = info.get("sent", count)
            rows.append({"delay_ms": delay, "pps": pps, "sent": sent, "received": len(data),
                         "host_stall_flagged": int(stalled.sum()),
                         **{f"err_ms_{k}": v for k, v in percentiles(err[~stalled]).items()},
                         "err_ms_all_p99": percentiles(err)["p99"]})
    return rows


def max_pps(tb: Testbed, quick: bool, tick: Callable[[str], None]) -> dict[str, dict]:
    tb.set(DirectionParams(delay_ms=0, up=True), DirectionParams())
    out = {}
    for size in (1400, 64):
        tick(f"max packets/s, {size} B")
        info: dict = {}
        pids = tb.engine.backend.data_path_pids()  # the relay process; none for netem
        cpu0 = _cpu_s(pids) if pids else None
        data = tb.probe(0, 10**9, size=size, duration_s=1.0 if quick else 2.0, info=info)
        cpu1 = _cpu_s(pids) if pids else None
        t = np.sort(data[:, 2]) / 1e9 if len(data) else np.array([0.0])
        span = float(t[-1] - t[0]) if len(t) > 1 else math.nan
        kpps = (len(data) - 1) / span / 1e3 if len(data) > 1 else 0.0
        sent, elapsed = info.get("sent", 0), info.get("elapsed_s", math.nan)
        delivered = 100 * len(data) / sent if sent else 0.0
        out[f"{size}B"] = {
            "kpps": round(kpps, 1), "sender_kpps": round(sent / elapsed / 1e3, 1),
            "delivered_pct": round(delivered, 2),
            # sender, relay and receiver share the 2 cores: when everything sent is delivered the
            # figure is a lower bound of the relay's capacity (the sender was the bottleneck)
            "sender_limited": delivered >= 99.0,
            "relay_cpu_pct": None if cpu0 is None else round(100 * (cpu1 - cpu0) / elapsed, 1),
            "gbps_frames": round(kpps * 1e3 * (size + 42) * 8 / 1e9, 3)}
    return out


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by processes ``pids``."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def tcp(tb: Testbed, quick: bool, cc: str, tick: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"congestion_control": cc, "one_way_delay_each_direction": True}
    for delay in (0, 20):
        tick(f"TCP at {delay} ms")
        tb.set(DirectionParams(delay_ms=delay), DirectionParams(delay_ms=delay))
        time.sleep(0.1)
        seconds = 3 if quick else 5
        server = tb.h2.popen(["iperf3", "-s", "-1", "-p", "5299"])
        time.sleep(0.3)
        client = tb.h1.popen(["iperf3", "-c", tb.h2.IP(), "-p", "5299", "-t", str(seconds), "-O", "1",
                              "-C", cc, "-J"])
        text, _ = client.communicate(timeout=seconds + 30)
        server.wait(timeout=10)
        try:
            result = json.loads(text)
            mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
        except (ValueError, KeyError):
            mbps = math.nan
        out[f"{delay}ms"] = round(mbps, 1)
    return out


def binomial_interval_pct(n: int, p: float) -> tuple[float, float]:
    """99 % interval of the measured loss rate for n packets at loss probability p (normal approx.)."""
    half = Z99 * math.sqrt(p * (1 - p) / n)
    return (100 * max(0.0, p - half), 100 * (p + half))


def loss_accuracy(tb: Testbed, quick: bool, tick: Callable[[str], None]) -> list[dict]:
    rows = []
    for pct in (1.0, 10.0):
        tick(f"loss {pct:g} %")
        tb.set(DirectionParams(delay_ms=1, loss_pct=pct), DirectionParams(delay_ms=1))
        n_req = 10_000 if quick else 30_000
        info: dict = {}
        data = tb.probe(10_000, n_req, info=info)
        n = info.get("sent", n_req)
        measured = 100 * (1 - len(np.unique(data[:, 0])) / n)
        lo, hi = binomial_interval_pct(n, pct / 100)
        rows.append({"configured_pct": pct, "packets": n, "measured_pct": round(measured, 3),
                     "interval99_pct": [round(lo, 3), round(hi, 3)], "within": bool(lo <= measured <= hi)})
    return rows


def update_test(tb: Testbed, n_updates: int, tick: Callable[[str], None], pps: int = 2000,
                apply: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Traffic at ``pps`` while the uplink delay changes every second; count lost and reordered."""
    apply = apply or (lambda d: tb.set(DirectionParams(delay_ms=d)))
    apply(UPDATE_DELAYS_MS[0])
    time.sleep(0.1)
    seq = [UPDATE_DELAYS_MS[(i + 1) % len(UPDATE_DELAYS_MS)] for i in range(n_updates)]
    times: list[float] = []

    def during() -> None:
        start = time.monotonic()
        for i, d in enumerate(seq):
            time.sleep(max(0.0, start + 0.5 + i - time.monotonic()))
            apply(d)
            times.append(time.time())
            tick(f"update {i + 1}/{n_updates}: {d} ms")

    count = int(pps * (n_updates + 1))
    info: dict = {}
    data = tb.probe(pps, count, info=info, during=during)
    order = np.argsort(data[:, 2], kind="stable")
    seqs = data[order, 0]
    reordered = int(np.sum(seqs < np.maximum.accumulate(np.concatenate(([-1], seqs[:-1])))))
    sent = info.get("sent", count)
    keep = np.linspace(0, len(data) - 1, min(len(data), 4000)).astype(int) if len(data) else []
    return {"updates": n_updates, "pps": pps, "sent": sent,
            "lost": int(sent - len(np.unique(seqs))), "reordered": reordered,
            "delays_ms": [UPDATE_DELAYS_MS[0], *seq],
            "trace": {"t_send_s": ((data[keep, 1] - data[0, 1]) / 1e9).round(4).tolist() if len(data) else [],
                      "owd_ms": owd_ms(data[keep]).round(3).tolist() if len(data) else []},
            "update_times_s": [round(t - data[0, 1] / 1e9, 3) for t in times] if len(data) else []}


def run_backend(backend: str, out: Path, quick: bool, cc: str, seed: int,
                tick: Callable[[str], None]) -> dict[str, Any]:
    """Every measurement on one backend; returns its detail dict (engine metadata included)."""
    tb = Testbed(backend, out, seed)
    with tb.up():
        res: dict[str, Any] = {"engine": tb.engine.metadata()}
        res["delay_error"] = delay_errors(tb, quick, tick)
        res["max_pps"] = max_pps(tb, quick, tick)
        res["tcp_mbps"] = tcp(tb, quick, cc, tick)
        res["loss"] = loss_accuracy(tb, quick, tick)
        res["update"] = update_test(tb, 10 if quick else 60, tick)
    res["host_stalls"] = tb.sentinel.stop().summary(
        flagged=sum(r["host_stall_flagged"] for r in res["delay_error"]),
        packets=sum(r["received"] for r in res["delay_error"]))
    return res


def run_tclink(out: Path, quick: bool, seed: int, tick: Callable[[str], None]) -> dict[str, Any]:
    """The update test through Mininet's TCLink.config() (deletes and re-adds its qdiscs)."""
    tb = Testbed("netem", out, seed, tclink=True)
    lock = threading.Lock()
    with tb.up():
        def apply(d: float) -> None:
            with lock:
                tb.link.intf1.config(delay=f"{d}ms")
        return update_test(tb, 10 if quick else 60, tick, apply=apply)


def available_backends(requested: str) -> list[str]:
    """``all``: every registered backend that can run here (registry order); else ``[requested]``."""
    if requested == "all":
        return usable_backends()
    return [requested]

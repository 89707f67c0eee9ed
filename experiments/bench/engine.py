"""``factorysat bench engine``: the C traffic engine's own throughput, packets per CPU second.

Two Mininet hosts joined by a plain veth pair (no link engine, no switch: the engine alone is
measured). One engine process serves ``FLOWS`` periodic flows h1 -> h2 and their receiver, at
offered rates from 10 k to 100 k packets/s (100 B payloads), ``DURATION_S`` each. Per step: the
engine's CPU time (``/proc/<pid>/stat`` utime + stime, from ``go`` to the end of the drain), packets
sent + received, and so **kpps per CPU core** = (sent + received) / CPU seconds; the sender's
lateness (actual - scheduled send) p50/p99 from the records; packets lost. The issue-9 goal:
>= 50 k packets/s sent plus received on one core. The engine gives up its real-time priority
above half a CPU (so it cannot starve the relay in a run), which this measurement does not need.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from experiments.framework.stats import percentile

FLOWS = 100
OFFERED_PPS = (10_000, 25_000, 50_000, 100_000)
DURATION_S = 5.0
PAYLOAD_BYTES = 100
GOAL_KPPS_PER_CORE = 50.0
_TICK_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK_S


@contextlib.contextmanager
def two_hosts(manifest: Any) -> Iterator[tuple[Any, Any]]:
    """h1 (10.0.0.1) and h2 (10.0.0.2) on a plain veth pair; their shells recorded and stopped."""
    from mininet.net import Mininet

    net = Mininet(topo=None, build=False, controller=None)
    try:
        h1, h2 = net.addHost("h1", ip="10.0.0.1/24"), net.addHost("h2", ip="10.0.0.2/24")
        for host in (h1, h2):
            manifest.add_process(f"shell:{host.name}", host.pid)
        net.addLink(h1, h2)
        net.build()
        net.staticArp()
        yield h1, h2
    finally:
        net.stop()


def step(binary: Path, manifest: Any, h1: Any, h2: Any, pps: int, folder: Path) -> dict[str, Any]:
    """One offered rate: the engine's CPU cost and lateness."""
    from experiments.kinds.slices.engine import TrafficEngine
    from experiments.kinds.slices.packetstream import RECORD_DTYPE

    folder.mkdir(parents=True)
    engine = TrafficEngine(binary, manifest, folder / "engine.txt")
    try:
        out = folder / "recv-h2.bin"
        engine.add_receiver("h2", h2.pid, 5001, out)
        interval_ms = FLOWS / pps * 1e3
        start_ns = time.time_ns() + 500_000_000
        for flow in range(1, FLOWS + 1):
            engine.add_sender(flow, h1.pid, h2.IP(), 5001, PAYLOAD_BYTES, interval_ms, start_ns, DURATION_S,
                              folder / f"send-{flow}.json")
        engine.go()
        before = cpu_s(engine.proc.pid)
        engine.wait_senders(timeout_s=DURATION_S + 60)
        time.sleep(0.2)  # the last packets arrive
        used = cpu_s(engine.proc.pid) - before
        engine.stop()
    finally:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
        manifest.discard("process", "traffic:engine")
    sent = sum(json.loads((folder / f"send-{f}.json").read_text())["packets_sent"]
               for f in range(1, FLOWS + 1))
    records = np.fromfile(out, dtype=RECORD_DTYPE)
    interval_ns = int(interval_ms * 1e6)
    scheduled = start_ns + records["seq"].astype(np.int64) * interval_ns
    late_ms = (records["send_ns"].astype(np.int64) - scheduled) / 1e6
    received = int(records.size)
    return {"offered_pps": pps, "sent": sent, "received": received, "lost": sent - received,
            "cpu_s": round(used, 3), "cpu_pct_of_core": round(100 * used / DURATION_S, 1),
            "kpps_per_core": round((sent + received) / used / 1e3, 1) if used > 0 else None,
            "send_late_ms_p50": percentile(late_ms, 50), "send_late_ms_p99": percentile(late_ms, 99)}


def main(results: Path) -> int:
    from experiments.framework.results import base_metadata, mark_complete, new_bench_dir, write_json
    from experiments.kinds.slices.engine import engine_binary
    from topologies.manifest import Manifest

    binary = engine_binary()
    if binary is None:
        print("factorysat bench engine: no C traffic engine (no compiler, or FACTORYSAT_TRAFFIC_ENGINE "
              "set): nothing to measure")
        return 2
    _, out = new_bench_dir(results, "bench_engine")
    manifest = Manifest.create("g" + secrets.token_hex(3))
    rows = []
    try:
        with two_hosts(manifest) as (h1, h2):
            for pps in OFFERED_PPS:
                print(f"factorysat bench engine: {FLOWS} flows, {pps:,} packets/s offered, "
                      f"{DURATION_S:g} s ...", flush=True)
                rows.append(step(binary, manifest, h1, h2, pps, out / f"pps{pps}"))
    finally:
        problems = manifest.remove_all()
        if problems:
            print(f"factorysat bench engine: left behind: {problems}")
    best = max((r["kpps_per_core"] or 0.0 for r in rows), default=0.0)
    at_goal = [r for r in rows if r["offered_pps"] * 2 >= GOAL_KPPS_PER_CORE * 1e3]
    summary = {"flows": FLOWS, "duration_s": DURATION_S, "payload_bytes": PAYLOAD_BYTES, "steps": rows,
               "goal_kpps_per_core": GOAL_KPPS_PER_CORE, "kpps_per_core_best": best,
               "goal_met": bool(at_goal) and all((r["kpps_per_core"] or 0) >= GOAL_KPPS_PER_CORE and
                                                 r["lost"] == 0 for r in at_goal),
               "method": __doc__.strip().split("\n\n")[1]}
    write_json(out / "summary.json", summary)
    write_json(out / "metadata.json", {**base_metadata(), "benchmark": "engine"})
    print(f"\n{'offered pps':>11} {'sent':>9} {'received':>9} {'lost':>6} {'CPU % core':>10} "
          f"{'kpps/core':>9} {'late p50 ms':>11} {'late p99 ms':>11}")
    for r in rows:
        print(f"{r['offered_pps']:>11,} {r['sent']:>9,} {r['received']:>9,} {r['lost']:>6,} "
              f"{r['cpu_pct_of_core']:>10} {r['kpps_per_core']!s:>9} {r['send_late_ms_p50']!s:>11} "
              f"{r['send_late_ms_p99']!s:>11}")
    verdict = "MET" if summary["goal_met"] else "MISS"
    print(f"goal: [{verdict}] >= {GOAL_KPPS_PER_CORE:g} k packets/s sent + received per core, no loss "
          f"(at offered rates of {GOAL_KPPS_PER_CORE / 2:g} k packets/s and more)")
    mark_complete(out)
    print(out)
    return 0

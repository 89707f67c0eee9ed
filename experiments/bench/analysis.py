"""``factorysat bench analysis``: peak memory of a run's analysis as the run gets longer.

For each duration (default 60 s, 600 s, 3600 s) it writes the receiver files the 124-UE factory of
``bench scale`` (100 AGVs every 10 ms, 20 cameras at 8 Mbit/s, 4 sensors; scale.factory) would
leave after that long with every scheduled packet received (send stamps 0-50 us late, one-way
delays 1 ms + exponential 0.2 ms: synthetic, no network runs), then runs the slices kind's
packet analysis on them in a child process: packets.parquet written and counted in chunks
(packetstream.store_packets), the reconciliation (counts.reconcile_flows), the per-slice figures
(analysis.summary_from) and the CDF histograms. The child reports its own peak resident memory
(``ru_maxrss``) and wall time; durations are compared side by side (goal: 1 hour <= 1 GB, and
flat in run length). The generated files are removed afterwards (they are GBs); the summary,
metadata and each child's figures stay in ``results/bench_analysis/<run_id>/``.

What it leaves out: link counters, loss accounting and the fidelity estimate (their inputs do not
grow with run length), and the other kinds (offload: one request every few ms, small tables).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DURATIONS_S = (60.0, 600.0, 3600.0)
GOAL_PEAK_MB_1H = 1024.0           # issue 9: a 1-hour 124-UE run analysed in <= 1 GB
UES = 124
BLOCK_S = 10.0                      # records are generated and written 10 s of traffic at a time
START_NS = 1_700_000_000 * 10**9


def write_raw(raw: Path, duration_s: float, seed: int = 1) -> dict[str, Any]:
    """Receiver and sender files of the 124-UE factory after ``duration_s``; what was written."""
    from experiments.bench import scale
    from experiments.kinds.slices.counts import planned_packets
    from experiments.kinds.slices.packetstream import RECORD_DTYPE
    from experiments.kinds.slices.traffic import plan_flows

    rng = np.random.default_rng(seed)
    flows = plan_flows(scale.factory(UES))
    raw.mkdir(parents=True, exist_ok=True)
    planned = {f.flow_id: planned_packets(duration_s, f.interval_ms) for f in flows}
    for f in flows:
        (raw / f"send-{f.ue}.json").write_text(json.dumps(
            {"packets_scheduled": planned[f.flow_id], "packets_sent": planned[f.flow_id], "send_errors": 0}))
    handles = {dest: open(raw / f"recv-{dest}.bin", "wb") for dest in sorted({f.destination for f in flows})}
    written = dict.fromkeys(handles, 0)
    try:
        for t0 in np.arange(0.0, duration_s, BLOCK_S):
            parts: dict[str, list[np.ndarray]] = {d: [] for d in handles}
            for f in flows:
                interval_ns = int(f.interval_ms * 1e6)
                first = int(np.ceil(t0 * 1e9 / interval_ns))
                end_ns = min(t0 + BLOCK_S, duration_s) * 1e9
                last = min(planned[f.flow_id], int(np.ceil(end_ns / interval_ns)))
                if last <= first:
                    continue
                seq = np.arange(first, last, dtype=np.int64)
                rec = np.zeros(seq.size, dtype=RECORD_DTYPE)
                rec["flow_id"], rec["seq"] = f.flow_id, seq
                rec["send_ns"] = START_NS + seq * interval_ns + rng.integers(0, 50_000, seq.size)
                owd_ns = 1_000_000 + rng.exponential(200_000, seq.size).astype(np.int64)
                rec["recv_ns"] = rec["send_ns"] + owd_ns
                rec["bytes"], rec["tos"] = f.payload_bytes, f.dscp_expected << 2
                parts[f.destination].append(rec)
            for dest, recs in parts.items():
                if recs:
                    block = np.concatenate(recs)
                    block = block[np.argsort(block["recv_ns"], kind="stable")]  # arrival order
                    block.tofile(handles[dest])
                    written[dest] += block.size
    finally:
        for handle in handles.values():
            handle.close()
    for dest, n in written.items():
        Path(f"{raw}/recv-{dest}.bin.done").write_text(json.dumps({"packets_received": n, "socket_drops": 0}))
    return {"records": sum(written.values()), "raw_bytes": sum((raw / f"recv-{d}.bin").stat().st_size
                                                               for d in handles)}


def child(raw: Path, out: Path, duration_s: float) -> dict[str, Any]:
    """The analysis of one duration, in this (child) process; its figures and peak memory."""
    from experiments.bench import scale
    from experiments.framework.plotting import save
    from experiments.kinds.slices import analysis, counts, figures, messages, packetstream
    from experiments.kinds.slices.traffic import flows_table, plan_flows

    t0 = time.monotonic()
    flows = flows_table(plan_flows(scale.factory(UES)), raw)
    outcomes = messages.MessageOutcomes(flows, START_NS, duration_s, include_stalls=False)  # TS 22.104
    stored, packet_counts, slice_figures = packetstream.store_packets(
        raw, flows, None, out / "packets.parquet", include=False, start_ns=START_NS, outcomes=outcomes)
    service = outcomes.flow_metrics()
    problems, checks = counts.reconcile_flows(packet_counts, flows, duration_s, counts.read_receivers(raw))
    summary = analysis.summary_from(slice_figures, flows)
    hists, _ = packetstream.owd_histograms(
        packetstream.parquet_chunks(stored.path, packetstream.HIST_COLUMNS), exclude_stalls=True)
    save(figures.owd_cdf(hists, dict(zip(flows["slice"], flows["latency_bound_ms"], strict=True))),
         out / "owd_cdf")
    return {"duration_s": duration_s, "packets": stored.rows, "wall_s": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "pass2_held": slice_figures.owd.kept + slice_figures.late.kept,
            "reconciled": not problems, "problems": problems[:3], "checks": checks,
            "urllc_owd_ms_p99": summary["urllc"]["owd_ms_p99"],
            "flows_with_service_metrics": len(service),
            "parquet_bytes": stored.path.stat().st_size}


def main(durations: tuple[float, ...], results: Path) -> int:
    """Generate, analyse in a child, measure, clean up; print the table and write the summary."""
    from experiments.framework.results import base_metadata, mark_complete, new_bench_dir, write_json

    _, run_dir = new_bench_dir(results, "bench_analysis")
    rows = []
    for duration in durations:
        work = run_dir / f"d{int(duration)}"
        print(f"factorysat bench analysis: writing {duration:g} s of 124-UE records ...", flush=True)
        t0 = time.monotonic()
        made = write_raw(work / "raw", duration)
        gen_s = time.monotonic() - t0
        print(f"  {made['records']:,} records ({made['raw_bytes'] / 2**30:.2f} GiB) in {gen_s:.0f} s; "
              "analysing in a child process ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "experiments.bench.analysis", "--child", str(work),
                               str(duration)], capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"duration_s": duration, "failure": proc.stderr.strip().splitlines()[-1:]})
        else:
            rows.append({**json.loads(proc.stdout.strip().splitlines()[-1]), **made})
        shutil.rmtree(work / "raw", ignore_errors=True)           # GBs: this benchmark's own files
        (work / "packets.parquet").unlink(missing_ok=True)
    hour = next((r for r in rows if r.get("duration_s") == 3600.0 and "peak_rss_mb" in r), None)
    summary = {"ues": UES, "sizes": rows, "goal_peak_rss_mb_1h": GOAL_PEAK_MB_1H,
               "peak_rss_mb_1h": hour["peak_rss_mb"] if hour else None,
               "goal_met": bool(hour and hour["peak_rss_mb"] <= GOAL_PEAK_MB_1H and hour["reconciled"]),
               "method": "synthetic receiver files (every packet received), analysed in a child process; "
                         "peak = the child's ru_maxrss"}
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "metadata.json", {**base_metadata(), "benchmark": "analysis",
                                           "durations_s": list(durations)})
    print(f"\n{'run s':>7} {'packets':>12} {'raw GiB':>8} {'analysis s':>10} {'peak MB':>8} "
          f"{'pass-2 held':>11} {'reconciled':>10}")
    for r in rows:
        if "peak_rss_mb" not in r:
            print(f"{r['duration_s']:>7g} failed: {r.get('failure')}")
            continue
        print(f"{r['duration_s']:>7g} {r['packets']:>12,} {r['raw_bytes'] / 2**30:>8.2f} "
              f"{r['wall_s']:>10.1f} {r['peak_rss_mb']:>8.0f} {r['pass2_held']:>11,} "
              f"{str(r['reconciled']):>10}")
    verdict = "MET" if summary["goal_met"] else "MISS"
    print(f"goal: [{verdict}] 1-hour 124-UE analysis peak memory {summary['peak_rss_mb_1h']} MB "
          f"(goal <= {GOAL_PEAK_MB_1H:g} MB)")
    mark_complete(run_dir)
    print(run_dir)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        folder = Path(sys.argv[2])
        print(json.dumps(child(folder / "raw", folder, float(sys.argv[3]))))
    else:
        print("usage: python -m experiments.bench.analysis --child FOLDER DURATION_S "
              "(the benchmark itself: factorysat bench analysis)", file=sys.stderr)
        sys.exit(2)

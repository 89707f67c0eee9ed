"""Benchmark: LEO schedule for the full 1,584-satellite Starlink shell 1, 10 min at 1 s steps.

Run ``python -m experiments.bench.leo``. Goal (issue 4): <= 10 s on the 2-core project VM.
Prints wall-clock times of each stage and of the whole schedule (best of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from topologies.leo.config import LeoOrbitConfig
from topologies.leo.constellation import Constellation, build_constellation, walker_satrecs
from topologies.leo.geometry import elevation_deg, ground_point_ecef_km
from topologies.leo.schedule import leo_schedule, schedule_summary

GOAL_S = 10.0


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    config = LeoOrbitConfig.default()
    const = build_constellation(config)
    t = np.arange(0.0, args.duration_s, config.step_s)
    ut = ground_point_ecef_km(config.site.lat_deg, config.site.lon_deg)

    geo_s, _ = _best(lambda: elevation_deg(ut, const.positions_ecef_km(t)), args.repeat)
    sched_s, df = _best(lambda: leo_schedule(config, args.duration_s), args.repeat)
    summary = schedule_summary(df)
    sgp4_const = Constellation(config.epoch, const.names, records=walker_satrecs(config.shell, config.epoch),
                               planes=config.shell.planes, sats_per_plane=config.shell.sats_per_plane)
    sgp4_s, _ = _best(lambda: leo_schedule(config, args.duration_s, constellation=sgp4_const), args.repeat)
    longest = dataclasses.replace(config, policy="longest_visibility")
    longest_s, _ = _best(lambda: leo_schedule(longest, args.duration_s), args.repeat)
    print(f"shell: {const.n_sats} satellites, {args.duration_s:.0f} s at {config.step_s} s steps")
    print(f"all-satellite positions + elevation ({len(t)} x {const.n_sats}): {geo_s:.3f} s")
    print(f"leo_schedule ({len(df)} rows): {sched_s:.3f} s  (goal <= {GOAL_S:.0f} s: "
          f"{'met' if sched_s <= GOAL_S else 'MISSED'})")
    print(f"same shell as sgp4 TLEs: {sgp4_s:.3f} s; policy longest_visibility: {longest_s:.3f} s")
    print(f"median RTT {summary['rtt_median_ms']:.1f} ms, p95 {summary['rtt_p95_ms']:.1f} ms, "
          f"boundary median {summary['rtt_boundary_median_ms']:.1f} ms, "
          f"handovers {summary['handovers']:.0f}")
    return 0 if max(sched_s, sgp4_s, longest_s) <= GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())

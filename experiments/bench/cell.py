"""``factorysat bench cell``: the NR cell model's one-way delays per profile, slice and direction,
unloaded and loaded, against each profile's calibration targets (topologies/nr/profiles.py).

The delays are the model's own (relay/nrcell.c run by relay/nrsim.c on the same arrivals the
emulator would see; no sockets), so this checks the model, not the emulator: what the relay adds on
top of it is measured by tests/integration/test_nr_cell.py and reported per run by ``fidelity``.

Bench cell: three slices as the default scenario's (urllc: 10 % dedicated PRBs, priority 10,
configured grant where the profile offers it; embb: priority 5; mmtc: priority 1), one UE per slice
sending 100 B packets up and down 15-25 ms apart (unloaded); loaded adds cameras
in the embb slice offering 90 % of the cell's uplink capacity in 1200 B packets.
Output: results/bench_cell/<run_id>/ summary.json, metadata.json, delays.npz (every delay, for
redrawing), cell_delay_cdf.png/.pdf, COMPLETE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.framework.plotting import plt, save, slice_style
from experiments.framework.results import base_metadata, mark_complete, new_bench_dir, write_json
from topologies.nr.config import NrPlan, SliceRan, parse_nr_cell
from topologies.nr.profiles import CALIBRATION_TARGETS, PROFILES
from topologies.nr.sim import simulate
from topologies.validate import Table

SLICES: tuple[tuple[str, SliceRan], ...] = (
    ("urllc", SliceRan(dedicated_pct=10, min_pct=10, priority=10, uplink_grant="configured", cg_bytes=256)),
    ("embb", SliceRan(priority=5)),
    ("mmtc", SliceRan(priority=1)),
)
PROBE_BYTES = 100
MEAN_GAP_MS = 20.0
CAMERA_BYTES = 1200
LOAD_SHARE = 0.9


def arrivals(duration_s: float, cameras: int, camera_mbps: float,
             seed: int) -> list[tuple[int, int, str, int]]:
    """Probes of UEs 1..3 (one per slice) both ways, and ``cameras`` uplink camera UEs (4..)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, int, str, int]] = []
    end_ns = int(duration_s * 1e9)
    for ue in (1, 2, 3):
        for d in ("uplink", "downlink"):
            # gaps uniform in [0.75, 1.25] x the mean: every packet finds an idle UE, as the
            # measurements' pings did, at a random phase of the slot grid
            t = rng.uniform(0.75 * MEAN_GAP_MS * 1e6, 1.25 * MEAN_GAP_MS * 1e6,
                            int(duration_s * 1000 / MEAN_GAP_MS * 1.5)).cumsum()
            out += [(int(x) + 10_000_000, ue, d, PROBE_BYTES) for x in t if x < end_ns]
    if cameras:
        gap_ns = CAMERA_BYTES * 8 / (camera_mbps * 1e6) * 1e9
        for c in range(cameras):
            t0 = rng.uniform(0, gap_ns)
            out += [(int(10_000_000 + t0 + i * gap_ns), 4 + c, "uplink", CAMERA_BYTES)
                    for i in range(int(end_ns / gap_ns))]
    out.sort()
    return out


def share_in_range_pct(delays_ms: np.ndarray, target: dict[str, Any] | None) -> float | None:
    """The share of delays within the target's [low, high] (None: no target or no delays)."""
    if target is None or not len(delays_ms):
        return None
    return round(float(np.mean((delays_ms >= target["low_ms"]) & (delays_ms <= target["high_ms"]))) * 100, 2)


def check_target(delays_ms: np.ndarray, target: dict[str, Any] | None) -> bool | None:
    """Within the profile's target: share in [low, high] and nothing below the floor; None: no target."""
    share = share_in_range_pct(delays_ms, target)
    if share is None or target is None:
        return None
    floor_ok = target["floor_ms"] is None or float(delays_ms.min()) >= target["floor_ms"]
    return share >= target["share_pct"] and floor_ok


def measure(profile: str, loaded: bool, duration_s: float, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Per slice and direction: percentiles, loss and the target check; and the raw delays."""
    cell = parse_nr_cell(Table({"profile": profile}, f"profiles.{profile}"))
    plan = NrPlan(cell, SLICES)
    ues = {1: 0, 2: 1, 3: 2}
    cameras = 0
    per_camera = 8.0
    if loaded:
        cameras = max(1, round(cell.capacity_mbps("uplink") * LOAD_SHARE / per_camera))
        per_camera = cell.capacity_mbps("uplink") * LOAD_SHARE / cameras
        ues.update({4 + c: 1 for c in range(cameras)})
    arr = arrivals(duration_s, cameras, per_camera, seed)
    got = simulate(plan, ues, arr, seed=seed)
    result: dict[str, Any] = {}
    raw: dict[str, np.ndarray] = {}
    for ue, (name, ran) in zip((1, 2, 3), SLICES, strict=True):
        result[name] = {}
        for d in ("uplink", "downlink"):
            rows = [g for g in got if g.ue == ue and g.direction == d]
            delays = np.array([g.delay_ms for g in rows if g.dep_ns >= 0])
            dynamic = d == "downlink" or not (ran.uplink_grant == "configured" and cell.configured_grant)
            target = CALIBRATION_TARGETS[profile][d] if (dynamic and not loaded) else None
            raw[f"{name}.{d}"] = delays
            result[name][d] = {
                "packets": len(rows), "lost": len(rows) - len(delays),
                "owd_ms_p50": _q(delays, 50), "owd_ms_p95": _q(delays, 95), "owd_ms_p99": _q(delays, 99),
                "owd_ms_min": round(float(delays.min()), 4) if len(delays) else None,
                "target": target, "share_in_range_pct": share_in_range_pct(delays, target),
                "within_target": check_target(delays, target),
            }
    result["_cell"] = {"capacity_mbps": {d: round(cell.capacity_mbps(d), 3) for d in ("uplink", "downlink")},
                       "cameras": cameras, "camera_mbps": round(per_camera, 3) if cameras else 0}
    return result, raw


def _q(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 4) if len(x) else None


def figure(raw: dict[str, dict[str, dict[str, np.ndarray]]], out: Path) -> list[Path]:
    """One panel per profile and direction: delay CDF per slice, unloaded (solid) and loaded (dashed)."""
    profiles = list(raw)
    fig, axes = plt.subplots(2, len(profiles), figsize=(4.2 * len(profiles), 6.4), squeeze=False)
    for j, prof in enumerate(profiles):
        for i, d in enumerate(("uplink", "downlink")):
            ax = axes[i][j]
            for load, style in (("unloaded", "-"), ("loaded", "--")):
                for name, _ in SLICES:
                    x = np.sort(raw[prof][load].get(f"{name}.{d}", np.array([])))
                    if not len(x):
                        continue
                    colour, label = slice_style(name)
                    ax.plot(x, np.arange(1, len(x) + 1) / len(x), style, color=colour,
                            label=f"{label} ({load})")
            tgt = CALIBRATION_TARGETS[prof][d]
            if tgt:
                ax.axvspan(tgt["low_ms"], tgt["high_ms"], color="0.9", zorder=0)
            ax.set_title(f"{prof}: {d}")
            ax.set_xlabel("one-way delay in the cell (ms)")
            ax.set_ylabel("CDF")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("NR cell model per profile (shaded: calibration target)")
    fig.tight_layout()
    paths = save(fig, out / "cell_delay_cdf")
    plt.close(fig)
    return paths


def redraw(run_dir: Path) -> list[Path]:
    """The figure again from a run's delays.npz."""
    raw: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with np.load(run_dir / "delays.npz") as stored:
        for name in stored.files:
            prof, load, key = name.split("|")
            raw.setdefault(prof, {}).setdefault(load, {})[key] = stored[name]
    return figure(raw, run_dir)


def main(results_root: Path, duration_s: float = 60.0, seed: int = 1) -> int:
    started, base = time.time(), base_metadata()
    run_id, out = new_bench_dir(results_root, "bench_cell")
    summary: dict[str, Any] = {"run_id": run_id, "source": "model (relay/nrcell.c via relay/nrsim.c)",
                               "profiles": {}, "loaded": {}}
    raw: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    steps = [(p, load) for p in PROFILES for load in (False, True)]
    for i, (prof, loaded) in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {prof} {'loaded' if loaded else 'unloaded'} ...", flush=True)
        res, delays = measure(prof, loaded, duration_s, seed)
        summary["loaded" if loaded else "profiles"][prof] = res
        raw.setdefault(prof, {})["loaded" if loaded else "unloaded"] = delays
    checks = [v["within_target"] for p in summary["profiles"].values() for k, s in p.items() if k != "_cell"
              for v in s.values() if v["within_target"] is not None]
    summary["all_within_target"] = all(checks) and bool(checks)
    write_json(out / "metadata.json", {**base, "bench": "cell", "duration_s": duration_s, "seed": seed,
                                       "slices": {n: vars(r) for n, r in SLICES},
                                       "profiles": {p: PROFILES[p] for p in PROFILES},
                                       "elapsed_s": round(time.time() - started, 2)})
    write_json(out / "summary.json", summary)
    np.savez_compressed(out / "delays.npz", **{f"{p}|{load}|{key}": x for p, loads in raw.items()
                                                for load, per in loads.items() for key, x in per.items()})
    figure(raw, out)
    mark_complete(out)
    print(render(summary))
    print(f"results: {out}")
    return 0 if summary["all_within_target"] else 1


def render(summary: dict[str, Any]) -> str:
    lines = [f"{'profile':12} {'slice':6} {'dir':8} {'p50':>6} {'p95':>6} {'p99':>6} "
             f"{'loaded p99':>10}  target"]
    for prof, res in summary["profiles"].items():
        for name, dirs in res.items():
            if name == "_cell":
                continue
            for d, v in dirs.items():
                lp = summary["loaded"][prof][name][d]["owd_ms_p99"]
                t = v["target"]
                verdict = "-" if t is None else (f"{'ok ' if v['within_target'] else 'MISSED'} "
                                                 f"{t['low_ms']}-{t['high_ms']} ms")
                lines.append(f"{prof:12} {name:6} {d:8} {v['owd_ms_p50']:6.2f} {v['owd_ms_p95']:6.2f} "
                             f"{v['owd_ms_p99']:6.2f} {lp:10.2f}  {verdict}")
    return "\n".join(lines)

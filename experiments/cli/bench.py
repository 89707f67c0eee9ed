"""``factorysat bench links|leo|scale|analysis|engine|cell``: the link engine's fidelity
(experiments/bench/links.py), orbit schedule speed (bench/leo.py), the whole emulator's error as the
factory grows (bench/scale.py), a run's analysis memory as the run gets longer (bench/analysis.py)
the C traffic engine's throughput per CPU core (bench/engine.py) and the NR cell model against
its calibration targets (bench/cell.py)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from pathlib import Path

from topologies.errors import UserError
from topologies.links import REGISTRY
from topologies.ownership import hand_over_at_exit
from topologies.scenario import MAX_SEED, SEED_WHY
from topologies.validate import ConfigError, check_int, check_name, check_number

TCP_CC_RE = re.compile(r"[a-z][a-z0-9_]{0,14}")  # the kernel's TCP_CA_NAME_MAX is 16 with the NUL


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (links: link engine fidelity)",
                              description="Measure the emulator against its goals.")
    p.add_argument("what", choices=("links", "leo", "scale", "analysis", "engine", "cell"),
                   help="links: link-engine fidelity (root); leo: orbit schedule generation speed; "
                        "scale: whole-emulator error at 10..500 UEs (root); analysis: peak memory of "
                        "a run's analysis at 1 min .. 1 h of the 124-UE factory (synthetic records); "
                        "engine: the C traffic engine's packets per CPU second (root); "
                        "cell: the NR cell model per profile, slice and direction against its "
                        "calibration targets, unloaded and loaded")
    p.add_argument("--backend", choices=("all", *REGISTRY), default="all",
                   help="link backend(s) to measure (default: every backend available here)")
    p.add_argument("--quick", action="store_true", help="shorter runs (10 updates instead of 60)")
    p.add_argument("--tcp-cc", default="bbr",
                   help="TCP congestion control for the TCP test (namespaces here allow reno, bbr)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the link engine")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root")
    p.add_argument("--sizes", help="scale: comma-separated UE counts (default: experiments/bench/"
                                   "scale.py SIZES, 10 to 500)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="scale: traffic seconds per size (default 20); cell: seconds of packets per "
                        "profile and load (default 60)")
    p.add_argument("--ovs-realtime", choices=("on", "off", "both"), default="on",
                   help="scale: userspace OVS's packet thread at real-time priority; both: each size "
                        "twice, side by side (goals from 'on')")
    p.add_argument("--durations-s", help="analysis: comma-separated run lengths (default 60,600,3600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the options (one line, exit 2 if bad), then run the benchmark."""
    try:
        check_int("--seed", args.seed, min=0, max=MAX_SEED, why=SEED_WHY)
        check_name("--tcp-cc", args.tcp_cc, TCP_CC_RE, "a TCP congestion control name, e.g. bbr or reno")
    except UserError as exc:
        print(f"factorysat bench: {exc}", file=sys.stderr)
        return 2
    if args.what == "leo":
        from experiments.bench import leo as bench_leo

        return bench_leo.main([])
    if args.what == "cell":
        from experiments.bench import cell as bench_cell

        duration_s = 60.0 if args.duration_s is None else args.duration_s
        try:
            check_number("--duration-s", duration_s, min=1.0, max=3600.0)
        except UserError as exc:
            print(f"factorysat bench: {exc}", file=sys.stderr)
            return 2
        return bench_cell.main(args.results, duration_s, args.seed)
    if args.what == "analysis":
        from experiments.bench import analysis as bench_analysis

        words = (args.durations_s or ",".join(f"{d:g}" for d in bench_analysis.DURATIONS_S)).split(",")
        try:
            durations = tuple(float(w) for w in words)
            for i, d in enumerate(durations):
                check_number(f"--durations-s[{i}]", d, min=1.0, max=3600.0)
        except ValueError:
            print(f"factorysat bench: --durations-s {args.durations_s!r}; allowed: comma-separated "
                  "seconds 1..3600, e.g. 60,3600", file=sys.stderr)
            return 2
        except UserError as exc:
            print(f"factorysat bench: {exc}", file=sys.stderr)
            return 2
        return bench_analysis.main(durations, args.results)
    if os.geteuid() != 0:
        print("factorysat bench: needs root (network namespaces); use sudo", file=sys.stderr)
        return 2
    if args.what == "engine":
        from experiments.bench import engine as bench_engine

        return bench_engine.main(args.results)
    if args.what == "scale":
        from experiments.bench import scale_run
        from experiments.bench.scale import SIZES

        words = (args.sizes or ",".join(map(str, SIZES))).split(",")
        if not all(w.strip().isdigit() for w in words):
            print(f"factorysat bench: --sizes {args.sizes!r}; allowed: comma-separated whole numbers, "
                  "e.g. 10,30,124", file=sys.stderr)
            return 2
        sizes = tuple(int(w) for w in words)
        try:
            for i, n in enumerate(sizes):
                check_int(f"--sizes[{i}]", n, min=6, max=2000, why="a scaled factory has 4 sensors and "
                          "at least one AGV and camera; 2000 bounds the run's processes")
            duration_s = 20.0 if args.duration_s is None else args.duration_s
            check_number("--duration-s", duration_s, min=1.0, max=3600.0)
        except UserError as exc:
            print(f"factorysat bench: {exc}", file=sys.stderr)
            return 2
        modes = {"on": (True,), "off": (False,), "both": (True, False)}[args.ovs_realtime]
        return scale_run.main(sizes, duration_s, args.results, modes)
    from tqdm import tqdm

    from experiments.bench import links as bl
    from experiments.bench import links_report as rep
    from experiments.framework.results import mark_complete
    from topologies.links import netem_available, select_backend

    try:
        backends = bl.available_backends(args.backend)
        for b in backends:
            select_backend(b)
    except ValueError as exc:
        print(f"factorysat bench: {exc}", file=sys.stderr)
        return 2
    started = time.time()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
    out = args.results / "bench_links" / run_id
    try:
        out.mkdir(parents=True)
        hand_over_at_exit(out, args.results)  # through sudo: the user's folder, not root's
    except OSError as exc:
        error = ConfigError("--results", str(args.results), f"a writable folder ({exc.strerror})")
        print(f"factorysat bench: {error}", file=sys.stderr)
        return 2
    n_updates = 10 if args.quick else 60
    per_backend = len(bl.DELAYS_MS) * len(bl.RATES_PPS) + 2 + 2 + 2 + n_updates
    with_tclink = netem_available()
    total = per_backend * len(backends) + (n_updates if with_tclink else 0)
    results: dict[str, dict] = {}
    tclink = None
    with tqdm(total=total, unit="step", dynamic_ncols=True) as bar:
        def tick(label: str) -> None:
            bar.set_description(label)
            bar.update(1)
        for backend in backends:
            results[backend] = bl.run_backend(backend, out, args.quick, args.tcp_cc, args.seed, tick)
        if with_tclink:
            tclink = bl.run_tclink(out, args.quick, args.seed, tick)
    summaries = {b: rep.summarize(r) for b, r in results.items()}
    summary = {
        "run_id": run_id, "quick": args.quick, "backends": summaries,
        "goals": {k: {"op": op, "value": v, "unit": u} for k, (op, v, u) in rep.GOALS.items()},
        "goal_met": {b: {k: rep.check(k, s[k])[0] for k in rep.GOALS} for b, s in summaries.items()},
        "tclink_config_update": None if tclink is None else
        {k: tclink[k] for k in ("updates", "sent", "lost", "reordered")},
        "tclink_config_note": None if with_tclink else "not measured: this kernel has no sch_netem",
        "details": results,
    }
    rep.print_report(results, summaries, tclink)
    rep.write(out, rep.metadata(args, results, started), "metadata.json")
    figs = rep.figure(results, out)
    rep.write(out, summary, "summary.json")
    scratch = out / "scratch"  # probe files, removed as they are read
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()
    mark_complete(out)
    print(f"\nfigure: {figs[0]}")
    print(out)
    return 0


def draw_figures(run_dir: Path) -> list[Path]:
    """Redraw a ``bench links``, ``scale`` or ``cell`` run's figure from its stored results (for
    ``factorysat figures``)."""
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    if "profiles" in summary:
        from experiments.bench import cell as bench_cell

        return bench_cell.redraw(run_dir)
    if "sizes" in summary:
        from experiments.bench import scale_run

        return scale_run.figure(summary["sizes"], run_dir)
    from experiments.bench import links_report as rep

    return rep.figure(summary["details"], run_dir)

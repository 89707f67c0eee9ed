"""``factorysat run [EXPERIMENT]``: run an experiment and print the per-slice table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments.framework.definition import available_experiments, load_experiment
from topologies.links import BACKENDS
from topologies.switches import DATAPATHS
from topologies.validate import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run an experiment (default: demo)",
                              description="Run an experiment on the emulated factory network.")
    p.add_argument("experiment", nargs="?", default="demo",
                   help=f"built-in name ({', '.join(available_experiments())}), a folder holding "
                        "experiment.toml, or an experiment file")
    p.add_argument("--scenario", type=Path, help="scenario TOML (default: the experiment's)")
    p.add_argument("--duration-s", type=float, help="traffic duration override, seconds")
    p.add_argument("--link-backend", choices=BACKENDS,
                   help="link engine override (default: the scenario's link_backend)")
    p.add_argument("--ovs-datapath", choices=DATAPATHS,
                   help="OVS datapath override (default: the scenario's ovs_datapath)")
    p.add_argument("--seed", type=int, help="random seed override")
    p.add_argument("--results", type=Path, help="results root (default: ./results)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from experiments.framework.session import RunOptions, Terminated
    from experiments.framework.skeleton import get_kind, run_experiment
    from topologies.switches import OvsNotRunning

    if os.geteuid() != 0:
        print("factorysat run: needs root (network namespaces, Open vSwitch); use sudo", file=sys.stderr)
        return 2
    if args.duration_s is not None and not 1 <= args.duration_s <= 3600:
        print(f"factorysat run: --duration-s {args.duration_s}; allowed: 1 to 3600", file=sys.stderr)
        return 2
    try:
        experiment = load_experiment(args.experiment)
        result = run_experiment(experiment, RunOptions(
            duration_s=args.duration_s, link_backend=args.link_backend,
            ovs_datapath=args.ovs_datapath, seed=args.seed, scenario_path=args.scenario,
            results_root=args.results, progress=not args.quiet))
    except ConfigError as exc:
        print(f"factorysat run: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except OvsNotRunning as exc:
        print(f"factorysat run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("factorysat run: interrupted; everything the run created was removed", file=sys.stderr)
        return 130
    except Terminated:
        print("factorysat run: terminated; everything the run created was removed", file=sys.stderr)
        return 143
    print()
    print(get_kind(experiment.kind).print_summary(result.summary))
    print()
    print(f"figure: {result.figure_paths[0]}")
    print("run folder:")
    print(result.run_dir)  # the last line is the run folder's path, for scripts
    return 0

"""``factorysat figures RUN_DIR...``: regenerate figures from a run's stored tidy tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("figures", help="regenerate figures from stored results",
                              description="Redraw the figures of complete run folders from their "
                                          "Parquet tables (no emulation needed, no root).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="results/<experiment>/<run_id> folders")
    p.set_defaults(func=figures_cmd)


def figures_cmd(args: argparse.Namespace) -> int:
    from experiments.framework.results import is_complete
    from experiments.framework.skeleton import kind_of_run
    from topologies.validate import ConfigError

    status = 0
    for run_dir in args.run_dirs:
        if not is_complete(run_dir):
            print(f"factorysat figures: {run_dir} is not a complete run folder (no COMPLETE marker)",
                  file=sys.stderr)
            status = 2
            continue
        if (run_dir / "experiment.toml").is_file():
            try:
                draw = kind_of_run(run_dir).draw_figures
            except (ConfigError, KeyError) as exc:
                print(f"factorysat figures: {run_dir}: {exc}", file=sys.stderr)
                status = 2
                continue
        else:  # a benchmark run folder (results/bench_links/<run_id>)
            from experiments.cli.bench import draw_figures as draw
        print("\n".join(str(p) for p in draw(run_dir)))
    return status

"""``factorysat figures RUN_DIR...``: regenerate figures from a run's stored tidy tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from topologies.ownership import hand_over_at_exit


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("figures", help="regenerate figures from stored results",
                              description="Redraw the figures of complete run folders from their "
                                          "Parquet tables (no emulation needed, no root).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="results/<experiment>/<run_id> folders")
    p.set_defaults(func=figures_cmd)


def figures_cmd(args: argparse.Namespace) -> int:
    """Redraw each run folder; a bad one is one line on stderr and exit 2 (the others still run)."""
    status = 0
    for run_dir in args.run_dirs:
        problem = redraw(run_dir)
        hand_over_at_exit(run_dir)  # through sudo: redrawn figures stay the user's (ownership.py)
        if problem:
            print(f"factorysat figures: {run_dir}: {problem}", file=sys.stderr)
            status = 2
    return status


def redraw(run_dir: Path) -> str | None:
    """Redraw one run's figures and print their paths; return the problem, if any, as one line."""
    from experiments.framework.results import is_complete
    from experiments.framework.skeleton import kind_of_run
    from topologies.errors import UserError

    if not run_dir.is_dir():
        return "no such folder (give results/<experiment>/<run_id>)"
    if not is_complete(run_dir):
        return "not a complete run folder (no COMPLETE marker: the run failed, was stopped or is running)"
    try:
        if (run_dir / "experiment.toml").is_file():
            draw = kind_of_run(run_dir).draw_figures
        else:  # a benchmark run folder (results/bench_links/<run_id>)
            from experiments.cli.bench import draw_figures as draw
        paths = draw(run_dir)
    except UserError as exc:
        return str(exc)
    except FileNotFoundError as exc:
        return f"cannot redraw: {exc.filename or exc} is missing"
    except (OSError, ValueError, KeyError) as exc:  # unreadable or damaged stored tables
        return f"cannot redraw from the stored tables ({type(exc).__name__}: {exc})".replace("\n", " ")
    print("\n".join(str(p) for p in paths))
    return None

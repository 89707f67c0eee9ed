"""``factorysat leo schedule``: write the LEO link schedule of a scenario as Parquet (+ figure)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from topologies.leo.compute import compute_satellite_schedule, serving_satellite_schedule
from topologies.leo.config import LeoOrbitConfig
from topologies.leo.schedule import leo_schedule, schedule_summary
from topologies.validate import ConfigError, Table

TARGETS = {
    "cloud": leo_schedule,
    "serving_sat": serving_satellite_schedule,
    "compute_sat": compute_satellite_schedule,
}


def load_orbit_config(scenario: Path | None) -> LeoOrbitConfig:
    """``[leo.orbit]`` of a scenario TOML (defaults if absent or no scenario given)."""
    if scenario is None:
        return LeoOrbitConfig.default()
    with open(scenario, "rb") as fh:
        raw = tomllib.load(fh)
    orbit = raw.get("leo", {}).get("orbit", {}) if isinstance(raw.get("leo", {}), dict) else {}
    return LeoOrbitConfig.from_table(Table(orbit, "leo.orbit"), base_dir=scenario.parent)


def run_schedule(args: argparse.Namespace) -> int:
    try:
        config = load_orbit_config(args.scenario)
    except ConfigError as exc:
        print(f"error: {args.scenario}: {exc}", file=sys.stderr)
        return 2
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"error: cannot read scenario: {exc}", file=sys.stderr)
        return 2
    df = TARGETS[args.target](config, args.duration_s, args.start_offset_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(args.out, index=False)
    summary = schedule_summary(df)
    print(f"wrote {args.out} ({len(df)} rows, target {args.target})")
    for key, value in summary.items():
        print(f"  {key}: {value:.2f}")
    if args.figure is not None:
        from experiments.framework.leo_figures import leo_schedule_figure

        for path in leo_schedule_figure(df, args.figure):
            print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``leo schedule`` to the ``factorysat`` command."""
    leo = subparsers.add_parser("leo", help="LEO backhaul model")
    sub = leo.add_subparsers(dest="leo_command", required=True, metavar="LEO_COMMAND")
    p = sub.add_parser("schedule", help="compute the LEO link schedule (Parquet) of a scenario")
    p.add_argument("--scenario", type=Path, default=None, help="scenario TOML; uses [leo.orbit]")
    p.add_argument("--duration-s", type=float, required=True, help="schedule length in seconds")
    p.add_argument("--start-offset-s", type=float, default=0.0, help="start, seconds after epoch_utc")
    p.add_argument("--out", type=Path, required=True, help="output Parquet file")
    p.add_argument("--figure", type=Path, default=None, help="also write this PNG (and a PDF)")
    p.add_argument("--target", choices=sorted(TARGETS), default="cloud",
                   help="far end: cloud (default), serving_sat or compute_sat (in-orbit compute)")
    p.set_defaults(func=run_schedule)

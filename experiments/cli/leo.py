"""``factorysat leo schedule``: write the LEO link schedule of a scenario as Parquet (+ figure)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from topologies.errors import UserError
from topologies.leo.compute import compute_satellite_schedule, serving_satellite_schedule
from topologies.leo.config import LeoOrbitConfig
from topologies.leo.schedule import leo_schedule, schedule_summary
from topologies.leo.timeline import check_window
from topologies.ownership import hand_over_at_exit
from topologies.validate import ConfigError, Table, read_toml_file

T = TypeVar("T")
TARGETS = {
    "cloud": leo_schedule,
    "serving_sat": serving_satellite_schedule,
    "compute_sat": compute_satellite_schedule,
}


def load_orbit_config(scenario: Path | None) -> LeoOrbitConfig:
    """``[leo.orbit]`` of a scenario TOML (defaults if absent or no scenario given)."""
    if scenario is None:
        return LeoOrbitConfig.default()
    raw = read_toml_file(scenario, "--scenario")
    leo = Table(raw.get("leo", {}), "leo")
    orbit = leo.table("orbit", {})
    return LeoOrbitConfig.from_table(orbit, base_dir=scenario.resolve().parent)


def run_schedule(args: argparse.Namespace) -> int:
    """Compute, write and summarise one schedule; bad input -> one line on stderr, exit 2."""
    try:
        config = load_orbit_config(args.scenario)
        check_window(config, args.duration_s, args.start_offset_s, "--duration-s", "--start-offset-s")
        df = TARGETS[args.target](config, args.duration_s, args.start_offset_s)
        _write(args.out, lambda: df.to_parquet(args.out, index=False))
    except UserError as exc:
        key = exc.path if isinstance(exc, ConfigError) else "--"
        where = f"{args.scenario}: " if args.scenario is not None and not key.startswith("--") else ""
        print(f"factorysat leo: {where}{exc}", file=sys.stderr)
        return 2
    summary = schedule_summary(df)
    print(f"wrote {args.out} ({len(df)} rows, target {args.target})")
    for key, value in summary.items():
        print(f"  {key}: {value:.2f}")
    if args.figure is not None:
        from experiments.framework.leo_figures import leo_schedule_figure

        try:
            paths = _write(args.figure, lambda: leo_schedule_figure(df, args.figure), "--figure")
        except UserError as exc:
            print(f"factorysat leo: {exc}", file=sys.stderr)
            return 2
        for path in paths:
            print(f"wrote {path}")
    return 0


def _write(path: Path, write: Callable[[], T], key: str = "--out") -> T:
    """Run ``write`` after making ``path``'s folder; an OS error is a ConfigError naming ``key``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = write()
    except OSError as exc:
        raise ConfigError(key, str(path), f"a writable path ({exc.strerror or exc})") from None
    for made in [path, *(written if isinstance(written, list) else [])]:
        hand_over_at_exit(Path(made))  # through sudo: the user's file, not root's
    return written


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

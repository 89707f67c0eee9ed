"""The ``factorysat`` command: one subcommand module per concern, each with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import sys

from topologies.errors import UserError

# Each module defines ``register(subparsers)``, adding its parser with ``set_defaults(func=...)``.
# ``func(args) -> int`` returns the exit code.
SUBCOMMAND_MODULES = (
    "experiments.cli.run",
    "experiments.cli.clean",
    "experiments.cli.figures",
    "experiments.cli.bench",
    "experiments.cli.leo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorysat",
        description="Sliced factory 5G + LEO backhaul network emulator on Mininet.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit code (README "Exit codes").

    Safety net: a :class:`~topologies.errors.UserError` (bad input, missing prerequisite) that a
    subcommand did not handle itself is printed as ONE line, ``factorysat <command>: <message>``,
    with exit code 2; nothing else is caught (an unexpected error is a bug and keeps its traceback).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"factorysat {args.command}: {first_line}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""The ``factorysat`` command: one subcommand module per concern, each with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

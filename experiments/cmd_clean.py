"""``factorysat clean``: remove what killed runs left behind, by their manifests only."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clean", help="remove leftovers of runs that were killed",
        description="Remove the namespaces, links, OVS bridges and processes recorded by runs whose "
                    "process is gone. Nothing is matched by name pattern; only recorded objects.")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")
    p.set_defaults(func=clean)


def clean(args: argparse.Namespace) -> int:
    from topologies.manifest import STATE_ROOT, leftover_manifests

    manifests = leftover_manifests()
    if not manifests:
        print(f"factorysat clean: nothing to clean (no leftover manifests in {STATE_ROOT})")
        return 0
    failed = 0
    for manifest in manifests:
        names = ", ".join(f"{e['kind']} {e['name']}" for e in manifest.entries) or "no objects"
        print(f"run {manifest.tag}: {names}")
        if args.dry_run:
            continue
        problems = manifest.remove_all()
        for problem in problems:
            print(f"  could not remove {problem}", file=sys.stderr)
        failed += bool(problems)
    return 1 if failed else 0

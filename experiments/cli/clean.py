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
        by_kind: dict[str, list[str]] = {}
        for entry in manifest.entries:
            by_kind.setdefault(entry["kind"], []).append(entry["name"])
        counts = ", ".join(f"{len(names)} {kind}" for kind, names in by_kind.items()) or "no objects"
        verb = "would remove" if args.dry_run else "removing"
        print(f"run {manifest.tag}: {verb} {counts}")
        if args.dry_run:
            for kind, names in by_kind.items():
                print(f"  {kind}: {' '.join(names)}")
        if args.dry_run:
            continue
        problems = manifest.remove_all()
        for problem in problems:
            print(f"  could not remove {problem}", file=sys.stderr)
        failed += bool(problems)
    return 1 if failed else 0

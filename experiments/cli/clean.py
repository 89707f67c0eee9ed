"""``factorysat clean``: remove what killed runs left behind, by manifest and tag only.

An object is removed only if a valid manifest of a dead run records it AND the live object carries
that run's tag (topologies/runobjects.py); an object of a recorded name without the tag is left and
reported. OVS bridges that carry a factorysat tag but whose run has no manifest (e.g. the state
folder was lost) are reported as orphans and removed only with ``--orphans``: there only the tag
proves them ours, so removing them is the user's explicit choice.

Exit codes: 0 nothing left to do; 1 something could not be removed (or ovsdb did not answer);
2 bad input (a manifest was rejected and nothing it names was touched, or a bad state folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topologies.errors import EXIT_CONFIG, EXIT_OK, EXIT_RUN_FAILED, UserError

LEGACY_STATE_DIR = Path("/run/factorysat")  # where manifests were kept before they were persistent


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clean", help="remove leftovers of runs that were killed",
        description="Remove the namespaces, links, OVS bridges and processes recorded by runs whose "
                    "process is gone, if each still carries its run's tag. Nothing is matched by name "
                    "pattern. Exit 0: done; 1: something could not be removed; 2: a manifest was "
                    "rejected (invalid; nothing it names was touched).")
    p.add_argument("--dry-run", action="store_true", help="list exactly what would be removed")
    p.add_argument("--orphans", action="store_true",
                   help="also remove OVS bridges tagged by a factorysat run that has no manifest")
    p.set_defaults(func=clean)


def clean(args: argparse.Namespace) -> int:
    from topologies import manifest as mf
    from topologies import runobjects

    try:
        # Bridges first: a run that starts after this listing has no bridge in it yet, so its
        # bridges can never look like orphans.
        bridges: dict[str, str] | None = runobjects.bridge_tags()
        bridge_error = ""
    except runobjects.ObjectError as exc:
        bridges, bridge_error = None, str(exc)
    try:
        manifests, rejected = mf.scan()
    except UserError as exc:
        print(f"factorysat clean: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    out = _Report(args.dry_run)
    for problem in rejected:
        if problem.removable:
            out.do(f"remove {problem.path.name}: {problem.problem}; it records nothing and its "
                   "writer is gone", lambda p=problem.path: p.unlink(missing_ok=True))
        elif problem.owner_running:  # not a leftover (yet): nothing to clean, nothing to reject
            out.say(f"skip {problem}; its writer may still be running")
        else:
            out.reject(f"rejected {problem}; nothing it names was touched")
    for tmp in mf.stale_tmp_files():
        out.do(f"remove {tmp.name}: temporary file of a writer that is gone",
               lambda p=tmp: p.unlink(missing_ok=True))
    for manifest in manifests:
        _clean_run(manifest, out)
    _orphans(bridges, bridge_error, manifests, rejected, args.orphans, out)
    legacy = sorted(LEGACY_STATE_DIR.glob("*.json")) if LEGACY_STATE_DIR != mf.STATE_ROOT else []
    for path in legacy:  # written before objects were tagged: nothing in them can be proven ours
        out.say(f"note: {path} is a manifest of an older factorysat (untagged objects); not used, "
                "check what it lists by hand and delete it")
    if not out.lines:
        print(f"factorysat clean: nothing to clean (state folder {mf.STATE_ROOT})")
    if out.failed:
        return EXIT_RUN_FAILED
    return EXIT_CONFIG if out.rejected else EXIT_OK


class _Report:
    """Prints one line per action; under ``--dry-run`` says what would be done instead of doing it."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run, self.lines, self.failed, self.rejected = dry_run, 0, False, False

    def say(self, line: str, err: bool = False) -> None:
        self.lines += 1
        print(line, file=sys.stderr if err else sys.stdout)

    def reject(self, line: str) -> None:
        self.rejected = True
        self.say(line, err=True)

    def fail(self, line: str) -> None:
        self.failed = True
        self.say(line, err=True)

    def do(self, line: str, action: Any) -> None:
        if self.dry_run:
            self.say(f"would {line}")
            return
        try:
            action()
        except Exception as exc:
            self.fail(f"could not {line}: {exc}")
        else:
            self.say(line)


def _clean_run(manifest: Any, out: _Report) -> None:
    if manifest.owner_alive():
        out.say(f"run {manifest.tag}: owner pid {manifest.owner_pid} is running; skipped")
        return
    why = "from an earlier boot" if manifest.rebooted() else f"owner pid {manifest.owner_pid} is gone"
    steps = manifest.plan()
    verb = "would remove" if out.dry_run else "removing"
    count = sum(s.action == "remove" for s in steps)
    out.say(f"run {manifest.tag} ({why}): {verb} {count} of {len(steps)} recorded objects")
    for step in steps:
        if step.action == "remove":
            out.say(f"  {'would remove' if out.dry_run else 'remove'} {step}")
        elif step.action == "keep":
            out.say(f"  keep {step}")
        elif step.action == "gone":
            out.say(f"  gone {step}")
        else:
            out.fail(f"  cannot check {step}")
    if out.dry_run:
        return
    unchecked = {str(s) for s in steps if s.action == "error"}  # reported above
    for problem in manifest.execute(steps):
        if problem not in unchecked:
            out.fail(f"  could not remove {problem}")
    out.failed = out.failed or bool(manifest.entries)
    if not manifest.entries:
        out.say(f"run {manifest.tag}: done, manifest removed")


def _orphans(bridges: dict[str, str] | None, bridge_error: str, manifests: list[Any],
             rejected: list[Any], remove: bool, out: _Report) -> None:
    """Bridges tagged by a run that has no manifest (reported; removed only with ``--orphans``)."""
    from topologies.manifest import TAG_RE

    if bridges is None:
        out.fail(f"cannot look for orphan OVS bridges: {bridge_error}")
        return
    known = {m.run_id for m in manifests}
    unreadable = {p.path.name.removesuffix(".json") for p in rejected}
    for name, run_id in sorted(bridges.items()):
        if not run_id or run_id in known:
            continue
        tag = run_id.rsplit("-", 1)[0]
        if tag in unreadable:
            out.say(f"keep OVS bridge {name}: tagged by run {run_id}, whose manifest was rejected")
        elif not TAG_RE.fullmatch(tag):
            out.say(f"keep OVS bridge {name}: its tag {run_id!r} is not a factorysat run id")
        elif remove:
            out.do(f"remove orphan OVS bridge {name} (tagged by run {run_id}, which has no manifest)",
                   lambda n=name, r=run_id: _delete_orphan(n, r))
        else:
            out.say(f"orphan OVS bridge {name}: tagged by run {run_id}, which has no manifest; "
                    "`factorysat clean --orphans` removes it")


def _delete_orphan(name: str, run_id: str) -> None:
    """Delete bridge ``name`` if it still carries ``run_id`` (it may have been replaced meanwhile)."""
    from topologies import runobjects

    if runobjects.bridge_tags().get(name) == run_id:
        runobjects.delete_bridge(name)

#!/usr/bin/env python3
"""Check what the `make vm-test` guest sent back (standard library only: runs on the host).

usage: vm/check_results.py GUEST_DIR      (exit 0 when every check passes)

GUEST_DIR is the unpacked tar stream of vm/guest/test-init.sh: stages.tsv (stage, exit code,
seconds), one <stage>.txt log per stage, pytest_netem.xml (JUnit), results/demo/<run_id>/ and
results/bench_links/<run_id>/ run folders, diag/. Prints one PASS/FAIL line per check.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

STAGES = ("bootstrap", "pytest_netem", "demo", "bench")


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {what}{f'  ({detail})' if detail else ''}")
        self.failed += not ok
        return ok


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def one_run(root: Path, experiment: str) -> Path | None:
    runs = sorted(p for p in (root / "results" / experiment).glob("*") if p.is_dir())
    return runs[-1] if len(runs) == 1 else None


def main(guest: Path) -> int:
    c = Checks()
    if not c.check((guest / "stages.tsv").is_file(), "results came back from the guest",
                   f"nothing unpacked in {guest}" if not (guest / "stages.tsv").is_file() else ""):
        return 1
    rows = [line.split("\t") for line in (guest / "stages.tsv").read_text().splitlines()[1:]]
    stages = {name: (int(rc), int(secs)) for name, rc, secs in rows}
    c.check((guest / "DONE").is_file(), "guest ran to the end")
    for name in STAGES:
        rc, secs = stages.get(name, (None, 0))
        c.check(rc == 0, f"stage {name} exited 0", f"exit {rc}, {secs}s, log {guest / (name + '.txt')}"
                if rc != 0 else f"{secs}s")

    # netem link-engine tests: collected, run, none skipped (a skip means netem was not usable).
    try:
        suite = ET.parse(guest / "pytest_netem.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        names = [tc.get("name") for tc in suite.iter("testcase")]
    except (OSError, ET.ParseError, AttributeError):
        n, names = None, []
    c.check(n is not None and n["tests"] > 0 and n["failures"] == n["errors"] == n["skipped"] == 0,
            "pytest -m root -k netem: all passed, none skipped",
            "no JUnit report" if n is None else
            f"{n['tests']} tests, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped")
    for name in names:
        print(f"        {name}")

    # The demo: netem links and the kernel datapath, auto-selected, and a complete run folder.
    run = one_run(guest, "demo")
    if c.check(run is not None, "demo: one run folder", str(guest / "results" / "demo")):
        meta = load_json(run / "metadata.json") or {}
        c.check(meta.get("link_backend") == "netem", "demo: metadata.json link_backend = netem",
                f"got {meta.get('link_backend')!r}")
        c.check(meta.get("ovs_datapath") == "kernel", "demo: metadata.json ovs_datapath = kernel",
                f"got {meta.get('ovs_datapath')!r}")
        c.check((run / "COMPLETE").is_file(), "demo: COMPLETE marker present")
        summary = load_json(run / "summary.json")
        c.check(bool(summary), "demo: summary.json present")
        if summary:
            resolved = load_json(run / "scenario.resolved.json") or {}
            slices = [s.get("name") for s in resolved.get("scenario", {}).get("slices", [])]
            received = {s: (summary.get(s) or {}).get("packets_received") for s in slices}
            c.check(bool(received) and all(r and r > 0 for r in received.values()),
                    "demo: every slice received packets", ", ".join(f"{s} {r}" for s, r in received.items()))
            reconciliation = summary.get("reconciliation") or {}
            c.check(reconciliation.get("ok") is True, "demo: counts reconcile",
                    "; ".join(reconciliation.get("problems", []))
                    or ("" if reconciliation else "no reconciliation block"))

    # The link benchmark: both backends side by side.
    run = one_run(guest, "bench_links")
    if c.check(run is not None, "bench links: one run folder", str(guest / "results" / "bench_links")):
        summary = load_json(run / "summary.json") or {}
        backends = summary.get("backends") or {}
        c.check((run / "COMPLETE").is_file(), "bench links: COMPLETE marker present")
        c.check({"relay", "netem"} <= set(backends), "bench links: summary.json holds relay and netem",
                f"backends {sorted(backends)}")
        if backends:
            print("        (TCG guest: distorted timings, a functional check only)")
            keys = sorted({k for b in backends.values() for k in b})
            print(f"        {'metric':34s}" + "".join(f"{b:>12s}" for b in sorted(backends)))
            for k in keys:
                print(f"        {k:34s}" + "".join(f"{backends[b].get(k)!s:>12s}" for b in sorted(backends)))

    print(f"\n{'all checks passed' if not c.failed else f'{c.failed} check(s) FAILED'}")
    return 1 if c.failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))

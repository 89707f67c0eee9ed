"""A running NR cell's slice shares change with another ``slice`` request (relay/nrcell.c; the RAN
controller's policy change), run on the model without sockets (relay/nrsim.c) on the small grid of
test_nr_model.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.unit.test_nr_model import GRID, TIMING, slot_end
from topologies.links.relayproc import build_tool

CLOSED = "0 0 0 1 0 0 0 0 1"   # a slice with no PRBs at all (max 0)
OPEN = "0 0 10 1 0 0 0 0 1"    # all 10 PRBs, no errors, dynamic grant


def run(lines: list[str]) -> tuple[list[str], dict[int, int], dict | None]:
    binary = build_tool("nrsim")
    if binary is None:
        pytest.skip("no C compiler")
    out = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    deps = {int(w[3]): int(w[4]) for w in (line.split() for line in out if line.startswith("pkt "))}
    stats = next((json.loads(line[6:]) for line in out if line.startswith("stats ")), None)
    return [line for line in out if line.startswith(("ok", "err"))], deps, stats


def test_a_closed_slice_opened_at_run_time_sends_from_the_next_slot_on() -> None:
    replies, deps, stats = run(["seed 1", f"nr {GRID}", f"nr {TIMING}", f"nr slice 0 {CLOSED}", "nr on",
                                "ue 1 0", "pkt 1000000 1 d 50", "run 20000000", f"nr slice 0 {OPEN}",
                                "run 20000001", "stats"])
    assert all(r == "ok" for r in replies), replies
    # nothing could be sent in the first 20 ms (no PRBs); after the change the packet goes in the
    # first downlink slot the model processes: slot 40 (20 ms) is D, so it ends then + 0.3 ms decode
    assert deps[1000000] == slot_end(40) + 300_000
    assert stats is not None and stats["slices"][0]["changes"] == 1


def test_a_running_cell_refuses_other_changes_and_bad_shares_and_keeps_its_state() -> None:
    replies, deps, _ = run(["seed 1", f"nr {GRID}", f"nr {TIMING}", f"nr slice 0 {OPEN}", "nr on", "ue 1 0",
                            f"nr {GRID}", "nr slice 1 0 0 10 1 0 0 0 0 1", "nr slice 0 11 11 11 1 0 0 0 0 1",
                            "nr slice 0 3 2 10 1 0 0 0 0 1", "pkt 1000000 1 d 50"])
    assert replies[6].startswith("err the NR model is on already")
    assert replies[7] == "err slice: IDX 1: a running cell has slices 0..0"
    assert replies[8].startswith("err slice: the dedicated PRBs")
    assert replies[9] == "err slice: DED <= MIN <= MAX"
    assert deps[1000000] == slot_end(3, 10) + 300_000  # served as before: the refused changes did nothing

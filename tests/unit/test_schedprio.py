"""Real-time priority for a process the run did not start: recorded first, restored only if still ours."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.cli import clean as clean_cli
from topologies import manifest as mf
from topologies import schedprio

pytestmark = pytest.mark.usefixtures("state_root")  # tests/conftest.py: a scratch state folder


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A process standing in for ovs-vswitchd (SCHED_OTHER, priority 0)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _sched(pid: int) -> tuple[int, int]:
    return schedprio.thread_sched(pid)


def test_raised_thread_is_recorded_first_and_restored_at_removal(sleeper: int) -> None:
    m = mf.Manifest.create("fsra")
    done = schedprio.raise_to_fifo(m, "ovs-vswitchd", schedprio.main_thread_ids(sleeper), 9)
    assert done == [{"tid": sleeper, "from": [os.SCHED_OTHER, 0], "to": [os.SCHED_FIFO, 9], "why": ""}]
    assert _sched(sleeper) == (os.SCHED_FIFO, 9)
    on_disk = mf.Manifest.load(m.path).entries  # validated as `clean` would read it
    assert on_disk == [{"kind": "sched", "name": f"ovs-vswitchd:{sleeper}", "pid": sleeper,
                        "start": mf.proc_start_time(sleeper), "policy": os.SCHED_OTHER, "priority": 0,
                        "set_priority": 9}]
    assert m.remove_all() == []
    assert _sched(sleeper) == (os.SCHED_OTHER, 0)
    assert not m.path.exists()


def test_thread_changed_by_someone_else_since_is_left_alone(sleeper: int) -> None:
    m = mf.Manifest.create("fsrb")
    schedprio.raise_to_fifo(m, "ovs-vswitchd", [sleeper], 9)
    os.sched_setscheduler(sleeper, os.SCHED_FIFO, os.sched_param(30))  # an administrator's choice
    assert m.remove_all() == []
    assert _sched(sleeper) == (os.SCHED_FIFO, 30)
    assert any("changed since the run set it" in note for note in m.notes)


def test_thread_already_real_time_is_not_touched_nor_recorded(sleeper: int) -> None:
    os.sched_setscheduler(sleeper, os.SCHED_RR, os.sched_param(5))
    m = mf.Manifest.create("fsrc")
    done = schedprio.raise_to_fifo(m, "ovs-vswitchd", [sleeper], 9)
    assert done[0]["to"] is None and "already real-time" in done[0]["why"]
    assert _sched(sleeper) == (os.SCHED_RR, 5)
    assert m.entries == []


def test_clean_restores_the_priority_a_killed_run_left(state_root: Path, sleeper: int) -> None:
    m = mf.Manifest.create("fsrd")
    schedprio.raise_to_fifo(m, "ovs-vswitchd", [sleeper], 9)
    data = json.loads(m.path.read_text())  # as a killed run leaves it: its owner is dead
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    data["owner_pid"] = int(dead.stdout)
    m.path.write_text(json.dumps(data))
    assert clean_cli.clean(argparse.Namespace(dry_run=False, orphans=False)) == 0
    assert _sched(sleeper) == (os.SCHED_OTHER, 0)
    assert not m.path.exists()


def test_gone_thread_is_dropped_without_touching_a_reused_pid(sleeper: int) -> None:
    m = mf.Manifest.create("fsre")
    stale = {"kind": "sched", "name": f"x:{sleeper}", "pid": sleeper, "start": 1, "policy": 0,
             "priority": 0, "set_priority": 9}
    assert [s.action for s in m.plan([stale])] == ["gone"]


@pytest.mark.parametrize("change, problem", [
    ({"policy": 1}, "sched policy 1"),             # would "restore" a thread to real time
    ({"priority": 5}, "priority 5"),
    ({"set_priority": 99}, "set_priority 99"),
    ({"pid": 1}, "sched pid 1"),
    ({"name": "x; rm"}, "sched name"),
    ({"extra": 1}, "sched keys"),
])
def test_bad_sched_entries_are_rejected(state_root: Path, change: dict, problem: str) -> None:
    entry = {"kind": "sched", "name": "ovs-vswitchd:4242", "pid": 4242, "start": 99, "policy": 0,
             "priority": 0, "set_priority": 9} | change
    state_root.mkdir(parents=True, exist_ok=True)
    path = state_root / "fsrf.json"
    path.write_text(json.dumps({"format": 2, "tag": "fsrf", "run_id": "fsrf-0badc0de",
                                "boot_id": mf.boot_id(), "owner_pid": 4242, "owner_start": 1,
                                "entries": [entry]}))
    path.chmod(0o644)
    with pytest.raises(mf.ManifestError, match=problem.replace("[", r"\[")):
        mf.Manifest.load(path)


def test_saturation_guard_trips_only_after_a_whole_window_without_idle_time() -> None:
    guard = schedprio.SaturationGuard(window_s=3.0, idle_share=0.03)
    # 2 CPUs, 100 ticks/s each: 200 total ticks per second; idle ticks counted over all CPUs
    assert not guard.saturated(0.0, 1000, 10000)
    assert not guard.saturated(1.0, 1002, 10200)   # 1 % idle, but the window is not covered yet
    assert not guard.saturated(2.0, 1004, 10400)
    assert guard.saturated(3.0, 1006, 10600)       # 6 idle of 600 ticks over 3 s: saturated
    busy_then_idle = schedprio.SaturationGuard(window_s=3.0, idle_share=0.03)
    for t, idle in ((0.0, 0), (1.0, 2), (2.0, 4), (3.0, 104)):   # one second half idle
        tripped = busy_then_idle.saturated(t, idle, int(t * 200))
    assert not tripped
    steady = schedprio.SaturationGuard(window_s=3.0, idle_share=0.03)
    results = [steady.saturated(t / 5, int(t * 40 * 0.5), int(t * 40)) for t in range(40)]  # 50 % idle
    assert not any(results)


def test_idle_and_total_ticks_read_from_proc_stat() -> None:
    idle, total = schedprio.idle_and_total_ticks()
    assert 0 <= idle <= total

"""Run manifest: record before create, exclusive tags, pid-reuse-safe process removal, leftovers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from topologies import manifest as mf


@pytest.fixture(autouse=True)
def state_root(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "STATE_ROOT", tmp_path)
    return tmp_path


def test_tag_is_claimed_exclusively(state_root) -> None:
    first = mf.Manifest.create("fsab")
    assert (state_root / "fsab.json").is_file() and first.owner_alive()
    with pytest.raises(FileExistsError, match="in use"):
        mf.Manifest.create("fsab")


def test_entries_are_deduplicated_and_kinds_checked() -> None:
    m = mf.Manifest.create("fsac")
    m.add("netns", "fsacrly")
    m.add("netns", "fsacrly")
    m.add("link", "fsacgnb1-eth1")
    assert [e["name"] for e in mf.Manifest.load(m.path).entries] == ["fsacrly", "fsacgnb1-eth1"]
    m.discard("netns", "fsacrly")
    assert [e["kind"] for e in mf.Manifest.load(m.path).entries] == ["link"]
    with pytest.raises(ValueError, match="allowed"):
        m.add("volume", "x")


def test_process_removed_by_pid_only_if_start_time_matches() -> None:
    m = mf.Manifest.create("fsad")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        m.add_process("sleeper", proc.pid)
        stale = {"kind": "process", "name": "reused", "pid": proc.pid, "start": 1}
        mf.remove_entry(stale)  # a different start time: another process with a reused pid
        assert proc.poll() is None
        assert m.remove_all() == []
        assert proc.wait(timeout=5) is not None
        assert not m.path.exists()  # everything removed: the manifest goes too
    finally:
        if proc.poll() is None:
            proc.kill()


def test_leftovers_are_manifests_of_dead_owners(state_root) -> None:
    mf.Manifest.create("fsae")  # owned by this (live) process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (state_root / "fsaf.json").write_text(json.dumps(
        {"tag": "fsaf", "owner_pid": int(dead.stdout), "owner_start": 12345, "entries": []}))
    assert [m.tag for m in mf.leftover_manifests()] == ["fsaf"]

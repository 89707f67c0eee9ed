"""Run manifest: exclusive tags, complete writes, validation of what `clean` reads, tag-checked removal."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from experiments.cli import clean as clean_cli
from topologies import manifest as mf
from topologies import runobjects

pytestmark = pytest.mark.usefixtures("state_root")  # tests/conftest.py: a scratch state folder


@pytest.fixture
def ovs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fake OVS: ``bridges`` name -> run id tag ("" untagged); deleted bridges listed in ``deleted``."""
    fake: dict[str, Any] = {"bridges": {}, "deleted": [], "fail": False}

    def delete(kind: str, name: str) -> None:
        if fake["fail"]:
            raise runobjects.ObjectError(f"ovs-vsctl del-br {name}: no answer within 15 s")
        fake["deleted"].append((kind, name))
        fake["bridges"].pop(name, None)

    monkeypatch.setattr(runobjects, "bridge_tags", lambda: dict(fake["bridges"]))
    monkeypatch.setattr(runobjects, "delete", delete)
    monkeypatch.setattr(runobjects, "delete_bridge", lambda name: delete("ovs_bridge", name))
    return fake


def _dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def _write(root: Path, file_tag: str, entries: list | None = None, **changes: Any) -> Path:
    """A manifest file as a killed run leaves it (owner dead, this boot), with ``changes`` applied."""
    root.mkdir(parents=True, exist_ok=True)
    data = {"format": 2, "tag": file_tag, "run_id": f"{file_tag}-0badc0de", "boot_id": mf.boot_id(),
            "owner_pid": _dead_pid(), "owner_start": 12345, "entries": entries or []} | changes
    path = root / f"{file_tag}.json"
    path.write_text(json.dumps(data))
    path.chmod(0o644)
    return path


def _clean(*flags: str) -> int:
    return clean_cli.clean(argparse.Namespace(dry_run="--dry-run" in flags, orphans="--orphans" in flags))


# --- writing ------------------------------------------------------------------------------------
def test_tag_is_claimed_exclusively_with_a_complete_file(state_root: Path) -> None:
    first = mf.Manifest.create("fsab")
    data = json.loads((state_root / "fsab.json").read_text())  # never a 0-byte file
    assert data["boot_id"] == mf.boot_id() and data["run_id"].startswith("fsab-") and first.owner_alive()
    assert (state_root / "fsab.json").stat().st_mode & 0o777 == 0o644
    assert mf.Manifest.load(state_root / "fsab.json").run_id == first.run_id
    with pytest.raises(FileExistsError, match="in use"):
        mf.Manifest.create("fsab")
    assert not list(state_root.glob(".*.tmp"))


def test_entries_are_deduplicated_kinds_checked_and_clashes_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    m = mf.Manifest.create("fsac")
    m.add("netns", "fsacrly")
    m.add("netns", "fsacrly")
    m.add("link", "fsacgnb1-eth1")
    assert [e["name"] for e in mf.Manifest.load(m.path).entries] == ["fsacrly", "fsacgnb1-eth1"]
    m.discard("netns", "fsacrly")
    assert [e["kind"] for e in mf.Manifest.load(m.path).entries] == ["link"]
    with pytest.raises(ValueError, match="allowed"):
        m.add("volume", "x")
    monkeypatch.setattr(runobjects, "exists", lambda kind, name: True)  # e.g. a bridge made by someone else
    with pytest.raises(mf.NameClash, match="fsacgnb2.*already exists"):
        m.add("ovs_bridge", "fsacgnb2")
    assert [e["name"] for e in mf.Manifest.load(m.path).entries] == ["fsacgnb1-eth1"]


def test_process_removed_by_pid_only_if_start_time_matches() -> None:
    m = mf.Manifest.create("fsad")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        m.add_process("sleeper", proc.pid)
        stale = {"kind": "process", "name": "reused", "pid": proc.pid, "start": 1}
        assert [s.action for s in m.plan([stale])] == ["gone"]  # another process with a reused pid
        assert proc.poll() is None
        assert m.remove_all() == []
        assert proc.wait(timeout=5) is not None
        assert not m.path.exists()  # everything removed: the manifest goes too
    finally:
        if proc.poll() is None:
            proc.kill()


# --- validation -----------------------------------------------------------------------------------
def test_leftovers_are_manifests_of_dead_owners_or_an_earlier_boot(state_root: Path) -> None:
    mf.Manifest.create("fsae")  # owned by this (live) process
    _write(state_root, "fsaf")
    me = os.getpid()  # alive, but the manifest says another boot: the owner is known dead
    _write(state_root, "fsag", owner_pid=me, owner_start=mf.proc_start_time(me),
           boot_id="00000000-0000-0000-0000-000000000000")
    assert [m.tag for m in mf.leftover_manifests()] == ["fsaf", "fsag"]


def test_empty_manifest_is_reported_and_removed_once_its_writer_is_gone(state_root: Path) -> None:
    state_root.mkdir()
    path = state_root / "fsah.json"
    path.touch(mode=0o644)
    with pytest.raises(mf.ManifestError, match="empty") as fresh:
        mf.Manifest.load(path)
    assert not fresh.value.removable  # a writer may be about to write it
    old = time.time() - 2 * mf.EMPTY_GRACE_S
    os.utime(path, (old, old))
    with pytest.raises(mf.ManifestError) as stale:
        mf.Manifest.load(path)
    assert stale.value.removable
    assert _clean("--dry-run") == 0 and path.exists()
    assert _clean() == 0 and not path.exists()


@pytest.mark.parametrize("text, problem", [
    ('{"format": 2, "tag": "fsai", "entr', "not valid JSON"),
    (b"\xff\xfe not utf-8", "not valid JSON"),
    ('["fsai"]', "keys"),
    ('{"tag": "fsai", "owner_pid": 1, "owner_start": 2, "entries": [{"kind": "link", "name": "eth0"}]}',
     "keys"),  # format 1: untagged objects, nothing provable
])
def test_corrupt_manifest_is_rejected_in_one_line_and_kept(state_root: Path, text: Any, problem: str) -> None:
    state_root.mkdir()
    path = state_root / "fsai.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(mf.ManifestError, match=problem) as err:
        mf.Manifest.load(path)
    assert "\n" not in str(err.value) and not err.value.removable
    assert _clean() == 2 and path.exists()


def test_invalid_manifest_without_entries_of_a_dead_writer_is_removed(state_root: Path) -> None:
    path = _write(state_root, "fsaz", format=1)  # recording nothing, owner dead
    with pytest.raises(mf.ManifestError, match="format 1") as err:
        mf.Manifest.load(path)
    assert err.value.removable
    assert _clean() == 0 and not path.exists()


def test_invalid_manifest_of_a_running_writer_is_skipped_not_rejected(
        state_root: Path, capsys: pytest.CaptureFixture) -> None:
    me = os.getpid()  # e.g. a test bed that names its switch "s<tag>": invalid, but its owner runs
    path = _write(state_root, "t1a2b3c", [{"kind": "ovs_bridge", "name": "st1a2b3c"}], owner_pid=me,
                  owner_start=mf.proc_start_time(me))
    assert _clean() == 0 and path.exists()
    assert "may still be running" in capsys.readouterr().out


def test_manifest_writable_by_others_or_owned_by_another_user_is_rejected(
        state_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(state_root, "fsaj")
    path.chmod(0o664)
    with pytest.raises(mf.ManifestError, match="group/world-writable"):
        mf.Manifest.load(path)
    path.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    else:  # as a normal user: pretend to be someone else, so the file's owner is a stranger
        monkeypatch.setattr(mf.os, "geteuid", lambda: os.getuid() + 1)
    with pytest.raises(mf.ManifestError, match="owner uid"):
        mf.Manifest.load(path)


def test_manifest_outside_the_state_folder_or_a_symlink_is_rejected(state_root: Path, tmp_path: Path) -> None:
    elsewhere = _write(tmp_path / "other", "fsak")
    with pytest.raises(mf.ManifestError, match="not in the state folder"):
        mf.Manifest.load(elsewhere)
    state_root.mkdir()
    (state_root / "fsak.json").symlink_to(elsewhere)
    with pytest.raises(mf.ManifestError, match="not a regular file"):
        mf.Manifest.load(state_root / "fsak.json")


@pytest.mark.parametrize("entry, problem", [
    ({"kind": "link", "name": "eth0"}, "link name 'eth0'"),
    ({"kind": "netns", "name": "default"}, "netns name"),
    ({"kind": "ovs_bridge", "name": "br-int"}, "ovs_bridge name"),
    ({"kind": "link", "name": "fszzgnb1-eth1"}, "fsal"),              # another run's object
    ({"kind": "link", "name": "fsalgnb1-eth1; rm"}, "link name"),
    ({"kind": "link", "name": "fsalabcdefghijkl"}, "link name"),      # longer than Linux allows
    ({"kind": "link", "name": "fsalgnb1", "extra": 1}, "keys"),
    ({"kind": "volume", "name": "fsal1"}, "kind 'volume'"),
    ({"kind": "process", "name": "init", "pid": 1, "start": 1}, "pid 1"),
    ({"kind": "process", "name": "relay", "pid": "123", "start": 1}, "pid '123'"),
    ({"kind": "process", "name": "relay", "pid": True, "start": 1}, "pid True"),
    ({"kind": "process", "name": "relay", "pid": 1234, "start": 1.5}, "start 1.5"),
])
def test_foreign_names_and_bad_entries_are_rejected(state_root: Path, entry: dict, problem: str) -> None:
    path = _write(state_root, "fsal", [{"kind": "netns", "name": "fsalrly"}, entry])
    with pytest.raises(mf.ManifestError, match=r"entries\[1\]: .*" + problem.replace("[", r"\[")):
        mf.Manifest.load(path)


def test_bad_header_fields_are_rejected(state_root: Path) -> None:
    for changes, problem in (({"tag": "fsxx"}, "tag 'fsxx'"), ({"run_id": "other-0badc0de"}, "run_id"),
                             ({"boot_id": "yesterday"}, "boot_id"), ({"owner_pid": "12"}, "owner_pid"),
                             ({"format": 1}, "format 1")):
        path = _write(state_root, "fsam", **changes)
        with pytest.raises(mf.ManifestError, match=problem):
            mf.Manifest.load(path)


def test_valid_names_of_every_kind_load(state_root: Path) -> None:
    entries = [{"kind": "ovs_bridge", "name": "fsangnb1"}, {"kind": "ovs_bridge", "name": "fsanhopbr"},
               {"kind": "link", "name": "fsangnb1-eth12"}, {"kind": "link", "name": "fsanhop1r"},
               {"kind": "netns", "name": "fsanrly"}, {"kind": "netns", "name": "fsanhopA"},
               {"kind": "process", "name": "shell:fsangnb1", "pid": 4242, "start": 99},
               {"kind": "process", "name": "tc-batch-an-root", "pid": 4243, "start": None}]
    assert mf.Manifest.load(_write(state_root, "fsan", entries)).entries == entries
    bench = [{"kind": "netns", "name": "fsb1a2b3crly"}]  # benchmarks' tags: a letter + 6 hex digits
    assert mf.Manifest.load(_write(state_root, "b1a2b3c", bench)).entries == bench


def test_state_folder_writable_by_others_is_refused(state_root: Path) -> None:
    state_root.mkdir(mode=0o777)
    state_root.chmod(0o777)
    with pytest.raises(mf.UserError, match="not group/world-writable"):
        mf.Manifest.create("fsao")
    assert _clean() == 2


# --- removal: recorded AND tagged ---------------------------------------------------------------
def test_only_tagged_bridges_are_removed_and_a_reboot_leaves_kernel_objects_alone(
        state_root: Path, ovs: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    entries = [{"kind": "ovs_bridge", "name": "fsapgnb1"}, {"kind": "ovs_bridge", "name": "fsapupf1"},
               {"kind": "netns", "name": "fsaprly"}, {"kind": "link", "name": "fsapgnb1-eth1"},
               {"kind": "process", "name": "relay-ap", "pid": os.getpid(),
                "start": mf.proc_start_time(os.getpid())}]   # alive: only the reboot keeps it safe
    _write(state_root, "fsap", entries, boot_id="00000000-0000-0000-0000-000000000000")
    ovs["bridges"] = {"fsapgnb1": "fsap-0badc0de", "fsapupf1": "", "br0": ""}  # fsapupf1: not ours
    assert _clean("--dry-run") == 0
    out = capsys.readouterr().out
    assert "would remove ovs_bridge fsapgnb1" in out and "keep ovs_bridge fsapupf1" in out
    assert "gone netns fsaprly: gone with the reboot" in out and "gone process relay-ap" in out
    assert ovs["deleted"] == [] and (state_root / "fsap.json").exists()
    assert _clean() == 0
    assert ovs["deleted"] == [("ovs_bridge", "fsapgnb1")] and not (state_root / "fsap.json").exists()


def test_failed_removal_exits_1_and_keeps_the_entry(state_root: Path, ovs: dict[str, Any]) -> None:
    _write(state_root, "fsaq", [{"kind": "ovs_bridge", "name": "fsaqgnb1"}])
    ovs["bridges"], ovs["fail"] = {"fsaqgnb1": "fsaq-0badc0de"}, True
    assert _clean() == 1
    assert [e["name"] for e in mf.Manifest.load(state_root / "fsaq.json").entries] == ["fsaqgnb1"]


def test_orphan_bridges_are_reported_and_removed_only_when_asked(
        state_root: Path, ovs: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    live = mf.Manifest.create("fsar")  # a live run's bridges are never orphans
    ovs["bridges"] = {"fsasgnb1": "fsas-12345678", "fsargnb1": live.run_id, "mine": "", "odd": "x y"}
    assert _clean() == 0
    out = capsys.readouterr().out
    assert "orphan OVS bridge fsasgnb1" in out and "--orphans" in out and ovs["deleted"] == []
    assert _clean("--orphans", "--dry-run") == 0 and ovs["deleted"] == []
    assert _clean("--orphans") == 0
    assert ovs["deleted"] == [("ovs_bridge", "fsasgnb1")]


# --- external calls ----------------------------------------------------------------------------
def test_external_commands_time_out_with_one_line() -> None:
    t0 = time.monotonic()
    with pytest.raises(runobjects.ObjectError, match="no answer within 0.2 s"):
        runobjects.run(["sleep", "5"], timeout_s=0.2)
    assert time.monotonic() - t0 < 3


def test_bridge_tags_reads_the_run_key_of_every_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = {"headings": ["name", "external_ids"],
               "data": [["fsatgnb1", ["map", [["factorysat-run", "fsat-12345678"]]]], ["br0", ["map", []]]]}
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(listing), "")

    monkeypatch.setattr(runobjects, "run", fake_run)
    assert runobjects.bridge_tags() == {"fsatgnb1": "fsat-12345678", "br0": ""}
    assert calls[0][:2] == ["ovs-vsctl", f"--timeout={runobjects.OVS_TIMEOUT_S}"]

"""`factorysat clean` on real objects: it removes exactly what a dead run recorded AND tagged.

Needs root and the OVS daemons (./bootstrap.sh). Every object here is named ``fs<t>...`` with
``<t>`` = ``z`` + 6 random hex digits (a run tag no real run uses), lives in a state folder of its
own, and is removed in ``finally``. `clean` runs as a subprocess, as a user runs it; it never gets
``--orphans`` here (other runs on this machine may own tagged bridges).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from topologies import manifest as mf
from topologies import runobjects

pytestmark = pytest.mark.root
OTHER_BOOT = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A private state folder, a fresh tag, and a list of (kind, name) removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from topologies.switches import ovs_running  # imports Mininet: only in root tests

    if not ovs_running():
        pytest.fail("OVS daemons are not running: run ./bootstrap.sh")
    state = tmp_path / "state"
    monkeypatch.setattr(mf, "STATE_ROOT", state)
    tag = "z" + secrets.token_hex(3)
    made: list[tuple[str, str]] = []
    procs: list[subprocess.Popen] = []
    try:
        yield {"state": state, "tag": tag, "p": f"fs{tag}", "made": made, "procs": procs}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for kind, name in reversed(made):  # ours by construction: names unique to this test
            runobjects.delete(kind, name)
        left = [(k, n) for k, n in made if runobjects.exists(k, n)]
        assert not left, left


def _bridge(env: dict, name: str, run_id: str | None) -> None:
    tag = ["--", "set", "bridge", name, runobjects.ovs_tag_opts(run_id)] if run_id else []
    env["made"].append(("ovs_bridge", name))
    runobjects.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", *tag)


def _veth(env: dict, name: str, run_id: str | None) -> None:
    env["made"].append(("link", name))
    runobjects.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"])
    if run_id:
        runobjects.tag_link(name, run_id)


def _netns(env: dict, name: str, run_id: str) -> None:
    env["made"].append(("netns", name))
    runobjects.run(["ip", "netns", "add", name])
    runobjects.run(["ip", "-n", name, "link", "set", "dev", "lo", "alias", runobjects.alias(run_id)])


def _sleeper(env: dict) -> dict[str, Any]:
    proc = subprocess.Popen(["sleep", "300"])
    env["procs"].append(proc)
    return {"kind": "process", "name": "sleeper", "pid": proc.pid, "start": mf.proc_start_time(proc.pid)}


def _manifest(env: dict, entries: list[dict], boot: str | None = None) -> tuple[Path, str]:
    """A manifest as a SIGKILLed run leaves it: owner dead; returns (path, run id)."""
    env["state"].mkdir(exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run_id = f"{env['tag']}-{secrets.token_hex(4)}"
    path = env["state"] / f"{env['tag']}.json"
    path.write_text(json.dumps({"format": 2, "tag": env["tag"], "run_id": run_id,
                                "boot_id": boot or mf.boot_id(), "owner_pid": int(dead.stdout),
                                "owner_start": 1, "entries": entries}))
    path.chmod(0o644)
    return path, run_id


def _clean(env: dict, *flags: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", "import sys; from experiments.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "clean", *flags],
                         env=dict(os.environ, FACTORYSAT_STATE_DIR=str(env["state"])),
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    print(out.stdout, out.stderr)
    return out


def test_objects_without_the_run_tag_are_never_removed(env: dict) -> None:
    """A pre-existing bridge and veth whose names a dead run's manifest records: a name clash."""
    p = env["p"]
    path, _ = _manifest(env, [{"kind": "ovs_bridge", "name": f"{p}b"}, {"kind": "link", "name": f"{p}v"},
                              {"kind": "netns", "name": f"{p}n"}])
    _bridge(env, f"{p}b", None)
    _veth(env, f"{p}v", None)
    dry = _clean(env, "--dry-run")
    assert dry.returncode == 0
    assert not [line for line in dry.stdout.splitlines() if line.startswith("  would remove")]
    out = _clean(env)
    assert out.returncode == 0
    assert f"keep ovs_bridge {p}b: exists with no factorysat tag" in out.stdout
    assert f"keep link {p}v: exists with no factorysat tag" in out.stdout
    assert runobjects.bridge_exists(f"{p}b") and runobjects.exists("link", f"{p}v")
    assert not path.exists()  # every entry is resolved: gone, or not the run's


def test_a_run_refuses_to_create_over_an_existing_object(env: dict) -> None:
    p = env["p"]
    _bridge(env, f"{p}b", None)
    manifest = mf.Manifest.create(env["tag"])
    with pytest.raises(mf.NameClash, match=f"ovs_bridge '{p}b' already exists"):
        manifest.add("ovs_bridge", f"{p}b")
    assert manifest.remove_all() == [] and runobjects.bridge_exists(f"{p}b")


def test_recorded_and_tagged_objects_of_a_dead_run_are_removed_exactly(env: dict) -> None:
    p = env["p"]
    sleeper = _sleeper(env)
    path, run_id = _manifest(env, [sleeper, {"kind": "ovs_bridge", "name": f"{p}b"},
                                   {"kind": "link", "name": f"{p}v"}, {"kind": "netns", "name": f"{p}n"}])
    _bridge(env, f"{p}b", run_id)
    _veth(env, f"{p}v", run_id)
    _veth(env, f"{p}w", run_id)   # tagged by the run but not recorded: not provably ours, kept
    _netns(env, f"{p}n", run_id)
    dry = _clean(env, "--dry-run")
    assert dry.returncode == 0
    listed = sorted(line.split()[2] for line in dry.stdout.splitlines() if line.startswith("  would remove"))
    assert listed == sorted(["process", "ovs_bridge", "link", "netns"])
    assert runobjects.bridge_exists(f"{p}b") and env["procs"][0].poll() is None  # a dry run touches nothing
    out = _clean(env)
    assert out.returncode == 0
    assert env["procs"][0].wait(timeout=10) is not None
    assert not runobjects.bridge_exists(f"{p}b")
    assert not runobjects.exists("link", f"{p}v") and not runobjects.exists("netns", f"{p}n")
    assert runobjects.link_tag(f"{p}w") == run_id and not path.exists()


def test_after_a_reboot_bridges_are_removed_and_kernel_objects_are_known_gone(env: dict) -> None:
    p = env["p"]
    sleeper = _sleeper(env)  # alive now, but a pid from "before the reboot" must never be signalled
    path, run_id = _manifest(env, [sleeper, {"kind": "ovs_bridge", "name": f"{p}b"},
                                   {"kind": "link", "name": f"{p}v"}, {"kind": "netns", "name": f"{p}n"}],
                             boot=OTHER_BOOT)
    _bridge(env, f"{p}b", run_id)
    _veth(env, f"{p}v", run_id)
    _netns(env, f"{p}n", run_id)
    out = _clean(env)
    assert out.returncode == 0 and "from an earlier boot" in out.stdout
    assert not runobjects.bridge_exists(f"{p}b")
    for kind, name in (("link", f"{p}v"), ("netns", f"{p}n"), ("process", "sleeper")):
        assert f"gone {kind} {name}" in out.stdout
    assert runobjects.exists("link", f"{p}v") and runobjects.exists("netns", f"{p}n")
    assert env["procs"][0].poll() is None and not path.exists()


def test_the_switch_class_tags_its_bridge_and_ports(env: dict) -> None:
    """What a run's Mininet creates carries the run's tag, so teardown and `clean` can prove it."""
    from mininet.net import Mininet

    from topologies.switches import switch_class

    p = env["p"]
    manifest = mf.Manifest.create(env["tag"])
    for kind, name in (("ovs_bridge", f"{p}s"), ("link", f"{p}s-eth1")):
        manifest.add(kind, name)
        env["made"].append((kind, name))
    net = Mininet(topo=None, build=False, controller=None, switch=switch_class("user", manifest.run_id))
    try:
        sw = net.addSwitch(f"{p}s", dpid=secrets.token_hex(8), failMode="standalone")
        net.addLink(net.addHost(f"{p}h"), sw)
        net.build()
        net.start()
        assert runobjects.bridge_tags()[f"{p}s"] == manifest.run_id
        assert runobjects.link_tag(f"{p}s-eth1") == manifest.run_id
        assert [s.action for s in manifest.plan()] == ["remove", "remove"]
    finally:
        net.stop()
    assert manifest.remove_all() == [] and not manifest.path.exists()


def test_mininet_teardown_leaves_a_same_named_bridge_it_did_not_tag(env: dict) -> None:
    """Even Mininet's own teardown (net.stop) deletes a bridge only if it carries the run's tag."""
    from mininet.net import Mininet

    from topologies.switches import switch_class

    p = env["p"]
    _bridge(env, f"{p}x", None)           # appeared after the run checked the name
    manifest = mf.Manifest.create(env["tag"])
    net = Mininet(topo=None, build=False, controller=None, switch=switch_class("user", manifest.run_id))
    try:
        net.addSwitch(f"{p}x", dpid=secrets.token_hex(8), failMode="standalone")
        net.build()
    finally:
        net.stop()
    assert runobjects.bridge_tags()[f"{p}x"] == ""  # still there, untouched
    assert manifest.remove_all() == []

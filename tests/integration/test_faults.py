"""Fault tests as root: a component dies mid-run, or the results disk fills up.

Each run is the demo scenario with a short traffic phase, started through the CLI. The test kills
exactly one process of the run (found by pid in the run's own manifest) and checks: the run ends
with exit code 1 within seconds, naming the component and its log; the run folder has ``FAILED``
and no ``COMPLETE``; and nothing of the run is left (its manifest, bridges, namespaces, links and
processes are gone).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from netstate import snapshot, wait_for_traffic

from topologies.manifest import STATE_ROOT, proc_start_time

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
DURATION_S = "20"  # long enough to kill something mid-run; the run ends early anyway


def _start_run(results: Path, traffic_engine: str = "c") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments", "run", "demo", "--duration-s", DURATION_S,
                             "--results", str(results), "--quiet"], cwd=REPO,
                            env={**os.environ, "FACTORYSAT_TRAFFIC_ENGINE": traffic_engine},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_traffic(proc: subprocess.Popen, results: Path) -> Path:
    """The run folder, once traffic flows (1.5 s after the run's traffic start instant)."""
    return wait_for_traffic(proc, results)


def _manifest(run_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    tag = json.loads((run_dir / "metadata.json").read_text())["run_tag"]
    return tag, json.loads((STATE_ROOT / f"{tag}.json").read_text())["entries"]


def _kill(entry: dict[str, Any]) -> int:
    """SIGKILL one recorded process of the run (only if it is still the process recorded)."""
    assert proc_start_time(entry["pid"]) == entry["start"], f"{entry} is not running"
    os.kill(entry["pid"], signal.SIGKILL)
    return time.time_ns()


def _objects_of(tag: str) -> dict[str, set[str]]:
    """Namespaces, links, bridges and the manifest carrying the run's tag (fsXX) right now."""
    state = snapshot()
    ours = {kind: {n for n in names if n.startswith(tag)} for kind, names in state.items()}
    ours["manifests"] = {n for n in state["manifests"] if n == f"{tag}.json"}
    return ours


def _check_failed_run(proc: subprocess.Popen, run_dir: Path, tag: str, entries: list[dict[str, Any]],
                      component: str, killed_ns: int) -> dict[str, Any]:
    """The run failed for ``component`` promptly, with FAILED and no COMPLETE, and left nothing."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("factorysat run:")]
    assert f"[{component}]" in lines[0] and "see " in lines[0], err
    assert str(run_dir) in lines[-1], err
    assert not (run_dir / "COMPLETE").exists()
    failed = json.loads((run_dir / "FAILED").read_text())
    assert failed["component"] == component and failed["reason"] and failed["run_dir"] == str(run_dir)
    dt.datetime.fromisoformat(failed["failed_utc"])
    if failed["log_path"]:
        assert Path(failed["log_path"]).is_file()
        assert failed["log_path"] in lines[0]
    # prompt: the watchdog noticed the death within about a second (it polls every 0.2 s)
    assert 0 <= (failed["detected_realtime_ns"] - killed_ns) / 1e9 < 1.5, failed
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["failure"]["component"] == component
    time.sleep(0.5)
    leftovers = _objects_of(tag)
    assert not any(leftovers.values()), f"leftovers: {leftovers}"
    assert not (STATE_ROOT / f"{tag}.json").exists()
    alive = [e for e in entries if e["kind"] == "process" and proc_start_time(e["pid"]) == e["start"]]
    assert not alive, f"processes of the run still running: {alive}"
    return failed


def test_relay_killed_mid_run(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    run_dir = _wait_for_traffic(proc, tmp_path)
    tag, entries = _manifest(run_dir)
    relay = next(e for e in entries if e["kind"] == "process" and e["name"].startswith("relay-"))
    killed_ns = _kill(relay)
    failed = _check_failed_run(proc, run_dir, tag, entries, "relay", killed_ns)
    assert "killed by SIGKILL" in failed["reason"] and failed["log_path"].endswith(".log")


def test_controller_killed_mid_run_switches_keep_forwarding(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    run_dir = _wait_for_traffic(proc, tmp_path)
    tag, entries = _manifest(run_dir)
    controller = next(e for e in entries if e["kind"] == "process" and e["name"] == "controller")
    killed_ns = _kill(controller)
    failed = _check_failed_run(proc, run_dir, tag, entries, "controller", killed_ns)
    assert failed["log_path"].endswith("controller.log")
    # fail mode secure: the flows already installed keep forwarding without the controller
    data_path = failed["data_path_after_death"]
    assert set(data_path["fail_mode"].values()) == {"secure"}, data_path
    assert data_path["kept_forwarding"] and data_path["bridges_forwarding"], data_path


def test_traffic_agent_killed_mid_run(tmp_path: Path) -> None:
    """The Python agents (FACTORYSAT_TRAFFIC_ENGINE=python): a receiver dies."""
    proc = _start_run(tmp_path, traffic_engine="python")
    run_dir = _wait_for_traffic(proc, tmp_path)
    tag, entries = _manifest(run_dir)
    receiver = next(e for e in entries if e["kind"] == "process" and e["name"].startswith("traffic:recv-"))
    killed_ns = _kill(receiver)
    out_component = f"agent {receiver['name']} on {receiver['name'].removeprefix('traffic:recv-')[:-4]}"
    failed = _check_failed_run(proc, run_dir, tag, entries, out_component, killed_ns)
    assert failed["log_path"] == str(run_dir / "logs" / receiver["name"].removeprefix("traffic:"))


def test_traffic_engine_killed_mid_run(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    run_dir = _wait_for_traffic(proc, tmp_path)
    tag, entries = _manifest(run_dir)
    engine = next(e for e in entries if e["kind"] == "process" and e["name"] == "traffic:engine")
    killed_ns = _kill(engine)
    failed = _check_failed_run(proc, run_dir, tag, entries, "traffic engine", killed_ns)
    assert failed["log_path"] == str(run_dir / "logs" / "traffic-engine.txt")


@pytest.mark.parametrize(("sig", "code", "reason"), [(signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGTERM, 143, "terminated by SIGTERM")])
def test_interrupted_run_is_marked_failed(tmp_path: Path, sig: signal.Signals, code: int,
                                          reason: str) -> None:
    proc = _start_run(tmp_path)
    run_dir = _wait_for_traffic(proc, tmp_path)
    tag, entries = _manifest(run_dir)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    assert str(run_dir) in err.splitlines()[-1]
    failed = json.loads((run_dir / "FAILED").read_text())
    assert failed["reason"] == reason and not (run_dir / "COMPLETE").exists()
    time.sleep(0.5)
    assert not any(_objects_of(tag).values())
    assert not [e for e in entries if e["kind"] == "process" and proc_start_time(e["pid"]) == e["start"]]


def _fill(folder: Path, leave_bytes: int) -> None:
    """Fill the filesystem of ``folder`` until ``leave_bytes`` or less are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        try:
            f.write(bytes(max(0, free - leave_bytes)))
        except OSError:
            pass


def test_results_disk_fills_up_mid_run(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "factorysat-test", str(mount)], check=True)
    try:
        results = mount / "results"
        proc = _start_run(results)
        run_dir = _wait_for_traffic(proc, results)
        tag, entries = _manifest(run_dir)
        killed_ns = time.time_ns()
        _fill(mount, leave_bytes=96 * 1024)  # below the run's 256 KiB reserve: full
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err}"
        assert "Traceback" not in err, err
        assert f"results disk full: {run_dir}" in err, err
        assert not (run_dir / "COMPLETE").exists()
        failed_path = run_dir / "FAILED"
        if failed_path.exists():
            failed = json.loads(failed_path.read_text())
            assert failed["component"] == "results disk" and "disk full" in failed["reason"]
            assert 0 <= (failed["detected_realtime_ns"] - killed_ns) / 1e9 < 1.5, failed
        else:  # even the marker could not be written: then it was printed
            assert "could not write" in err and "FAILED" in err, err
        # what was written before is intact and readable
        meta = json.loads((run_dir / "metadata.json").read_text())
        assert meta["run_tag"] == tag
        json.loads((run_dir / "scenario.resolved.json").read_text())
        assert len(pd.read_parquet(run_dir / "leo_schedule.parquet")) > 0
        assert not list(run_dir.rglob("*.tmp"))  # no half-written outputs
        for raw in (run_dir / "raw").iterdir():
            raw.read_bytes()
        time.sleep(0.5)
        leftovers = _objects_of(tag)
        assert not any(leftovers.values()), f"leftovers: {leftovers}"
        alive = [e for e in entries if e["kind"] == "process" and proc_start_time(e["pid"]) == e["start"]]
        assert not alive, f"processes of the run still running: {alive}"
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert not os.path.ismount(mount)

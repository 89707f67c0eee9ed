"""ControllerProcess and the launcher CLI without a switch (loopback only, no root needed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("os_ken")

from controllers.apps import ENV_STATS_INTERVAL_S  # noqa: E402
from controllers.launcher import ControllerProcess, listening_inodes, main, tcp_listening  # noqa: E402
from topologies.paths import REPO_ROOT  # noqa: E402
from topologies.validate import ConfigError  # noqa: E402

POLICY = {
    "slices": {"urllc": {"dscp": 46}},
    "hosts": [{"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"}],
    "switches": [{"name": "s1", "dpid": 5, "access_hosts": ["agv1"],
                  "mac_to_port": {"00:00:00:00:00:01": 1}}],
}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    return policy, tmp_path / "status.json", tmp_path / "controller.log"


def _local_addresses(port: int) -> set[str]:
    addrs = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            addrs.add(local.split(":")[0])
    return addrs


def test_start_wait_timeout_and_stop(files):
    policy, status, log = files
    status.write_text(json.dumps({"ready_dpids": [5], "pid": 1}))  # stale file from an older run
    ctl = ControllerProcess()
    try:
        ctl.start(policy, status, log)
        assert ctl.pid is not None and ctl.port is not None and ctl.running()
        assert tcp_listening(ctl.port, ctl.pid)
        assert _local_addresses(ctl.port) == {"0100007F"}  # 127.0.0.1 only
        with pytest.raises(TimeoutError) as err:
            ctl.wait_ready([5], timeout_s=0.5)  # no switch: the stale "ready" must not count
        assert "5 (0x5)" in str(err.value) and str(log) in str(err.value)
        assert ctl.read_status() == {"ready_dpids": [], "pid": ctl.pid, "errors": {}, "path_switches": [],
                                     "resyncs": []}
    finally:
        ctl.stop()
    assert not ctl.running()
    assert not listening_inodes(ctl.port)
    assert not Path(f"/proc/{ctl.pid}").exists()  # reaped, not a zombie
    ctl.stop()  # idempotent
    assert f"pid {ctl.pid} starting" in log.read_text()


def test_bad_policy_fails_before_starting(files):
    policy, status, log = files
    bad = dict(POLICY, slices={"urllc": {"dscp": 99}})
    policy.write_text(json.dumps(bad))
    ctl = ControllerProcess()
    with pytest.raises(ConfigError, match=r"slices\.urllc\.dscp"):
        ctl.start(policy, status, log)
    assert ctl.pid is None and not log.exists()
    ctl.stop()


def test_port_in_use_is_reported_and_child_stopped(files):
    policy, status, log = files
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ctl = ControllerProcess()
        with pytest.raises(RuntimeError, match=str(log)):
            ctl.start(policy, status, log, port=port, listen_timeout_s=2)
        assert ctl.port == port and not ctl.running()


def test_exit_is_reported_by_wait_ready(files):
    policy, status, log = files
    ctl = ControllerProcess()
    ctl.start(policy, status, log)
    os.kill(ctl.pid, signal.SIGKILL)  # simulate a crash
    deadline = time.monotonic() + 5
    while ctl.running():  # running() reaps the child once it has exited
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="exited"):
        ctl.wait_ready([5], timeout_s=5)
    ctl.stop()


def test_second_start_is_refused(files):
    policy, status, log = files
    with ControllerProcess() as ctl:
        ctl.start(policy, status, log)
        with pytest.raises(RuntimeError, match="already started"):
            ctl.start(policy, status, log)
    assert not ctl.running()


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "localhost"])
def test_cli_refuses_non_loopback_host(files, host, capsys):
    policy, status, _log = files
    with pytest.raises(SystemExit) as exc:
        main(["--policy", str(policy), "--status", str(status), "--port", "6653", "--host", host])
    assert exc.value.code == 2
    assert "--host" in capsys.readouterr().err


def test_cli_bad_policy_exit_code(files, capsys):
    policy, status, _log = files
    policy.write_text("{}")
    assert main(["--policy", str(policy), "--status", str(status), "--port", "6653"]) == 2
    assert "slices" in capsys.readouterr().err
    assert not status.exists()



FIXTURE_APP = "tests.unit.controller_app_fixture"


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # so `tests.unit...` resolves here as in the child


def test_start_runs_the_listed_apps(files):
    policy, status, log = files
    with ControllerProcess() as ctl:
        ctl.start(policy, status, log, apps=(a for a in ["slice_monitor"]))  # any iterable
        assert ctl.apps == ["controllers.apps.slice_monitor"]
        assert ctl.read_status() == {"ready_dpids": [], "pid": ctl.pid, "errors": {}, "path_switches": [],
                                     "resyncs": []}
    text = log.read_text()
    assert "apps slice_monitor" in text and "apps: controllers.apps.slice_monitor (SliceMonitor)" in text


def test_start_default_app_is_the_slice_switch(files):
    policy, status, log = files
    with ControllerProcess() as ctl:
        ctl.start(policy, status, log)
        assert ctl.apps == ["controllers.apps.slice_switch"]
    assert "apps: controllers.apps.slice_switch (SliceSwitch)" in log.read_text()


def test_start_app_by_dotted_path(files, repo_on_path):
    policy, status, log = files
    with ControllerProcess() as ctl:
        ctl.start(policy, status, log, apps=[FIXTURE_APP])
        assert ctl.running()
    assert f"apps: {FIXTURE_APP} (DropExperimentalEthertype)" in log.read_text()


def test_unknown_app_fails_before_starting(files):
    policy, status, log = files
    ctl = ControllerProcess()
    with pytest.raises(ConfigError) as err:
        ctl.start(policy, status, log, apps=["slice_switch", "slice_moniter"])
    assert err.value.path == "controller.apps[1]" and "'slice_monitor'" in str(err.value)
    assert ctl.pid is None and not log.exists()


def test_subclass_listed_with_its_base_is_refused_by_the_child(files, repo_on_path):
    """A dotted-path app is not in the registry; the launcher checks the loaded classes."""
    policy, status, log = files
    ctl = ControllerProcess()
    with pytest.raises(RuntimeError, match="exited with code 2") as err:
        ctl.start(policy, status, log, apps=["slice_switch", FIXTURE_APP])
    assert f"list only {FIXTURE_APP}" in str(err.value)  # the log's last lines are in the message
    assert not ctl.running()


def test_bad_app_setting_is_reported_with_the_variable(files):
    policy, status, log = files
    ctl = ControllerProcess()
    with pytest.raises(RuntimeError, match="exited with code 1") as err:
        ctl.start(policy, status, log, apps=["slice_monitor"], app_env={ENV_STATS_INTERVAL_S: "0"})
    assert ENV_STATS_INTERVAL_S in str(err.value)


def test_cli_unknown_app_exit_code(files, capsys):
    policy, status, _log = files
    assert main(["--policy", str(policy), "--status", str(status), "--port", "6653", "--app", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--app[0]" in err and "'slice_switch'" in err and "'slice_monitor'" in err
    assert not status.exists()


def test_cli_refuses_a_subclass_with_its_base(files, capsys):
    policy, status, _log = files
    argv = ["--policy", str(policy), "--status", str(status), "--port", "6653"]
    assert main([*argv, "--app", "slice_switch", "--app", "slice_monitor"]) == 2
    assert "list only 'slice_monitor'" in capsys.readouterr().err

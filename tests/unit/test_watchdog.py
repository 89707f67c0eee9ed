"""The run watchdog and the FAILED/COMPLETE markers, without root: real child processes, real signals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.framework import watchdog as wd
from experiments.framework.results import is_complete, is_failed, mark_complete, mark_failed
from experiments.framework.session import disk_failure, failure_record
from topologies.errors import RunFailed


def _sleeper(seconds: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_death_interrupts_the_main_thread_promptly(tmp_path: Path) -> None:
    proc = _sleeper()
    dog = wd.Watchdog()
    dog.watch_process("relay", proc, tmp_path / "relay.log")
    dog.start()
    try:
        assert wd.active() is dog
        t_kill = time.monotonic()
        proc.kill()
        with pytest.raises(RunFailed) as err:
            time.sleep(10)  # interrupted by the watchdog, not finished
        elapsed = time.monotonic() - t_kill
    finally:
        failure = dog.stop()
    assert elapsed < 1.0, elapsed
    assert err.value is failure and failure.component == "relay"
    assert "killed by SIGKILL" in str(failure) and str(tmp_path / "relay.log") in str(failure)
    assert failure.log_path == str(tmp_path / "relay.log")
    assert wd.active() is None


def test_unwatched_stop_is_not_a_death_and_normal_end_is_allowed(tmp_path: Path) -> None:
    receiver, sender = _sleeper(), subprocess.Popen([sys.executable, "-c", "pass"])
    dog = wd.Watchdog()
    dog.watch_process("receiver", receiver, None)
    dog.watch_process("sender", sender, None, ends_by_itself=True)
    dog.start()
    try:
        sender.wait()
        assert dog.unwatch(receiver) is None  # the run stops it on purpose
        receiver.terminate()
        receiver.wait()
        time.sleep(0.6)  # three polls
    finally:
        assert dog.stop() is None


def test_a_death_before_unwatch_is_recorded_without_interrupt(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    dog = wd.Watchdog(interval_s=60)  # the poll never runs: unwatch itself must notice
    dog.watch_process("agent recv", proc, tmp_path / "recv.txt")
    dog.start()
    try:
        failure = dog.unwatch(proc)
    finally:
        assert dog.stop() is failure
    assert failure is not None and "exited with code 3" in str(failure)


def test_no_raise_inside_protected_code_or_while_unwinding() -> None:
    proc = _sleeper()
    dog = wd.Watchdog()
    dog.watch_process("controller", proc, None)

    def teardown() -> None:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and dog.failure is None:
            time.sleep(0.05)
        time.sleep(0.2)  # the interrupt arrives here, and must not raise

    dog.protected.add(teardown.__code__)
    dog.start()
    try:
        proc.kill()
        teardown()
    finally:
        failure = dog.stop()
    assert failure is not None and failure.component == "controller"


def test_pid_check_and_ovs_pidfiles(tmp_path: Path) -> None:
    proc = _sleeper()
    check = wd.pid_check("ovs-vswitchd", proc.pid, tmp_path / "ovs.log")
    assert check is not None and check() is None
    (tmp_path / "ovs-vswitchd.pid").write_text(f"{proc.pid}\n")
    assert set(wd.ovs_daemon_checks(tmp_path)) == {"ovs-vswitchd"}  # no ovsdb-server pidfile
    proc.kill()
    proc.wait()
    failure = check()
    assert failure is not None and failure.component == "ovs-vswitchd" and "is gone" in str(failure)


def test_failed_and_complete_never_both(tmp_path: Path) -> None:
    mark_failed(tmp_path, {"reason": "interrupted", "component": None, "log_path": None})
    assert is_failed(tmp_path) and not is_complete(tmp_path)
    assert json.loads((tmp_path / "FAILED").read_text())["reason"] == "interrupted"
    with pytest.raises(RuntimeError, match="FAILED"):
        mark_complete(tmp_path)
    assert not is_complete(tmp_path)


def test_failure_reasons() -> None:
    assert failure_record(KeyboardInterrupt())["reason"] == "interrupted"
    died = RunFailed("relay died; see x.log", component="relay", log_path="x.log")
    assert failure_record(died) == {"reason": "relay died; see x.log", "component": "relay",
                                    "log_path": "x.log", "exception": "RunFailed"}
    assert failure_record(ValueError("bad"))["reason"] == "ValueError: bad"


def test_enospc_becomes_results_disk_full(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as inner:
            raise RuntimeError("summary failed") from inner
    except RuntimeError as exc:
        failure = disk_failure(exc, tmp_path)
    assert failure is not None and failure.component == "results disk"
    assert str(failure) == f"results disk full: {tmp_path}"
    assert disk_failure(ValueError("x"), tmp_path) is None


class _DyingBatch:
    """A tc batch stand-in that exits after its first line."""

    def __init__(self, ns_pid: int | None, log_path: Path) -> None:
        self.pid, self.counters, self.lines = 999_999, {}, 0

    def send(self, key: tuple[str, str], what: str, line: str, dev: str) -> float:
        if self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        self.lines += 1
        return time.monotonic()

    def alive(self) -> bool:
        return self.lines == 0

    def drain(self, timeout_s: float = 2.0) -> bool:
        return True

    def snapshot(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def test_netem_schedule_replayer_death_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import topologies.links.backends.netem as netem_backend
    from topologies.links.backend import BackendContext, Endpoint, Setting
    from topologies.links.params import DirectionParams

    monkeypatch.setattr(netem_backend, "TcBatch", _DyingBatch)
    manifest = SimpleNamespace(add_process=lambda *a: None, discard=lambda *a: None)
    backend = netem_backend.NetemBackend(BackendContext("tunit", manifest, tmp_path))  # type: ignore[arg-type]
    host = SimpleNamespace(pid=4242, inNamespace=True)
    link = netem_backend.NetemLink("leo", Endpoint(host, "ut1-eth0"), Endpoint(host, "sat1-eth0"))
    assert backend.failed() is None
    rows = [Setting(DirectionParams(delay_ms=20), 20.0, t) for t in (0.0, 0.05, 0.1)]
    backend.schedule(link, "uplink", rows, time.monotonic())
    deadline = time.monotonic() + 5
    while backend.failed() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    failure = backend.failed()
    assert failure is not None and failure.component == "tc-batch-tunit-4242"
    assert failure.log_path == str(tmp_path / "tc-batch-tunit-4242.log")
    backend.stop()


def test_controller_readiness_timeout_scales_and_is_a_run_failure() -> None:
    from controllers.launcher import ControllerDied, ControllerNotReady, ready_timeout_s

    assert ready_timeout_s(5, 20) == 90 + 5 + 5
    assert ready_timeout_s(6, 130) > 60  # 124 UEs: ~130 ports
    assert ready_timeout_s(100, 10_000) == 600
    assert issubclass(ControllerNotReady, RunFailed) and issubclass(ControllerNotReady, TimeoutError)
    assert issubclass(ControllerDied, RunFailed) and issubclass(ControllerDied, RuntimeError)


@pytest.mark.parametrize("name", ["../../tmp/x", "/abs", "..", "a/b", ""])
def test_run_folder_never_leaves_the_results_root(tmp_path: Path, name: str) -> None:
    from experiments.framework.results import new_run_dir
    from topologies.errors import UserError

    with pytest.raises(UserError, match="experiment.name"):
        new_run_dir(name, tmp_path / "results")
    assert not (tmp_path / "results").exists() and not (tmp_path / "tmp").exists()

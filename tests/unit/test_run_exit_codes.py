"""``factorysat run`` maps every anticipated failure to its exit code with one line, no traceback."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest

import experiments.cli.run as run_cli
import experiments.framework.skeleton as skeleton
from experiments.framework.session import Terminated
from topologies.errors import RunFailed, UserError
from topologies.switches import OvsNotRunning
from topologies.validate import ConfigError


def _args(**overrides: object) -> argparse.Namespace:
    base = dict(experiment="demo", scenario=None, duration_s=None, link_backend=None, ovs_datapath=None,
                seed=None, results=Path("/nonexistent/results"), quiet=True, include_host_stalls=False,
                ovs_realtime=None, pcap=None, northbound=False, sla_monitor=False)
    return argparse.Namespace(**{**base, **overrides})


def _failing(exc: BaseException, run_dir: Path | None = None):
    def run_experiment(*_a: object, **_k: object) -> None:
        if run_dir is not None:
            exc.run_dir = run_dir  # type: ignore[attr-defined]
        raise exc
    return run_experiment


@pytest.mark.parametrize(("exc", "code", "text"), [
    (ConfigError("site.seed", -1, "0 to 2**32-1"), 2, "invalid configuration: site.seed"),
    (OvsNotRunning("the Open vSwitch daemons do not answer"), 2, "do not answer"),
    (UserError("state folder is not a folder"), 2, "state folder"),
    (RunFailed("relay (pid 7) killed by SIGKILL mid-run; see /r/logs/relay.log", component="relay",
               log_path="/r/logs/relay.log"), 1, "run failed [relay]: relay (pid 7)"),
    (RunFailed("controller pid 3 exited\n  | tail line", component="controller", log_path="/r/c.log"), 1,
     "controller pid 3 exited; see /r/c.log"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (Terminated("terminated by SIGTERM"), 143, "terminated"),
    (OSError(errno.ENOSPC, "No space left on device", "/r/raw/x.bin"), 1, "results disk full: /r/raw/x.bin"),
])
def test_exit_codes(exc: BaseException, code: int, text: str, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(run_cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_cli, "load_experiment", lambda ref: object())
    monkeypatch.setattr(skeleton, "run_experiment", _failing(exc, tmp_path))
    assert run_cli.run(_args()) == code
    err = capsys.readouterr().err
    assert text in err.splitlines()[0] and "Traceback" not in err
    if code != 2:
        assert f"run folder (marked FAILED): {tmp_path}" in err.splitlines()[-1]


def test_an_unexpected_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_cli, "load_experiment", lambda ref: object())
    monkeypatch.setattr(skeleton, "run_experiment", _failing(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        run_cli.run(_args())


def test_help_documents_the_exit_codes() -> None:
    for code in ("130", "143", "FAILED"):
        assert code in run_cli.EPILOG

"""The host-stall sentinel, C build and Python fallback: it runs at real-time priority, records
every wake-up, and turns a stall it is made to suffer (SIGSTOP) into a window. Needs root."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from topologies.hoststall import HostStallSentinel

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (SCHED_FIFO)")


@pytest.mark.parametrize("prefer_c", [True, False], ids=["c", "python"])
def test_sentinel_sees_a_stall_it_is_made_to_suffer(tmp_path: Path, prefer_c: bool) -> None:
    sentinel = HostStallSentinel(tmp_path / "hoststall.txt", prefer_c=prefer_c).start()
    assert sentinel.implementation == ("c" if prefer_c else "python")
    time.sleep(0.3)
    os.kill(sentinel.pid, signal.SIGSTOP)  # nothing of the sentinel runs for 120 ms
    stopped_ns = time.time_ns()
    time.sleep(0.12)
    resumed_ns = time.time_ns()
    os.kill(sentinel.pid, signal.SIGCONT)
    time.sleep(0.3)
    rec = sentinel.stop()
    assert rec.complete and rec.realtime
    assert rec.wakeups > 0 and int(rec.late_hist.sum()) == rec.wakeups
    covering = [w for w in rec.windows_ns if w[0] <= stopped_ns + 5_000_000 and w[1] >= resumed_ns]
    assert covering, (rec.windows_ns - stopped_ns) / 1e6
    assert rec.late_ns.max() >= 100_000_000
    in_flight = np.array([stopped_ns + 10_000_000]), np.array([stopped_ns + 11_000_000])
    assert rec.flag(*in_flight).tolist() == [True]
    assert sentinel.proc is None  # stopped by its own handle


def test_sentinel_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start: sentinel: PERIOD_US"):
        HostStallSentinel(tmp_path / "x.txt", period_us=5).start()

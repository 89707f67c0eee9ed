"""Host-stall sentinel records: parsing, merging windows of several CPUs, flagging packets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topologies.hoststall import flag_packets, merge_windows, read_record

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # a CLOCK_REALTIME instant, ns

GOLDEN = f"""start 5000 {T0} 1000000 300000 2
stall 0 {T0 + 100 * MS} {T0 + 150 * MS} {50 * MS} 1000
stall 1 {T0 + 120 * MS} {T0 + 160 * MS} {40 * MS} 1001
stall 1 {T0 + 400 * MS} {T0 + 401 * MS} {1 * MS} 1002
steal {T0 + 1000 * MS} 1003
period 1 2000000 25000000
rt 1
end 9000 {T0 + 2000 * MS} 3990 {50 * MS} 5000 3000 900 0 88 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hoststall.txt"
    path.write_text(text)
    return path


def test_golden_record(tmp_path: Path) -> None:
    rec = read_record(write(tmp_path, GOLDEN))
    # the two overlapping windows of CPUs 0 and 1 become one
    assert rec.windows_ns.tolist() == [[T0 + 100 * MS, T0 + 160 * MS], [T0 + 400 * MS, T0 + 401 * MS]]
    assert rec.late_ns.tolist() == [50 * MS, 1 * MS]
    assert rec.complete and rec.realtime and rec.wakeups == 3990
    assert rec.duration_s == pytest.approx(2.0)
    assert rec.threshold_us == 300 and rec.period_us == 1000
    assert rec.steal_ticks == (1000, 1003)
    assert rec.slowest_period_us == 2000  # CPU 1 went over its budget and woke every 2 ms
    s = rec.summary(flagged=5, packets=200)
    assert s["stalls"] == 2 and s["stall_total_ms"] == pytest.approx(61.0)
    assert s["longest_stall_ms"] == pytest.approx(50.0) and s["stalls_per_min"] == pytest.approx(60.0)
    assert s["packets_flagged_pct"] == pytest.approx(2.5) and s["sentinel_period_ms_max"] == 2.0
    # histogram: 3000 in [0, 5 us), 900 in [5, 10 us), 88 in [15, 20 us), 2 beyond the buckets
    assert rec.late_quantile_ms(0.5) == pytest.approx(0.005)
    assert rec.late_quantile_ms(0.99) == pytest.approx(0.020)
    assert rec.late_quantile_ms(0.9999) == pytest.approx(50.0)  # overflow: the maximum


def test_killed_sentinel_is_incomplete_and_keeps_its_windows(tmp_path: Path) -> None:
    torn = "\n".join(GOLDEN.splitlines()[:4]) + f"\nstall 0 {T0}9"
    rec = read_record(write(tmp_path, torn))
    assert not rec.complete and len(rec) == 2 and rec.wakeups == 0
    assert rec.late_quantile_ms(0.5) is None


def test_not_a_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a sentinel record"):
        read_record(write(tmp_path, "hello\n"))


def test_merge_windows_orders_and_joins() -> None:
    windows, late = merge_windows([(50, 60, 10), (10, 20, 10), (15, 30, 15), (30, 35, 5)])
    assert windows.tolist() == [[10, 35], [50, 60]] and late.tolist() == [15, 10]
    empty, _ = merge_windows([])
    assert empty.shape == (0, 2)


def test_flag_packets_by_flight_overlap() -> None:
    windows = np.array([[100, 200], [500, 510]], dtype=np.int64)
    send = np.array([0, 0, 150, 250, 490, 505, 600, 0])
    recv = np.array([99, 100, 160, 400, 500, 520, 700, np.nan])
    flagged = flag_packets(windows, send, recv)
    # ends before / touches start / inside / between / touches the second / inside / after / lost
    assert flagged.tolist() == [False, True, True, False, True, True, False, False]
    assert not flag_packets(np.zeros((0, 2), dtype=np.int64), send, recv).any()


def test_flag_packets_by_the_moments_the_emulator_acts() -> None:
    windows = np.array([[1000, 2000]], dtype=np.int64)
    send = np.array([0, 500, 2100, 0, 0, 0])
    due = np.array([5000, 1500, 2200, 900, 800, 1500])
    recv = np.array([5000, 1600, 2200, 900, 2050, 2050])
    # waits through the stall / sent in it / sent just after (within the guard) / delivered before it /
    # due before it but delivered after (late across it) / due during it
    flags = flag_packets(windows, send, recv, due, guard_ns=150)
    assert flags.tolist() == [False, True, True, False, True, True]


def test_record_flags_with_windows_widened_by_one_period(tmp_path: Path) -> None:
    rec = read_record(write(tmp_path, GOLDEN))  # period 1 ms, slowed to 2 ms on CPU 1 after its stalls
    send = np.array([T0 + 99 * MS + MS // 4, T0 + 98 * MS + MS // 2, T0 + 399 * MS + MS // 4])
    assert rec.flag(send, send + MS // 4).tolist() == [True, False, True]
    # a stall of CPU 1 after it slowed: its thread had slept 2 ms, so the window opens 2 ms early;
    # CPU 0's windows keep their 1 ms
    later = GOLDEN.replace("rt 1\n", f"stall 1 {T0 + 800 * MS} {T0 + 801 * MS} {MS} 1004\n"
                           f"stall 0 {T0 + 900 * MS} {T0 + 901 * MS} {MS} 1005\nrt 1\n")
    rec = read_record(write(tmp_path, later))
    send = np.array([T0 + 798 * MS + MS // 4, T0 + 898 * MS + MS // 4])
    assert rec.flag(send, send + MS // 4).tolist() == [True, False]
    assert rec.flag(send + MS, send + MS + MS // 4).tolist() == [True, True]

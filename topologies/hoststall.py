"""Host-stall sentinel: detect the moments this machine (or its hypervisor) did not run us.

A small real-time process (``links/relay/sentinel.c``; this module's ``__main__`` is the pure-Python
fallback) wakes every ``period_us`` on an absolute timer, at a real-time priority above the relay's,
and writes every wake-up later than ``threshold_us`` as a stall window (start, end) in
CLOCK_REALTIME ns, the clock of packet timestamps. A packet whose flight [sent, received] overlaps a
window is *touched by a host stall*: its measured delay holds time the emulator could not run, so
error figures are computed without it and it is counted apart (``flag_packets``).

Why a sleeping thread: the relay also sleeps until shortly before each departure; a wake-up this
late means a real-time thread of higher priority than the relay could not run, so the relay could
not either. Hypervisor steal time (``/proc/stat``) is recorded beside the windows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PERIOD_US = 1000  # wake-up period of the sentinel
# A wake-up later than this is a stall. Measured on the 2-core development VM (idle, SCHED_FIFO,
# 1 ms period, 30 s): wake-up lateness p50 0.03 ms, p90 0.055 ms, p99 0.65 ms, p99.9 2.5 ms
# (README "Host stalls"); the relay wakes up to 0.3 ms early (relay.c), so lateness above
# this is time it could not make up.
THRESHOLD_US = 300
# Around each moment the emulator acts on a packet (sent, due to leave), a stall this close counts
# as touching it: the relay wakes at most 0.3 ms early (relay.c early_max_ns) and spins from there.
EDGE_GUARD_NS = 300_000
RT_PRIO = 20  # SCHED_FIFO priority: above the relay (10), so it measures what the relay meets
START_TIMEOUT_S = 5.0
CPU_BUDGET_NS = 20_000_000   # sentinel.c: at most 2 % of a CPU per thread, else it wakes less often
MAX_PERIOD_NS = 64_000_000
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class StallRecord:
    """What the sentinel saw: stall windows and the distribution of all wake-up lateness."""

    windows_ns: np.ndarray  # shape (N, 2): start, end in CLOCK_REALTIME ns, sorted, disjoint
    late_ns: np.ndarray     # lateness of each window's wake-up, ns
    wakeups: int
    duration_s: float
    threshold_us: float
    period_us: float
    realtime: bool          # got SCHED_FIFO and locked memory
    complete: bool          # the sentinel wrote its end line (it was not killed)
    late_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hist_bucket_ns: int = 5000
    max_late_ns: int = 0
    steal_ticks: tuple[int, int] | None = None  # (first, last) /proc/stat steal, USER_HZ ticks
    slowest_period_us: float = 0.0  # the longest period a thread slowed to (over its CPU budget)
    # each window widened back by the period its thread had when it went to sleep, merged (read_record);
    # None: every window widened by the slowest period
    flag_windows_ns: np.ndarray | None = None

    def flag(self, t_send_ns: np.ndarray, t_recv_ns: np.ndarray, t_due_ns: np.ndarray | None = None
             ) -> np.ndarray:
        """Per packet: did a host stall touch it? (:func:`flag_packets` on :meth:`widened_windows`)."""
        return flag_packets(self.widened_windows(), t_send_ns, t_recv_ns, t_due_ns)

    def widened_windows(self) -> np.ndarray:
        """The stall windows, each widened back by one sentinel period (the stall began at some
        moment after the previous wake-up: the period of that window's thread then, where the record
        says it, else the slowest), merged: sorted, disjoint (start, end) ns pairs."""
        if self.flag_windows_ns is not None:
            return self.flag_windows_ns
        windows = self.windows_ns.copy()
        windows[:, 0] -= int(max(self.period_us, self.slowest_period_us) * 1000)
        return merge_windows([(a, b, 0) for a, b in windows])[0]

    def late_quantile_ms(self, q: float) -> float | None:
        """Quantile ``q`` of all wake-ups' lateness (ms, bucket resolution); None without data."""
        total = int(self.late_hist.sum())
        if total == 0:
            return None
        idx = int(np.searchsorted(np.cumsum(self.late_hist), q * total))
        if idx >= len(self.late_hist) - 1:
            return self.max_late_ns / 1e6
        return (idx + 1) * self.hist_bucket_ns / 1e6

    def summary(self, flagged: int | None = None, packets: int | None = None) -> dict:
        """JSON-ready figures: stall count/total/rate, lateness percentiles, steal, share flagged."""
        total_ms = float((self.windows_ns[:, 1] - self.windows_ns[:, 0]).sum() / 1e6) if len(self) else 0.0
        steal_ms = None
        if self.steal_ticks is not None:
            steal_ms = (self.steal_ticks[1] - self.steal_ticks[0]) * 1000.0 / USER_HZ
        out = {
            "stalls": len(self),
            "stall_total_ms": round(total_ms, 3),
            "stalls_per_min": round(len(self) / self.duration_s * 60, 2) if self.duration_s > 0 else None,
            "longest_stall_ms": round(float(self.late_ns.max()) / 1e6, 3) if len(self) else 0.0,
            "threshold_ms": self.threshold_us / 1000,
            "wakeup_late_ms_p50": self.late_quantile_ms(0.5),
            "wakeup_late_ms_p99": self.late_quantile_ms(0.99),
            "wakeup_late_ms_p999": self.late_quantile_ms(0.999),
            "steal_ms": steal_ms,
            "duration_s": round(self.duration_s, 3),
            "sentinel_realtime": self.realtime,
            "sentinel_complete": self.complete,
            "sentinel_period_ms_max": self.slowest_period_us / 1000,
        }
        if flagged is not None and packets is not None:
            out["packets_flagged"] = int(flagged)
            out["packets_flagged_pct"] = round(100.0 * flagged / packets, 4) if packets else 0.0
        return out

    def __len__(self) -> int:
        return int(self.windows_ns.shape[0])


def flag_packets(windows_ns: np.ndarray, t_send_ns: np.ndarray, t_recv_ns: np.ndarray,
                 t_due_ns: np.ndarray | None = None, guard_ns: int = EDGE_GUARD_NS) -> np.ndarray:
    """True for each packet a stall window [start, end] touched.

    Without ``t_due_ns`` (the spec's rule): the window overlaps the packet's flight [t_send, t_recv].
    With ``t_due_ns`` (when the model says when the packet should have arrived): the window overlaps
    the moments the emulator acts on it, [t_send - guard, t_send + guard] (being sent) or
    [min(t_due, t_recv) - guard, t_recv] (due to be delivered, until delivered). A packet waiting
    in a delay queue is not touched by a stall that ends before it is due: the relay stamps arrivals
    in the kernel and departs on absolute times, which is what makes long links checkable at all.
    ``windows_ns`` must be sorted and disjoint. A lost packet (t_recv NaN or < t_send) is checked
    over its send instant only.
    """
    send_raw = np.asarray(t_send_ns)
    if send_raw.size == 0:
        return np.zeros(send_raw.shape, dtype=bool)
    base = int(np.nanmin(send_raw))  # times relative to it: float64 keeps ns exact over ~100 days

    def rel(t: np.ndarray) -> np.ndarray:
        arr = np.asarray(t)
        return (arr - base).astype(np.float64) if arr.dtype.kind in "iu" else arr.astype(np.float64) - base

    t_send, t_recv = rel(send_raw), rel(t_recv_ns)
    t_recv = np.where(np.isfinite(t_recv) & (t_recv >= t_send), t_recv, t_send)
    windows = rel(windows_ns).reshape(-1, 2)
    if t_due_ns is None:
        return overlaps(windows, t_send, t_recv)
    t_due = np.minimum(rel(t_due_ns), t_recv)
    being_sent = overlaps(windows, t_send - guard_ns, t_send + guard_ns)
    return being_sent | overlaps(windows, t_due - guard_ns, t_recv)


def overlaps(windows_ns: np.ndarray, begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per interval [begin, end]: does it overlap one of the sorted, disjoint windows?"""
    if len(windows_ns) == 0:
        return np.zeros(np.shape(begin), dtype=bool)
    starts, ends = windows_ns[:, 0], windows_ns[:, 1]
    idx = np.searchsorted(ends, begin, side="left")  # first window ending at or after ``begin``
    inside = idx < len(ends)
    flagged = np.zeros(np.shape(begin), dtype=bool)
    flagged[inside] = starts[idx[inside]] <= end[inside]
    return flagged


def merge_windows(windows: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of (start, end, late) windows of all CPUs: sorted, disjoint (start, end) pairs, and
    the largest lateness inside each."""
    merged: list[list[int]] = []
    for begin, end, late in sorted(windows):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], late)
        else:
            merged.append([begin, max(begin, end), late])
    arr = np.array(merged, dtype=np.int64).reshape(-1, 3)
    return arr[:, :2].copy(), arr[:, 2].copy()


def read_record(path: Path) -> StallRecord:
    """Parse a sentinel output file (a killed sentinel's file lacks its end line: ``complete`` False)."""
    windows: list[tuple[int, int, int]] = []
    steal: list[int] = []
    start_real = end_real = None
    period_ns = threshold_ns = 0
    rt = complete = False
    wakeups = max_late = 0
    hist = np.zeros(0, dtype=np.int64)
    bucket = 5000
    slowest_ns = 0
    period_of: dict[str, int] = {}           # a thread's (CPU's) current period, from its period lines
    widened: list[tuple[int, int, int]] = []  # each window from its thread's previous wake-up
    for line in path.read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "start":
                start_real, period_ns, threshold_ns = int(words[2]), int(words[3]), int(words[4])
            elif words[0] == "stall":
                windows.append((int(words[2]), int(words[3]), int(words[4])))
                widened.append((int(words[2]) - period_of.get(words[1], period_ns), int(words[3]), 0))
                if int(words[5]) >= 0:
                    steal.append(int(words[5]))
            elif words[0] == "steal":
                end_real = int(words[1])
                if int(words[2]) >= 0:
                    steal.append(int(words[2]))
            elif words[0] == "period":
                slowest_ns = max(slowest_ns, int(words[2]))
                period_of[words[1]] = int(words[2])
            elif words[0] == "rt":
                rt = words[1] == "1"
            elif words[0] == "end":
                end_real, wakeups, max_late, bucket = (int(w) for w in words[2:6])
                hist = np.array([int(w) for w in words[6:]], dtype=np.int64)
                complete = True
        except (IndexError, ValueError):
            break  # a torn last line of a killed sentinel
    if start_real is None:
        raise ValueError(f"{path}: not a sentinel record (no start line)")
    windows_ns, late_ns = merge_windows(windows)
    slowest_ns = max(slowest_ns, period_ns)
    if len(windows_ns):
        end_real = max(end_real or 0, int(windows_ns[-1, 1]))
    duration_s = ((end_real or start_real) - start_real) / 1e9
    return StallRecord(
        windows_ns=windows_ns, late_ns=late_ns, wakeups=wakeups, duration_s=duration_s,
        threshold_us=threshold_ns / 1000, period_us=period_ns / 1000, realtime=rt, complete=complete,
        late_hist=hist, hist_bucket_ns=bucket, max_late_ns=max_late, slowest_period_us=slowest_ns / 1000,
        steal_ticks=(min(steal), max(steal)) if len(steal) >= 2 else None,
        flag_windows_ns=merge_windows(widened[:len(windows)])[0])


class HostStallSentinel:
    """Run the sentinel for the length of a ``with`` block; ``record`` is set on exit.

    ``netns``-free: stalls are machine-wide, so it runs in the caller's namespace. It dies with its
    parent (PR_SET_PDEATHSIG in the C build) and is stopped by its own pid, never by name.
    """

    def __init__(self, out_path: Path, threshold_us: float = THRESHOLD_US, period_us: int = PERIOD_US,
                 prefer_c: bool = True) -> None:
        self.out_path = Path(out_path)
        self.threshold_us = threshold_us
        self.period_us = period_us
        self.prefer_c = prefer_c
        self.proc: subprocess.Popen | None = None
        self.implementation = ""
        self.record: StallRecord | None = None

    def argv(self) -> list[str]:
        args = [str(self.out_path), str(int(self.period_us)), str(max(1, int(self.threshold_us))),
                str(RT_PRIO)]
        if self.prefer_c:
            from topologies.links.relayproc import build_tool
            binary = build_tool("sentinel")
            if binary is not None:
                self.implementation = "c"
                return [str(binary), *args]
        self.implementation = "python"
        return [sys.executable, "-m", "topologies.hoststall", *args]

    def start(self) -> HostStallSentinel:
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.out_path.unlink(missing_ok=True)
        from topologies.paths import REPO_ROOT
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.out_path.exists() and self.out_path.stat().st_size > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self._halt()
                raise RuntimeError(f"host-stall sentinel did not start: {err.strip() or 'timeout'}")
            time.sleep(0.005)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> StallRecord:
        """Stop it (SIGTERM to its own pid, then kill) and read its record."""
        self._halt()
        self.record = read_record(self.out_path)
        return self.record

    def _halt(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        return (err or b"").decode(errors="replace")

    def __enter__(self) -> HostStallSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_python_sentinel(out: Path, period_us: int, threshold_us: int, prio: int) -> None:
    """The fallback sentinel: the C program's loop and output format, in Python (coarser timing)."""
    try:  # die with the parent, as the C build does (PR_SET_PDEATHSIG = 1)
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    rt = True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except (OSError, AttributeError):
        rt = False
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    bucket, n_buckets = 5000, 2000
    hist = [0] * (n_buckets + 1)
    period, threshold = period_us * 1000, threshold_us * 1000
    wakeups = max_late = 0

    def steal() -> int:
        try:
            return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])
        except (OSError, IndexError, ValueError):
            return -1

    with open(out, "w") as f:
        f.write(f"start {time.monotonic_ns()} {time.time_ns()} {period} {threshold} 1\n")
        f.flush()
        nxt = time.monotonic_ns() + period
        next_steal = next_budget = nxt + 1_000_000_000
        cpu_mark = time.thread_time_ns()
        while not stop:
            wait = nxt - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            now, real = time.monotonic_ns(), time.time_ns()
            late = max(0, now - nxt)
            wakeups += 1
            hist[min(late // bucket, n_buckets)] += 1
            max_late = max(max_late, late)
            if late > threshold:
                f.write(f"stall -1 {real - late} {real} {late} {steal()}\n")
                f.flush()
            if now >= next_steal:
                f.write(f"steal {real} {steal()}\n")
                f.flush()
                next_steal = now + 1_000_000_000
            if now >= next_budget:  # as the C build: above 2 % of a CPU, wake half as often
                used = time.thread_time_ns() - cpu_mark
                if used > CPU_BUDGET_NS and period < MAX_PERIOD_NS:
                    period *= 2
                    f.write(f"period -1 {period} {used}\n")
                    f.flush()
                cpu_mark += used
                next_budget = now + 1_000_000_000
            nxt += period
            if nxt <= now:
                nxt = now + period
        f.write(f"rt {int(rt)}\n")
        f.write(f"end {time.monotonic_ns()} {time.time_ns()} {wakeups} {max_late} {bucket} "
                + " ".join(map(str, hist)) + "\n")


if __name__ == "__main__":
    run_python_sentinel(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))

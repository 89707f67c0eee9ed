"""netem command generation (pure functions), the netem availability probe, the long-lived tc batch
process that replays schedules, and qdisc counters. The backend itself is
:mod:`topologies.links.backends.netem`."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from topologies.links.commands import in_netns
from topologies.links.params import FRAME_BYTES, DirectionParams

log = logging.getLogger(__name__)

# netem reorders packets when the delay drops unless a rate is set (with a rate, each packet's
# time_to_send is computed from the previous packet's: net/sched/sch_netem.c, netem_enqueue()).
# "Unlimited" is therefore sent as this rate, far above what a veth pair carries here.
UNLIMITED_RATE_BPS = 100_000_000_000
NETEM_DEFAULT_LIMIT_PKTS = 1000  # netem's own default limit (tc-netem(8))


def netem_limit_pkts(p: DirectionParams) -> int:
    """netem's ``limit`` counts every packet it holds (in delay and in rate queue): size it to the
    packets in flight over delay + 4 jitter at the rate plus the rate queue, in full-size frames."""
    if p.queue_limit_pkts is not None and p.queue_limit_bytes is None and p.rate_mbps is not None:
        queue_pkts = p.queue_limit_pkts
    else:
        qb = p.effective_queue_limit_bytes()
        queue_pkts = 0 if qb is None else math.ceil(qb / FRAME_BYTES)
    # Unlimited: the real bound is what a sender can push through a veth; assume 10 Gbit/s.
    rate_bps = 10e9 if p.rate_mbps is None else p.rate_mbps * 1e6
    flight = rate_bps / 8 * (p.delay_ms + 4 * p.jitter_ms) / 1000 / FRAME_BYTES
    return max(NETEM_DEFAULT_LIMIT_PKTS, math.ceil(flight) + queue_pkts)


def netem_args(p: DirectionParams) -> list[str]:
    """The netem option words for ``p`` (after ``... root netem``)."""
    args = ["limit", str(netem_limit_pkts(p)),
            "delay", f"{round(p.delay_ms * 1000)}us"]
    if p.jitter_ms > 0:
        args.append(f"{round(p.jitter_ms * 1000)}us")
        if p.jitter_distribution != "uniform":  # netem's default jitter is uniform
            args += ["distribution", p.jitter_distribution]
    if not p.up:
        args += ["loss", "random", "100%"]
    elif p.loss_burst is not None:
        g = p.loss_burst
        # tc-netem(8): loss gemodel PERCENT [R [1-H [1-K]]]: p, r, loss in bad, loss in good
        args += ["loss", "gemodel", _pct(g.p_good_to_bad_pct), _pct(g.p_bad_to_good_pct),
                 _pct(g.loss_bad_pct), _pct(g.loss_good_pct)]
    elif p.loss_pct > 0:
        args += ["loss", "random", _pct(p.loss_pct)]
    rate_bps = UNLIMITED_RATE_BPS if p.rate_mbps is None else round(p.rate_mbps * 1e6)
    args += ["rate", f"{rate_bps}bit"]
    return args


def netem_argv(dev: str, p: DirectionParams, verb: str = "replace",
               netns_pid: int | None = None) -> list[str]:
    """argv that installs (``replace``) or updates in place (``change``) netem on ``dev``'s egress.

    Never delete + add: ``change`` keeps queued packets. With ``netns_pid`` the command runs in that
    process's network namespace (via nsenter).
    """
    if verb not in ("replace", "change"):
        raise ValueError(f"netem verb {verb!r}; allowed: 'replace', 'change'")
    return in_netns(["tc", "qdisc", verb, "dev", dev, "root", "netem", *netem_args(p)], netns_pid)


def netem_batch_line(dev: str, p: DirectionParams, verb: str = "change") -> str:
    """One ``tc -batch`` line (no leading ``tc``) that installs or changes netem on ``dev``."""
    return " ".join(netem_argv(dev, p, verb)[1:])


def _pct(value: float) -> str:
    return f"{value:.6g}%"


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: probed once, in a scratch netns that is then deleted."""
    if Path("/sys/module/sch_netem").exists():
        return True
    if os.geteuid() != 0:
        return False
    ns = f"fsnp{os.getpid()}{secrets.token_hex(3)}"
    created = subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode == 0
    if not created:
        return False
    try:
        result = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                                 "netem", "delay", "1ms"], capture_output=True, text=True)
        return result.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


@dataclass
class _Pending:
    key: tuple[str, str]      # (link name, direction: uplink / downlink)
    what: str                 # for error messages, e.g. "schedule row at 12.000 s"
    cmd_line: int             # tc's batch line number of the change
    ack_line: int             # ... and of the "qdisc show" that follows it (the acknowledgement)
    t_write: float            # time.monotonic() when both lines were written
    error: str = ""


@dataclass
class BatchCounters:
    """What one (link, direction) sent through a TcBatch: changes acknowledged, failed, ack times."""

    sent: int = 0
    applied: int = 0
    errors: int = 0
    ack_ms: list[float] = field(default_factory=list)   # write -> tc printed the qdisc after it


class TcBatch:
    """One long-lived ``tc -force -batch -`` in a network namespace, fed line by line.

    A change costs a pipe write instead of a fork+exec of nsenter and tc. Each change line is
    followed by ``qdisc show dev DEV``: tc handles lines in order, so the root qdisc line it prints
    is the acknowledgement that the change was processed (ack time = write to that output), and tc
    numbers failed lines (``Command failed -:N``), so every error is tied to its link and row.
    (Not ``show ... root``: iproute2 6.1 keeps that filter across batch lines and exits on the
    second one, "argument root is wrong: parent is already specified".)
    tc's stdout and stderr go to one pipe, read by a thread that copies them to ``log_path``.
    """

    ACK_KEEP = 100_000  # ack samples kept per (link, direction)

    def __init__(self, netns_pid: int | None, log_path: Path) -> None:
        self.argv = argv = in_netns(["tc", "-force", "-batch", "-"], netns_pid)  # nsenter execs tc
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = open(log_path, "a", buffering=1)  # noqa: SIM115 (closed by the reader)
        # stdin is written with os.write on its fd (never buffered); stdout is read line by line
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        self.pid = self._proc.pid
        self.counters: dict[tuple[str, str], BatchCounters] = {}
        self._pending: deque[_Pending] = deque()
        self._lines = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"tc-batch-{self.pid}")
        self._reader.start()

    def send(self, key: tuple[str, str], what: str, line: str, dev: str) -> float:
        """Write one change ``line`` (+ its acknowledging show) now; return the write time.

        Raises OSError when tc is gone (its pipe is closed).
        """
        data = f"{line}\nqdisc show dev {dev}\n".encode()
        with self._lock:
            t = time.monotonic()
            os.write(self._proc.stdin.fileno(), data)  # tc reads it at once
            self._pending.append(_Pending(key, what, self._lines + 1, self._lines + 2, t))
            self._lines += 2
            self.counters.setdefault(key, BatchCounters()).sent += 1
        return t

    def alive(self) -> bool:
        """Whether tc is still running (it exits on some malformed lines even with -force)."""
        return self._proc.poll() is None

    def drain(self, timeout_s: float = 2.0) -> bool:
        """Wait until tc has acknowledged everything written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout_s)

    def snapshot(self) -> dict[tuple[str, str], BatchCounters]:
        """A copy of the counters (thread-safe)."""
        with self._lock:
            return {k: BatchCounters(c.sent, c.applied, c.errors, list(c.ack_ms))
                    for k, c in self.counters.items()}

    def close(self, timeout_s: float = 2.0) -> None:
        """End tc by closing its stdin (it exits at EOF); kill it by pid if it does not."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout_s)

    # --- reader thread -------------------------------------------------------------------------
    def _read(self) -> None:
        message: list[str] = []
        for raw in self._proc.stdout:
            now = time.monotonic()
            text = raw.decode(errors="replace").rstrip("\n")
            self._log.write(f"{now:.6f} {text}\n")
            with self._lock:
                if text.startswith("Command failed -:"):
                    self._failed(int(text.rsplit(":", 1)[1]), " ".join(message) or text)
                    message = []
                elif text.startswith("qdisc ") and " root " in text and self._pending:
                    self._acked(self._pending.popleft(), now, text)
                    message = []
                else:
                    message.append(text.strip())
                self._idle.notify_all()
        self._log.write(f"{time.monotonic():.6f} tc exited with {self._proc.wait()}\n")
        self._log.close()
        with self._lock:
            for item in self._pending:
                self._error(item, "tc exited before processing it")
            self._pending.clear()
            self._idle.notify_all()

    def _failed(self, line_no: int, message: str) -> None:
        item = self._pending[0] if self._pending else None
        if item is not None and line_no == item.cmd_line:
            item.error = message
        elif item is not None and line_no == item.ack_line:
            self._pending.popleft()
            self._error(item, item.error or message)
        else:
            log.error("tc batch (pid %d): line %d failed: %s", self.pid, line_no, message)

    def _acked(self, item: _Pending, now: float, shown: str) -> None:
        if item.error:
            self._error(item, item.error)
        elif " netem " not in f" {shown} ":
            self._error(item, f"root qdisc is not netem after the change: {shown!r}")
        else:
            c = self.counters[item.key]
            c.applied += 1
            if len(c.ack_ms) < self.ACK_KEEP:
                c.ack_ms.append((now - item.t_write) * 1000)

    def _error(self, item: _Pending, message: str) -> None:
        self.counters[item.key].errors += 1
        log.error("link %s %s: netem %s failed: %s", *item.key, item.what, message)


def schedule_summary(counters: list[BatchCounters], late_ms: list[float]) -> dict:
    """Rows sent/applied/failed, lateness of the writes (ms after the row's time) and ack times."""
    acks = sorted(x for c in counters for x in c.ack_ms)
    late = sorted(late_ms)

    def pct(xs: list[float], q: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(len(xs) * q))], 4) if xs else None

    return {"rows_sent": sum(c.sent for c in counters), "rows_applied": sum(c.applied for c in counters),
            "errors": sum(c.errors for c in counters),
            "late_ms_p50": pct(late, 0.5), "late_ms_max": round(late[-1], 4) if late else None,
            "ack_ms_p50": pct(acks, 0.5), "ack_ms_p99": pct(acks, 0.99),
            "ack_ms_max": round(acks[-1], 4) if acks else None}


def netem_stats(dev: str, netns_pid: int | None) -> dict:
    """Counters of the netem root qdisc on ``dev``: tx (packets), dropped, tx_bytes (0 without one)."""
    argv = in_netns(["tc", "-s", "-j", "qdisc", "show", "dev", dev], netns_pid)
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    q = next((q for q in json.loads(out or "[]") if q.get("kind") == "netem"), {})
    return {"tx": q.get("packets", 0), "dropped": q.get("drops", 0), "tx_bytes": q.get("bytes", 0)}

"""netem command generation (pure functions), the netem availability probe, the long-lived tc batch
process that replays schedules, and qdisc counters. The backend itself is
:mod:`topologies.links.backends.netem`."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import secrets
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from topologies.links.commands import in_netns
from topologies.links.params import (
    FRAME_BYTES,
    DirectionParams,
    rate_bytes_per_s,
)

log = logging.getLogger(__name__)

# netem reorders packets when the delay drops unless a rate is set (with a rate, each packet's
# time_to_send is computed from the previous packet's: net/sched/sch_netem.c, netem_enqueue()).
# "Unlimited" is therefore sent as this rate (params.RATE_MAX_MBPS), far above what a veth pair
# carries here.
UNLIMITED_RATE_BPS = 100_000_000_000
NETEM_DEFAULT_LIMIT_PKTS = 1000  # netem's own default limit (tc-netem(8))
NETEM_LIMIT_MAX = 0xFFFF_FFFF    # netem's limit is a u32 (tc_netem_qopt.limit)
# Without a rate netem's limit only has to hold its delay line: sized for this many packets per
# second, above what one veth pair carries here (the C relay prototype: 211 kpps, DESIGN.md).
NETEM_MAX_PPS = 1_000_000
# netem's normal and pareto tables reach +-4 sigma (iproute2 netem/*.c: values / 8192, capped at
# 32767); uniform reaches +-1 sigma.
NETEM_TABLE_SIGMAS = 4
# netem's pareto table is (u^(-1/3) - 1.5) * 4/3 * jitter (iproute2 netem/pareto.c): standard
# deviation 1.155 * jitter. Ours is scaled to standard deviation = jitter (params.py, the relay),
# so netem gets jitter * sqrt(3)/2, which makes the two the same up to netem's cap at 4 sigma.
PARETO_JITTER_SCALE = math.sqrt(3) / 2
# TCA_NETEM_PRNG_SEED: iproute2 >= 6.6 ("seed" option), Linux >= 6.6; older kernels ignore the
# attribute without an error, so both are checked.
NETEM_SEED_KERNEL = (6, 6)
# What iproute2's tc accepts for netem times (measured with iproute2 6.1, Debian 12): a delay or
# jitter above 274.877906 s is "Illegal ... time (too large)" (2^32 psched ticks of 1/15.625 us),
# and a distribution table needs both delay and jitter >= 1 us ("distribution specified but no
# latency and jitter values" below). tests/integration/test_netem_argv.py asks this machine's tc.
NETEM_MAX_TIME_NS = 274_877_906_000
NETEM_TABLE_MIN_NS = 1_000


def netem_limit_pkts(p: DirectionParams) -> int:
    """netem's own ``limit``: it counts every packet netem holds, in its delay line too.

    With a rate: the bottleneck queue's packet limit plus the full-size frames serialised over
    delay + jitter, so that on a link busy for longer than the delay the queue in front of the
    rate holds what the relay's holds (within one frame). Early in a burst (the delay line not yet
    full) it holds more, with small frames in the delay line less; NetemBackend.check warns.
    Without a rate (no queue): never drops a delayed packet below ``NETEM_MAX_PPS`` packets/s.
    """
    if p.rate_mbps is None:
        span_s = (p.delay_ms + NETEM_TABLE_SIGMAS * p.jitter_ms) / 1000
        n = max(NETEM_DEFAULT_LIMIT_PKTS, math.ceil(NETEM_MAX_PPS * span_s))
    else:
        queue = p.effective_queue_limit_pkts()
        if queue is None:  # a byte limit only: netem cannot (NetemBackend.check); nearest in frames
            queue = math.ceil((p.queue_limit_bytes or 0) / FRAME_BYTES)
        flight_s = (p.delay_ms + p.jitter_ms) / 1000
        n = queue + math.ceil(rate_bytes_per_s(p.rate_mbps) * flight_s / FRAME_BYTES)
    return min(max(n, 1), NETEM_LIMIT_MAX)


def tc_time(ns: int) -> str:
    """``ns`` nanoseconds as a tc time word that every iproute2 reads back as exactly ``ns``.

    iproute2 (6.1 at least) has no ``ns`` unit; ``us`` with decimals is read with strtod and
    truncated to whole ns (lib/utils.c get_time64), so a trailing ``1`` (+0.1 ns) keeps a value
    like 776.8 us from becoming 776799 ns.
    """
    return f"{ns // 1000}.{ns % 1000:03d}1us"


def netem_args(p: DirectionParams, seed: int | None = None) -> list[str]:
    """The netem option words for ``p`` (after ``... root netem``); ``seed`` for netem's PRNG."""
    delay_ns = round(p.delay_ms * 1e6)
    scale = PARETO_JITTER_SCALE if p.jitter_distribution == "pareto" else 1.0
    jitter_ns = round(p.jitter_ms * 1e6 * scale)
    # netem's default is uniform; a table needs jitter >= 1 us (below that: uniform, NetemBackend warns)
    table = jitter_ns >= NETEM_TABLE_MIN_NS and p.jitter_distribution != "uniform"
    # and a delay >= 1 us: a smaller one is raised to 1 us (NetemBackend.check warns)
    args = ["limit", str(netem_limit_pkts(p)), "delay",
            tc_time(max(delay_ns, NETEM_TABLE_MIN_NS if table else 0))]
    if jitter_ns > 0:
        args.append(tc_time(jitter_ns))
        if table:
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
    rate_bps = UNLIMITED_RATE_BPS if p.rate_mbps is None else 8 * rate_bytes_per_s(p.rate_mbps)
    args += ["rate", f"{rate_bps}bit"]
    if seed is not None:
        args += ["seed", str(seed)]
    return args


def netem_argv(dev: str, p: DirectionParams, verb: str = "replace",
               netns_pid: int | None = None, seed: int | None = None) -> list[str]:
    """argv that installs (``replace``) or updates in place (``change``) netem on ``dev``'s egress.

    Never delete + add: ``change`` keeps queued packets. With ``netns_pid`` the command runs in that
    process's network namespace (via nsenter).
    """
    if verb not in ("replace", "change"):
        raise ValueError(f"netem verb {verb!r}; allowed: 'replace', 'change'")
    return in_netns(["tc", "qdisc", verb, "dev", dev, "root", "netem", *netem_args(p, seed)], netns_pid)


def netem_batch_line(dev: str, p: DirectionParams, verb: str = "change", seed: int | None = None) -> str:
    """One ``tc -batch`` line (no leading ``tc``) that installs or changes netem on ``dev``."""
    return " ".join(netem_argv(dev, p, verb, seed=seed)[1:])


def _pct(value: float) -> str:
    """A percentage tc turns into exactly ``prob_steps(value)`` (the shortest round-trip text:
    iproute2 computes rint(value / 100 * UINT32_MAX), as prob_steps does)."""
    text = repr(float(value))
    return (text[:-2] if text.endswith(".0") else text) + "%"


def netem_seed(seed: int, *parts: object) -> int:
    """A 64-bit netem seed for one qdisc change, derived from the run's seed and ``parts`` (link,
    direction, change number): netem re-seeds on every change, so each change needs its own."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seed_unsupported(help_text: str, kernel_release: str) -> str | None:
    """Why netem cannot be seeded with this iproute2 (its netem help text) and kernel, or None."""
    if not re.search(r"\bseed\b", help_text):
        return "this iproute2 has no netem 'seed' option (iproute2 >= 6.6 has it)"
    match = re.match(r"(\d+)\.(\d+)", kernel_release)
    if match is None or (int(match[1]), int(match[2])) < NETEM_SEED_KERNEL:
        return (f"kernel {kernel_release} ignores netem's seed (TCA_NETEM_PRNG_SEED needs Linux >= "
                f"{NETEM_SEED_KERNEL[0]}.{NETEM_SEED_KERNEL[1]})")
    return None


@functools.cache
def netem_seed_unsupported_reason() -> str | None:
    """:func:`seed_unsupported` for this machine (tc only prints its netem help: nothing is created)."""
    try:
        out = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "help"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tc's netem help could not be read ({exc})"
    return seed_unsupported(out.stdout + out.stderr, os.uname().release)


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: probed once, in a scratch netns that is then deleted."""
    if Path("/sys/module/sch_netem").exists():
        return True
    if os.geteuid() != 0:
        return False
    ns = f"fsnp{os.getpid()}{secrets.token_hex(3)}"
    created = subprocess.run(["ip", "netns", "add", ns], capture_output=True, timeout=10).returncode == 0
    if not created:
        return False
    try:
        result = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                                 "netem", "delay", "1ms"], capture_output=True, text=True, timeout=10)
        return result.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)


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
    """Counters of the netem root qdisc on ``dev`` (0 without one): tx (packets), dropped (random
    loss and queue-limit overflow together: netem does not tell them apart), tx_bytes, overlimits,
    requeues, backlog_pkts (still queued)."""
    argv = in_netns(["tc", "-s", "-j", "qdisc", "show", "dev", dev], netns_pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    q = next((q for q in json.loads(out or "[]") if q.get("kind") == "netem"), {})
    return {"tx": q.get("packets", 0), "dropped": q.get("drops", 0), "tx_bytes": q.get("bytes", 0),
            "overlimits": q.get("overlimits", 0), "requeues": q.get("requeues", 0),
            "backlog_pkts": q.get("qlen", 0)}

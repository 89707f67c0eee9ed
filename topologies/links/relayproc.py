"""Build, start and talk to the relay process (C data path, or the pure-Python fallback).

Control protocol (one request per line on the relay's stdin, one reply line on its stdout,
``ok ...`` or ``err <reason>``)::

    add ID IFA IFB            serve a link between two interfaces of the relay namespace; an end
                              named "-" is inside the relay (a cell's port: relay/cell.c)
    del ID                    stop serving it (queued packets are dropped)
    cell ID N3                link ID (both ends "-") is a cell; link N3 (IFA "-") its backhaul
    join ID CELL MAC          UE radio link ID (IFB "-") joins CELL, which delivers frames for MAC
                              to it; a UE in another cell leaves that one first (a move)
    leave ID                  link ID leaves its cell
    n3dscp ID DSCP|-          UE radio link ID's uplink IPv4 packets get DSCP (0..63) as they enter
                              its cell, as a gNB marks N3 per QoS flow; "-": left as they are
    set ID DIR P...           parameters for direction DIR from now on: uplink (frames received on
                              IFA leave on IFB) or downlink (IFB -> IFA)
    sched ID DIR N            followed by N lines "T_NS P..." (CLOCK_MONOTONIC ns, non-decreasing)
    qos ID DIR N MAP W_0 .. W_{N-1}
                              class-based queue on direction DIR: N classes (1..8); MAP exactly 64
                              digits, digit k the class (0..N-1) of DSCP k; W_i 0 = strict priority
                              (before every weighted class, lower index first), 1..1000000 = deficit
                              round robin weight. Only with rate_bps > 0: a non-preemptive priority
                              serialiser, qlim_pkts/qlim_bytes per class (relay/relay.c top comment)
    qos ID DIR off            back to the single FIFO. Waiting packets are moved, in arrival order,
                              into the new classes (or serialised back to back): none lost, none
                              reordered within a class. Both relays (C and Python) implement it.
    stats ID                  -> ok {"uplink": {...}, "downlink": {...}}; a direction that has or had
                              a qos gets "classes": [{rx, tx, dropped_queue, tx_bytes, queued,
                              queue_max, wait_sum_ns, wait_max_ns}, ...] (wait: arrival -> start of
                              serialisation; tx: taken by the serialiser)
    ctlstats                  -> ok {"requests":R,"errors":E,"too_long":L,"rows":W} (this channel)
    seed S | now | ping | quit

P... is 13 numbers: delay_ns jitter_ns jdist(0 uniform,1 normal,2 pareto) loss_prob ge_on ge_p
ge_r ge_loss_good ge_loss_bad rate_bps(0 = unlimited) qlim_pkts qlim_bytes(0 = none) up.

Guarantees (relay/control.c, and relayctl.py for pyrelay.py, implement them alike, same texts):

- Every request line gets exactly one reply line, in order (a blank one: ``err empty command``).
  A ``sched`` whose N is an integer 1..1000000 takes exactly the next N lines as its rows, whatever
  they hold, then replies once: ``ok``, or ``err row I: <why>`` for the first bad row (I from 0),
  or the header's or the link's error. Any other N: one ``err`` and no rows read.
- A line is at most 4096 bytes before its newline; a longer one gets one ``err line too long`` and
  is discarded up to its newline, in fixed memory. Printable ASCII only (tab, CR, VT, FF = space).
- Each request has exactly its words; each number is decimal (no hex, inf or nan), finite and in
  range: delay_ns, jitter_ns integers 0..3.6e12; jdist 0|1|2; probabilities 0..1; ge_on, up 0|1;
  rate_bps 0 or 1..1e12; queue limits integers 0..1e15; T_NS integer 0..4e18; ID 0..2^31-1;
  S 0..2^64-1; interface names at most 15 bytes. The error names the field, value and bounds.
- Allocations are checked: a failure is an ``err`` reply (control) or a packet counted in
  ``dropped_error`` (data path), never a crash.
- :class:`RelayProcess` bounds every wait: no reply within ``timeout_s`` (plus ``ROW_TIMEOUT_S``
  per schedule row) raises :class:`RelayError` naming the command, the relay log and whether the
  relay still runs; the channel is then out of step and later commands fail at once.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from topologies.links.commands import c_compiler
from topologies.links.params import (
    JITTER_DISTRIBUTIONS,
    DirectionParams,
    prob_fraction,
    prob_steps,
    rate_bytes_per_s,
)
from topologies.links.relayctl import LINE_MAX_BYTES, MAX_SCHED_ROWS
from topologies.ownership import hand_over_at_exit
from topologies.paths import REPO_ROOT

RELAY_DIR = Path(__file__).resolve().parent / "relay"
# C files of a tool (default: relay/<name>.c): sources compiled together, and headers they include
TOOL_SOURCES = {"relay": ("relay.c", "control.c", "cell.c", "nrcell.c", "iface.c"),
                "nrsim": ("nrsim.c", "nrcell.c")}
TOOL_HEADERS = {"relay": ("relay.h",), "nrsim": ("relay.h",)}
COMMAND_TIMEOUT_S = 5.0   # default wait for one reply
ROW_TIMEOUT_S = 200e-6    # more per schedule row (the Python relay checks some 25 000 rows/s)
START_TIMEOUT_S = 15.0    # for the relay's "ok relay ready"
MAX_REPLY_BYTES = 1 << 20


def build_tool(name: str) -> Path | None:
    """Compile a tool's C files (``TOOL_SOURCES``; default ``relay/<name>.c``) to
    ``relay/bin/<name>`` if missing or older than any of its sources or headers.

    Returns None when no compiler is present or compilation fails (callers fall back to Python).
    """
    sources = [RELAY_DIR / s for s in TOOL_SOURCES.get(name, (f"{name}.c",))]
    inputs = sources + [RELAY_DIR / h for h in TOOL_HEADERS.get(name, ())]
    binary = RELAY_DIR / "bin" / name
    if binary.exists() and binary.stat().st_mtime >= max(f.stat().st_mtime for f in inputs):
        return binary
    cc = c_compiler()
    if cc is None:
        return None
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{name}.{os.getpid()}.tmp")
    try:
        result = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), *map(str, sources), "-lm", "-pthread"],
                                capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:  # a stuck compiler: fall back like a missing one
        tmp.unlink(missing_ok=True)
        return None
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, binary)  # atomic: parallel builders never see a half-written binary
    hand_over_at_exit(binary.parent)  # a build cache in the user's checkout (ownership.py)
    return binary


def build_relay() -> Path | None:
    """The C relay binary, built if needed; None without a working compiler."""
    return build_tool("relay")


def wire_params(p: DirectionParams, delay_ms: float | None = None) -> str:
    """The 13-number wire form of ``p``; ``delay_ms``: the delay the relay adds (default
    ``p.delay_ms``; the engine passes it compensated, see topologies/links/compensation.py).

    Encoded as netem encodes them (params.py): probabilities rounded to steps of 1/(2^32 - 1) and
    written exactly, the rate in whole bytes/s (never 0 for a set rate: params bounds it below),
    times in whole ns.
    """
    g = p.loss_burst

    def prob(pct: float) -> str:
        return repr(prob_fraction(pct)) if prob_steps(pct) else "0"

    fields = [
        max(0, round((p.delay_ms if delay_ms is None else delay_ms) * 1e6)),
        round(p.jitter_ms * 1e6),
        JITTER_DISTRIBUTIONS.index(p.jitter_distribution),
        prob(p.loss_pct),
        1 if g else 0,
        prob(g.p_good_to_bad_pct) if g else 0,
        prob(g.p_bad_to_good_pct) if g else 0,
        prob(g.loss_good_pct) if g else 0,
        prob(g.loss_bad_pct) if g else 0,
        8 * rate_bytes_per_s(p.rate_mbps) if p.rate_mbps is not None else 0,
        p.effective_queue_limit_pkts() or 0,
        p.effective_queue_limit_bytes() or 0,
        1 if p.up else 0,
    ]
    return " ".join(str(f) for f in fields)


class RelayError(RuntimeError):
    """The relay refused a command, did not answer in time, or is gone (the message says which)."""

    def __init__(self, message: str, log_path: Path, alive: bool) -> None:
        super().__init__(message)
        self.log_path = log_path
        self.alive = alive


def check_request(line: str, rows: Sequence[str] | None = None) -> None:
    """ValueError unless ``line`` (and ``rows``) keep the relay's framing: one line each, at most
    LINE_MAX_BYTES, and a ``sched`` header whose N is the number of rows (1..MAX_SCHED_ROWS)."""
    for text in (line, *(rows or ())):
        if "\n" in text or len(text.encode()) > LINE_MAX_BYTES:
            raise ValueError(f"relay request {text[:60]!r}: one line of at most {LINE_MAX_BYTES} bytes")
    words = line.split()
    if (words[:1] == ["sched"]) != (rows is not None):
        raise ValueError(f"relay request {line[:60]!r}: rows go with a sched header, and only with one")
    if rows is not None and (len(words) != 4 or words[3] != str(len(rows))
                             or not 1 <= len(rows) <= MAX_SCHED_ROWS):
        raise ValueError(f"relay request {line[:60]!r}: N must be the number of rows ({len(rows)}), "
                         f"1..{MAX_SCHED_ROWS}")


class RelayProcess:
    """One relay process in network namespace ``netns`` (None: this one, e.g. in tests, and
    without touching its sysctls); a thread-safe command channel in which no wait is unbounded."""

    def __init__(self, netns: str | None, log_path: Path, prefer_c: bool = True, early_us: int = 100,
                 realtime: bool = True, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.netns = netns
        self.log_path = log_path
        self.timeout_s = timeout_s
        binary = build_relay() if prefer_c else None
        if binary is not None:
            self.implementation = "c"
            argv = [str(binary), "--early-us", str(early_us)] + (["--rt"] if realtime else [])
        else:
            self.implementation = "python"
            argv = [sys.executable, "-m", "topologies.links.pyrelay"]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv, "--disable-ipv6"]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, bufsize=0, cwd=str(REPO_ROOT), env=env)
        except OSError:
            self._log.close()
            raise
        self.pid = self.proc.pid  # `ip netns exec` execs the relay: same pid
        self._lock = threading.Lock()
        self._rbuf = bytearray()      # our own line buffer over the binary pipe (see _read_line)
        self._broken: str | None = None
        os.set_blocking(self.proc.stdin.fileno(), False)
        try:
            first = self._read_line(time.monotonic() + START_TIMEOUT_S, "start-up")
            if not first.startswith("ok"):
                raise RelayError(f"relay did not start ({first!r}); see {log_path}", log_path, self.alive())
        except RelayError:
            self.proc.kill()
            self.proc.wait()
            self._close()
            raise

    def command(self, line: str, rows: Sequence[str] | None = None, timeout_s: float | None = None) -> str:
        """Send one request (plus the rows of a ``sched``) and return the reply after ``ok``.

        RelayError if the relay answers ``err``, does not answer within ``timeout_s`` (default: the
        process's) plus ROW_TIMEOUT_S per row, or is gone. ValueError (nothing sent) for a request
        that would break the framing (see :func:`check_request`).
        """
        check_request(line, rows)
        what = repr(line[:60])
        limit_s = (self.timeout_s if timeout_s is None else timeout_s) + ROW_TIMEOUT_S * len(rows or ())
        payload = "".join(f"{text}\n" for text in (line, *(rows or ()))).encode()
        with self._lock:
            if self._broken is not None:
                raise RelayError(f"relay: not sending {what}: the channel is out of step since "
                                 f"{self._broken}; see {self.log_path}", self.log_path, self.alive())
            if self.proc.poll() is not None:
                raise RelayError(f"relay exited with {self.proc.returncode} before {what}; "
                                 f"see {self.log_path}", self.log_path, False)
            deadline = time.monotonic() + limit_s
            self._write(payload, deadline, what)
            reply = self._read_line(deadline, what)
        if not reply.startswith("ok"):
            raise RelayError(f"relay: {line.split()[0]}: {reply or 'no reply'}; see {self.log_path}",
                             self.log_path, self.alive())
        return reply[2:].strip()

    def stats(self, link_id: int) -> dict:
        return json.loads(self.command(f"stats {link_id}"))

    def control_stats(self) -> dict:
        """Counters of the control channel: requests, errors, too_long (lines), rows (of schedules)."""
        return json.loads(self.command("ctlstats"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the relay to quit; kill it (by our own Popen handle) if it does not."""
        if self.proc.poll() is None:
            try:
                if not self._lock.acquire(timeout=timeout_s):
                    raise TimeoutError("command channel busy")
                try:
                    self._write(b"quit\n", time.monotonic() + timeout_s, "'quit'")
                finally:
                    self._lock.release()
                self.proc.wait(timeout=timeout_s)
            except (OSError, RelayError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        self._close()

    # --- the pipes: binary, non-blocking writes, poll() with a deadline -------------------------
    def _fail(self, reason: str) -> RelayError:
        """Mark the channel out of step; the error to raise."""
        self._broken = reason
        alive = self.alive()
        state = "still running" if alive else f"exited with {self.proc.returncode}"
        return RelayError(f"relay: {reason} (relay pid {self.pid} {state}); see {self.log_path}",
                          self.log_path, alive)

    def _write(self, data: bytes, deadline: float, what: str) -> None:
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while view:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise self._fail(f"did not take {what} in time")
            if not poller.poll(max(1, int(left_s * 1000))):
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: it closed its input
                raise self._fail(f"could not send {what}: {exc.strerror}") from None

    def _read_line(self, deadline: float, what: str) -> str:
        fd, start = self.proc.stdout.fileno(), time.monotonic()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while (nl := self._rbuf.find(b"\n")) < 0:
            if len(self._rbuf) > MAX_REPLY_BYTES:
                raise self._fail(f"reply to {what} longer than {MAX_REPLY_BYTES} bytes")
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise self._fail(f"no reply to {what} within {deadline - start:.1f} s")
            if not poller.poll(max(1, int(left_s * 1000))):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._fail(f"closed its output before answering {what}")
            self._rbuf += chunk
        line = bytes(self._rbuf[:nl])
        del self._rbuf[:nl + 1]
        return line.decode("utf-8", "replace").strip()

    def _close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()

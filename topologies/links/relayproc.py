"""Build, start and talk to the relay process (C data path, or the pure-Python fallback).

Control protocol (one line per command on the relay's stdin, one reply line on its stdout,
``ok ...`` or ``err <reason>``)::

    add ID IFA IFB            serve a link between two interfaces of the relay namespace
    del ID                    stop serving it (queued packets are dropped)
    set ID DIR P...           parameters for direction DIR from now on: uplink (frames received on
                              IFA leave on IFB) or downlink (IFB -> IFA)
    sched ID DIR N            followed by N lines "T_NS P..." (CLOCK_MONOTONIC ns, ascending)
    stats ID                  -> ok {"uplink": {...}, "downlink": {...}}
    seed S | now | ping | quit

P... is 13 numbers: delay_ns jitter_ns jdist(0 uniform,1 normal,2 pareto) loss_prob ge_on ge_p
ge_r ge_loss_good ge_loss_bad rate_bps(0 = unlimited) qlim_pkts qlim_bytes(0 = none) up.
relay/relay.c and pyrelay.py implement it alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from topologies.links.commands import c_compiler
from topologies.links.params import JITTER_DISTRIBUTIONS, DirectionParams
from topologies.paths import REPO_ROOT

RELAY_DIR = Path(__file__).resolve().parent / "relay"


def build_tool(name: str) -> Path | None:
    """Compile ``relay/<name>.c`` to ``relay/bin/<name>`` if missing or older than its source.

    Returns None when no compiler is present or compilation fails (callers fall back to Python).
    """
    source, binary = RELAY_DIR / f"{name}.c", RELAY_DIR / "bin" / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = c_compiler()
    if cc is None:
        return None
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{name}.{os.getpid()}.tmp")
    result = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(source), "-lm"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, binary)  # atomic: parallel builders never see a half-written binary
    return binary


def build_relay() -> Path | None:
    """The C relay binary, built if needed; None without a working compiler."""
    return build_tool("relay")


def wire_params(p: DirectionParams, delay_ms: float | None = None) -> str:
    """The 13-number wire form of ``p``; ``delay_ms``: the delay the relay adds (default
    ``p.delay_ms``; the engine passes it compensated, see topologies/links/compensation.py)."""
    g = p.loss_burst
    fields = [
        max(0, round((p.delay_ms if delay_ms is None else delay_ms) * 1e6)),
        round(p.jitter_ms * 1e6),
        JITTER_DISTRIBUTIONS.index(p.jitter_distribution),
        f"{p.loss_pct / 100:.9g}",
        1 if g else 0,
        f"{g.p_good_to_bad_pct / 100:.9g}" if g else 0,
        f"{g.p_bad_to_good_pct / 100:.9g}" if g else 0,
        f"{g.loss_good_pct / 100:.9g}" if g else 0,
        f"{g.loss_bad_pct / 100:.9g}" if g else 0,
        round(p.rate_mbps * 1e6) if p.rate_mbps is not None else 0,
        p.queue_limit_pkts or 0,
        p.effective_queue_limit_bytes() or 0,
        1 if p.up else 0,
    ]
    return " ".join(str(f) for f in fields)


class RelayProcess:
    """One relay process in network namespace ``netns``; thread-safe command channel."""

    def __init__(self, netns: str, log_path: Path, prefer_c: bool = True, early_us: int = 100,
                 realtime: bool = True) -> None:
        self.netns = netns
        self.log_path = log_path
        binary = build_relay() if prefer_c else None
        if binary is not None:
            self.implementation = "c"
            argv = [str(binary), "--early-us", str(early_us)] + (["--rt"] if realtime else [])
        else:
            self.implementation = "python"
            argv = [sys.executable, "-m", "topologies.links.pyrelay"]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
                                     cwd=str(REPO_ROOT), env=env)
        self.pid = self.proc.pid  # `ip netns exec` execs the relay: same pid
        self._lock = threading.Lock()
        first = self.proc.stdout.readline()
        if not first.startswith("ok"):
            self.proc.kill()
            raise RuntimeError(f"relay did not start ({first.strip()!r}); see {log_path}")

    def command(self, line: str, rows: list[str] | None = None) -> str:
        """Send one command (plus schedule rows) and return the reply after ``ok``."""
        with self._lock:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}; see {self.log_path}")
            payload = line + "\n" + "".join(r + "\n" for r in rows or [])
            self.proc.stdin.write(payload)
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline().strip()
        if not reply.startswith("ok"):
            raise RuntimeError(f"relay: {line.split()[0]}: {reply or 'no reply'}; see {self.log_path}")
        return reply[2:].strip()

    def stats(self, link_id: int) -> dict:
        return json.loads(self.command(f"stats {link_id}"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the relay to quit; kill it (by our own Popen handle) if it does not."""
        if self.proc.poll() is None:
            try:
                with self._lock:
                    self.proc.stdin.write("quit\n")
                    self.proc.stdin.flush()
                self.proc.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()

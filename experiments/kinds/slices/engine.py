"""The C traffic engine (topologies/links/relay/traffic_engine.c): one process for every flow of a run.

It opens each socket inside its host's namespace itself (setns), so it runs in the runner's own
namespace: recorded in the manifest and watched like any agent. It writes exactly the files the
Python agents write (``recv-<dest>.bin`` + ``.done``, ``send-<ue>.json``); RTT probes keep their
Python agents (a few packets per second each). ``FACTORYSAT_TRAFFIC_ENGINE=python`` or no C
compiler selects the Python agents (experiments/agents/traffic.py) for everything.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from experiments.framework import watchdog
from topologies.errors import RunFailed

READY_TIMEOUT_S = 30.0  # a failure detector, not a timing claim (slow, emulated guests)
REPLY_TIMEOUT_S = 10.0


def engine_binary() -> Path | None:
    """The built engine, or None when the Python agents are to be used (env or no compiler)."""
    if os.environ.get("FACTORYSAT_TRAFFIC_ENGINE", "c") != "c":
        return None
    from topologies.links.relayproc import build_tool

    return build_tool("traffic_engine")


def plain_path(path: Path) -> str:
    """A path the engine's word-split protocol can carry (no whitespace)."""
    text = str(path)
    if any(ch.isspace() for ch in text):
        raise RunFailed(f"traffic engine: a results path with whitespace cannot be passed: {text!r}",
                        component="traffic engine")
    return text


class TrafficEngine:
    """Start, feed, watch and stop the engine process."""

    def __init__(self, binary: Path, manifest: Any, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log)
        manifest.add_process("traffic:engine", self.proc.pid)
        self._buffer = b""
        ready = self._line(READY_TIMEOUT_S, "start")
        if not ready.startswith("ok traffic engine ready"):
            raise self._failed(f"did not start ({ready!r})")
        self.realtime = ready.endswith("rt=1")
        dog = watchdog.active()
        if dog is not None:
            dog.watch_process("traffic engine", self.proc, log_path, ends_by_itself=False)

    def request(self, line: str) -> None:
        """Send one request; its reply must be ``ok``."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._failed(f"gone while sent {line.split()[0]!r} ({exc})") from exc
        reply = self._line(REPLY_TIMEOUT_S, line.split()[0])
        if reply != "ok":
            raise self._failed(f"refused {line!r}: {reply}")

    def add_receiver(self, name: str, host_pid: int, port: int, out: Path) -> None:
        self.request(f"recv {name} {host_pid} {port} {plain_path(out)}")

    def add_sender(self, flow_id: int, host_pid: int, dst_ip: str, port: int, payload_bytes: int,
                   interval_ms: float, start_ns: int, duration_s: float, summary: Path) -> None:
        """A periodic flow scheduled exactly as the Python sender schedules it."""
        interval_ns, end_ns = int(interval_ms * 1e6), start_ns + int(duration_s * 1e9)
        self.request(f"send {flow_id} {host_pid} {dst_ip} {port} {payload_bytes} {interval_ns} "
                     f"{start_ns} {end_ns} {plain_path(summary)}")

    def add_pattern_sender(self, flow_id: int, host_pid: int, dst_ip: str, port: int, pattern: Path,
                           start_ns: int, duration_s: float, summary: Path) -> None:
        """A flow following a pattern file (models.Pattern.write), as the Python sender follows it."""
        self.request(f"sendp {flow_id} {host_pid} {dst_ip} {port} {plain_path(pattern)} {start_ns} "
                     f"{start_ns + int(duration_s * 1e9)} {plain_path(summary)}")

    def add_reply(self, receiver: str, command_flow: int, flow_id: int, dst_ip: str, port: int,
                  payload_bytes: int, summary: Path) -> None:
        """Receiver ``receiver`` answers every packet of ``command_flow`` with one of ``flow_id``."""
        self.request(f"reply {receiver} {command_flow} {flow_id} {dst_ip} {port} {payload_bytes} "
                     f"{plain_path(summary)}")

    def go(self) -> None:
        self.request("go")

    def wait_senders(self, timeout_s: float) -> None:
        line = self._line(timeout_s, "senders", watch=True)
        if line != "senders done":
            raise self._failed(f"unexpected {line!r} while waiting for its senders")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Unwatch, ask it to drain its receivers and write their .done files, wait for exit 0."""
        dog = watchdog.active()
        failure = dog.unwatch(self.proc) if dog is not None else None
        if failure is not None:
            raise failure
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.proc.send_signal(signal.SIGTERM)
        reply = self._line(timeout_s, "stop")
        code = self.proc.wait(timeout=timeout_s)
        if reply != "ok stopped" or code != 0:
            raise self._failed(f"did not stop cleanly (reply {reply!r}, exit {code})")

    def _line(self, timeout_s: float, what: str, watch: bool = False) -> str:
        """One reply line within ``timeout_s`` (with ``watch``, the run's watchdog may end the wait)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select(): a big run's runner holds file descriptors past 1024
        poller.register(fd, select.POLLIN | select.POLLHUP)
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failed(f"no reply to {what!r} within {timeout_s:g} s")
            ready = poller.poll(min(left, 0.2) * 1000)
            if watch and watchdog.active() is not None:
                watchdog.active().raise_if_failed()
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise self._failed(f"exited (code {self.proc.wait()}) before replying to {what!r}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def _failed(self, why: str) -> RunFailed:
        return RunFailed(f"traffic engine {why}; see {self.log_path}", component="traffic engine",
                         log_path=str(self.log_path))

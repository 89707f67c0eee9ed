"""Tiny UDP one-way-delay probe for tests and benchmarks, run inside Mininet hosts.

Sender: ``python -m topologies.links.udpprobe send DST PORT PPS COUNT SIZE_B`` sends COUNT packets
of SIZE_B bytes at PPS, each carrying (seq, CLOCK_REALTIME ns at send). Receiver:
``python -m topologies.links.udpprobe recv PORT IDLE_S OUT [FIRST_S]`` writes one int64 triple
per packet (seq, t_send_ns, t_recv_ns) to OUT, t_recv being the kernel receive timestamp; it exits
after IDLE_S seconds without packets (FIRST_S, default 10, before the first one) or on SIGTERM.
Hosts share the kernel's clock, so t_recv - t_send is the one-way delay.
"""

from __future__ import annotations

import array
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from topologies.paths import REPO_ROOT
from topologies.rxstamp import enable_rx_timestamps, rx_stamp_ns

HEADER = struct.Struct("!IQ")
IDLE_S = 1.5  # the receiver stops this long after the last packet
FIRST_PACKET_SLACK_S = 60.0  # beyond the expected duration, the longest wait for a first packet


def send(dst: str, port: int, pps: float, count: int, size: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    pad = b"\0" * max(0, size - HEADER.size)
    interval = 1.0 / pps
    start = time.monotonic()
    for seq in range(count):
        target = start + seq * interval
        while True:
            now = time.monotonic()
            if now >= target:
                break
            if target - now > 0.0003:
                time.sleep(target - now - 0.0002)
        try:
            sock.sendto(HEADER.pack(seq, time.time_ns()) + pad, (dst, port))
        except OSError:
            pass  # e.g. ENOBUFS: the packet is simply not sent; the receiver sees it missing


def recv(port: int, idle_s: float, out: Path, first_s: float = 10.0) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    enable_rx_timestamps(sock)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    rows = array.array("q")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Path(str(out) + ".ready").write_text("ready")
    last = None
    start = time.monotonic()
    while not stop:
        ready, _, _ = select.select([sock], [], [], 0.05)
        now = time.monotonic()
        if not ready:
            if (last is not None and now - last > idle_s) or (last is None and now - start > first_s):
                break
            continue
        last = now
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(65536, 64)
            except BlockingIOError:
                break
            t_recv = rx_stamp_ns(anc)
            if len(data) >= HEADER.size:
                seq, t_send = HEADER.unpack_from(data)
                rows.extend((seq, t_send, t_recv or time.time_ns()))
    np.save(out, np.frombuffer(rows, dtype=np.int64).reshape(-1, 3))


def probe_argv(fast: bool) -> list[str]:
    """Command prefix of the probe: the C build (``fast``, if a compiler exists) or this module."""
    if fast:
        from topologies.links.relayproc import build_tool
        binary = build_tool("udpprobe")
        if binary is not None:
            return [str(binary)]
    return [sys.executable, "-m", "topologies.links.udpprobe"]


READY_TIMEOUT_S = 60.0


def run_probe(src: Any, dst: Any, pps: float, count: int, scratch: Path, size: int = 100,
              port: int = 5001, during: Callable[[], None] | None = None, fast: bool = False,
              duration_s: float | None = None, info: dict | None = None) -> np.ndarray:
    """Send ``count`` UDP packets between two Mininet hosts; rows (seq, t_send_ns, t_recv_ns).

    ``during`` runs in the caller's thread while the sender is sending (e.g. live link changes).
    ``fast`` uses the C probe (needed above ~20 kpps; ``pps`` 0 = as fast as possible, then
    ``duration_s`` bounds the run); ``info`` receives the sender's own counts when given.
    """
    tool = probe_argv(fast)
    expected_s = duration_s if duration_s is not None else count / pps
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"probe-{secrets.token_hex(4)}.npy"
    ready = Path(str(out) + ".ready")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    # The receiver waits for the first packet as long as the sender may take to start (seconds in a
    # software-emulated guest); once the sender has exited it is told to stop (SIGTERM) if no
    # packet ever came, e.g. on a link that is down.
    first_s = expected_s + FIRST_PACKET_SLACK_S
    recv = dst.popen([*tool, "recv", str(port), str(IDLE_S), str(out), str(first_s)],
                     cwd=str(REPO_ROOT), env=env)
    # A failure detector, not a timing claim: a receiver that fails exits (poll); one that hangs is
    # given up after READY_TIMEOUT_S (a Python start in a busy software-emulated guest took > 10 s).
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if time.monotonic() > deadline or recv.poll() is not None:
            recv.kill()
            raise RuntimeError(f"probe receiver did not start: {recv.communicate()[1]!r}")
        time.sleep(0.01)
    extra = [str(duration_s)] if duration_s is not None and fast else []
    send = None
    try:
        send = src.popen([*tool, "send", dst.IP(), str(port), str(pps), str(count), str(size), *extra],
                         cwd=str(REPO_ROOT), env=env)
        if during is not None:
            during()
        out_text, _ = send.communicate(timeout=expected_s + 30)
        if info is not None and out_text:
            words = out_text.decode().split()
            if len(words) >= 6 and words[0] == "sent":
                info.update(sent=int(words[1]), elapsed_s=float(words[3]), errors=int(words[5]))
        try:
            recv.wait(timeout=IDLE_S + 2)
        except subprocess.TimeoutExpired:  # still waiting for a first packet that will not come
            recv.send_signal(signal.SIGTERM)
            recv.wait(timeout=30)
    finally:  # never leave a probe process behind, whatever failed
        for proc in (send, recv):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    rows = np.load(out)
    out.unlink()
    ready.unlink()
    return rows


def owd_ms(rows: np.ndarray) -> np.ndarray:
    """One-way delays in ms of probe rows."""
    return (rows[:, 2] - rows[:, 1]) / 1e6


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), *map(float, sys.argv[5:6]))
    else:
        raise SystemExit("usage: udpprobe send DST PORT PPS COUNT SIZE | recv PORT IDLE_S OUT.npy")

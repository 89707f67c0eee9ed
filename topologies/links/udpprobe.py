"""Tiny UDP one-way-delay probe for tests and benchmarks, run inside Mininet hosts.

Sender: ``python -m topologies.links.udpprobe send DST PORT PPS COUNT SIZE_B`` sends COUNT packets
of SIZE_B bytes at PPS, each carrying (seq, CLOCK_REALTIME ns at send). Receiver:
``python -m topologies.links.udpprobe recv PORT IDLE_S OUT`` writes one int64 triple per packet
(seq, t_send_ns, t_recv_ns) to OUT, t_recv being the kernel receive timestamp; it exits after
IDLE_S seconds without packets (once the first arrived) or on SIGTERM. Hosts share the kernel's
clock, so t_recv - t_send is the one-way delay.
"""

from __future__ import annotations

import array
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

SO_TIMESTAMPNS = 35
HEADER = struct.Struct("!IQ")


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


def recv(port: int, idle_s: float, out: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    rows = array.array("q")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Path(str(out) + ".ready").write_text("ready")
    last = None
    while not stop:
        ready, _, _ = select.select([sock], [], [], 0.05)
        now = time.monotonic()
        if not ready:
            if last is not None and now - last > idle_s:
                break
            continue
        last = now
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(65536, 64)
            except BlockingIOError:
                break
            t_recv = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    t_recv = sec * 1_000_000_000 + nsec
            if len(data) >= HEADER.size:
                seq, t_send = HEADER.unpack_from(data)
                rows.extend((seq, t_send, t_recv or time.time_ns()))
    np.save(out, np.frombuffer(rows, dtype=np.int64).reshape(-1, 3))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
    else:
        raise SystemExit("usage: udpprobe send DST PORT PPS COUNT SIZE | recv PORT IDLE_S OUT.npy")

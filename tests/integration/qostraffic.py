"""Several DSCP-marked UDP flows from one process, and their receiver (the class-queue tests).

Sender: ``python qostraffic.py send DST DURATION_S PORT:DSCP:SIZE:PPS ...`` sends each flow at its
rate (one schedule merged over all flows, busy-waiting the last 0.3 ms), each packet carrying
(seq, CLOCK_REALTIME ns at send). Receiver: ``python qostraffic.py recv OUT IDLE_S PORT ...`` writes
rows (port, seq, t_send_ns, t_recv_ns; t_recv the kernel receive timestamp) to OUT (.npy) once no
packet came for IDLE_S (after a first one) or on SIGTERM; it creates OUT.ready when listening.
"""

from __future__ import annotations

import heapq
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

from topologies.rxstamp import enable_rx_timestamps, rx_stamp_ns

HEADER = struct.Struct("!IQ")


def send(dst: str, duration_s: float, flows: list[tuple[int, int, int, float]]) -> None:
    socks, pads, due = [], [], []
    for i, (_, dscp, size, _) in enumerate(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        socks.append(s)
        pads.append(b"\0" * max(0, size - HEADER.size))
        due.append((0.0, i, 0))
    heapq.heapify(due)
    start = time.monotonic()
    while due:
        t, i, seq = heapq.heappop(due)
        if t > duration_s:
            continue
        target = start + t
        while (now := time.monotonic()) < target:
            if target - now > 0.0003:
                time.sleep(target - now - 0.0002)
        try:
            socks[i].sendto(HEADER.pack(seq, time.time_ns()) + pads[i], (dst, flows[i][0]))
        except OSError:
            pass  # ENOBUFS: not sent; the receiver sees it missing
        heapq.heappush(due, (t + 1.0 / flows[i][3], i, seq + 1))


def recv(out: Path, idle_s: float, ports: list[int]) -> None:
    socks = {}
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        enable_rx_timestamps(s)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        socks[s] = port
    rows: list[tuple[int, int, int, int]] = []
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Path(str(out) + ".ready").write_text("ready")
    last = None
    while not stop:
        ready, _, _ = select.select(list(socks), [], [], 0.05)
        if not ready:
            if last is not None and time.monotonic() - last > idle_s:
                break
            continue
        last = time.monotonic()
        for s in ready:
            while True:
                try:
                    data, anc, _, _ = s.recvmsg(65536, 64)
                except BlockingIOError:
                    break
                if len(data) >= HEADER.size:
                    seq, t_send = HEADER.unpack_from(data)
                    rows.append((socks[s], seq, t_send, rx_stamp_ns(anc) or time.time_ns()))
    np.save(out, np.array(rows, dtype=np.int64).reshape(-1, 4))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], float(sys.argv[3]),
             [(int(p), int(d), int(s), float(r)) for p, d, s, r in (f.split(":") for f in sys.argv[4:])])
    elif sys.argv[1] == "recv":
        recv(Path(sys.argv[2]), float(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    else:
        raise SystemExit("usage: qostraffic.py send DST DURATION_S PORT:DSCP:SIZE:PPS ... | "
                         "recv OUT.npy IDLE_S PORT ...")

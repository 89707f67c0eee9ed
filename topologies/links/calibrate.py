"""Probe of the relay's own per-hop latency; runs inside the relay namespace.

``python -m topologies.links.calibrate SEND_IF RECV_IF COUNT INTERVAL_S`` sends COUNT raw Ethernet
frames on SEND_IF (one every INTERVAL_S) carrying the sender's CLOCK_REALTIME, receives them on
RECV_IF with kernel receive timestamps, and prints a JSON list of one-way latencies in ms —
the same sender-clock to receiver-kernel-stamp measure the benchmarks use.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

from topologies.rxstamp import enable_rx_timestamps, rx_stamp_ns

ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 "local experimental" EtherType


def probe(send_if: str, recv_if: str, count: int, interval_s: float) -> list[float]:
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EXPERIMENTAL))
    rx.bind((recv_if, ETH_P_EXPERIMENTAL))
    enable_rx_timestamps(rx)
    rx.setblocking(False)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((send_if, 0))
    header = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_P_EXPERIMENTAL)
    sent: dict[int, int] = {}
    out: list[float] = []
    next_t = time.monotonic()
    for seq in range(count):
        t = time.time_ns()
        tx.send(header + struct.pack("!IQ", seq, t) + b"\0" * 34)
        sent[seq] = t
        next_t += interval_s
        while True:
            timeout = next_t - time.monotonic()
            ready, _, _ = select.select([rx], [], [], max(0.0, timeout))
            if ready:
                _drain(rx, out)
            if timeout <= 0:
                break
    end = time.monotonic() + 1.0
    while len(out) < count and time.monotonic() < end:
        if select.select([rx], [], [], 0.05)[0]:
            _drain(rx, out)
    return out


def _drain(rx: socket.socket, out: list[float]) -> None:
    while True:
        try:
            data, anc, _, _ = rx.recvmsg(256, 64)
        except BlockingIOError:
            return
        stamp = rx_stamp_ns(anc)
        if stamp is None or len(data) < 26:
            continue
        _, t_send = struct.unpack("!IQ", data[14:26])
        out.append((stamp - t_send) / 1e6)


if __name__ == "__main__":
    send_if, recv_if, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(probe(send_if, recv_if, count, interval)))

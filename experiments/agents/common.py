"""What the in-host agents share: a stop flag for SIGTERM/SIGINT, timestamping UDP sockets and
kernel receive timestamps. Standard library only (agents start inside emulated hosts)."""

from __future__ import annotations

import signal
import socket
import struct
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")
TIMESTAMP_ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)


class StopFlag:
    """Becomes true on SIGTERM or SIGINT, so a loop can finish and flush what it holds."""

    def __init__(self) -> None:
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, _signum: int, _frame: object) -> None:
        self.stop = True


def timestamping_udp_socket(rcvbuf: int = 8 << 20, sndbuf: int = 4 << 20) -> socket.socket:
    """A UDP socket whose datagrams carry their kernel receive time (CLOCK_REALTIME)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return sock


def rx_time_ns(ancdata: list) -> int:
    """Kernel receive timestamp from ``recvmsg`` ancillary data (now, if the kernel gave none)."""
    for level, ctype, cdata in ancdata:
        if level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS:
            sec, nsec = TIMESPEC.unpack_from(cdata)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()

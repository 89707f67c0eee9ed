"""Kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME) on any socket: the one definition.

Standard library only: used inside emulated hosts and by the relay, where start-up must stay light.
Every emulated host shares the machine's kernel clock, so a sender's CLOCK_REALTIME stamp and the
receiver's kernel timestamp give the one-way delay.
"""

from __future__ import annotations

import socket
import struct

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # asm-generic/socket.h: 35 (= SCM_TIMESTAMPNS)
TIMESPEC = struct.Struct("@qq")  # struct timespec {tv_sec, tv_nsec}
TIMESTAMP_ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)  # recvmsg ancillary buffer for one stamp


def enable_rx_timestamps(sock: socket.socket) -> socket.socket:
    """Ask the kernel to attach each datagram's or frame's receive time; returns ``sock``."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def rx_stamp_ns(ancdata: list) -> int | None:
    """The kernel receive time (ns since the epoch) in ``recvmsg`` ancillary data, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None

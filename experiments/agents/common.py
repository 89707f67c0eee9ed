"""What the in-host agents share: a stop flag for SIGTERM/SIGINT, timestamping UDP sockets, kernel
receive timestamps, the receive call, the host's UDP drop counters and the command line. Standard
library plus ``topologies.rxstamp`` only (agents start inside emulated hosts)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from topologies.rxstamp import TIMESTAMP_ANCILLARY, enable_rx_timestamps, rx_stamp_ns


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
    enable_rx_timestamps(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return sock


def rx_time_ns(ancdata: list) -> int:
    """Kernel receive timestamp from ``recvmsg`` ancillary data (now, if the kernel gave none)."""
    stamp = rx_stamp_ns(ancdata)
    return time.time_ns() if stamp is None else stamp


def recv_stamped(sock: socket.socket, ancillary_size: int = TIMESTAMP_ANCILLARY
                 ) -> tuple[bytes, int, list, Any] | None:
    """One datagram as ``(data, kernel receive ns, ancillary data, sender)``; None on timeout/signal."""
    try:
        data, ancdata, _flags, addr = sock.recvmsg(2048, ancillary_size)
    except (TimeoutError, InterruptedError):
        return None
    return data, rx_time_ns(ancdata), ancdata, addr


def udp_snmp() -> dict[str, int]:
    """This network namespace's UDP counters (``/proc/net/snmp`` is per namespace), e.g.
    ``RcvbufErrors`` (datagrams dropped on a full receive buffer), ``InErrors``, ``NoPorts``."""
    try:
        lines = [line.split() for line in open("/proc/self/net/snmp") if line.startswith("Udp:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return {name: int(value) for name, value in zip(lines[0][1:], lines[1][1:], strict=False)}


def udp_snmp_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """``after - before`` per counter (counters present in both)."""
    return {k: after[k] - before[k] for k in after if k in before}


def udp_socket_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket (the ``drops`` column of /proc/net/udp, found by
    the socket's inode): receive-buffer overflows and memory limits. None if not found."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    try:
        with open("/proc/self/net/udp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if len(fields) > 12 and fields[9] == inode:
                    return int(fields[12])
    except (OSError, StopIteration, ValueError):
        return None
    return None


def touch(path: str) -> None:
    """Create an empty file (a ready flag the runner waits for)."""
    with open(path, "w"):
        pass


# One option: (flag, type) is required; (flag, type, default) is optional; type None = repeatable str.
Option = tuple[str, Any] | tuple[str, Any, Any]


def agent_main(prog: str, modes: Mapping[str, tuple[Callable[[argparse.Namespace], int], Sequence[Option]]],
               argv: list[str] | None = None) -> int:
    """Parse ``MODE --option value ...`` from a table of modes and run the chosen one."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode, (_func, options) in modes.items():
        p = sub.add_parser(mode)
        for flag, kind, *default in options:
            if kind is None:
                p.add_argument(flag, action="append", required=True)
            elif default:
                p.add_argument(flag, type=kind, default=default[0])
            else:
                p.add_argument(flag, type=kind, required=True)
    args = parser.parse_args(argv)
    return modes[args.mode][0](args)

"""What the in-host agents share: a stop flag for SIGTERM/SIGINT, timestamping UDP sockets, kernel
receive timestamps, the receive call and the command line. Standard library plus
``topologies.rxstamp`` only (agents start inside emulated hosts)."""

from __future__ import annotations

import argparse
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

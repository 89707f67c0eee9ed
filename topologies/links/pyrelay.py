"""Pure-Python relay: the fallback data path when no C compiler is present.

Same control protocol and delivery semantics as relay/relay.c (see relayproc.py); slower (about
150 kpps on this machine per DESIGN.md's prototype) and with a larger delay error.
Run inside the relay netns: ``python -m topologies.links.pyrelay``.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import math
import os
import random
import select
import socket
import struct
import sys
import time
from collections import deque

from topologies.rxstamp import enable_rx_timestamps, rx_stamp_ns

DIRECTIONS = ("uplink", "downlink")  # uplink: frames received on IFA leave on IFB; downlink: back
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_QDISC_BYPASS = 20
EARLY_S = 0.0002
SIOCSIFFLAGS, SIOCGIFFLAGS, IFF_UP = 0x8914, 0x8913, 0x1


class Params:
    __slots__ = ("delay", "jitter", "jdist", "loss", "ge", "ge_p", "ge_r", "ge_lg", "ge_lb", "rate",
                 "qpk", "qby", "up")

    def __init__(self, words: list[str]) -> None:
        if len(words) != 13:
            raise ValueError("13 numbers expected")
        v = [float(w) for w in words]
        self.delay, self.jitter = v[0] / 1e9, v[1] / 1e9
        self.jdist, self.loss, self.ge = int(v[2]), v[3], int(v[4])
        self.ge_p, self.ge_r, self.ge_lg, self.ge_lb = v[5:9]
        self.rate, self.qpk, self.qby, self.up = v[9], int(v[10]), int(v[11]), int(v[12])


class Direction:
    def __init__(self, in_sock: socket.socket, out_sock: socket.socket) -> None:
        self.inp, self.out = in_sock, out_sock
        self.sched: list[tuple[float, Params]] = [(0.0, Params(["0"] * 12 + ["1"]))]
        self.sidx = 0
        self.fifo: deque[tuple[float, bytes]] = deque()
        self.serq: deque[tuple[float, int]] = deque()
        self.qbytes = 0
        self.last_dep = self.tx_free = 0.0
        self.ge_bad = False
        self.c = dict.fromkeys(("rx", "tx", "dropped_loss", "dropped_queue", "dropped_down",
                                "dropped_error", "rx_bytes", "tx_bytes"), 0)

    def params(self, t: float) -> Params:
        while self.sidx + 1 < len(self.sched) and self.sched[self.sidx + 1][0] <= t:
            self.sidx += 1
        return self.sched[self.sidx][1]

    def lost(self, p: Params) -> bool:
        if p.ge:
            lost = random.random() < (p.ge_lb if self.ge_bad else p.ge_lg)
            if random.random() < (p.ge_r if self.ge_bad else p.ge_p):
                self.ge_bad = not self.ge_bad
            return lost
        return p.loss > 0 and random.random() < p.loss

    def jitter(self, p: Params) -> float:
        if p.jitter <= 0:
            return 0.0
        if p.jdist == 1:
            return random.gauss(0.0, p.jitter)
        if p.jdist == 2:
            xm = p.jitter / math.sqrt(0.75)
            return xm / (1.0 - random.random()) ** (1 / 3) - 1.5 * xm
        return random.uniform(-p.jitter, p.jitter)

    def enqueue(self, data: bytes, t: float) -> bool:
        """Returns True if the FIFO was empty before (caller schedules it)."""
        p, n = self.params(t), len(data)
        self.c["rx"] += 1
        self.c["rx_bytes"] += n
        if not p.up:
            self.c["dropped_down"] += 1
            return False
        if self.lost(p):
            self.c["dropped_loss"] += 1
            return False
        ready = t
        if p.rate > 0:
            while self.serq and self.serq[0][0] <= t:
                self.qbytes -= self.serq.popleft()[1]
            if (p.qpk and len(self.serq) + 1 > p.qpk) or (p.qby and self.qbytes + n > p.qby):
                self.c["dropped_queue"] += 1
                return False
            ready = max(t, self.tx_free) + n * 8 / p.rate
            self.tx_free = ready
            self.serq.append((ready, n))
            self.qbytes += n
        dep = max(ready + p.delay + self.jitter(p), ready, self.last_dep)
        self.last_dep = dep
        self.fifo.append((dep, data))
        return len(self.fifo) == 1


class Relay:
    def __init__(self) -> None:
        self.links: dict[int, tuple[Direction, Direction]] = {}  # id -> (uplink, downlink)
        self.by_fd: dict[int, Direction] = {}
        self.heap: list[tuple[float, int, Direction]] = []
        self.buf = b""

    def add(self, link_id: int, a: str, b: str) -> None:
        sa, sb = _open(a), _open(b)
        up, down = Direction(sa, sb), Direction(sb, sa)
        self.links[link_id] = (up, down)
        self.by_fd[sa.fileno()], self.by_fd[sb.fileno()] = up, down

    def command(self, line: str, stdin_lines) -> str:
        w = line.split()
        if not w:
            return ""
        cmd = w[0]
        if cmd in ("ping", "quit"):
            return "ok"
        if cmd == "seed":
            random.seed(int(w[1]))
            return "ok"
        if cmd == "now":
            return f"ok {time.monotonic_ns()}"
        if cmd == "add":
            self.add(int(w[1]), w[2], w[3])
            return "ok"
        if cmd == "del":
            for d in self.links.pop(int(w[1])):
                self.by_fd.pop(d.inp.fileno(), None)
                d.inp.close()
            return "ok"
        if cmd in ("set", "sched"):
            if len(w) < 3 or w[2] not in DIRECTIONS:
                return f"err usage: {cmd} ID uplink|downlink ..."
            d = self.links[int(w[1])][DIRECTIONS.index(w[2])]
            if cmd == "set":
                rows = [(0.0, Params(w[3:]))]
            else:
                rows = []
                for _ in range(int(w[3])):
                    r = stdin_lines().split()
                    rows.append((int(r[0]) / 1e9, Params(r[1:])))
            d.sched, d.sidx = rows, 0
            return "ok"
        if cmd == "stats":
            return "ok " + json.dumps({name: {**d.c, "queued": len(d.serq)}
                                       for name, d in zip(DIRECTIONS, self.links[int(w[1])], strict=True)})
        return f"err unknown command {cmd}"

    def flush(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, d = heapq.heappop(self.heap)
            while d.fifo and d.fifo[0][0] <= now:
                _, data = d.fifo.popleft()
                try:
                    d.out.send(data)
                    d.c["tx"] += 1
                    d.c["tx_bytes"] += len(data)
                except OSError:
                    d.c["dropped_error"] += 1
            if d.fifo:
                heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))

    def read(self, d: Direction) -> None:
        for _ in range(64):
            try:
                data, anc, _, _ = d.inp.recvmsg(65535, 64, socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                return
            now = time.monotonic()
            stamp_ns = rx_stamp_ns(anc)  # kernel arrival time, mapped to CLOCK_MONOTONIC
            t = now if stamp_ns is None else min(now, stamp_ns / 1e9 - (time.time() - now))
            if d.enqueue(data, t):
                heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        fcntl.fcntl(stdin, fcntl.F_SETFL, fcntl.fcntl(stdin, fcntl.F_GETFL) | os.O_NONBLOCK)
        print("ok relay ready", flush=True)
        while True:
            now = time.monotonic()
            self.flush(now)
            timeout = None if not self.heap else max(0.0, self.heap[0][0] - now - EARLY_S)
            fds = [stdin, *self.by_fd]
            ready, _, _ = select.select(fds, [], [], timeout)
            for fd in ready:
                if fd != stdin:
                    if fd in self.by_fd:
                        self.read(self.by_fd[fd])
                    continue
                chunk = os.read(stdin, 1 << 20)
                if not chunk:
                    return
                self.buf += chunk
                while (line := self._pop_line(False)) is not None:
                    try:
                        reply = self.command(line, lambda: self._pop_line(True) or "")
                    except (ValueError, KeyError, IndexError, OSError) as exc:
                        reply = f"err {exc}"
                    print(reply, flush=True)
                    if line.strip() == "quit":
                        return

    def _pop_line(self, block: bool) -> str | None:
        stdin = sys.stdin.fileno()
        while b"\n" not in self.buf:
            if not block:
                return None
            select.select([stdin], [], [])
            chunk = os.read(stdin, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def _open(ifname: str) -> socket.socket:
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = struct.pack("16sH14x", ifname.encode(), 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(ctl, SIOCGIFFLAGS, req))[1]
    fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP))
    ctl.close()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    enable_rx_timestamps(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


if __name__ == "__main__":
    for path in ("/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"):
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError:
            pass
    Relay().run()

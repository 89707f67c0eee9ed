"""Pure-Python relay: the fallback data path when no C compiler is present.

Same control protocol (relayctl.py, the twin of relay/control.c; see relayproc.py) and delivery
semantics as relay/relay.c; slower (about 150 kpps on this machine per DESIGN.md's prototype) and
with a larger delay error. Run inside the relay netns:
``python -m topologies.links.pyrelay [--disable-ipv6]``.
"""

from __future__ import annotations

import errno
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
from collections.abc import Sequence

from topologies.links.relayctl import (
    DIRECTIONS,
    INSIDE,
    LATE_EDGES_NS,
    LINE_MAX_BYTES,
    MAX_LINKS,
    QOS_MAX_CLASSES,
    ControlChannel,
    LineFramer,
    Row,
    late_bucket,
)
from topologies.rxstamp import enable_rx_timestamps, rx_stamp_ns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_QDISC_BYPASS = 20
EARLY_S = 0.0002
SIOCSIFFLAGS, SIOCGIFFLAGS, IFF_UP = 0x8914, 0x8913, 0x1
MAX_BACKLOG_S = 1e6  # serialiser backlog beyond this (~11.6 days): dropped_queue (relay.c: MAX_BACKLOG_NS)
QOS_QUANTUM_BYTES = 1514  # DRR quantum of the smallest weight (relay.c)
CLASS_COUNTERS = ("rx", "tx", "dropped_queue", "tx_bytes")


def frame_dscp(f: bytes) -> int:
    """A frame's DSCP: IPv4 TOS >> 2 or IPv6 traffic class >> 2 behind Ethernet II and at most one
    802.1Q tag; anything else 0 (relay.c frame_dscp)."""
    if len(f) < 14:
        return 0
    off, et = 14, f[12] << 8 | f[13]
    if et == 0x8100:
        if len(f) < 18:
            return 0
        off, et = 18, f[16] << 8 | f[17]
    if len(f) < off + 2:
        return 0
    if et == 0x0800 and f[off] >> 4 == 4:
        return f[off + 1] >> 2
    if et == 0x86DD and f[off] >> 4 == 6:
        return ((f[off] & 0x0F) << 4 | f[off + 1] >> 4) >> 2
    return 0


class QClass:
    """One class of a class-based queue (relay.h struct qclass): waiting (arrival, frame) and counters."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[float, bytes]] = deque()
        self.bytes = 0
        self.weight = self.quantum = self.deficit = 0
        self.c = dict.fromkeys(CLASS_COUNTERS, 0)
        self.queue_max = self.wait_sum_ns = self.wait_max_ns = 0

    def push(self, item: tuple[float, bytes]) -> None:
        self.waiting.append(item)
        self.bytes += len(item[1])
        self.queue_max = max(self.queue_max, len(self.waiting))

    def pop(self) -> tuple[float, bytes]:
        item = self.waiting.popleft()
        self.bytes -= len(item[1])
        return item

    def eligible(self, s: float) -> bool:
        return bool(self.waiting) and self.waiting[0][0] <= s

    def stats(self) -> dict:
        return {**self.c, "queued": len(self.waiting), "queue_max": self.queue_max,
                "wait_sum_ns": self.wait_sum_ns, "wait_max_ns": self.wait_max_ns}


class Qos:
    """A direction's class-based queue (relay.h struct qos; relay.c says how it serves)."""

    def __init__(self) -> None:
        self.on, self.n, self.map = False, 0, bytes(64)
        self.classes = [QClass() for _ in range(QOS_MAX_CLASSES)]
        self.waiting = self.rr = 0
        self.rr_fresh = True

    def pick(self, s: float) -> QClass:
        """The class the serialiser takes from at s (some class has a packet that arrived by s)."""
        live = self.classes[:self.n]
        strict = next((c for c in live if c.weight == 0 and c.eligible(s)), None)
        if strict is not None:
            return strict
        while True:
            c = live[self.rr]
            if c.weight and c.eligible(s):
                if self.rr_fresh:
                    c.deficit += c.quantum
                    self.rr_fresh = False
                if len(c.waiting[0][1]) <= c.deficit:
                    c.deficit -= len(c.waiting[0][1])
                    return c
            else:
                c.deficit = 0
            self.rr, self.rr_fresh = (self.rr + 1) % self.n, True

class Params:
    __slots__ = ("delay", "jitter", "jdist", "loss", "ge", "ge_p", "ge_r", "ge_lg", "ge_lb", "rate",
                 "qpk", "qby", "up")

    def __init__(self, v: Sequence[float]) -> None:
        self.delay, self.jitter = v[0] / 1e9, v[1] / 1e9
        self.jdist, self.loss, self.ge = int(v[2]), v[3], int(v[4])
        self.ge_p, self.ge_r, self.ge_lg, self.ge_lb = v[5:9]
        self.rate, self.qpk, self.qby, self.up = v[9], int(v[10]), int(v[11]), int(v[12])


class Direction:
    """One direction; ``out`` None: it leads inside the relay, to ``next`` or a cell's UEs (cell.c)."""

    def __init__(self, in_sock: socket.socket | None, out_sock: socket.socket | None,
                 qos_active: set[Direction] | None = None) -> None:
        self.inp, self.out = in_sock, out_sock
        self.qos: Qos | None = None           # its class-based queue, None if it never had one
        self.qos_active = set() if qos_active is None else qos_active  # the relay's: with packets waiting
        self.owner: Link | None = None
        self.next: Direction | None = None
        self.sched: list[tuple[float, Params]] = [(0.0, Params([0.0] * 12 + [1.0]))]
        self.sidx = 0
        self.fifo: deque[tuple[float, bytes]] = deque()
        self.serq: deque[tuple[float, int]] = deque()
        self.qbytes = 0
        self.last_dep = self.tx_free = 0.0
        self.ge_bad = False
        # dropped_mem: the C relay's 512 MiB cap on held packets; here memory errors are dropped_error
        self.c = dict.fromkeys(("rx", "tx", "dropped_loss", "dropped_queue", "dropped_down",
                                "dropped_error", "dropped_mem", "rx_bytes", "tx_bytes", "dropped_unwired",
                                "xn_forwarded", "serialised", "wait_sum_ns", "wait_max_ns", "tx_retries",
                                "dropped_full"), 0)
        self.late_hist = [0] * (len(LATE_EDGES_NS) + 1)  # as the C relay's ``late_hist``

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

    def depart(self, data: bytes, ready: float, p: Params) -> None:
        """A packet serialised until ``ready`` joins the departure FIFO."""
        dep = max(ready + p.delay + self.jitter(p), ready, self.last_dep)
        self.fifo.append((dep, data))
        self.last_dep = dep

    def qos_start(self) -> float:
        """The next serialisation start of the class queue: max(tx_free, earliest waiting arrival)."""
        first = min((c.waiting[0][0] for c in self.qos.classes[:self.qos.n] if c.waiting), default=math.inf)
        return max(first, self.tx_free) if first < math.inf else math.inf

    def qos_serve(self, now: float) -> bool:
        """Every serialisation start up to ``now``; True if the departure FIFO was empty and is not."""
        q, was_empty = self.qos, not self.fifo
        while q.waiting and (s := self.qos_start()) <= now:
            c = q.pick(s)
            t_arr, data = c.pop()
            q.waiting -= 1
            p = self.params(s)
            wait_ns = round((s - t_arr) * 1e9)
            c.c["tx"] += 1
            c.c["tx_bytes"] += len(data)
            c.wait_sum_ns += wait_ns
            c.wait_max_ns = max(c.wait_max_ns, wait_ns)
            self.tx_free = s + (len(data) * 8 / p.rate if p.rate > 0 else 0.0)
            self.depart(data, self.tx_free, p)
        if not q.waiting:
            self.qos_active.discard(self)
        return was_empty and bool(self.fifo)

    def set_qos(self, n: int, dscp_map: bytes, weights: list[int]) -> None:
        """As relay.c dir_set_qos: waiting packets move in arrival order (new classes, or off: the FIFO)."""
        if self.qos is None:
            if not n:
                return
            self.qos = Qos()
        q = self.qos
        moved = sorted(((t, i, j, data) for i, c in enumerate(q.classes[:q.n])
                        for j, (t, data) in enumerate(c.waiting)))  # arrival order, stable
        for c in q.classes:
            c.waiting.clear()
            c.bytes = 0
        q.waiting, q.on = 0, n > 0
        if n:
            wmin = min((w for w in weights if w), default=1)
            for c, w in zip(q.classes, weights, strict=False):
                c.weight, c.deficit = w, 0
                c.quantum = -(-QOS_QUANTUM_BYTES * w // wmin) if w else 0
            q.n, q.map, q.rr, q.rr_fresh = n, dscp_map, 0, True
        for t, _, _, data in moved:
            if n:
                q.classes[q.map[frame_dscp(data)]].push((t, data))
                q.waiting += 1
                continue
            p = self.params(t)
            self.tx_free = max(t, self.tx_free) + (len(data) * 8 / p.rate if p.rate > 0 else 0.0)
            self.depart(data, self.tx_free, p)
        if q.waiting:
            self.qos_active.add(self)
        else:
            self.qos_active.discard(self)

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
        q = self.qos
        if q is not None and q.on and (p.rate > 0 or q.waiting):
            c = q.classes[q.map[frame_dscp(data)]]
            c.c["rx"] += 1
            if (p.qpk and len(c.waiting) + 1 > p.qpk) or (p.qby and c.bytes + n > p.qby):
                c.c["dropped_queue"] += 1
                self.c["dropped_queue"] += 1
                return False
            c.push((t, data))
            q.waiting += 1
            self.qos_active.add(self)
            return self.qos_serve(t)
        if q is not None and q.on:  # no serialiser: the classes only count
            c = q.classes[q.map[frame_dscp(data)]]
            for key, add in (("rx", 1), ("tx", 1), ("tx_bytes", n)):
                c.c[key] += add
        ready = t
        if p.rate > 0:
            while self.serq and self.serq[0][0] <= t:
                self.qbytes -= self.serq.popleft()[1]
            start = max(t, self.tx_free)
            if ((p.qpk and len(self.serq) + 1 > p.qpk) or (p.qby and self.qbytes + n > p.qby)
                    or start - t > MAX_BACKLOG_S):
                self.c["dropped_queue"] += 1
                return False
            ready = start + n * 8 / p.rate
        dep = max(ready + p.delay + self.jitter(p), ready, self.last_dep)
        try:
            self.fifo.append((dep, data))
        except MemoryError:
            self.c["dropped_error"] += 1
            return False
        if p.rate > 0:
            self.tx_free = ready
            self.serq.append((ready, n))
            wait_ns = round((start - t) * 1e9)  # the FIFO serialiser's wait (relay.c: the same counters)
            self.c["serialised"] += 1
            self.c["wait_sum_ns"] += wait_ns
            self.c["wait_max_ns"] = max(self.c["wait_max_ns"], wait_ns)
            self.qbytes += n
        self.last_dep = dep
        return len(self.fifo) == 1


def n3_mark(data: bytes, dscp: int) -> bytes:
    """``data`` with its IPv4 DSCP set to ``dscp`` (ECN kept, header checksum recomputed; Ethernet II,
    one optional 802.1Q tag); anything else unchanged (relay/cell.c n3_mark)."""
    ip = 18 if data[12:14] == b"\x81\x00" else 14
    if len(data) < ip + 20 or data[ip - 2:ip] != b"\x08\x00" or data[ip] >> 4 != 4:
        return data
    ihl = (data[ip] & 0x0F) * 4
    if ihl < 20 or len(data) < ip + ihl:
        return data
    header = bytearray(data[ip:ip + ihl])
    header[1] = (dscp << 2) | (header[1] & 3)
    header[10:12] = b"\0\0"
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, ihl, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    return data[:ip] + bytes(header) + data[ip + ihl:]


SEND_RETRIES = 20           # as relay.c: a send refused for lack of room is tried again this often,
SEND_RETRY_SLEEP_S = 50e-6  # after this long a sleep (the receiving backlog drains meanwhile)


def send_retrying(d: Direction, data: bytes) -> str | None:
    """Send ``data`` on ``d``'s interface; a refusal for lack of room (ENOBUFS, EAGAIN) is retried
    (``tx_retries``), any other failure is not. None if it was sent, else the drop counter to charge:
    ``dropped_full`` (still no room after the retries) or ``dropped_error`` (relay.c flush_dir alike)."""
    for attempt in range(SEND_RETRIES + 1):
        try:
            d.out.send(data)
            return None
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                return "dropped_error"
            if attempt == SEND_RETRIES:
                return "dropped_full"
            d.c["tx_retries"] += 1
            time.sleep(SEND_RETRY_SLEEP_S)
    return "dropped_full"


class Link:
    """A link: its two directions and, for links inside the relay, the cell wiring (relay/cell.c)."""

    def __init__(self, link_id: int, sa: socket.socket | None, sb: socket.socket | None,
                 qos_active: set[Direction] | None = None) -> None:
        self.id = link_id
        self.dirs = (Direction(sa, sb, qos_active), Direction(sb, sa, qos_active))
        for d in self.dirs:
            d.owner = self
        self.inside_a, self.inside_b = sa is None, sb is None
        self.cell: Link | None = None        # a UE radio link: its cell
        self.mac = b""                       # a UE radio link: its UE's address
        self.n3: Link | None = None          # a cell: its backhaul
        self.n3_of: Link | None = None       # a backhaul: its cell
        self.members: list[Link] = []        # a cell: its UE radio links
        self.n3_dscp: int | None = None      # a UE radio link: DSCP its uplink gets entering the cell

    @property
    def is_cell(self) -> bool:
        return self.inside_a and self.inside_b

    def leave(self) -> None:
        if self.cell is not None:
            self.cell.members.remove(self)
            self.cell, self.dirs[0].next = None, None

    def unwire(self) -> None:
        self.leave()
        for ue in self.members:
            ue.cell, ue.dirs[0].next = None, None
        self.members = []
        if self.n3 is not None:
            self.n3.n3_of, self.n3.dirs[1].next, self.n3 = None, None, None
        if self.n3_of is not None:
            self.n3_of.n3, self.n3_of.dirs[0].next, self.n3_of = None, None, None


class Relay(ControlChannel):
    """The relay: the control channel (relayctl.py) plus the links' data path."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[int, Link] = {}
        self.by_fd: dict[int, Direction] = {}
        self.heap: list[tuple[float, int, Direction]] = []
        self.qos_active: set[Direction] = set()  # directions with packets waiting in a class queue
        self.framer = LineFramer(LINE_MAX_BYTES)

    def add_link(self, link_id: int, a: str, b: str) -> str:
        if link_id in self.links:
            return f"err link {link_id} exists"
        if len(self.links) >= MAX_LINKS:
            return f"err too many links (max {MAX_LINKS})"
        for name in (a, b):
            try:
                if name != INSIDE:
                    _if_up(name)
            except OSError:
                return f"err no such interface {name}"
        socks: list[socket.socket | None] = []
        try:
            for name in (a, b):
                socks.append(None if name == INSIDE else _open(name))
        except OSError as exc:
            for s in socks:
                if s is not None:
                    s.close()
            return f"err socket: {os.strerror(exc.errno or 0)}"
        link = self.links[link_id] = Link(link_id, *socks, qos_active=self.qos_active)
        for d in link.dirs:
            if d.inp is not None:
                self.by_fd[d.inp.fileno()] = d
        return "ok"

    def has_link(self, link_id: int) -> bool:
        return link_id in self.links

    def del_link(self, link_id: int) -> None:
        link = self.links.pop(link_id)
        link.unwire()
        for d in link.dirs:
            d.fifo.clear()
            self.qos_active.discard(d)
            if d.inp is not None:
                self.by_fd.pop(d.inp.fileno(), None)
                d.inp.close()

    def set_rows(self, link_id: int, direction: int, rows: list[Row]) -> None:
        d = self.links[link_id].dirs[direction]
        d.sched, d.sidx = [(t, Params(values)) for t, values in rows], 0

    def set_qos(self, link_id: int, direction: int, classes: int, dscp_map: bytes,
                weights: list[int]) -> None:
        d = self.links[link_id].dirs[direction]
        was_empty = not d.fifo
        d.set_qos(classes, dscp_map, weights)
        if was_empty and d.fifo:  # the heap holds one entry per non-empty FIFO
            heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))

    def link_stats(self, link_id: int) -> str:
        def one(d: Direction) -> dict:
            out = {**d.c, "queued": len(d.serq) + (d.qos.waiting if d.qos else 0), "late_hist": d.late_hist}
            if d.qos is not None:
                out["classes"] = [c.stats() for c in d.qos.classes[:d.qos.n]]
            return out
        dirs = self.links[link_id].dirs
        return json.dumps({name: one(d) for name, d in zip(DIRECTIONS, dirs, strict=True)})

    def qos_run(self, now: float) -> None:
        """Every class queue's serialisation starts up to ``now`` (relay.c qos_run)."""
        for d in list(self.qos_active):
            if d.qos_serve(now):
                heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))

    # --- cells (relay/cell.c; the same rules and texts) ------------------------------------------
    def cell_backhaul(self, cell_id: int, n3_id: int) -> str | None:
        cell, n3 = self.links[cell_id], self.links[n3_id]
        if not cell.is_cell:
            return f"link {cell_id} is not a cell (both ends must be -)"
        if not n3.inside_a or n3.inside_b:
            return f"link {n3_id} cannot be a backhaul (its A end must be -, its B end an interface)"
        if cell.n3 is not None:
            return f"cell {cell_id} has backhaul {cell.n3.id} already"
        if n3.n3_of is not None:
            return f"link {n3_id} is the backhaul of cell {n3.n3_of.id} already"
        cell.n3, n3.n3_of = n3, cell
        cell.dirs[0].next, n3.dirs[1].next = n3.dirs[0], cell.dirs[1]
        return None

    def cell_join(self, ue_id: int, cell_id: int, mac: bytes) -> str | None:
        ue, cell = self.links[ue_id], self.links[cell_id]
        if not cell.is_cell:
            return f"link {cell_id} is not a cell (both ends must be -)"
        if ue.inside_a or not ue.inside_b:
            return f"link {ue_id} cannot join a cell (its A end must be an interface, its B end -)"
        ue.leave()  # a move: the UE's queued packets stay with it
        cell.members.append(ue)
        ue.cell, ue.mac, ue.dirs[0].next = cell, mac, cell.dirs[0]
        return None

    def cell_leave(self, ue_id: int) -> None:
        self.links[ue_id].leave()

    def n3_dscp(self, ue_id: int, dscp: int | None) -> str | None:
        ue = self.links[ue_id]
        if ue.inside_a or not ue.inside_b:
            return f"link {ue_id} is not a UE radio link (its A end an interface, its B end -)"
        ue.n3_dscp = dscp
        return None

    def forward(self, d: Direction, data: bytes, dep: float) -> bool:
        """A packet leaving ``d`` towards the inside enters what it is wired to, arriving at ``dep``."""
        link = d.owner
        targets: list[Direction] = []
        if link is not None and link.n3_dscp is not None and link.cell is not None and d is link.dirs[0]:
            data = n3_mark(data, link.n3_dscp)
        if link is not None and link.is_cell and d is link.dirs[1]:
            group = len(data) >= 6 and data[0] & 1
            targets = [ue.dirs[1] for ue in link.members if group or data[:6] == ue.mac]
            targets = targets if group else targets[:1]
            if not targets and not group:  # a UE that moved away: Xn forwarding to its cell now
                moved = next((ue for ue in self.links.values()
                              if ue.cell is not None and ue.cell is not link and ue.mac == data[:6]), None)
                if moved is not None:
                    targets = [moved.cell.dirs[1]]
                    d.c["xn_forwarded"] += 1
        elif d.next is not None:
            targets = [d.next]
        for target in targets:
            if target.enqueue(data, dep):
                heapq.heappush(self.heap, (target.fifo[0][0], id(target), target))
        return bool(targets)

    def flush(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, d = heapq.heappop(self.heap)
            if d.out is None:  # one packet at a time: the next direction gets them in departure order
                if not d.fifo or d.fifo[0][0] > now:  # its link was deleted (or a stale entry)
                    if d.fifo:
                        heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))
                    continue
                due, data = d.fifo.popleft()
                if d.fifo:
                    heapq.heappush(self.heap, (d.fifo[0][0], id(d), d))
                counter = "tx" if self.forward(d, data, due) else "dropped_unwired"
                d.c[counter] += 1
                d.c["tx_bytes"] += len(data) if counter == "tx" else 0
                continue
            while d.fifo and d.fifo[0][0] <= now:
                due, data = d.fifo.popleft()
                failure = send_retrying(d, data)
                if failure is None:
                    d.c["tx"] += 1
                    d.c["tx_bytes"] += len(data)
                    d.late_hist[late_bucket((now - due) * 1e9)] += 1  # as relay.c: the flush instant
                else:
                    d.c[failure] += 1
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
            self.qos_run(now)
            self.flush(now)
            wake = min([self.heap[0][0]] if self.heap else [], default=math.inf)
            wake = min([wake, *(d.qos_start() for d in self.qos_active)])  # serialisation starts too
            timeout = None if wake == math.inf else max(0.0, wake - now - EARLY_S)
            fds = [stdin, *self.by_fd]
            ready, _, _ = select.select(fds, [], [], timeout)
            for fd in ready:
                if fd != stdin:
                    if fd in self.by_fd:
                        self.read(self.by_fd[fd])
                    continue
                try:
                    chunk = os.read(stdin, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                for line, too_long in self.framer.feed(chunk):
                    try:
                        reply = self.feed(line, too_long)
                    except Exception as exc:  # a bug: still one reply, so the caller stays in step
                        print(f"pyrelay: {exc!r}", file=sys.stderr, flush=True)
                        reply = None if self.pending else f"err internal error: {type(exc).__name__}"
                    if reply is not None:
                        print(reply, flush=True)
                    if self.quit:
                        return


def _if_up(ifname: str) -> None:
    """Bring an interface up; OSError if there is no such interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(ctl, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP))


def _open(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        enable_rx_timestamps(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((ifname, ETH_P_ALL))
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


if __name__ == "__main__":
    if "--disable-ipv6" in sys.argv[1:]:  # only in the relay's own network namespace
        for path in ("/proc/sys/net/ipv6/conf/all/disable_ipv6",
                     "/proc/sys/net/ipv6/conf/default/disable_ipv6"):
            try:
                with open(path, "w") as f:
                    f.write("1")
            except OSError:
                pass
    Relay().run()

"""Inference-offload client and server that run *inside* emulated hosts (standard library only).

A request is an image of ``request_bytes`` split into UDP datagrams of at most
``max_datagram_bytes`` (header + chunk). Each fragment carries (request id, fragment index,
fragment count, send time, request size). The server reassembles; when the last missing fragment
arrives (kernel receive time, SO_TIMESTAMPNS) it waits the MODELLED compute time (a sleep: no
inference runs here) and replies with one datagram of ``reply_bytes`` carrying its own times. One
accelerator per server: requests complete in FIFO order (compute starts at max(complete, busy)).

Every host shares the machine's CLOCK_REALTIME, so client and server times are comparable.

Client: ``python -m experiments.agents.offload client --target NAME=IP ... --port N
--request-bytes B --interval-ms I --start-ns T --duration-s D --timeout-ms W --out FILE
--seed S``. Request k leaves in slot ``[T + k * I, T + (k + 1/2) * I)`` (seeded phase) towards one
target; every round of len(targets) slots visits each target once, in seeded random order. A request
without a reply within W is a miss (status ``timeout``; a reply after W is recorded as ``late``).
Server: ``... server --port N --compute-ms C --reply-bytes R --out FILE --ready FILE`` until SIGTERM.
Both write one JSON object per request (JSON lines).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import socket
import struct
import time
from dataclasses import dataclass, field

from experiments.agents.common import StopFlag, agent_main, recv_stamped, timestamping_udp_socket, touch

REQ = struct.Struct("!4sIHHQI")  # magic, request_id, index, count, send_ns, request_bytes
REPLY = struct.Struct("!4sIQQQQ")  # magic, request_id, first_recv_ns, complete_ns, compute_start_ns,
#                                    reply_send_ns
REQ_MAGIC = b"FSOQ"
REPLY_MAGIC = b"FSOA"
MAX_DATAGRAM_BYTES = 1400  # UDP payload per datagram: below a 1500 B MTU with IP/UDP headers
SLEEP_BELOW_NS = 2_000_000  # replies due sooner than this are timed with nanosleep, not poll()


def fragment_sizes(request_bytes: int, max_datagram_bytes: int = MAX_DATAGRAM_BYTES) -> list[int]:
    """Chunk sizes (image bytes per datagram) of one request; every datagram is header + chunk."""
    chunk = max_datagram_bytes - REQ.size
    if chunk <= 0:
        raise ValueError(f"max_datagram_bytes {max_datagram_bytes} leaves no room after the "
                         f"{REQ.size}-byte header")
    if request_bytes <= 0:
        raise ValueError(f"request_bytes must be > 0, got {request_bytes}")
    count = math.ceil(request_bytes / chunk)
    if count > 0xFFFF:
        raise ValueError(f"{request_bytes} B needs {count} fragments; at most 65535")
    return [chunk] * (count - 1) + [request_bytes - chunk * (count - 1)]


def request_schedule(n_targets: int, start_ns: int, end_ns: int, interval_ns: int, seed: int
                     ) -> list[tuple[int, int]]:
    """(send time ns, target index) of every request: one slot per ``interval``, targets in turn.

    Each round of ``n_targets`` slots visits every target once in a seeded random order, and each
    request leaves at a seeded random phase in the first half of its slot. A fixed order and phase
    would alias with the LEO's 15 s reconfiguration grid (with 250 ms slots and 3 targets, every
    boundary would hit the same target). Same seed -> same schedule.
    """
    rng = random.Random(seed)
    out: list[tuple[int, int]] = []
    order: list[int] = []
    k = 0
    while start_ns + k * interval_ns < end_ns:
        if not order:
            order = rng.sample(range(n_targets), n_targets)
        out.append((start_ns + k * interval_ns + int(rng.random() * interval_ns / 2), order.pop(0)))
        k += 1
    return out


def pack_fragment(request_id: int, index: int, count: int, send_ns: int, request_bytes: int,
                  chunk_bytes: int) -> bytes:
    """One request datagram (the chunk is zero padding: the image content does not matter)."""
    return REQ.pack(REQ_MAGIC, request_id, index, count, send_ns, request_bytes) + bytes(chunk_bytes)


def pack_reply(request_id: int, first_ns: int, complete_ns: int, compute_start_ns: int,
               send_ns: int, reply_bytes: int) -> bytes:
    return (REPLY.pack(REPLY_MAGIC, request_id, first_ns, complete_ns, compute_start_ns, send_ns)
            + bytes(max(0, reply_bytes - REPLY.size)))


@dataclass
class Partial:
    """A request being reassembled on the server."""

    request_id: int
    count: int
    request_bytes: int
    first_ns: int
    last_ns: int = 0
    received: set[int] = field(default_factory=set)
    bytes_received: int = 0


class Reassembler:
    """Collects fragments; ``add`` returns the request when its last missing fragment arrives.

    Duplicates are ignored, fragments of an already completed request too. Requests still
    missing fragments are listed by ``incomplete()`` (they must be reported, never dropped).
    """

    def __init__(self) -> None:
        self.pending: dict[int, Partial] = {}
        self.completed: set[int] = set()

    def add(self, datagram: bytes, recv_ns: int) -> Partial | None:
        if len(datagram) < REQ.size:
            return None
        magic, rid, index, count, _send_ns, size = REQ.unpack_from(datagram)
        if magic != REQ_MAGIC or index >= count or rid in self.completed:
            return None
        part = self.pending.get(rid)
        if part is None:
            part = self.pending[rid] = Partial(rid, count, size, first_ns=recv_ns)
        if index in part.received:
            return None
        part.received.add(index)
        part.bytes_received += len(datagram) - REQ.size
        part.last_ns = recv_ns
        if len(part.received) < part.count:
            return None
        del self.pending[rid]
        self.completed.add(rid)
        return part

    def incomplete(self) -> list[Partial]:
        return sorted(self.pending.values(), key=lambda p: p.request_id)


def server(args: argparse.Namespace) -> int:
    """Reassemble requests, sleep the modelled compute time, reply; log each request (SIGTERM ends)."""
    flag = StopFlag()
    sock = timestamping_udp_socket()
    sock.bind(("0.0.0.0", args.port))
    compute_ns = int(args.compute_ms * 1e6)
    parts = Reassembler()
    due: list[tuple[int, int, Partial, tuple, int]] = []  # (reply due ns, id, request, addr, start)
    busy_until = 0
    records = []
    touch(args.ready)
    while not flag.stop:
        now = time.time_ns()
        while due and due[0][0] <= now:
            _, _, req, addr, start_ns = heapq.heappop(due)
            send_ns = time.time_ns()
            try:
                sock.sendto(pack_reply(req.request_id, req.first_ns, req.last_ns, start_ns, send_ns,
                                       args.reply_bytes), addr)
                error = None
            except OSError as exc:
                error = str(exc)
            records.append({"request_id": req.request_id, "status": "replied", "fragments": req.count,
                            "fragments_received": len(req.received), "first_recv_ns": req.first_ns,
                            "complete_ns": req.last_ns, "compute_start_ns": start_ns,
                            "reply_send_ns": send_ns, "send_error": error})
            now = time.time_ns()
        if due and due[0][0] - now < SLEEP_BELOW_NS:
            time.sleep(max(0, due[0][0] - now) / 1e9)  # socket timeouts round up to 1 ms (poll)
            continue  # fragments arriving meanwhile wait in the socket with their kernel times
        timeout_ns = min(due[0][0] - now - SLEEP_BELOW_NS // 2, 100_000_000) if due else 100_000_000
        sock.settimeout(max(0.0, timeout_ns / 1e9))
        got = recv_stamped(sock)
        if got is None:
            continue
        data, recv_ns, _anc, addr = got
        done = parts.add(data, recv_ns)
        if done is not None:
            start_ns = max(done.last_ns, busy_until)
            busy_until = start_ns + compute_ns
            heapq.heappush(due, (busy_until, done.request_id, done, addr, start_ns))
    for _, _, req, _, start_ns in sorted(due):
        records.append({"request_id": req.request_id, "status": "not_replied", "fragments": req.count,
                        "fragments_received": len(req.received), "first_recv_ns": req.first_ns,
                        "complete_ns": req.last_ns, "compute_start_ns": start_ns})
    for req in parts.incomplete():
        records.append({"request_id": req.request_id, "status": "incomplete", "fragments": req.count,
                        "fragments_received": len(req.received), "first_recv_ns": req.first_ns,
                        "last_recv_ns": req.last_ns})
    _write_lines(args.out, records)
    return 0


def _write_lines(path: str, records: list[dict]) -> None:
    with open(path, "w") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def _send_request(sock: socket.socket, rid: int, dest: tuple, sizes: list[int], request_bytes: int,
                  pacing_ns: float) -> dict:
    """Send every fragment (paced if ``pacing_ns`` > 0 per byte on the wire); return the send record."""
    sent = errors = 0
    start_ns = time.time_ns()
    for index, chunk in enumerate(sizes):
        if pacing_ns and index:
            target = start_ns + int(pacing_ns * sum(s + REQ.size for s in sizes[:index]))
            wait = target - time.time_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
        try:
            sock.sendto(pack_fragment(rid, index, len(sizes), time.time_ns(), request_bytes, chunk),
                        dest)
            sent += 1
        except OSError:
            errors += 1  # the request cannot complete: it will time out and count as a miss
    return {"send_start_ns": start_ns, "send_end_ns": time.time_ns(), "fragments": len(sizes),
            "fragments_sent": sent, "send_errors": errors}


def client(args: argparse.Namespace) -> int:
    """Issue requests on an absolute schedule, targets in turn; record each one's fate."""
    targets = [t.split("=", 1) for t in args.target]
    sizes = fragment_sizes(args.request_bytes, args.max_datagram_bytes)
    pacing_ns = 8e3 / args.pacing_rate_mbps if args.pacing_rate_mbps > 0 else 0.0  # ns per byte
    timeout_ns = int(args.timeout_ms * 1e6)
    end_ns = args.start_ns + int(args.duration_s * 1e9)
    plan = request_schedule(len(targets), args.start_ns, end_ns, int(args.interval_ms * 1e6),
                            args.seed)
    sock = timestamping_udp_socket()
    records: dict[int, dict] = {}
    open_ids: set[int] = set()
    rid = 0
    while True:
        now = time.time_ns()
        next_ns = plan[rid][0] if rid < len(plan) else end_ns
        if rid < len(plan) and now >= next_ns:
            name, ip = targets[plan[rid][1]]
            records[rid] = {"request_id": rid, "target": name, "scheduled_ns": next_ns,
                            "status": "pending",
                            **_send_request(sock, rid, (ip, args.port), sizes, args.request_bytes,
                                            pacing_ns)}
            open_ids.add(rid)
            rid += 1
            continue
        for r in [r for r in open_ids if now - records[r]["send_start_ns"] > timeout_ns]:
            records[r]["status"] = "timeout"
            open_ids.discard(r)
        last_deadline = max((records[r]["send_start_ns"] + timeout_ns for r in open_ids), default=0)
        if rid >= len(plan) and now >= max(last_deadline, end_ns):
            break
        wake = min(next_ns if rid < len(plan) else end_ns + timeout_ns, now + 50_000_000)
        sock.settimeout(max(0.0, (wake - now) / 1e9))
        got = recv_stamped(sock)
        if got is None:
            continue
        data, recv_ns, _anc, _addr = got
        if len(data) < REPLY.size:
            continue
        magic, r, first_ns, complete_ns, compute_start_ns, send_ns = REPLY.unpack_from(data)
        if magic != REPLY_MAGIC or r not in records or "reply_recv_ns" in records[r]:
            continue
        record = records[r]
        record.update(reply_recv_ns=recv_ns, first_recv_ns=first_ns, complete_ns=complete_ns,
                      compute_start_ns=compute_start_ns, reply_send_ns=send_ns)
        if r in open_ids:
            in_time = recv_ns - record["send_start_ns"] <= timeout_ns
            record["status"] = "ok" if in_time else "late"
            open_ids.discard(r)
        else:
            record["status"] = "late"  # already declared a timeout; kept as a miss
    for r in open_ids:
        records[r]["status"] = "timeout"
    _write_lines(args.out, [records[r] for r in sorted(records)])
    return 0


def main(argv: list[str] | None = None) -> int:
    return agent_main("python -m experiments.agents.offload", {
        "server": (server, [("--port", int), ("--compute-ms", float), ("--reply-bytes", int),
                            ("--out", str), ("--ready", str)]),
        "client": (client, [("--target", None), ("--port", int), ("--request-bytes", int),
                            ("--max-datagram-bytes", int, MAX_DATAGRAM_BYTES),
                            ("--pacing-rate-mbps", float, 0.0), ("--interval-ms", float),
                            ("--start-ns", int), ("--duration-s", float), ("--timeout-ms", float),
                            ("--seed", int, 1), ("--out", str)]),
    }, argv)


if __name__ == "__main__":
    raise SystemExit(main())

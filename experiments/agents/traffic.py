"""UDP traffic sender and receiver that run *inside* an emulated host (standard library only).

Sender: ``python -m experiments.agents.traffic send --dest IP --port N --flow-id F
--payload-bytes B --interval-ms I --start-ns T --duration-s D --summary FILE``. Packets carry
(flow id, sequence number, send time); the send time is CLOCK_REALTIME in ns, taken just before
``sendto``. Packets leave on an absolute schedule ``T + k * interval`` (no drift).

Probes: ``echo`` reflects UDP probes and stamps its receive time into them; ``probe`` sends them
on a schedule and logs RTT plus both one-way delays (same shared clock).

Receiver: ``python -m experiments.agents.traffic recv --port N --out FILE``. It logs every
packet: the sender's fields, the kernel receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME, the
same clock the sender used: every emulated host shares the machine's kernel clock) and the
TOS byte as received (DSCP marking). On SIGTERM/SIGINT it reads what is still queued in its socket,
flushes everything and writes ``FILE.done`` (packets received, the socket's kernel drops, the
namespace's UDP counter changes), which the analysis uses to check the record file is complete.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import struct
import time
from typing import Any

from experiments.agents.common import (
    TIMESTAMP_ANCILLARY,
    StopFlag,
    agent_main,
    recv_stamped,
    timestamping_udp_socket,
    touch,
    udp_snmp,
    udp_snmp_delta,
    udp_socket_drops,
)

HEADER = struct.Struct("!IIQ")  # flow_id, seq, send_ns (network order, in the payload)
RECORD = struct.Struct("<IIQQIB3x")  # flow_id, seq, send_ns, recv_ns, bytes, tos (raw file)


def read_pattern(path: str) -> tuple[int, list[tuple[int, int]]]:
    """A pattern file (experiments/kinds/slices/models.py Pattern.write): period, (offset, bytes) each."""
    with open(path) as handle:
        lines = handle.read().split("\n")
    period_ns, n = (int(x) for x in lines[0].split())
    entries = [(int(a), int(b)) for a, b in (line.split() for line in lines[1:1 + n])]
    if len(entries) != n:
        raise SystemExit(f"{path}: {len(entries)} packets, header says {n}")
    return period_ns, entries


def send(args: argparse.Namespace) -> int:
    """Packets on an absolute schedule: every interval, or a pattern (``--pattern``) repeated every
    period (packet k at start + (k // n) * period + offset[k % n], with its own size)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    interval_ns = int(args.interval_ms * 1e6)
    period_ns, pattern = read_pattern(args.pattern) if args.pattern else \
        (interval_ns, [(0, args.payload_bytes)])
    paddings = [bytes(max(0, size - HEADER.size)) for _, size in pattern]
    start_ns = args.start_ns
    end_ns = start_ns + int(args.duration_s * 1e9)
    dest = (args.dest, args.port)
    sent = errors = 0
    why: dict[str, int] = {}  # errno name -> packets that could not be sent
    seq = 0
    next_ns = start_ns
    while next_ns < end_ns:
        wait_ns = next_ns - time.time_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        try:
            sock.sendto(HEADER.pack(args.flow_id, seq, time.time_ns()) + paddings[seq % len(pattern)], dest)
            sent += 1
        except OSError as exc:
            errors += 1  # counted as lost by the analysis (never received), with its reason
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            why[name] = why.get(name, 0) + 1
        seq += 1
        next_ns = start_ns + (seq // len(pattern)) * period_ns + pattern[seq % len(pattern)][0]
    with open(args.summary, "w") as out:
        json.dump({"flow_id": args.flow_id, "packets_scheduled": seq, "packets_sent": sent,
                   "send_errors": errors, "send_errors_by_errno": why, "start_ns": start_ns,
                   "end_ns": end_ns, "interval_ns": period_ns,
                   "pattern_packets": len(pattern) if args.pattern else 0}, out)
    return 0


class Replies:
    """``--reply CMD,FLOW,IP,PORT,BYTES,SUMMARY;...``: answer each packet of flow CMD at once with a
    packet of flow FLOW and the same seq (a control loop's status), from the receiving socket."""

    def __init__(self, spec: str) -> None:
        self.by_command: dict[int, dict[str, Any]] = {}
        for item in filter(None, spec.split(";")):
            cmd, flow, ip, port, size, summary = item.split(",")
            self.by_command[int(cmd)] = {"flow": int(flow), "dest": (ip, int(port)),
                                         "padding": bytes(max(0, int(size) - HEADER.size)),
                                         "summary": summary, "scheduled": 0, "sent": 0, "errors": 0,
                                         "why": {}, "at_stop": 0}

    def answer(self, sock: socket.socket, flow_id: int, seq: int, at_stop: bool) -> None:
        r = self.by_command.get(flow_id)
        if r is None:
            return
        if at_stop:  # the senders are done: a command drained at stop is not answered
            r["at_stop"] += 1
            return
        r["scheduled"] += 1
        try:
            sock.sendto(HEADER.pack(r["flow"], seq, time.time_ns()) + r["padding"], r["dest"])
            r["sent"] += 1
        except OSError as exc:
            r["errors"] += 1
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            r["why"][name] = r["why"].get(name, 0) + 1

    def write(self) -> None:
        for cmd, r in self.by_command.items():
            with open(r["summary"], "w") as out:
                json.dump({"flow_id": r["flow"], "packets_scheduled": r["scheduled"],
                           "packets_sent": r["sent"], "send_errors": r["errors"],
                           "send_errors_by_errno": r["why"], "replies_to": cmd,
                           "commands_unanswered_at_stop": r["at_stop"]}, out)


DRAIN_LIMIT_S = 2.0  # at stop, read what waits in the socket for at most this long


def recv(args: argparse.Namespace) -> int:
    """Log every datagram until SIGTERM, then read what is still queued in the socket, and write
    ``OUT.done``: packets received, this socket's kernel drops and the namespace's UDP counters."""
    flag = StopFlag()
    sock = timestamping_udp_socket()
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    sock.bind(("0.0.0.0", args.port))
    sock.settimeout(0.1)
    ancillary_size = TIMESTAMP_ANCILLARY + socket.CMSG_SPACE(4)
    buffer = bytearray()
    received = drained = 0
    replies = Replies(args.reply)
    snmp_before = udp_snmp()
    with open(args.out, "wb") as out:
        touch(args.out + ".ready")  # tells the runner the socket is bound
        drain_end_ns = None
        while True:
            if flag.stop and drain_end_ns is None:
                sock.settimeout(0.001)  # drain: stop at the first 1 ms without a datagram
                drain_end_ns = time.monotonic_ns() + int(DRAIN_LIMIT_S * 1e9)
            if drain_end_ns is not None and time.monotonic_ns() > drain_end_ns:
                break  # still flooded after the limit: what stays queued counts as lost
            got = recv_stamped(sock, ancillary_size)
            if got is None:
                if drain_end_ns is not None:
                    break
                continue
            drained += drain_end_ns is not None
            data, recv_ns, ancdata, _addr = got
            tos = next((c[0] for lvl, typ, c in ancdata
                        if lvl == socket.IPPROTO_IP and typ == socket.IP_TOS), 0)
            if len(data) < HEADER.size:
                continue
            flow_id, seq, send_ns = HEADER.unpack_from(data)
            buffer += RECORD.pack(flow_id, seq, send_ns, recv_ns, len(data), tos)
            replies.answer(sock, flow_id, seq, drain_end_ns is not None)
            received += 1
            if len(buffer) >= 1 << 20:
                out.write(buffer)
                buffer.clear()
        socket_drops = udp_socket_drops(sock)
        out.write(buffer)
        out.flush()
        os.fsync(out.fileno())
    replies.write()
    with open(args.out + ".done", "w") as done:
        json.dump({"packets_received": received, "drained_at_stop": drained,
                   "socket_drops": socket_drops,
                   "udp_snmp_delta": udp_snmp_delta(snmp_before, udp_snmp())}, done)
    return 0


PROBE = struct.Struct("!IQQ")  # seq, client send_ns, echo server receive ns (in the payload)
PROBE_RECORD = struct.Struct("<I4xQQQ")  # seq, send_ns, echo_ns, recv_ns (raw file)


def echo(args: argparse.Namespace) -> int:
    """Reflect probes, writing this host's receive time into them (until SIGTERM)."""
    flag = StopFlag()
    sock = timestamping_udp_socket()
    sock.bind(("0.0.0.0", args.port))
    sock.settimeout(0.1)
    touch(args.ready)
    while not flag.stop:
        if (got := _recv_probe(sock)) is not None:
            (seq, send_ns, _), recv_ns, data, addr = got
            sock.sendto(PROBE.pack(seq, send_ns, recv_ns) + data[PROBE.size:], addr)
    return 0


def _recv_probe(sock: socket.socket) -> tuple[tuple[int, int, int], int, bytes, Any] | None:
    """One probe as ``(header fields, kernel receive ns, datagram, sender)``; None if none came."""
    got = recv_stamped(sock)
    if got is None or len(got[0]) < PROBE.size:
        return None
    data, recv_ns, _anc, addr = got
    return PROBE.unpack_from(data), recv_ns, data, addr


def probe(args: argparse.Namespace) -> int:
    """Send probes on an absolute schedule and log each echo: RTT and both one-way delays. Each echo's
    record is written to ``--out`` as it arrives (unbuffered), so the run can follow the path live
    (the leo_failover kind's fault detector reads it)."""
    sock = timestamping_udp_socket()
    padding = bytes(max(0, args.payload_bytes - PROBE.size))
    interval_ns = int(args.interval_ms * 1e6)
    end_ns = args.start_ns + int(args.duration_s * 1e9)
    stop_ns = end_ns + int(args.drain_s * 1e9)
    out = open(args.out, "wb", buffering=0)  # noqa: SIM115 -- closed after the loop
    echoes = 0
    seq = sent = 0
    next_ns = args.start_ns
    while True:
        now = time.time_ns()
        if now >= stop_ns:
            break
        if next_ns < end_ns and now >= next_ns:
            try:
                sock.sendto(PROBE.pack(seq, time.time_ns(), 0) + padding, (args.dest, args.port))
                sent += 1
            except OSError:
                pass  # a probe that could not leave is a lost probe
            seq += 1
            next_ns = args.start_ns + seq * interval_ns
            continue
        wake_ns = min(next_ns if next_ns < end_ns else stop_ns, stop_ns)
        sock.settimeout(max(0.0, (wake_ns - now) / 1e9))
        if (got := _recv_probe(sock)) is not None:
            (rseq, send_ns, echo_ns), recv_ns, _data, _addr = got
            out.write(PROBE_RECORD.pack(rseq, send_ns, echo_ns, recv_ns))
            echoes += 1
    out.close()
    with open(args.summary, "w") as summary:
        json.dump({"probes_scheduled": seq, "probes_sent": sent, "echoes_received": echoes}, summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    timing = [("--start-ns", int), ("--duration-s", float)]
    return agent_main("python -m experiments.agents.traffic", {
        "send": (send, [("--dest", str), ("--port", int), ("--flow-id", int), ("--payload-bytes", int),
                        ("--interval-ms", float), *timing, ("--summary", str), ("--pattern", str, "")]),
        "recv": (recv, [("--port", int), ("--out", str), ("--reply", str, "")]),
        "echo": (echo, [("--port", int), ("--ready", str)]),
        "probe": (probe, [("--dest", str), ("--port", int), ("--payload-bytes", int),
                          ("--interval-ms", float), *timing, ("--drain-s", float), ("--out", str),
                          ("--summary", str)]),
    }, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""The relay's class-based queues ("qos"): replies of both relays (C and pyrelay) for every bad
field, and the Python twin's data path (strict priority, weights, reconfiguration) with no sockets."""

from __future__ import annotations

import pytest

from tests.unit.test_relay_protocol import IMPLS, ask
from topologies.links.pyrelay import Direction, Params, frame_dscp

MAP = "0" * 46 + "1" + "0" * 17   # DSCP 46 -> class 1, the rest class 0
USAGE = "err usage: qos ID uplink|downlink N MAP W_0 .. W_{N-1} | qos ID uplink|downlink off"


@pytest.mark.parametrize("impl", IMPLS)
def test_qos_replies(impl: str) -> None:
    cases = [
        (f"qos 1 uplink 2 {MAP} 1 0", "err no link 1"),
        ("add 1 - -", "ok"),
        (f"qos 1 uplink 2 {MAP} 1 0", "ok"),
        (f"qos 1 downlink 2 {MAP} 1 0", "ok"),
        ("qos 1 uplink off", "ok"),
        ("qos 1 uplink off", "ok"),  # off again: nothing to do
        ("qos 1 downlink", USAGE),
        ("qos 1 sideways off", USAGE),
        ("qos 1 uplink off 3", USAGE),
        ("qos x uplink off", "err ID: got x; allowed an integer 0..2147483647"),
        ("qos 2 uplink off", "err no link 2"),
        (f"qos 1 uplink 0 {MAP}", "err N: got 0; allowed an integer 1..8 or off"),
        (f"qos 1 uplink 9 {MAP} 1 1 1 1 1 1 1 1 1", "err N: got 9; allowed an integer 1..8 or off"),
        ("qos 1 uplink 1e0 x 1", "err N: got 1e0; allowed an integer 1..8 or off"),
        (f"qos 1 uplink 2 {MAP} 1", "err expected MAP and 2 weights after N, got 2 words"),
        (f"qos 1 uplink 2 {MAP} 1 1 1", "err expected MAP and 2 weights after N, got 4 words"),
        ("qos 1 uplink 2 0101 1 1", "err MAP: got 4 characters; allowed exactly 64 digits 0..1 "
                                   "(digit k: the class of DSCP k)"),
        (f"qos 1 uplink 2 {MAP}0 1 1", "err MAP: got 65 characters; allowed exactly 64 digits 0..1 "
                                      "(digit k: the class of DSCP k)"),
        (f"qos 1 uplink 2 {MAP.replace('1', '2')} 1 1", "err MAP: DSCP 46: got 2; allowed a digit 0..1"),
        (f"qos 1 uplink 2 {'x' + MAP[1:]} 1 1", "err MAP: DSCP 0: got x; allowed a digit 0..1"),
        (f"qos 1 uplink 2 {MAP} 1 -1", "err W_1: got -1; allowed an integer 0 (strict priority) or "
                                      "1..1000000 (weight)"),
        (f"qos 1 uplink 2 {MAP} 1000001 1", "err W_0: got 1000001; allowed an integer 0 (strict priority) or "
                                           "1..1000000 (weight)"),
        (f"qos 1 uplink 2 {MAP} 1.5 1", "err W_0: got 1.5; allowed an integer 0 (strict priority) or "
                                       "1..1000000 (weight)"),
        (f"qos 1 uplink 8 {MAP} 0 0 1 2 3 4 5 1000000", "ok"),  # every class count and weight bound
        (f"qos 1 uplink 1 {'0' * 64} 0", "ok"),
    ]
    replies = ask(impl, *(request for request, _ in cases), "stats 1", "ping")
    assert replies[:-2] == [reply for _, reply in cases] and replies[-1] == "ok"
    assert '"classes":[{"rx":0,' in replies[-2].replace(" ", "")  # was on: per-class counters


def frame(dscp: int, size: int, v6: bool = False, vlan: bool = False) -> bytes:
    """An Ethernet frame of ``size`` bytes carrying IPv4 (or IPv6) with ``dscp``."""
    eth = b"\x02" * 12 + (b"\x81\x00\x00\x05" if vlan else b"")
    ip = (b"\x86\xdd" + bytes([0x60 | dscp >> 2, (dscp & 3) << 6]) if v6
          else b"\x08\x00" + bytes([0x45, dscp << 2]))
    return (eth + ip).ljust(size, b"\0")


def test_frame_dscp() -> None:
    assert [frame_dscp(frame(46, 100)), frame_dscp(frame(34, 100, vlan=True)),
            frame_dscp(frame(10, 100, v6=True)), frame_dscp(frame(63, 100, v6=True, vlan=True)),
            frame_dscp(b"\0" * 10),
            frame_dscp(b"\x02" * 12 + b"\x08\x06" + b"\0" * 40)] == [46, 34, 10, 63, 0, 0]


def shaped(rate_bps: float, qlim: int = 0) -> Direction:
    d = Direction(None, None)
    d.sched = [(0.0, Params([0, 0, 0, 0, 0, 0, 0, 0, 0, rate_bps, qlim, 0, 1]))]
    return d


def test_strict_class_overtakes_waiting_bulk_but_not_the_frame_in_service() -> None:
    d = shaped(8e6)  # 1000 bytes = 1 ms
    d.set_qos(2, bytes(46) + b"\x01" + bytes(17), [1, 0])
    for _ in range(5):
        d.enqueue(frame(0, 1000), 0.0)  # bulk at t=0: the first starts at once
    d.enqueue(frame(46, 125), 0.0001)     # EF: waits only for the bulk frame in service
    d.qos_serve(1.0)
    deps = [(round(t * 1e6), frame_dscp(f)) for t, f in d.fifo]
    assert deps == [(1000, 0), (1125, 46), (2125, 0), (3125, 0), (4125, 0), (5125, 0)]
    ef = d.qos.classes[1]
    assert ef.c["tx"] == 1 and ef.wait_max_ns == 900_000


def test_weights_share_the_serialiser_and_reconfiguration_keeps_class_order() -> None:
    d = shaped(8e6, qlim=1000)
    d.set_qos(2, bytes(34) + b"\x01" + bytes(29), [1, 3])
    for i in range(400):
        d.enqueue(frame(0, 1000), i * 1e-6)
        d.enqueue(frame(34, 1000), i * 1e-6 + 5e-7)
    d.qos_serve(0.2)  # 200 frames served
    served = [frame_dscp(f) for _, f in d.fifo]
    assert len(served) == 200 and abs(served.count(34) - 150) <= 3, served.count(34)
    assert len(d.qos.classes[0].waiting) == 400 - served.count(0)
    d.set_qos(0, b"", [])  # off: the rest is serialised back to back, in arrival order
    assert d.qos.waiting == 0 and len(d.fifo) == 800 and d.qos.classes[1].c["rx"] == 400
    deps = [dep for dep, _ in d.fifo]
    assert deps == sorted(deps) and abs(deps[-1] - 0.8) < 1e-6  # nothing lost, the rate kept

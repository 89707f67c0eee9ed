"""Cells inside the relay (relay/cell.c, and its twin in pyrelay.py), driven without sockets:
UE radio link -> cell (shared capacity) -> backhaul, and back by destination MAC; moves.
The C relay's cells are checked on real interfaces in tests/integration/test_relay_cells.py."""

from __future__ import annotations

import errno
import heapq

import pytest

from topologies.links.params import DirectionParams
from topologies.links.pyrelay import Link, Relay
from topologies.links.relayproc import wire_params

UE1, UE2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


class FakeSocket:
    """Records what the relay sends on an interface."""

    _next_fd = 1000

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        FakeSocket._next_fd += 1
        self.fd = FakeSocket._next_fd

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        pass


def frame(dst: str, src: str, size: int = 100) -> bytes:
    header = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"
    return header + bytes(size - len(header))


class Site:
    """Two UEs, two cells (10 and 20), each with a backhaul (11 and 21) to the UPF."""

    def __init__(self) -> None:
        self.relay = Relay()
        self.ue_sock = {1: FakeSocket(), 2: FakeSocket()}
        self.upf_sock = {11: FakeSocket(), 21: FakeSocket()}
        links = {1: Link(1, self.ue_sock[1], None), 2: Link(2, self.ue_sock[2], None),
                 10: Link(10, None, None), 20: Link(20, None, None),
                 11: Link(11, None, self.upf_sock[11]), 21: Link(21, None, self.upf_sock[21])}
        self.relay.links.update(links)
        for cell, n3 in ((10, 11), (20, 21)):
            assert self.relay.command(f"cell {cell} {n3}") == "ok"
        for ue, mac in ((1, UE1), (2, UE2)):
            assert self.relay.command(f"join {ue} 10 {mac}") == "ok"

    def set(self, link: int, direction: str, **params: float) -> None:
        words = wire_params(DirectionParams(**params), params.get("delay_ms", 0.0))
        assert self.relay.command(f"set {link} {direction} {words}") == "ok"

    def arrive(self, link: int, direction: int, data: bytes, t: float) -> None:
        d = self.relay.links[link].dirs[direction]
        if d.enqueue(data, t):
            heapq.heappush(self.relay.heap, (d.fifo[0][0], id(d), d))

    def stats(self, link: int, direction: str) -> dict:
        import json

        return json.loads(self.relay.command(f"stats {link}")[3:])[direction]


def test_uplink_crosses_radio_cell_and_backhaul_with_their_delays_summed() -> None:
    site = Site()
    site.set(1, "uplink", delay_ms=1.0)
    site.set(11, "uplink", delay_ms=0.5)
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1), t=10.0)
    site.relay.flush(10.0014)
    assert site.upf_sock[11].sent == []           # due at 10.0015
    site.relay.flush(10.0015)
    assert len(site.upf_sock[11].sent) == 1 and site.upf_sock[21].sent == []
    assert site.stats(10, "uplink")["tx"] == 1 and site.stats(1, "uplink")["tx"] == 1


def test_ues_of_a_cell_share_its_capacity() -> None:
    site = Site()
    site.set(10, "uplink", rate_mbps=8.0)            # 1000 B take 1 ms
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1, 1000), t=5.0)
    site.arrive(2, 0, frame("02:00:00:00:00:99", UE2, 1000), t=5.0)
    site.relay.flush(5.0015)
    assert len(site.upf_sock[11].sent) == 1          # the second waits behind the first
    site.relay.flush(5.00201)
    assert len(site.upf_sock[11].sent) == 2
    cell = site.stats(10, "uplink")  # the second waited 1 ms for the serialiser
    assert (cell["serialised"], cell["wait_sum_ns"], cell["wait_max_ns"]) == (2, 1_000_000, 1_000_000)


def test_downlink_is_delivered_by_destination_mac_broadcast_to_all_unknown_dropped() -> None:
    site = Site()
    site.arrive(11, 1, frame(UE2, "02:00:00:00:00:99"), t=1.0)
    site.arrive(11, 1, frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:99"), t=1.0)
    site.arrive(11, 1, frame("02:00:00:00:00:77", "02:00:00:00:00:99"), t=1.0)
    site.relay.flush(1.0)
    assert len(site.ue_sock[2].sent) == 2 and len(site.ue_sock[1].sent) == 1  # unicast + broadcast
    cell_down = site.stats(10, "downlink")
    assert cell_down["rx"] == 3 and cell_down["tx"] == 2 and cell_down["dropped_unwired"] == 1


def test_a_ue_moved_to_another_cell_goes_up_its_backhaul_and_is_reached_through_both() -> None:
    site = Site()
    site.set(20, "downlink", delay_ms=2.0)
    assert site.relay.command(f"join 1 20 {UE1}") == "ok"
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1), t=2.0)
    site.arrive(21, 1, frame(UE1, "02:00:00:00:00:99"), t=2.0)   # through the new cell
    site.arrive(11, 1, frame(UE1, "02:00:00:00:00:99"), t=2.0)   # old cell: Xn-forwarded to the new
    site.relay.flush(2.0)
    assert len(site.upf_sock[21].sent) == 1 and site.upf_sock[11].sent == []
    assert site.ue_sock[1].sent == []                # both wait in the new cell's 2 ms downlink
    site.relay.flush(2.002)
    assert len(site.ue_sock[1].sent) == 2
    old = site.stats(10, "downlink")
    assert old["xn_forwarded"] == 1 and old["tx"] == 1 and old["dropped_unwired"] == 0
    assert site.relay.links[10].members == [site.relay.links[2]]


def test_leave_and_delete_unwire_and_count() -> None:
    site = Site()
    assert site.relay.command("leave 1") == "ok"
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1), t=3.0)
    site.relay.flush(3.0)
    assert site.stats(1, "uplink")["dropped_unwired"] == 1 and site.upf_sock[11].sent == []
    site.relay.del_link(11)                          # the backhaul goes: the cell leads nowhere
    site.arrive(2, 0, frame("02:00:00:00:00:99", UE2), t=3.0)
    site.relay.flush(3.0)
    assert site.stats(10, "uplink")["dropped_unwired"] == 1


def ipv4_frame(src: str, tos: int, ihl_words: int = 5) -> bytes:
    """An Ethernet II / IPv4 / UDP frame from ``src`` with ``tos`` and a valid header checksum."""
    header = bytearray(4 * ihl_words)
    header[0], header[1], header[3], header[8], header[9] = 0x40 | ihl_words, tos, 4 * ihl_words + 12, 64, 17
    header[12:20] = bytes([10, 0, 0, 1, 10, 0, 0, 9])
    header[10:12] = _checksum(header).to_bytes(2, "big")
    ethernet = bytes.fromhex("020000000099") + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"
    return ethernet + header + bytes(12)


def _checksum(header: bytes | bytearray) -> int:
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_n3_marking_sets_the_ues_dscp_keeps_ecn_and_a_valid_checksum() -> None:
    site = Site()
    assert site.relay.command("n3dscp 1 46") == "ok"
    site.arrive(1, 0, ipv4_frame(UE1, tos=0x03), t=4.0)               # ECN CE, DSCP 0
    site.arrive(1, 0, ipv4_frame(UE1, tos=0x00, ihl_words=6), t=4.0)  # with an option word
    site.arrive(2, 0, ipv4_frame(UE2, tos=0x28), t=4.0)               # UE 2: not marked
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1)[:12] + b"\x86\xdd" + bytes(60), t=4.0)  # IPv6: kept
    site.relay.flush(4.0)
    sent = site.upf_sock[11].sent
    assert len(sent) == 4
    ue1, ue2 = (bytes.fromhex(mac.replace(":", "")) for mac in (UE1, UE2))
    first, option = (f for f in sent if f[6:12] == ue1 and f[12:14] == b"\x08\x00")
    (other,) = (f for f in sent if f[6:12] == ue2)
    (ipv6,) = (f for f in sent if f[12:14] == b"\x86\xdd")
    assert first[15] == 46 << 2 | 3 and option[15] == 46 << 2 and other[15] == 0x28
    for sent, ihl in ((first, 20), (option, 24), (other, 20)):
        assert _checksum(sent[14:14 + ihl]) == 0  # a header with its checksum sums to 0xFFFF
    assert ipv6[14:] == bytes(60)
    assert site.relay.command("n3dscp 1 -") == "ok"
    site.arrive(1, 0, ipv4_frame(UE1, tos=0x01), t=5.0)
    site.relay.flush(5.0)
    assert site.upf_sock[11].sent[-1][15] == 0x01


@pytest.mark.parametrize(("request_line", "reply"), [
    ("n3dscp 11 46", "err link 11 is not a UE radio link (its A end an interface, its B end -)"),
    ("n3dscp 1 64", "err DSCP: got 64; allowed an integer 0..63 or -"),
    ("n3dscp 1", "err usage: n3dscp ID DSCP|-"),
    ("n3dscp 99 1", "err no link 99"),
    ("cell 1 11", "err link 1 is not a cell (both ends must be -)"),
    ("cell 10 1", "err link 1 cannot be a backhaul (its A end must be -, its B end an interface)"),
    ("cell 10 21", "err cell 10 has backhaul 11 already"),
    ("join 11 10 02:00:00:00:00:05",
     "err link 11 cannot join a cell (its A end must be an interface, its B end -)"),
    ("join 1 10 02:00:00:00:00", "err MAC: got 02:00:00:00:00; allowed aa:bb:cc:dd:ee:ff"),
    ("join 1 99 02:00:00:00:00:05", "err no link 99"),
    ("leave 1 2", "err usage: leave ID"),
])
def test_cell_requests_are_checked(request_line: str, reply: str) -> None:
    assert Site().relay.command(request_line) == reply


class RefusingSocket(FakeSocket):
    """Refuses the first ``refusals`` sends with ``error`` (an errno), then sends."""

    def __init__(self, refusals: int, error: int) -> None:
        super().__init__()
        self.refusals, self.error = refusals, error

    def send(self, data: bytes) -> int:
        if self.refusals:
            self.refusals -= 1
            raise OSError(self.error, "refused")
        return super().send(data)


@pytest.mark.parametrize(("refusals", "error", "sent", "retries", "dropped"), [
    (2, errno.ENOBUFS, 1, 2, None),             # the backlog drains: sent after two retries
    (25, errno.ENOBUFS, 0, 20, "dropped_full"),  # still full after every retry: the host's, counted apart
    (1, errno.ENXIO, 0, 0, "dropped_error"),     # gone: dropped at once, no retry
])
def test_a_send_refused_for_lack_of_room_is_retried(refusals: int, error: int, sent: int,
                                                    retries: int, dropped: str | None) -> None:
    site = Site()
    site.upf_sock[11] = sock = RefusingSocket(refusals, error)
    site.relay.links[11].dirs[0].out = sock
    site.arrive(1, 0, frame("02:00:00:00:00:99", UE1), t=6.0)
    site.relay.flush(6.0)
    up = site.stats(11, "uplink")
    assert (len(sock.sent), up["tx"], up["tx_retries"]) == (sent, sent, retries)
    for counter in ("dropped_full", "dropped_error"):
        assert up[counter] == (1 if counter == dropped else 0), counter

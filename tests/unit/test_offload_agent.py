"""Offload wire format: fragmentation, reassembly, and a client/server exchange on loopback."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.agents.offload import (
    REPLY,
    REQ,
    Reassembler,
    fragment_sizes,
    pack_fragment,
    pack_reply,
    request_schedule,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("request_bytes", [1, 1375, 1376, 1377, 80_000, 250_000])
def test_fragments_cover_the_request_and_fit_the_datagram(request_bytes: int) -> None:
    sizes = fragment_sizes(request_bytes, 1400)
    assert sum(sizes) == request_bytes
    assert all(0 < s <= 1400 - REQ.size for s in sizes)
    assert len(sizes) == -(-request_bytes // (1400 - REQ.size))
    datagrams = [pack_fragment(7, i, len(sizes), 0, request_bytes, s) for i, s in enumerate(sizes)]
    assert max(len(d) for d in datagrams) <= 1400


def test_fragment_sizes_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError):
        fragment_sizes(1000, REQ.size)
    with pytest.raises(ValueError):
        fragment_sizes(0)
    with pytest.raises(ValueError):
        fragment_sizes(100_000, REQ.size + 1)  # 100,000 fragments > 65,535


def _datagrams(rid: int, request_bytes: int) -> list[bytes]:
    sizes = fragment_sizes(request_bytes, 1400)
    return [pack_fragment(rid, i, len(sizes), 123, request_bytes, s) for i, s in enumerate(sizes)]


def test_reassembly_out_of_order_with_duplicates_completes_once() -> None:
    frags = _datagrams(3, 10_000)
    order = list(range(len(frags)))
    random.Random(1).shuffle(order)
    r = Reassembler()
    done = []
    for k, i in enumerate(order + order[:3]):  # duplicates at the end, after completion
        got = r.add(frags[i], recv_ns=1000 + k)
        if got is not None:
            done.append(got)
    assert len(done) == 1
    req = done[0]
    assert (req.request_id, req.count, req.request_bytes, req.bytes_received) == (3, 8, 10_000, 10_000)
    assert req.first_ns == 1000 and req.last_ns == 1000 + len(frags) - 1
    assert r.incomplete() == []


def test_a_missing_fragment_leaves_the_request_incomplete_and_reported() -> None:
    r = Reassembler()
    frags_a, frags_b = _datagrams(1, 5000), _datagrams(2, 3000)
    assert all(r.add(d, 1) is None for d in frags_a[:-1])  # last fragment lost
    assert [r.add(d, 2) for d in frags_b][-1].request_id == 2
    r.add(frags_a[1], 3)  # a duplicate does not complete it either
    (partial,) = r.incomplete()
    assert partial.request_id == 1 and len(partial.received) == len(frags_a) - 1


def test_reassembler_ignores_foreign_and_short_datagrams() -> None:
    r = Reassembler()
    assert r.add(b"xx", 1) is None
    assert r.add(b"NOPE" + bytes(REQ.size), 1) is None
    assert r.incomplete() == []
    assert len(pack_reply(1, 2, 3, 4, 5, 1000)) == 1000 and len(pack_reply(1, 2, 3, 4, 5, 10)) == REPLY.size


def test_request_schedule_rounds_phases_and_seed() -> None:
    interval = 250_000_000
    plan = request_schedule(3, 0, 60 * 10**9, interval, seed=1)
    assert len(plan) == 240
    for k, (t, _) in enumerate(plan):
        assert k * interval <= t < k * interval + interval // 2
    for r in range(0, 240, 3):
        assert sorted(i for _, i in plan[r:r + 3]) == [0, 1, 2]  # every round visits every target
    assert plan == request_schedule(3, 0, 60 * 10**9, interval, seed=1)
    assert plan != request_schedule(3, 0, 60 * 10**9, interval, seed=2)
    # not a fixed rotation: a fixed one would put the same target at every 15 s LEO boundary
    long_plan = request_schedule(3, 0, 600 * 10**9, interval, seed=1)
    at_boundaries = [long_plan[(15 * n + 12) * 4][1] for n in range(39)]  # slots at :12, :27, ...
    assert len(set(at_boundaries)) == 3
    assert len(request_schedule(3, 0, 8 * 10**9, interval, seed=1)) == 32


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_and_server_on_loopback(tmp_path: Path) -> None:
    """Every request answered; the compute part is the modelled sleep; parts sum to the response."""
    port = _free_udp_port()
    agent = [sys.executable, "-m", "experiments.agents.offload"]
    server = subprocess.Popen([*agent, "server", "--port", str(port), "--compute-ms", "5",
                               "--reply-bytes", "500", "--out", str(tmp_path / "server.jsonl"),
                               "--ready", str(tmp_path / "ready")], cwd=REPO)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "ready").exists():
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        start_ns = time.time_ns() + 200_000_000
        subprocess.run([*agent, "client", "--target", "a=127.0.0.1", "--target", "b=127.0.0.1",
                        "--port", str(port), "--request-bytes", "20000", "--interval-ms", "50",
                        "--start-ns", str(start_ns), "--duration-s", "0.5", "--timeout-ms", "500",
                        "--out", str(tmp_path / "client.jsonl")], cwd=REPO, check=True, timeout=20)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert server.returncode == 0
    client = [json.loads(x) for x in (tmp_path / "client.jsonl").read_text().splitlines()]
    served = [json.loads(x) for x in (tmp_path / "server.jsonl").read_text().splitlines()]
    assert [c["request_id"] for c in client] == list(range(10))
    assert sorted(c["target"] for c in client[:2]) == ["a", "b"]  # each round visits both
    assert all(c["status"] == "ok" and c["fragments"] == 15 == c["fragments_sent"] for c in client)
    assert len(served) == 10 and all(s["status"] == "replied" for s in served)
    for c in client:
        slot_ns = start_ns + c["request_id"] * 50_000_000
        assert slot_ns <= c["scheduled_ns"] < slot_ns + 25_000_000
        assert c["send_start_ns"] >= c["scheduled_ns"]
        compute_ms = (c["reply_send_ns"] - c["complete_ns"]) / 1e6
        assert 5.0 <= compute_ms < 15.0, compute_ms  # a sleep: never shorter
        assert c["send_start_ns"] <= c["first_recv_ns"] <= c["complete_ns"] <= c["reply_recv_ns"]

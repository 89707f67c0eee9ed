"""Pure parts of the OVS per-hop calibration: compensation (topologies/links/compensation.py, the one
place the arithmetic lives), names, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from topologies.links.compensation import compensate
from topologies.links.ovs_calibrate import MAX_IFNAME, hop_to_compensate_ms, object_names, summarize


@pytest.mark.parametrize(("delay_ms", "hops", "hop_ms", "expected"), [
    (10.0, 2, 0.1, (9.8, 0.0)),          # fully compensated
    (0.15, 2, 0.1, (0.0, 0.05)),         # below the emulator's floor: 0.05 ms cannot be taken off
    (0.0, 3, 0.1, (0.0, 0.3)),           # zero delay configured: the whole overhead is a shortfall
    (5.0, 0, 0.1, (5.0, 0.0)),           # no switch on the path
    (5.0, 4, 0.0, (5.0, 0.0)),           # a free datapath changes nothing
    (0.3, 3, 0.1, (0.0, 0.0)),           # exactly the floor: 3 * 0.1 = 0.30000000000000004
])
def test_compensate(delay_ms: float, hops: int, hop_ms: float, expected: tuple[float, float]) -> None:
    configured, shortfall = compensate(delay_ms, hops, hop_ms)
    assert configured == pytest.approx(expected[0], abs=1e-9)
    assert shortfall == pytest.approx(expected[1], abs=1e-9)
    assert configured >= 0 and shortfall >= 0
    assert configured == 0 or shortfall == 0  # never both


@pytest.mark.parametrize(("delay_ms", "hops", "hop_ms", "own_ms", "expected"), [
    (10.0, 1, 0.1, 0.05, (9.85, 0.0)),     # relay: its own latency and a switch hop both taken off
    (0.1, 1, 0.1, 0.05, (0.0, 0.05)),      # shortfall counts the backend's own latency too
    (0.0, 1, 0.1, 0.05, (0.0, 0.15)),      # a zero delay stays 0 (transparent)
    (2.0, 0, 0.1, 0.0, (2.0, 0.0)),        # netem, no switch: unchanged
    (2.0, 0, 0.0, -0.01, (2.01, 0.0)),     # a calibration mean below 0 adds delay
    (0.0, 0, 0.0, -0.01, (0.0, 0.0)),      # ... but never to a zero delay
])
def test_compensate_with_backend_latency(delay_ms: float, hops: int, hop_ms: float, own_ms: float,
                                         expected: tuple[float, float]) -> None:
    assert compensate(delay_ms, hops, hop_ms, own_ms) == pytest.approx(expected, abs=1e-9)


def test_compensate_exact_floor_is_not_a_shortfall() -> None:
    # floating-point residue must not read as "below what the machine can emulate"
    assert compensate(0.3, 3, 0.1) == (0.0, 0.0)


def test_compensate_keeps_end_to_end_delay() -> None:
    rng = np.random.default_rng(7)
    for delay_ms, hops, hop_ms in zip(rng.uniform(0, 5, 200), rng.integers(0, 6, 200),
                                      rng.uniform(0, 0.5, 200), strict=True):
        configured, shortfall = compensate(float(delay_ms), int(hops), float(hop_ms))
        # what the path measures (configured + overhead) is the request plus what could not be removed
        assert configured + hops * hop_ms == pytest.approx(delay_ms + shortfall, abs=1e-5)


@pytest.mark.parametrize(("args", "word"), [((-1.0, 1, 0.1), "delay_ms"), ((1.0, 1, -0.1), "hop_ms"),
                                             ((1.0, -1, 0.1), "hops"), ((1.0, 1.5, 0.1), "hops"),
                                             ((1.0, True, 0.1), "hops")])
def test_compensate_rejects_bad_input(args: tuple, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        compensate(*args)


def test_object_names_carry_tag_and_fit() -> None:
    names = object_names("a7")
    assert len(set(names.values())) == len(names)
    for key, name in names.items():
        assert "fsa7hop" in name
        if not key.startswith("ns_"):
            assert len(name) <= MAX_IFNAME


@pytest.mark.parametrize("tag", ["abcdefghij", "a-b", "", "a b"])
def test_object_names_reject_bad_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="tag"):
        object_names(tag)


def test_summarize_differences() -> None:
    direct = np.full(1000, 0.01)
    bridge = np.concatenate([np.full(980, 0.11), np.full(20, 1.01)])  # 2 % slow packets
    s = summarize(bridge, direct)
    assert s["switch_hop_ms_p50"] == pytest.approx(0.10)
    assert s["switch_hop_ms_mean"] == pytest.approx(0.11 * 0.98 + 1.01 * 0.02 - 0.01, abs=1e-4)
    assert s["switch_hop_ms_p99"] == pytest.approx(1.00)   # bridge p99 minus direct p50
    assert s["direct_ms_p50"] == pytest.approx(0.01) and s["bridge_ms_p50"] == pytest.approx(0.11)


def test_summarize_needs_both_paths() -> None:
    with pytest.raises(ValueError):
        summarize(np.array([0.1]), np.array([]))


@pytest.mark.parametrize(("p50", "expected"), [(0.12, 0.12), (0.0, 0.0), (-0.0013, 0.0)])
def test_hop_to_compensate_never_negative(p50: float, expected: float) -> None:
    # A negative p50 (seen in a TCG guest: -0.0013 ms) is noise; compensate() refuses a negative hop.
    hop = hop_to_compensate_ms({"switch_hop_ms_p50": p50})
    assert hop == expected
    assert compensate(1.0, 1, hop) == (pytest.approx(1.0 - expected), 0.0)

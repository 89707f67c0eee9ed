"""The relay's NR cell model (relay/nrcell.c, run without sockets by relay/nrsim.c) against
hand-computed cases on one small grid:

mu = 1 (slot 0.5 ms, symbol 500000 // 14 = 35714 ns), pattern DDDSU (slot k: k % 5 = 0, 1, 2 D;
3 S with 10 DL / 2 guard / 2 UL symbols; 4 U), 10 PRBs, 80 bits per PRB and symbol both ways
(a full slot carries 140 B per PRB, the S slot's downlink 100 B, its uplink 20 B);
SR every 5 slots at offset 4, k1 = k2 = 1, gNB processing 0.5 ms, UE and gNB decode 0.3 ms,
no implementation offsets, first grant 100 B, at most 4 HARQ transmissions, round-robin.
"""

from __future__ import annotations

import pytest

from topologies.nr.sim import LOST_HARQ, simulate, simulate_with_stats

SYM = 35714
GRID = "grid 1 DDDSU 10 2 2 10 80 80"
TIMING = "timing 5 4 1 1 500000 300000 300000 0 0 100 4 0 1000000"


def slot_end(k: int, symbols: int = 14) -> int:
    return k * 500_000 + symbols * SYM


def plan(*slices: str, timing: str = TIMING) -> list[str]:
    """Wire lines; each slice 'DED MIN MAX PRIO BLER_UL BLER_DL CG_PERIOD CG_BYTES CG_REPS'."""
    return [GRID, timing, *(f"slice {i} {s}" for i, s in enumerate(slices)), "on"]


OPEN = "0 0 10 1 0 0 0 0 1"  # no share rules, no errors, dynamic grant


def one(lines: list[str], t_ns: int, direction: str, size: int = 50) -> int:
    (d,) = simulate(lines, {1: 0}, [(t_ns, 1, direction, size)])
    return d.dep_ns


def test_downlink_waits_for_the_gnb_processing_then_the_next_downlink_symbols() -> None:
    # arrives at 1.0 ms (slot 2); the slot must start >= 0.5 ms later: slot 3 (S), whose 10 DL
    # symbols end at 1.5 ms + 10 symbols; then the UE decodes for 0.3 ms
    assert one(plan(OPEN), 1_000_000, "downlink") == slot_end(3, 10) + 300_000


def test_uplink_dynamic_grant_goes_sr_then_grant_then_pusch() -> None:
    # arrives 1.0 ms: SR occasion slot 4 (U, (4 - 4) % 5 == 0); gNB has it at its end + 0.3 ms
    # decode, + 0.5 ms processing = 3.299996 ms -> grant in slot 7 (D); PUSCH >= slot 8: the S slot
    # (2 UL symbols; 100 B first grant on 5 PRBs); decoded 0.3 ms after the slot's end
    assert one(plan(OPEN), 1_000_000, "uplink") == slot_end(8) + 300_000


def test_a_packet_too_big_for_the_first_grant_needs_a_second_round() -> None:
    # 300 B: 100 B in the first grant (slot 8), the BSR reaches the gNB at slot_end(8) + 0.3 ms,
    # + 0.5 ms -> grant in slot 11 (D), PUSCH >= 12: slot 13 (S: 2 symbols, 10 PRBs = 200 B) takes the rest
    assert one(plan(OPEN), 1_000_000, "uplink", size=300) == slot_end(13) + 300_000


def test_configured_grant_sends_in_the_next_uplink_slot_without_a_request() -> None:
    cg = "0 0 10 1 0 0 1 100 1"  # every U slot, 100 B
    # arrives 1.0 ms; the next U slot is slot 4 (S slots' 2 uplink symbols carry no occasion): sent
    # there, no SR
    assert one(plan(cg), 1_000_000, "uplink") == slot_end(4) + 300_000
    assert one(plan(cg), 1_000_000, "uplink") < one(plan(OPEN), 1_000_000, "uplink")


def test_harq_retransmissions_follow_the_grid_round_trip() -> None:
    # downlink at 1.0 ms, first try slot 3 (S). A NACK goes in the first UL slot >= 3 + k1: slot 4;
    # + 0.5 ms processing -> slot 6 (D), decoded at slot_end(6) + 0.3. Next: UL slot >= 7 is 8 (S),
    # its end + 0.5 ms -> slot 10... (slot 10 is D: 10 % 5 = 0), then UL >= 11: slot 13, -> slot 15.
    first = slot_end(3, 10) + 300_000
    rounds = [first, slot_end(6) + 300_000, slot_end(10) + 300_000, slot_end(15) + 300_000]
    period_ns = 10_000_000  # 4 TDD periods: every packet at the same phase
    arrivals = [(1_000_000 + i * period_ns, 1, "downlink", 50) for i in range(400)]
    got = simulate(plan("0 0 10 1 0 0.5 0 0 1"), {1: 0}, arrivals, seed=3)
    seen = {d.dep_ns - (d.arr_ns - 1_000_000) if d.dep_ns >= 0 else LOST_HARQ for d in got}
    assert seen <= {*rounds, LOST_HARQ}
    assert {rounds[0], rounds[1], rounds[2]} <= seen     # 1 - 0.5^3 of them within three tries
    lost = sum(d.dep_ns == LOST_HARQ for d in got)
    assert 0 < lost < 60                                # 0.5^4 of 400 = 25 expected


def test_every_transmission_failing_loses_the_packet_after_harq_max() -> None:
    got, stats = simulate_with_stats(plan("0 0 10 1 0 1 0 0 1"), {1: 0}, [(1_000_000, 1, "downlink", 50)],
                                     stats_at_ns=50_000_000)
    assert [d.dep_ns for d in got] == [LOST_HARQ]
    assert stats["slices"][0]["downlink"]["retx"] == 3  # 4 transmissions at most (harq_max)


def backlog(ue: int, n: int = 400) -> list[tuple[int, int, str, int]]:
    return [(1_000_000 + i, ue, "downlink", 1400) for i in range(n)]


def prbs(stats: dict, s: int) -> int:
    return stats["slices"][s]["downlink"]["prb"]


def share(stats: dict, s: int) -> float:
    """Slice s's share of the PRBs the slices used (the first slots, before the backlog is
    eligible, count for no one)."""
    return prbs(stats, s) / sum(prbs(stats, i) for i in range(len(stats["slices"])))


def test_dedicated_prbs_are_never_lent_even_when_idle() -> None:
    # slice 0 owns 4 dedicated PRBs and sends nothing; slice 1 is backlogged: it gets the other 6
    _, stats = simulate_with_stats(plan("4 4 10 1 0 0 0 0 1", OPEN), {1: 0, 2: 1}, backlog(2),
                                   stats_at_ns=20_000_000)
    slots = stats["downlink"]["slots"]
    assert 6 * (slots - 2) <= prbs(stats, 1) <= 6 * slots  # 2: the slots before it was eligible
    assert stats["downlink"]["prb_idle_dedicated"] == 4 * slots


def test_a_slice_with_dedicated_prbs_keeps_its_delay_while_another_saturates() -> None:
    # the backlogged slice has the higher priority; the probe's slice 2 dedicated PRBs
    probe = [(1_500_000 + i * 2_500_000, 1, "downlink", 100) for i in range(8)]  # 2.5 ms = 1 period
    high = "0 0 10 5 0 0 0 0 1"
    alone = simulate(plan("2 2 10 1 0 0 0 0 1", high), {1: 0, 2: 1}, probe)
    loaded = simulate(plan("2 2 10 1 0 0 0 0 1", high), {1: 0, 2: 1}, sorted(probe + backlog(2)))
    delay = lambda got: [d.dep_ns - d.arr_ns for d in got if d.ue == 1]  # noqa: E731
    assert delay(loaded) == delay(alone)
    starved = simulate(plan(OPEN, high), {1: 0, 2: 1}, sorted(probe + backlog(2)))
    assert min(delay(starved)) > max(delay(alone))  # without them it waits until the backlog is gone


def test_minimum_then_priority_up_to_the_maximum() -> None:
    # both backlogged: slice 0 (min 5, max 7, priority 10) first up to its maximum, slice 1 the rest
    _, stats = simulate_with_stats(plan("0 5 7 10 0 0 0 0 1", "0 0 10 1 0 0 0 0 1"), {1: 0, 2: 1},
                                   sorted(backlog(1) + backlog(2)), stats_at_ns=20_000_000)
    assert share(stats, 0) == pytest.approx(0.7, abs=0.02)


def test_a_minimum_share_holds_against_a_higher_priority() -> None:
    _, stats = simulate_with_stats(plan("0 0 10 10 0 0 0 0 1", "0 4 10 1 0 0 0 0 1"), {1: 0, 2: 1},
                                   sorted(backlog(1) + backlog(2)), stats_at_ns=20_000_000)
    assert share(stats, 1) == pytest.approx(0.4, abs=0.02)


def test_equal_priorities_share_evenly() -> None:
    _, stats = simulate_with_stats(plan(OPEN, OPEN), {1: 0, 2: 1}, sorted(backlog(1) + backlog(2)),
                                   stats_at_ns=20_000_000)
    assert share(stats, 0) == pytest.approx(0.5, abs=0.02)


def test_round_robin_shares_a_slice_between_its_ues() -> None:
    got = simulate(plan(OPEN), {1: 0, 2: 0}, sorted(backlog(1, 100) + backlog(2, 100)))
    last = {ue: max(d.dep_ns for d in got if d.ue == ue) for ue in (1, 2)}
    # turns per slot, not bytes: on DDDSU one UE's turns fall on D slots, the other's on D and S
    assert abs(last[1] - last[2]) <= 0.1 * max(last.values())
    firsts = sorted(got, key=lambda d: d.dep_ns)[:4]
    assert {d.ue for d in firsts} == {1, 2}  # both served from the start


def test_delivery_keeps_order_per_ue() -> None:
    got = simulate(plan("0 0 10 1 0 0.3 0 0 1"), {1: 0}, [(1_000_000 + i * 100_000, 1, "downlink", 200)
                                                          for i in range(300)], seed=5)
    deps = [d.dep_ns for d in got if d.dep_ns >= 0]
    arrs = [d.arr_ns for d in got if d.dep_ns >= 0]
    assert arrs == sorted(arrs) and deps == sorted(deps)


def test_bad_configuration_is_refused_with_its_field() -> None:
    from topologies.nr.sim import NrSimError

    with pytest.raises(NrSimError, match="S_DL \\+ S_GAP \\+ S_UL"):
        simulate(["grid 1 DDDSU 10 2 3 10 80 80", TIMING, f"slice 0 {OPEN}", "on"], {1: 0}, [])
    with pytest.raises(NrSimError, match="DED <= MIN <= MAX"):
        simulate([GRID, TIMING, "slice 0 5 2 10 1 0 0 0 0 1", "on"], {1: 0}, [])
    with pytest.raises(NrSimError, match="scheduling-request occasion"):
        simulate([GRID, "timing 5 0 1 1 500000 300000 300000 0 0 100 4 0 1000000", f"slice 0 {OPEN}", "on"],
                 {1: 0}, [])


def test_a_handover_interruption_holds_the_ues_packets_until_it_ends() -> None:
    # interrupted over [0.9 ms, 5.0 ms): the downlink packet of 1.0 ms waits for the first
    # downlink slot starting at or after 5.0 ms (slot 10, D), the uplink one for an SR occasion
    # after it (slot 14), then the usual grant round: gNB at slot_end(14) + 0.3 + 0.5 ms = 8.3 ms
    # -> grant slot 17 (D), PUSCH slot 18 (S)
    off = [(1, 900_000, 5_000_000)]
    (down,) = simulate(plan(OPEN), {1: 0}, [(1_000_000, 1, "downlink", 50)], interruptions=off)
    assert down.dep_ns == slot_end(10) + 300_000
    (up,) = simulate(plan(OPEN), {1: 0}, [(1_000_000, 1, "uplink", 50)], interruptions=off)
    assert up.dep_ns == slot_end(18) + 300_000

"""Slice enforcement as pure data (controllers/enforcement.py): what each enforcement point is told,
and that applying a plan calls each point once with it (a fake engine, no relay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from controllers.enforcement import (
    BEST_EFFORT,
    UNSLICED_RAN,
    apply_plan,
    enforcement_plan,
    ran_shares,
    slice_queues,
)
from topologies.nr.config import SliceRan
from topologies.scenario import load_scenario


@dataclass(frozen=True)
class S:
    name: str
    dscp: int
    ran: SliceRan


URLLC = S("urllc", 46, SliceRan(dedicated_pct=10, min_pct=10, priority=10, uplink_grant="configured"))
EMBB = S("embb", 34, SliceRan(min_pct=40, priority=5))
MMTC = S("mmtc", 10, SliceRan(max_pct=20, priority=1))


def test_ran_shares_are_the_scenarios_with_enforcement_and_one_pool_without() -> None:
    assert ran_shares([URLLC, EMBB], True) == (("urllc", URLLC.ran), ("embb", EMBB.ran))
    off = ran_shares([URLLC, EMBB], False)
    assert [n for n, _ in off] == ["urllc", "embb"]
    for _, r in off:
        assert (r.dedicated_pct, r.min_pct, r.max_pct) == (0, 0, 100)
        assert (r.uplink_grant, r.bler_pct) == ("dynamic", 10)
        assert r.priority == UNSLICED_RAN.priority


def test_queues_put_the_top_priority_slice_first_and_strict_the_rest_weighted_by_their_minimum() -> None:
    q = slice_queues([MMTC, URLLC, EMBB])
    names = [c.name for c in q.classes]
    assert names == ["urllc", "mmtc", "embb", BEST_EFFORT]
    by = {c.name: c for c in q.classes}
    assert by["urllc"].strict and by["urllc"].dscps == (46,)
    assert not by["embb"].strict and by["embb"].weight == 40
    # min_pct 0: mMTC and best effort split the 60 % nobody reserved
    assert by["mmtc"].weight == 30 and by[BEST_EFFORT].weight == 30
    assert 0 in by[BEST_EFFORT].dscps and 46 not in by[BEST_EFFORT].dscps
    assert q.default_class == 3
    covered = sorted(d for c in q.classes for d in c.dscps)
    assert covered == list(range(64))  # every DSCP in exactly one class


def test_equal_priorities_get_no_strict_class() -> None:
    q = slice_queues([S("a", 46, SliceRan(min_pct=30)), S("b", 34, SliceRan(min_pct=10))])
    assert not any(c.strict for c in q.classes)
    assert [c.weight for c in q.classes] == [30, 10, 60]
    full = slice_queues([S("a", 46, SliceRan(min_pct=70)), S("b", 34, SliceRan(min_pct=30)),
                         S("c", 10, SliceRan())])
    assert [c.weight for c in full.classes] == [70, 30, 1, 1]  # nothing left: the others still get 1


def test_no_slices_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="slices"):
        slice_queues([])


def test_the_off_plan_leaves_queues_fifo_and_packets_unmarked() -> None:
    off, on = enforcement_plan([URLLC, EMBB], False), enforcement_plan([URLLC, EMBB], True)
    assert off.queues is None and off.n3_dscp == {"urllc": None, "embb": None}
    assert on.queues is not None and on.n3_dscp == {"urllc": 46, "embb": 34}
    assert on.summary()["queues"][0] == {"name": "urllc", "dscps": [46], "strict": True, "weight": 0}


class FakeEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.plans = {"gnb1": load_scenario().nr_plan("gnb1")}

    def nr_plan(self, cell: str) -> Any:
        return self.plans.get(cell)

    def set_slice_shares(self, cell: str, plan: Any) -> None:
        self.calls.append(("shares", cell, plan.slices))

    def shaped_directions(self) -> list[tuple[str, str]]:
        return [("bh_gnb1", "uplink"), ("leo", "downlink")]

    def set_queues(self, link_name: str, direction: str, config: Any) -> None:
        self.calls.append(("queues", link_name, direction, config))

    def set_n3_dscp(self, radio_link: str, dscp: int | None) -> None:
        self.calls.append(("n3", radio_link, dscp))


def test_applying_a_plan_tells_every_point_once() -> None:
    scenario = load_scenario()
    engine = FakeEngine()
    plan = enforcement_plan(scenario.slices, True)
    done = apply_plan(engine, plan, ["gnb1", "gnb_fixed"], {"agv1": "urllc", "sensor1": "mmtc"})
    assert done == {"cells": ["gnb1"], "queues": ["bh_gnb1/uplink", "leo/downlink"], "n3_marked_ues": 2}
    assert ("shares", "gnb1", plan.ran) in engine.calls
    assert ("queues", "leo", "downlink", plan.queues) in engine.calls
    assert ("n3", "radio_agv1", 46) in engine.calls and ("n3", "radio_sensor1", 10) in engine.calls
    engine.calls.clear()
    apply_plan(engine, enforcement_plan(scenario.slices, False), ["gnb1"], {"agv1": "urllc"})
    assert ("queues", "bh_gnb1", "uplink", None) in engine.calls
    assert ("n3", "radio_agv1", None) in engine.calls

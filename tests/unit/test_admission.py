"""Admission control (controllers/admission.py): each rule, its boundaries, the numbers in the reasons,
and FlowRequest's validation naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from controllers.admission import Decision, FlowRequest, check_admission, field_names
from topologies.nr.config import SliceRan
from topologies.validate import ConfigError


@dataclass(frozen=True)
class S:
    name: str
    latency_bound_ms: float
    ran: SliceRan


SLICES = {
    "urllc": S("urllc", 10.0, SliceRan(dedicated_pct=10, min_pct=10, priority=10)),
    "embb": S("embb", 50.0, SliceRan(min_pct=30, priority=5)),
    "mmtc": S("mmtc", 1000.0, SliceRan(max_pct=20)),  # min_pct 0: nothing guaranteed
}
CAPACITY = {"uplink": 100.0, "downlink": 200.0}  # urllc: 10 / 20 Mbit/s, embb: 30 / 60 Mbit/s


def req(name: str = "f1", slice: str = "urllc", direction: str = "uplink", rate: float = 1.0,
        latency: float | None = None, ue: str = "agv1") -> FlowRequest:
    return FlowRequest(name, ue, slice, direction, rate, 200, latency)


def test_a_flow_within_the_share_is_admitted_with_the_headroom_left() -> None:
    d = check_admission(req(rate=4), SLICES, CAPACITY, [])
    assert d == Decision(True, d.reason, 6.0)
    assert "10 Mbit/s" in d.reason and "6 Mbit/s left" in d.reason


def test_unknown_slice_is_refused_naming_the_known_ones() -> None:
    d = check_admission(req(slice="video"), SLICES, CAPACITY, [])
    assert not d.admitted and d.headroom_mbps is None
    assert "unknown slice 'video'" in d.reason and "'urllc'" in d.reason and "'mmtc'" in d.reason


def test_a_name_already_admitted_is_refused() -> None:
    first = req("cam", rate=1)
    d = check_admission(req("cam", slice="embb", rate=1), SLICES, CAPACITY, [first])
    assert not d.admitted and "duplicate name" in d.reason and "'cam'" in d.reason
    assert d.headroom_mbps == 30.0  # embb uplink, before admission


def test_a_latency_bound_tighter_than_the_slices_is_refused_an_equal_or_looser_one_admitted() -> None:
    d = check_admission(req(latency=5), SLICES, CAPACITY, [])
    assert not d.admitted
    assert "latency" in d.reason and "asks 5 ms" in d.reason and "guarantees 10 ms" in d.reason
    assert d.headroom_mbps == 10.0
    assert check_admission(req(latency=10), SLICES, CAPACITY, []).admitted
    assert check_admission(req(latency=25.5), SLICES, CAPACITY, []).admitted
    assert check_admission(req(latency=None), SLICES, CAPACITY, []).admitted
    hair = check_admission(req(latency=10 - 1e-9), SLICES, CAPACITY, [])
    assert not hair.admitted


def test_a_slice_without_a_minimum_share_guarantees_nothing() -> None:
    d = check_admission(req(slice="mmtc", rate=0.001), SLICES, CAPACITY, [])
    assert not d.admitted and d.headroom_mbps == 0.0
    assert "no guarantee" in d.reason and "min_pct 0" in d.reason and "100 Mbit/s" in d.reason


def test_exactly_full_is_admitted_and_a_hair_over_refused() -> None:
    admitted = [req("a", rate=2.5), req("b", rate=2.5)]
    full = check_admission(req("c", rate=5), SLICES, CAPACITY, admitted)
    assert full.admitted and full.headroom_mbps == 0.0
    over = check_admission(req("c", rate=5 + 1e-6), SLICES, CAPACITY, admitted)
    assert not over.admitted and over.headroom_mbps == 5.0
    assert "share" in over.reason
    for number in ("guarantees 10 Mbit/s", "min_pct 10 %", "of 100 Mbit/s", "use 5 Mbit/s",
                   "asks 5.000001 Mbit/s", "1e-06 Mbit/s over"):
        assert number in over.reason, (number, over.reason)


def test_decimal_rates_that_sum_to_the_share_in_floats_are_still_full() -> None:
    shares = {"s": S("s", 10.0, SliceRan(min_pct=30))}
    admitted = [req("a", "s", rate=0.1), req("b", "s", rate=0.2)]
    # 0.1 + 0.2 + 29.7 is 30.000000000000004 in floats: still exactly the 30 % of 100 Mbit/s
    assert check_admission(req("c", "s", rate=29.7), shares, CAPACITY, admitted).admitted


def test_the_share_counts_only_the_same_slice_and_direction() -> None:
    admitted = [req("ul", rate=10), req("em", slice="embb", rate=30)]
    assert not check_admission(req("x", rate=0.5), SLICES, CAPACITY, admitted).admitted
    down = check_admission(req("x", direction="downlink", rate=20), SLICES, CAPACITY, admitted)
    assert down.admitted and down.headroom_mbps == 0.0  # 10 % of 200 Mbit/s
    refused = check_admission(req("x", direction="downlink", rate=20.5), SLICES, CAPACITY, admitted)
    assert not refused.admitted and "guarantees 20 Mbit/s" in refused.reason
    assert "downlink" in refused.reason


def test_headroom_when_refused_is_before_admission_and_may_be_negative_after_a_share_cut() -> None:
    admitted = [req("a", rate=8)]
    cut = {"urllc": S("urllc", 10.0, SliceRan(min_pct=5))}
    d = check_admission(req("b", rate=1), cut, CAPACITY, admitted)
    assert not d.admitted and d.headroom_mbps == -3.0


def test_a_direction_without_capacity_is_the_callers_error() -> None:
    with pytest.raises(ValueError, match="downlink"):
        check_admission(req(direction="downlink"), SLICES, {"uplink": 100.0}, [])


# --- FlowRequest ------------------------------------------------------------------------------------
GOOD: dict[str, Any] = {"name": "agv1-video", "ue": "agv1", "slice": "embb", "direction": "uplink",
                        "rate_mbps": 4, "packet_bytes": 1200, "latency_bound_ms": 50}


def test_from_dict_reads_every_field_and_round_trips() -> None:
    r = FlowRequest.from_dict(GOOD)
    assert r == FlowRequest("agv1-video", "agv1", "embb", "uplink", 4.0, 1200, 50.0)
    assert isinstance(r.rate_mbps, float) and isinstance(r.latency_bound_ms, float)
    assert FlowRequest.from_dict(r.to_dict()) == r
    assert list(r.to_dict()) == list(field_names())


def test_latency_bound_may_be_left_out_or_null() -> None:
    without = {k: v for k, v in GOOD.items() if k != "latency_bound_ms"}
    assert FlowRequest.from_dict(without).latency_bound_ms is None
    assert FlowRequest.from_dict({**GOOD, "latency_bound_ms": None}).latency_bound_ms is None


def test_an_unknown_key_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        FlowRequest.from_dict({**GOOD, "rate_mbs": 4})
    assert err.value.path == "rate_mbs"
    for key in field_names():
        assert key in err.value.allowed


@pytest.mark.parametrize("key", ["name", "ue", "slice", "direction", "rate_mbps", "packet_bytes"])
def test_a_missing_key_is_named(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        FlowRequest.from_dict({k: v for k, v in GOOD.items() if k != key})
    assert err.value.path == key and "required" in str(err.value)


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("name", "", "letters"),
    ("name", "a/b", "letters"),
    ("name", "x" * 65, "1-64"),
    ("name", 7, "letters"),
    ("ue", "", "non-empty"),
    ("ue", 3, "a string"),
    ("slice", None, "a string"),
    ("direction", "up", "'uplink', 'downlink'"),
    ("rate_mbps", 0, "> 0"),
    ("rate_mbps", -1.5, "> 0"),
    ("rate_mbps", "4", "a number"),
    ("rate_mbps", True, "a number"),
    ("rate_mbps", float("nan"), "finite"),
    ("rate_mbps", float("inf"), "finite"),
    ("packet_bytes", 0, ">= 1 and <= 65535"),
    ("packet_bytes", 70000, ">= 1 and <= 65535"),
    ("packet_bytes", 1200.0, "a whole number"),
    ("latency_bound_ms", 0, "> 0"),
    ("latency_bound_ms", "50", "a number"),
])
def test_a_bad_value_names_the_field_and_what_is_allowed(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        FlowRequest.from_dict({**GOOD, key: value})
    assert err.value.path == key
    assert allowed in err.value.allowed, err.value.allowed
    assert str(err.value).startswith(f"{key}: got ")


def test_from_dict_wants_an_object_and_the_constructor_validates_too() -> None:
    with pytest.raises(ConfigError, match="an object with the keys name, ue"):
        FlowRequest.from_dict([GOOD])
    with pytest.raises(ConfigError, match="rate_mbps"):
        FlowRequest("f", "agv1", "embb", "uplink", -1, 100, None)
    assert isinstance(ConfigError("x", 1, "y"), ValueError)

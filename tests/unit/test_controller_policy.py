"""Slice policy validation and the flow rules it implies (pure functions, no switch)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from controllers.policy import (
    COOKIE_APP,
    COOKIE_APP_MASK,
    COOKIE_SLICE_MARK_DOWNLINK,
    ETH_TYPE_IPV4,
    MULTICAST_MAC_MASKED,
    PRIO_SLICE_MARK_DOWNLINK,
    Flood,
    FlowRule,
    GotoTable,
    HostSpec,
    Output,
    SetField,
    SlicePolicy,
    SliceSpec,
    SwitchSpec,
    UnknownDatapathError,
    slice_rules,
)
from topologies.validate import ConfigError


def policy_dict() -> dict[str, Any]:
    return {
        "slices": {"urllc": {"dscp": 46}, "embb": {"dscp": 34}, "mmtc": {"dscp": 10}},
        "hosts": [
            {"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"},
            {"name": "cam1", "ip": "10.0.0.2", "mac": "00:00:00:00:00:02", "slice": "embb"},
            {"name": "sens1", "ip": "10.0.0.3", "mac": "00:00:00:00:00:03", "slice": "mmtc"},
            {"name": "edge1", "ip": "10.0.0.100", "mac": "00:00:00:00:00:64", "slice": None},
            {"name": "agv2", "ip": "10.0.1.1", "mac": "00:00:00:00:01:01", "slice": "urllc"},
        ],
        "switches": [
            {"name": "fsab1gnb1", "dpid": 1, "access_hosts": ["agv1", "cam1", "sens1", "edge1"],
             "mac_to_port": {"00:00:00:00:00:01": 1, "00:00:00:00:00:02": 2, "00:00:00:00:00:03": 3,
                             "00:00:00:00:00:64": 4, "00:00:00:00:01:01": 5}},
            {"name": "fsab1gnb2", "dpid": 0x20, "access_hosts": ["agv2"],
             "mac_to_port": {"00:00:00:00:01:01": 1, "00:00:00:00:00:01": 2}},
        ],
    }


def test_round_trip_dict_and_json(tmp_path):
    raw = policy_dict()
    policy = SlicePolicy.from_dict(raw)
    assert policy.to_dict() == raw
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(raw))
    assert SlicePolicy.from_json(path) == policy
    assert policy.slices["embb"].dscp == 34
    assert policy.host("edge1").slice is None
    assert policy.switch(0x20).name == "fsab1gnb2"


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError) as err:
        SlicePolicy.from_json(path)
    assert str(path) in str(err.value)


def test_mac_is_normalised_to_lower_case():
    raw = policy_dict()
    raw["hosts"][0]["mac"] = "AA:00:00:00:00:01"
    raw["switches"][0]["mac_to_port"] = {"AA:00:00:00:00:01": 7}
    policy = SlicePolicy.from_dict(raw)
    assert policy.host("agv1").mac == "aa:00:00:00:00:01"
    rules = slice_rules(policy, 1)
    assert [r.match for r in rules if Output(7) in r.actions] == [{"eth_dst": "aa:00:00:00:00:01"}]


def _set(raw: dict, path: list, value: Any) -> dict:
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


_DELETE = object()

BAD_CASES = [
    # (where to change, new value, key path expected in the error)
    (["slices"], _DELETE, "slices"),
    (["slices"], {}, "slices"),
    (["slices", "urllc", "dscp"], 64, "slices.urllc.dscp"),
    (["slices", "urllc", "dscp"], -1, "slices.urllc.dscp"),
    (["slices", "urllc", "dscp"], "46", "slices.urllc.dscp"),
    (["slices", "urllc", "dscp"], True, "slices.urllc.dscp"),
    (["slices", "urllc", "prio"], 1, "slices.urllc.prio"),
    (["hosts"], {"agv1": {}}, "hosts"),
    (["hosts", 0, "slice"], "gold", "hosts[0].slice"),
    (["hosts", 1, "ip"], "10.0.0.256", "hosts[1].ip"),
    (["hosts", 1, "ip"], 167772161, "hosts[1].ip"),
    (["hosts", 1, "mac"], "00:00:00:00:02", "hosts[1].mac"),
    (["hosts", 1, "mac"], "01:00:5e:00:00:01", "hosts[1].mac"),
    (["hosts", 1, "name"], "agv1", "hosts[1].name"),
    (["hosts", 1, "name"], "", "hosts[1].name"),
    (["hosts", 1, "ip"], "10.0.0.1", "hosts[1].ip"),
    (["hosts", 1, "mac"], "00:00:00:00:00:01", "hosts[1].mac"),
    (["hosts", 1, "slcie"], "embb", "hosts[1].slcie"),
    (["hosts", 2, "name"], _DELETE, "hosts[2].name"),
    (["switches", 0, "dpid"], 0, "switches[0].dpid"),
    (["switches", 0, "dpid"], 1 << 64, "switches[0].dpid"),
    (["switches", 0, "dpid"], "1", "switches[0].dpid"),
    (["switches", 1, "dpid"], 1, "switches[1].dpid"),
    (["switches", 1, "name"], "fsab1gnb1", "switches[1].name"),
    (["switches", 0, "access_hosts"], ["agv9"], "switches[0].access_hosts[0]"),
    (["switches", 0, "access_hosts"], "agv1", "switches[0].access_hosts"),
    (["switches", 0, "mac_to_port"], [1, 2], "switches[0].mac_to_port"),
    (["switches", 0, "mac_to_port"], _DELETE, "switches[0].mac_to_port"),
    (["switches", 0, "mac_to_port", "00:00:00:00:00:01"], 0, "switches[0].mac_to_port['00:00:00:00:00:01']"),
    (["switches", 0, "mac_to_port", "00:00:00:00:00:01"], True,
     "switches[0].mac_to_port['00:00:00:00:00:01']"),
    (["switches", 0, "mac_to_port", "00:00:00:00:00:01"], 0xFFFFFFFB,
     "switches[0].mac_to_port['00:00:00:00:00:01']"),
    (["switches", 0, "mac_to_port", "ff:ff:ff:ff:ff:ff"], 3, "switches[0].mac_to_port['ff:ff:ff:ff:ff:ff']"),
    (["extra"], 1, "extra"),
]


@pytest.mark.parametrize(("where", "value", "error_path"), BAD_CASES)
def test_invalid_policy_names_the_field(where, value, error_path):
    raw = _set(policy_dict(), where, value)
    with pytest.raises(ConfigError) as err:
        SlicePolicy.from_dict(raw)
    assert err.value.path == error_path
    assert str(err.value).startswith(error_path + ":")


def test_duplicate_mac_differing_only_in_case_is_rejected():
    raw = policy_dict()
    raw["switches"][0]["mac_to_port"]["00:00:00:00:00:0A"] = 3
    raw["switches"][0]["mac_to_port"]["00:00:00:00:00:0a"] = 4
    with pytest.raises(ConfigError) as err:
        SlicePolicy.from_dict(raw)
    assert err.value.path == "switches[0].mac_to_port['00:00:00:00:00:0a']"


def test_top_level_must_be_an_object():
    with pytest.raises(ConfigError):
        SlicePolicy.from_dict([policy_dict()])


def test_policy_input_is_not_mutated():
    raw = policy_dict()
    before = copy.deepcopy(raw)
    SlicePolicy.from_dict(raw)
    assert raw == before


# --- building a policy from objects (what the runner does) ---------------------------------------
def _built() -> SlicePolicy:
    """The policy of ``policy_dict()``, built the way the runner builds it: from spec objects."""
    return SlicePolicy(
        slices={s.name: s for s in (SliceSpec("urllc", 46), SliceSpec("embb", 34), SliceSpec("mmtc", 10))},
        hosts=(HostSpec("agv1", "10.0.0.1", "00:00:00:00:00:01", "urllc"),
               HostSpec("cam1", "10.0.0.2", "00:00:00:00:00:02", "embb"),
               HostSpec("sens1", "10.0.0.3", "00:00:00:00:00:03", "mmtc"),
               HostSpec("edge1", "10.0.0.100", "00:00:00:00:00:64", None),
               HostSpec("agv2", "10.0.1.1", "00:00:00:00:01:01", "urllc")),
        switches=(SwitchSpec("fsab1gnb1", 1, ("agv1", "cam1", "sens1", "edge1"),
                             {"00:00:00:00:00:01": 1, "00:00:00:00:00:02": 2, "00:00:00:00:00:03": 3,
                              "00:00:00:00:00:64": 4, "00:00:00:00:01:01": 5}),
                  SwitchSpec("fsab1gnb2", 0x20, ("agv2",), {"00:00:00:00:01:01": 1, "00:00:00:00:00:01": 2})),
    )


def test_constructor_round_trips_through_to_dict_and_from_dict(tmp_path):
    built = _built()
    assert built.to_dict() == policy_dict()
    assert SlicePolicy.from_dict(built.to_dict()) == built
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(built.to_dict()))  # what the runner writes, what the app reads
    assert SlicePolicy.from_json(path) == built
    assert slice_rules(built, 1) == slice_rules(SlicePolicy.from_dict(policy_dict()), 1)
    assert built.host("edge1").slice is None and built.switch(0x20).name == "fsab1gnb2"


def test_constructor_normalises_iterables_and_mac_case():
    policy = SlicePolicy(
        slices=[SliceSpec("urllc", 46)],  # an iterable of specs works as well as a mapping
        hosts=[HostSpec("agv1", "10.0.0.1", "AA:00:00:00:00:01", "urllc")],
        switches=(sw for sw in [SwitchSpec("s1", 1, ["agv1"], {"AA:00:00:00:00:01": 1})]),
    )
    assert policy.slices == {"urllc": SliceSpec("urllc", 46)}
    assert policy.hosts == (HostSpec("agv1", "10.0.0.1", "aa:00:00:00:00:01", "urllc"),)
    assert policy.switches == (SwitchSpec("s1", 1, ("agv1",), {"aa:00:00:00:00:01": 1}),)
    assert SlicePolicy.from_dict(policy.to_dict()) == policy


def _replace_in_built(**changes: Any) -> dict[str, Any]:
    built = _built()
    args = {"slices": dict(built.slices), "hosts": list(built.hosts), "switches": list(built.switches)}
    for key, fn in changes.items():
        args[key] = fn(args[key])
    return args


@pytest.mark.parametrize(("changes", "error_path"), [
    ({"slices": lambda s: {**s, "urllc": SliceSpec("urllc", 64)}}, "slices.urllc.dscp"),
    ({"slices": lambda s: {**s, "gold": SliceSpec("silver", 1)}}, "slices.gold.name"),
    ({"slices": lambda s: list(s.values()) + [SliceSpec("urllc", 1)]}, "slices.urllc"),
    ({"hosts": lambda h: [*h[:1], HostSpec("cam1", "10.0.0.2", "00:00:00:00:00:02", "gold"), *h[2:]]},
     "hosts[1].slice"),
    ({"hosts": lambda h: [*h[:1], HostSpec("cam1", "10.0.0.256", "00:00:00:00:00:02", "embb"), *h[2:]]},
     "hosts[1].ip"),
    ({"hosts": lambda h: [*h, HostSpec("agv1", "10.0.9.9", "00:00:00:00:09:09", None)]}, "hosts[5].name"),
    ({"switches": lambda s: [SwitchSpec("s1", 0, (), {})]}, "switches[0].dpid"),
    ({"switches": lambda s: [SwitchSpec("s1", 1, ("agv9",), {})]}, "switches[0].access_hosts[0]"),
    ({"switches": lambda s: [SwitchSpec("s1", 1, "agv1", {})]}, "switches[0].access_hosts"),
    ({"switches": lambda s: [SwitchSpec("s1", 1, (), {"00:00:00:00:00:01": 0})]},
     "switches[0].mac_to_port['00:00:00:00:00:01']"),
])
def test_constructor_validates_like_from_dict(changes, error_path):
    with pytest.raises(ConfigError) as err:
        SlicePolicy(**_replace_in_built(**changes))
    assert err.value.path == error_path


@pytest.mark.parametrize("changes", [
    {"hosts": lambda h: [{"name": "agv1"}]},
    {"switches": lambda s: "s1"},
    {"slices": lambda s: {"urllc": 46}},
])
def test_constructor_rejects_non_spec_elements(changes):
    with pytest.raises(TypeError, match="SlicePolicy"):
        SlicePolicy(**_replace_in_built(**changes))


# --- rules ---------------------------------------------------------------------------------------
def _rules(dpid: int = 1) -> list[FlowRule]:
    return slice_rules(SlicePolicy.from_dict(policy_dict()), dpid)


def test_marking_rules_for_slice_hosts_at_this_switch_only():
    marks = [r for r in _rules(1) if r.table_id == 0 and r.priority == 100]
    got = {r.match["ipv4_src"]: r for r in marks}
    # edge1 is attached here but has no slice; agv2 has a slice but is attached to the other switch.
    assert set(got) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    expected_dscp = {"10.0.0.1": 46, "10.0.0.2": 34, "10.0.0.3": 10}
    for ip, rule in got.items():
        assert rule.match == {"eth_type": ETH_TYPE_IPV4, "ipv4_src": ip}
        assert rule.actions == (SetField("ip_dscp", expected_dscp[ip]), GotoTable(1))
    other = [r for r in _rules(0x20) if r.table_id == 0 and r.priority == 100]
    assert [(r.match["ipv4_src"], r.actions[0]) for r in other] == [("10.0.1.1", SetField("ip_dscp", 46))]


def test_downlink_marking_rules_below_the_uplink_ones():
    marks = {r.match["ipv4_dst"]: r for r in _rules(1) if r.table_id == 0 and "ipv4_dst" in r.match}
    assert set(marks) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert all(r.priority == PRIO_SLICE_MARK_DOWNLINK < 100 and r.cookie == COOKIE_SLICE_MARK_DOWNLINK
               for r in marks.values())
    assert marks["10.0.0.2"].actions == (SetField("ip_dscp", 34), GotoTable(1))


def test_table0_default_goes_to_table1():
    defaults = [r for r in _rules() if r.table_id == 0 and r.priority == 0]
    assert len(defaults) == 1
    assert defaults[0].match == {} and defaults[0].actions == (GotoTable(1),)


def test_table1_unicast_flood_and_drop():
    policy = SlicePolicy.from_dict(policy_dict())
    for sw in policy.switches:
        t1 = [r for r in slice_rules(policy, sw.dpid) if r.table_id == 1]
        unicast = {r.match["eth_dst"]: r.actions for r in t1 if r.priority == 10}
        assert unicast == {mac: (Output(port),) for mac, port in sw.mac_to_port.items()}
        flood = [r.match["eth_dst"] for r in t1 if r.priority == 5 and r.actions == (Flood(),)]
        assert sorted(flood, key=str) == sorted(["ff:ff:ff:ff:ff:ff", MULTICAST_MAC_MASKED], key=str)
        miss = [r for r in t1 if r.priority == 0]
        assert len(miss) == 1 and miss[0].match == {} and miss[0].actions == ()
        assert len(t1) == len(sw.mac_to_port) + 3


def test_rule_count_and_cookies():
    rules = _rules(1)
    assert len(rules) == 3 + 3 + 1 + 5 + 3  # uplink and downlink marks, default, unicast, flood + miss
    assert all(r.cookie & COOKIE_APP_MASK == COOKIE_APP for r in rules)
    assert len({(r.table_id, r.priority, json.dumps(r.match, sort_keys=True)) for r in rules}) == len(rules)


def test_no_marking_rule_without_slice_hosts():
    raw = policy_dict()
    raw["switches"][0]["access_hosts"] = ["edge1"]
    rules = slice_rules(SlicePolicy.from_dict(raw), 1)
    assert not [r for r in rules if any(isinstance(a, SetField) for a in r.actions)]


def test_unknown_dpid():
    with pytest.raises(UnknownDatapathError, match="0x99"):
        _rules(0x99)


@pytest.mark.parametrize("kwargs", [
    {"table_id": 255}, {"priority": 65536}, {"priority": -1}, {"cookie": 1 << 64},
    {"actions": (GotoTable(0),)}, {"actions": (GotoTable(2), GotoTable(3))},
])
def test_flow_rule_rejects_bad_values(kwargs):
    base = {"table_id": 1, "priority": 1, "match": {}, "actions": ()}
    with pytest.raises(ValueError):
        FlowRule(**{**base, **kwargs})


def test_generations_live_in_the_cookie_and_the_next_one_is_never_in_use() -> None:
    from controllers.policy import (
        COOKIE_SLICE_MARK,
        GENERATION_MASK,
        generation_of,
        next_generation,
        with_generation,
    )

    cookie = with_generation(COOKIE_SLICE_MARK, 7)
    assert generation_of(cookie) == 7 and cookie & ~GENERATION_MASK == COOKIE_SLICE_MARK
    assert with_generation(cookie, 0) == COOKIE_SLICE_MARK
    assert next_generation([]) == 1 and next_generation([0]) == 1 and next_generation([1, 3]) == 4
    assert next_generation([0xFFFF]) == 1 and next_generation([0xFFFF, 1, 2]) == 3  # wraps, skips used
    with pytest.raises(ValueError, match="generation 65536"):
        with_generation(COOKIE_SLICE_MARK, 0x10000)


# --- meters (a slice's maximum rate) -------------------------------------------------------------
def _capped(**caps: float) -> SlicePolicy:
    raw = policy_dict()
    for name, rate in caps.items():
        raw["slices"][name]["max_rate_mbps"] = rate
    return SlicePolicy.from_dict(raw)


def test_max_rate_round_trips_and_old_files_load(tmp_path):
    policy = _capped(embb=50, mmtc=0.5)
    assert policy.slices["embb"] == SliceSpec("embb", 34, 50.0)
    assert policy.slices["urllc"].max_rate_mbps is None
    raw = policy.to_dict()
    assert raw["slices"]["embb"] == {"dscp": 34, "max_rate_mbps": 50.0}
    assert raw["slices"]["urllc"] == {"dscp": 46}  # uncapped: written as before
    assert SlicePolicy.from_dict(raw) == policy
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_dict()))  # a file without the key
    assert all(s.max_rate_mbps is None for s in SlicePolicy.from_json(path).slices.values())
    built = SlicePolicy(slices=[SliceSpec("embb", 34, 50)], hosts=[], switches=[])
    assert built.slices["embb"].max_rate_mbps == 50.0 and SlicePolicy.from_dict(built.to_dict()) == built


@pytest.mark.parametrize("value", [0, 0.0009, 100_001, -1, "fast", True, float("nan")])
def test_bad_max_rate_names_the_key(value):
    raw = policy_dict()
    raw["slices"]["embb"]["max_rate_mbps"] = value
    with pytest.raises(ConfigError) as err:
        SlicePolicy.from_dict(raw)
    assert err.value.path == "slices.embb.max_rate_mbps"
    with pytest.raises(ConfigError) as err:
        SlicePolicy(**_replace_in_built(slices=lambda s: {**s, "embb": SliceSpec("embb", 34, value)}))
    assert err.value.path == "slices.embb.max_rate_mbps"


def test_range_matches_the_scenarios():
    from controllers.policy import MAX_RATE_MBPS_RANGE
    from topologies.scenario import SLICE_MAX_RATE_MBPS

    assert MAX_RATE_MBPS_RANGE == SLICE_MAX_RATE_MBPS


def test_meters_only_for_capped_slices_at_their_switches():
    from controllers.policy import MeterSpec, meter_burst_kb, slice_meters

    assert slice_meters(SlicePolicy.from_dict(policy_dict()), 1) == []
    policy = _capped(embb=2, urllc=100)
    # ids: 1 + index in the sorted slice names (embb 1, mmtc 2, urllc 3), whichever are capped
    assert slice_meters(policy, 1) == [MeterSpec(1, 2000, 122), MeterSpec(3, 100_000, 2000)]
    assert slice_meters(policy, 0x20) == [MeterSpec(3, 100_000, 2000)]  # only agv2 (urllc) there
    assert slice_meters(_capped(mmtc=0.001), 1) == [MeterSpec(2, 1, 122)]
    # burst: 10 full-size frames (122 kbit) or 20 ms of the rate, whichever is larger
    assert meter_burst_kb(1) == 122 and meter_burst_kb(6100) == 122 and meter_burst_kb(6200) == 124
    with pytest.raises(UnknownDatapathError):
        slice_meters(policy, 99)
    with pytest.raises(ValueError, match="meter_id"):
        MeterSpec(0, 1, 1)


def test_capped_slices_uplink_marking_goes_through_its_meter():
    from controllers.policy import Meter

    rules = slice_rules(_capped(embb=2), 1)
    up = {r.match["ipv4_src"]: r.actions for r in rules if r.priority == 100}
    assert up["10.0.0.2"] == (Meter(1), SetField("ip_dscp", 34), GotoTable(1))
    assert up["10.0.0.1"] == (SetField("ip_dscp", 46), GotoTable(1))  # urllc: no cap
    down = [r for r in rules if r.priority == PRIO_SLICE_MARK_DOWNLINK]
    assert not any(isinstance(a, Meter) for r in down for a in r.actions)  # downlink not metered
    assert [r for r in rules if r.priority != 100] == [r for r in _rules(1) if r.priority != 100]

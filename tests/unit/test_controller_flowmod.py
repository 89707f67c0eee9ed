"""FlowRule -> OFPFlowMod translation, checked by encoding to OpenFlow 1.3 bytes and parsing back."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("os_ken")

from os_ken.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3  # noqa: E402

from controllers.apps.slice_switch import (  # noqa: E402
    build_delete_own_flows,
    build_flow_mod,
    write_status_atomic,
)
from controllers.policy import (  # noqa: E402
    COOKIE_APP,
    COOKIE_APP_MASK,
    Flood,
    FlowRule,
    GotoTable,
    Meter,
    Output,
    SetField,
    SlicePolicy,
    slice_rules,
)

POLICY = {
    "slices": {"urllc": {"dscp": 46}, "embb": {"dscp": 34}},
    "hosts": [{"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"},
              {"name": "cam1", "ip": "10.0.0.2", "mac": "00:00:00:00:00:02", "slice": "embb"},
              {"name": "edge1", "ip": "10.0.0.3", "mac": "00:00:00:00:00:03", "slice": None}],
    "switches": [{"name": "s1", "dpid": 1, "access_hosts": ["agv1", "cam1"],
                  "mac_to_port": {"00:00:00:00:00:01": 1, "00:00:00:00:00:02": 2, "00:00:00:00:00:03": 3}}],
}
DP = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)
OFP = ofproto_v1_3


def _wire_round_trip(msg):
    msg.xid = 1
    msg.serialize()
    version, msg_type, msg_len, xid = ofproto_parser.header(msg.buf)
    assert (version, msg_type, msg_len) == (OFP.OFP_VERSION, OFP.OFPT_FLOW_MOD, len(msg.buf))
    return ofproto_parser.msg(DP, version, msg_type, msg_len, xid, msg.buf)


def test_marking_rule_encodes_set_field_and_goto():
    rule = FlowRule(0, 100, {"eth_type": 0x0800, "ipv4_src": "10.0.0.1"},
                    (SetField("ip_dscp", 46), GotoTable(1)), COOKIE_APP | 1)
    parsed = _wire_round_trip(build_flow_mod(DP, rule))
    assert (parsed.table_id, parsed.priority, parsed.cookie, parsed.command) == (0, 100, COOKIE_APP | 1,
                                                                                 OFP.OFPFC_ADD)
    assert dict(parsed.match.items()) == {"eth_type": 0x0800, "ipv4_src": "10.0.0.1"}
    apply_, goto = parsed.instructions
    assert apply_.type == OFP.OFPIT_APPLY_ACTIONS
    assert [(a.key, a.value) for a in apply_.actions] == [("ip_dscp", 46)]
    assert goto.type == OFP.OFPIT_GOTO_TABLE and goto.table_id == 1


def test_flood_output_and_masked_match():
    rule = FlowRule(1, 5, {"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")}, (Flood(),))
    parsed = _wire_round_trip(build_flow_mod(DP, rule))
    assert parsed.match["eth_dst"] == ("01:00:00:00:00:00", "01:00:00:00:00:00")
    (inst,) = parsed.instructions
    assert [a.port for a in inst.actions] == [OFP.OFPP_FLOOD]
    unicast = FlowRule(1, 10, {"eth_dst": "00:00:00:00:00:07"}, (Output(7),))
    parsed = _wire_round_trip(build_flow_mod(DP, unicast))
    assert [a.port for a in parsed.instructions[0].actions] == [7]


def test_drop_rule_has_no_instructions():
    parsed = _wire_round_trip(build_flow_mod(DP, FlowRule(1, 0, {}, ())))
    assert parsed.instructions == [] and len(parsed.match.items()) == 0


def test_meter_hook_comes_first_in_instruction_order():
    rule = FlowRule(0, 50, {}, (GotoTable(1), SetField("ip_dscp", 10), Meter(3)))
    types = [i.type for i in _wire_round_trip(build_flow_mod(DP, rule)).instructions]
    assert types == [OFP.OFPIT_METER, OFP.OFPIT_APPLY_ACTIONS, OFP.OFPIT_GOTO_TABLE]


def test_every_policy_rule_encodes():
    policy = SlicePolicy.from_dict(POLICY)
    for sw in policy.switches:
        for rule in slice_rules(policy, sw.dpid):
            parsed = _wire_round_trip(build_flow_mod(DP, rule))
            got = (parsed.table_id, parsed.priority, parsed.cookie)
            assert got == (rule.table_id, rule.priority, rule.cookie)


def test_delete_own_flows_targets_all_tables_by_cookie():
    parsed = _wire_round_trip(build_delete_own_flows(DP))
    assert parsed.command == OFP.OFPFC_DELETE
    assert parsed.table_id == OFP.OFPTT_ALL
    assert (parsed.cookie, parsed.cookie_mask) == (COOKIE_APP, COOKIE_APP_MASK)
    assert (parsed.out_port, parsed.out_group) == (OFP.OFPP_ANY, OFP.OFPG_ANY)


def test_status_written_atomically(tmp_path):
    path = tmp_path / "status.json"
    write_status_atomic(path, {"ready_dpids": [1], "pid": 5})
    write_status_atomic(path, {"ready_dpids": [1, 2], "pid": 5})
    assert json.loads(path.read_text()) == {"ready_dpids": [1, 2], "pid": 5}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]

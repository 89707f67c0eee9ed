"""SliceSwitch's extension points and the slice_monitor app, driven with OpenFlow 1.3 messages that
os-ken's own parser decoded from bytes (no switch, no os-ken AppManager)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("os_ken")

from os_ken.controller import ofp_event  # noqa: E402
from os_ken.ofproto import ofproto_parser, ofproto_protocol  # noqa: E402
from os_ken.ofproto import ofproto_v1_3 as OFP  # noqa: E402
from os_ken.ofproto import ofproto_v1_3_parser as P  # noqa: E402

from controllers.apps import (  # noqa: E402
    ENV_POLICY,
    ENV_STATS_INTERVAL_S,
    ENV_STATUS,
    PATH_SWITCH_FILE_NAME,
    STATS_FILE_NAME,
)
from controllers.apps.slice_monitor import (  # noqa: E402
    SliceMonitor,
    append_json_line,
    stats_interval_from_env,
)
from controllers.apps.slice_switch import SliceSwitch  # noqa: E402
from controllers.policy import (  # noqa: E402
    COOKIE_APP,
    COOKIE_APP_MASK,
    COOKIE_SLICE_MARK,
    GENERATION_MASK,
    GENERATION_SHIFT,
    TABLE_FORWARD,
    FlowRule,
    SlicePolicy,
    forward_rule,
    generation_of,
    slice_rules,
    with_generation,
)
from topologies.validate import ConfigError  # noqa: E402

POLICY = {
    "slices": {"urllc": {"dscp": 46}},
    "hosts": [{"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"},
              {"name": "edge1", "ip": "10.0.0.3", "mac": "00:00:00:00:00:03", "slice": None}],
    "switches": [{"name": "s1", "dpid": 7, "access_hosts": ["agv1", "edge1"],
                  "mac_to_port": {"00:00:00:00:00:01": 1, "00:00:00:00:00:03": 2}}],
}
EXTRA_COOKIE = COOKIE_APP | 0xF0


class FakeDatapath(ofproto_protocol.ProtocolDesc):
    """What the apps use of os-ken's Datapath: id, send_msg (xid assigned, message encoded)."""

    def __init__(self, dpid: int) -> None:
        super().__init__(OFP.OFP_VERSION)
        self.id = dpid
        self.xid = 0
        self.sent: list[Any] = []

    def send_msg(self, msg: Any) -> None:
        if msg.xid is None:
            self.xid += 1
            msg.set_xid(self.xid)
        msg.serialize()
        self.sent.append(msg)


def _parse(dp: FakeDatapath, msg_type: int, xid: int, body: bytes) -> Any:
    """Bytes of a switch-to-controller message -> the message os-ken's parser makes of them."""
    length = OFP.OFP_HEADER_SIZE + len(body)
    buf = bytearray(struct.pack(OFP.OFP_HEADER_PACK_STR, OFP.OFP_VERSION, msg_type, length, xid) + body)
    return ofproto_parser.msg(dp, OFP.OFP_VERSION, msg_type, length, xid, buf)


def features(dp: FakeDatapath) -> Any:
    body = struct.pack(OFP.OFP_SWITCH_FEATURES_PACK_STR, dp.id, 256, 254, 0, 0, 0)
    return ofp_event.EventOFPSwitchFeatures(_parse(dp, OFP.OFPT_FEATURES_REPLY, 1, body))


def barrier_reply(dp: FakeDatapath, xid: int) -> Any:
    return ofp_event.EventOFPBarrierReply(_parse(dp, OFP.OFPT_BARRIER_REPLY, xid, b""))


def port_stats_reply(dp: FakeDatapath, xid: int, ports: list[tuple[int, int]], more: bool = False) -> Any:
    """A port stats reply with (port_no, rx_packets) entries; other counters derived from them."""
    body = b"".join(struct.pack(OFP.OFP_PORT_STATS_PACK_STR, port, rx, 2 * rx, 100 * rx, 200 * rx,
                                1, 2, 3, 4, 0, 0, 0, 0, 5, 500_000_000) for port, rx in ports)
    head = struct.pack(OFP.OFP_MULTIPART_REPLY_PACK_STR, OFP.OFPMP_PORT_STATS,
                       OFP.OFPMPF_REPLY_MORE if more else 0)
    return ofp_event.EventOFPPortStatsReply(_parse(dp, OFP.OFPT_MULTIPART_REPLY, xid, head + body))


def flow_stats_reply(dp: FakeDatapath, xid: int, generations: tuple[int, int] = (0, 0), more: bool = False
                     ) -> Any:
    """One marking flow (masked-free match, goto-table instruction) and one table-miss flow, their
    cookies of ``generations``."""
    entries = b""
    for table_id, priority, cookie, match, packets in (
            (0, 100, with_generation(COOKIE_SLICE_MARK, generations[0]),
             P.OFPMatch(eth_type=0x0800, ipv4_src="10.0.0.1"), 42),
            (1, 5, with_generation(COOKIE_APP | 4, generations[1]),
             P.OFPMatch(eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00")), 3)):
        tail = bytearray()
        match.serialize(tail, 0)
        if table_id == 0:
            P.OFPInstructionGotoTable(1).serialize(tail, len(tail))
        length = OFP.OFP_FLOW_STATS_0_SIZE + len(tail)
        entries += struct.pack(OFP.OFP_FLOW_STATS_0_PACK_STR, length, table_id, 2, 250_000_000, priority,
                               0, 0, 0, cookie, packets, 100 * packets) + bytes(tail)
    head = struct.pack(OFP.OFP_MULTIPART_REPLY_PACK_STR, OFP.OFPMP_FLOW, OFP.OFPMPF_REPLY_MORE if more else 0)
    return ofp_event.EventOFPFlowStatsReply(_parse(dp, OFP.OFPT_MULTIPART_REPLY, xid, head + entries))


def empty_flow_stats_reply(dp: FakeDatapath, xid: int) -> Any:
    head = struct.pack(OFP.OFP_MULTIPART_REPLY_PACK_STR, OFP.OFPMP_FLOW, 0)
    return ofp_event.EventOFPFlowStatsReply(_parse(dp, OFP.OFPT_MULTIPART_REPLY, xid, head))


def connect(app: SliceSwitch, dp: FakeDatapath, reply: Any = None) -> None:
    """Features, then the app's resync request answered (by default: no flows of the app)."""
    app.switch_features_handler(features(dp))
    (request,) = dp.sent
    assert isinstance(request, P.OFPFlowStatsRequest)
    assert (request.cookie, request.cookie_mask) == (COOKIE_APP, COOKIE_APP_MASK)
    assert request.table_id == OFP.OFPTT_ALL
    dp.sent.clear()
    app.resync_reply_handler(reply(dp, request.xid) if reply else empty_flow_stats_reply(dp, request.xid))


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    monkeypatch.setenv(ENV_POLICY, str(policy))
    monkeypatch.setenv(ENV_STATUS, str(tmp_path / "status.json"))
    monkeypatch.delenv(ENV_STATS_INTERVAL_S, raising=False)
    return tmp_path


class ExtendedSwitch(SliceSwitch):
    """A subclass using every extension point, recording the calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []

    def rules_for(self, datapath: Any) -> list[FlowRule]:
        extra = FlowRule(TABLE_FORWARD, 1, {"eth_type": 0x88B5}, (), EXTRA_COOKIE)  # drop one ethertype
        return super().rules_for(datapath) + [extra]

    def prepare_datapath(self, datapath: Any) -> None:
        super().prepare_datapath(datapath)
        datapath.send_msg(datapath.ofproto_parser.OFPMeterMod(datapath, meter_id=1))
        self.calls.append(("prepare", datapath.id))

    def on_datapath_ready(self, datapath: Any) -> None:
        super().on_datapath_ready(datapath)
        self.calls.append(("ready", datapath.id))

    def on_datapath_down(self, datapath: Any) -> None:
        super().on_datapath_down(datapath)
        self.calls.append(("down", datapath.id))


def _status(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "status.json").read_text())


def test_extension_points_order_and_status(app_env: Path) -> None:
    app = ExtendedSwitch()
    dp = FakeDatapath(7)
    connect(app, dp)
    kinds = [type(m).__name__ for m in dp.sent]
    base = slice_rules(SlicePolicy.from_dict(POLICY), 7)
    # prepare (meter), then base rules + the subclass's rule (generation 1: none on the switch), barrier
    assert kinds == ["OFPMeterMod"] + ["OFPFlowMod"] * (len(base) + 1) + ["OFPBarrierRequest"]
    assert all(m.command == OFP.OFPFC_ADD for m in dp.sent[1:-1])
    assert [m.cookie for m in dp.sent[1:-1]] == [with_generation(r.cookie, 1) for r in base] + [
        with_generation(EXTRA_COOKIE, 1)]
    assert app.calls == [("prepare", 7)] and _status(app_env)["ready_dpids"] == []

    app.barrier_reply_handler(barrier_reply(dp, dp.sent[-1].xid + 1))  # not the awaited barrier
    assert app.calls == [("prepare", 7)]
    app.barrier_reply_handler(barrier_reply(dp, dp.sent[-1].xid))
    assert app.calls[-1] == ("ready", 7) and _status(app_env)["ready_dpids"] == [7]

    # Reconnect: the new connection's features come before the old connection's DEAD event.
    # The switch holds flows of generations 1 and 3 (a reply in two parts): the rules go in under 4,
    # over the old ones (ADD, nothing deleted first), then generations 1 and 3 are deleted.
    dp2 = FakeDatapath(7)
    app.switch_features_handler(features(dp2))
    app.state_change_handler(ofp_event.EventOFPStateChange(dp))  # stale: ignored
    assert ("down", 7) not in app.calls
    (request,) = dp2.sent
    dp2.sent.clear()
    app.resync_reply_handler(flow_stats_reply(dp2, request.xid, (1, 1), more=True))
    assert dp2.sent == []  # waits for the last part
    app.resync_reply_handler(flow_stats_reply(dp2, request.xid + 1, (5, 5)))  # another request's: ignored
    app.resync_reply_handler(flow_stats_reply(dp2, request.xid, (3, 1)))
    mods = [m for m in dp2.sent if isinstance(m, P.OFPFlowMod)]
    adds = [m for m in mods if m.command == OFP.OFPFC_ADD]
    deletes = [m for m in mods if m.command == OFP.OFPFC_DELETE]
    assert mods == adds + deletes and len(adds) == len(base) + 1
    assert {generation_of(m.cookie) for m in adds} == {4}
    assert [(m.cookie, m.cookie_mask) for m in deletes] == [
        (COOKIE_APP | 1 << GENERATION_SHIFT, COOKIE_APP_MASK | GENERATION_MASK),
        (COOKIE_APP | 3 << GENERATION_SHIFT, COOKIE_APP_MASK | GENERATION_MASK)]
    assert _status(app_env)["resyncs"][-1]["generation"] == 4
    assert _status(app_env)["resyncs"][-1]["stale_deleted"] == [1, 3]
    app.barrier_reply_handler(barrier_reply(dp2, dp2.sent[-1].xid))
    assert app.calls[-1] == ("ready", 7) and _status(app_env)["ready_dpids"] == [7]
    app.state_change_handler(ofp_event.EventOFPStateChange(dp2))
    assert app.calls[-1] == ("down", 7) and _status(app_env)["ready_dpids"] == []


def test_unknown_dpid_is_an_error_not_ready(app_env: Path) -> None:
    app = ExtendedSwitch()
    dp = FakeDatapath(99)
    connect(app, dp)
    assert dp.sent == [] and app.calls == []
    assert "0x63" in _status(app_env)["errors"]["99"]


def _ready_monitor(app_env: Path) -> tuple[SliceMonitor, FakeDatapath]:
    app = SliceMonitor()
    dp = FakeDatapath(7)
    connect(app, dp)
    app.barrier_reply_handler(barrier_reply(dp, dp.sent[-1].xid))
    return app, dp


def _lines(app_env: Path) -> list[dict[str, Any]]:
    path = app_env / STATS_FILE_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_monitor_requests_stats_once_ready(app_env: Path) -> None:
    app, dp = _ready_monitor(app_env)
    assert app.stats_interval_s == 1.0 and app.stats_path == app_env / STATS_FILE_NAME
    flow_req, port_req = dp.sent[-2:]
    assert isinstance(flow_req, P.OFPFlowStatsRequest) and flow_req.table_id == OFP.OFPTT_ALL
    assert isinstance(port_req, P.OFPPortStatsRequest) and port_req.port_no == OFP.OFPP_ANY
    assert app.monitored == {7: dp}
    app.state_change_handler(ofp_event.EventOFPStateChange(dp))
    assert app.monitored == {}


def test_monitor_writes_port_stats_joining_multipart_parts(app_env: Path) -> None:
    app, dp = _ready_monitor(app_env)
    app.port_stats_reply_handler(port_stats_reply(dp, 30, [(1, 10)], more=True))
    app.port_stats_reply_handler(port_stats_reply(dp, 31, [(9, 1)]))  # another request's reply
    assert [line["xid"] for line in _lines(app_env)] == [31]
    app.port_stats_reply_handler(port_stats_reply(dp, 30, [(2, 20), (OFP.OFPP_LOCAL, 0)]))
    lines = _lines(app_env)
    assert [line["xid"] for line in lines] == [31, 30]
    line = lines[1]
    assert (line["kind"], line["dpid"], line["pid"]) == ("port_stats", 7, os.getpid())
    assert isinstance(line["t_unix_s"], float)
    assert [p["port_no"] for p in line["ports"]] == [1, 2, OFP.OFPP_LOCAL]
    assert line["ports"][1] == {"port_no": 2, "rx_packets": 20, "tx_packets": 40, "rx_bytes": 2000,
                                "tx_bytes": 4000, "rx_dropped": 1, "tx_dropped": 2, "rx_errors": 3,
                                "tx_errors": 4, "duration_s": 5.5}
    assert app.partial_replies == {}


def test_monitor_skips_the_resync_reply(app_env: Path) -> None:
    app = SliceMonitor()
    dp = FakeDatapath(7)
    app.switch_features_handler(features(dp))
    app.flow_stats_reply_handler(empty_flow_stats_reply(dp, dp.sent[0].xid))
    assert _lines(app_env) == []


def test_monitor_writes_flow_stats(app_env: Path) -> None:
    app, dp = _ready_monitor(app_env)
    app.flow_stats_reply_handler(flow_stats_reply(dp, 40))
    (line,) = _lines(app_env)
    assert line["kind"] == "flow_stats" and line["dpid"] == 7
    mark, flood = line["flows"]
    assert mark == {"table_id": 0, "priority": 100, "cookie": COOKIE_SLICE_MARK,
                    "match": {"eth_type": 0x0800, "ipv4_src": "10.0.0.1"}, "packet_count": 42,
                    "byte_count": 4200, "duration_s": 2.25}
    assert flood["match"] == {"eth_dst": ["01:00:00:00:00:00", "01:00:00:00:00:00"]}


def test_monitor_drops_partial_reply_of_a_disconnected_switch(app_env: Path) -> None:
    app, dp = _ready_monitor(app_env)
    app.port_stats_reply_handler(port_stats_reply(dp, 50, [(1, 1)], more=True))
    app.state_change_handler(ofp_event.EventOFPStateChange(dp))
    assert app.partial_replies == {} and _lines(app_env) == []


@pytest.mark.parametrize(("raw", "expected"), [(None, 1.0), ("", 1.0), ("0.25", 0.25), ("3600", 3600.0)])
def test_stats_interval_from_env(raw: str | None, expected: float) -> None:
    env = {} if raw is None else {ENV_STATS_INTERVAL_S: raw}
    assert stats_interval_from_env(env) == expected


@pytest.mark.parametrize("raw", ["0", "0.01", "nan", "fast", "-1", "1e9"])
def test_stats_interval_rejects_bad_values(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        stats_interval_from_env({ENV_STATS_INTERVAL_S: raw})
    assert err.value.path == ENV_STATS_INTERVAL_S


def test_bad_interval_fails_app_construction(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_STATS_INTERVAL_S, "0")
    with pytest.raises(ConfigError, match=ENV_STATS_INTERVAL_S):
        SliceMonitor()


def test_append_json_line_appends_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "stats.jsonl"
    append_json_line(path, {"a": 1})
    append_json_line(path, {"b": (1, 2)})
    assert path.read_text() == '{"a": 1}\n{"b": [1, 2]}\n'


def test_a_path_switch_moves_the_ues_forwarding_rule_to_the_new_port(app_env: Path) -> None:
    """The runner appends a line per handover; the app replaces the UE's table-1 rule (same match
    and priority) on that switch and records when, a half-written line waiting for its newline."""
    app = SliceSwitch()
    dp = FakeDatapath(7)
    app.switch_features_handler(features(dp))
    sent = len(dp.sent)
    path = app_env / PATH_SWITCH_FILE_NAME
    path.write_text(json.dumps({"seq": 1, "mac": "00:00:00:00:00:01", "dpid": 7, "port": 3}) + "\n"
                    + '{"seq": 2, "mac": "00:00:00:00:00:03", "dp')  # not complete yet
    app.apply_path_switches()
    (mod,) = dp.sent[sent:]
    rule = forward_rule("00:00:00:00:00:01", 3)
    assert mod.command == OFP.OFPFC_ADD and mod.table_id == rule.table_id and mod.priority == rule.priority
    assert mod.match["eth_dst"] == "00:00:00:00:00:01" and mod.instructions[0].actions[0].port == 3
    (done,) = _status(app_env)["path_switches"]
    assert done["seq"] == 1 and done["applied_ns"] > 0 and done["error"] is None
    with path.open("a") as f:  # the rest of line 2, and a switch that is not connected
        f.write('id": 7, "port": 1}\n' + json.dumps({"seq": 3, "mac": "00:00:00:00:00:01", "dpid": 9,
                                                      "port": 1}) + "\n")
    app.apply_path_switches()
    assert len(dp.sent) == sent + 2
    second, third = _status(app_env)["path_switches"][1:]
    assert second["seq"] == 2 and second["applied_ns"] and third["error"] == "dpid 0x9 is not connected"


# --- meters: a slice's maximum rate ------------------------------------------------------------
CAPPED = {**POLICY, "slices": {"urllc": {"dscp": 46, "max_rate_mbps": 2.0}}}


def meter_config_reply(dp: FakeDatapath, xid: int, meter_ids: list[int], more: bool = False) -> Any:
    """A meter config reply listing ``meter_ids`` (one drop band each)."""
    body = b"".join(struct.pack(OFP.OFP_METER_CONFIG_PACK_STR, OFP.OFP_METER_CONFIG_SIZE
                                + OFP.OFP_METER_BAND_DROP_SIZE, OFP.OFPMF_KBPS, mid)
                    + struct.pack(OFP.OFP_METER_BAND_DROP_PACK_STR, OFP.OFPMBT_DROP,
                                  OFP.OFP_METER_BAND_DROP_SIZE, 1000, 100) for mid in meter_ids)
    head = struct.pack(OFP.OFP_MULTIPART_REPLY_PACK_STR, OFP.OFPMP_METER_CONFIG,
                       OFP.OFPMPF_REPLY_MORE if more else 0)
    return ofp_event.EventOFPMeterConfigStatsReply(_parse(dp, OFP.OFPT_MULTIPART_REPLY, xid, head + body))


@pytest.fixture
def capped_env(app_env: Path) -> Path:
    (app_env / "policy.json").write_text(json.dumps(CAPPED))
    return app_env


def _ask_meters(app: SliceSwitch, dp: FakeDatapath, reply: Any = None) -> P.OFPMeterConfigStatsRequest:
    connect(app, dp, reply)
    (request,) = dp.sent  # flows read: the app asks which meters exist before installing anything
    assert isinstance(request, P.OFPMeterConfigStatsRequest) and request.meter_id == OFP.OFPM_ALL
    dp.sent.clear()
    return request


def test_fresh_switch_gets_meter_add_before_the_rules(capped_env: Path) -> None:
    app = ExtendedSwitch()
    dp = FakeDatapath(7)
    request = _ask_meters(app, dp)
    app.meter_config_reply_handler(meter_config_reply(dp, request.xid + 1, []))  # not ours: ignored
    assert dp.sent == []
    app.meter_config_reply_handler(meter_config_reply(dp, request.xid, [9]))  # another app's meter
    kinds = [type(m).__name__ for m in dp.sent]
    base = slice_rules(SlicePolicy.from_dict(CAPPED), 7)
    # the slice's meter, the subclass's own meter (prepare_datapath), the rules, the barrier
    assert kinds == ["OFPMeterMod"] * 2 + ["OFPFlowMod"] * (len(base) + 1) + ["OFPBarrierRequest"]
    meter = dp.sent[0]
    assert (meter.command, meter.meter_id) == (OFP.OFPMC_ADD, 1)
    assert meter.flags == OFP.OFPMF_KBPS | OFP.OFPMF_BURST | OFP.OFPMF_STATS
    (band,) = meter.bands
    assert isinstance(band, P.OFPMeterBandDrop) and (band.rate, band.burst_size) == (2000, 122)
    # the uplink marking rule: meter, apply-actions (set DSCP), goto table 1 — in that order
    mark = next(m for m in dp.sent[2:-1] if m.cookie == with_generation(COOKIE_SLICE_MARK, 1))
    assert [type(i).__name__ for i in mark.instructions] == [
        "OFPInstructionMeter", "OFPInstructionActions", "OFPInstructionGotoTable"]
    assert mark.instructions[0].meter_id == 1 and mark.instructions[1].actions[0].value == 46
    assert _status(capped_env)["resyncs"][-1]["meters"] == [1]
    assert _status(capped_env)["resyncs"][-1]["meters_modified"] == []
    app.barrier_reply_handler(barrier_reply(dp, dp.sent[-1].xid))
    assert _status(capped_env)["ready_dpids"] == [7]


def test_restart_modifies_an_existing_meter_in_place(capped_env: Path) -> None:
    """A restarted controller finds the meter (reply in two parts): MODIFY, never ADD (OVS refuses
    an existing id) nor DELETE (it would remove the flows using the meter)."""
    app = SliceSwitch()
    dp = FakeDatapath(7)
    request = _ask_meters(app, dp, lambda d, xid: flow_stats_reply(d, xid, (1, 1)))
    app.meter_config_reply_handler(meter_config_reply(dp, request.xid, [5], more=True))
    assert dp.sent == []
    app.meter_config_reply_handler(meter_config_reply(dp, request.xid, [1]))
    meter_mods = [m for m in dp.sent if isinstance(m, P.OFPMeterMod)]
    assert [(m.command, m.meter_id) for m in meter_mods] == [(OFP.OFPMC_MODIFY, 1)]
    assert dp.sent[0] is meter_mods[0]  # before any flow mod
    adds = [m for m in dp.sent if isinstance(m, P.OFPFlowMod) and m.command == OFP.OFPFC_ADD]
    assert {generation_of(m.cookie) for m in adds} == {2}
    assert _status(capped_env)["resyncs"][-1]["meters_modified"] == [1]


def test_disconnect_while_awaiting_meters_forgets_them(capped_env: Path) -> None:
    app = SliceSwitch()
    dp = FakeDatapath(7)
    request = _ask_meters(app, dp)
    app.state_change_handler(ofp_event.EventOFPStateChange(dp))
    assert app.pending_meters == {}
    app.meter_config_reply_handler(meter_config_reply(dp, request.xid, []))
    assert dp.sent == []

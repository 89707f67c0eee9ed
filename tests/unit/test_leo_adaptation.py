"""LEO-aware adaptation without a network: the scenario's [backup] and [[leo.outages]], outages in
the schedule, steering windows, the fault detector, the steering rules, the flood flag of a switch
off the tree, and the run's steering loop against a fake network."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from controllers.adaptation import (
    COOKIE_STEER,
    ECHO_RECORD,
    PRIO_STEER,
    FaultDetector,
    SteeringConfig,
    SteeringLoop,
    SteerSwitch,
    desired_via,
    steer_rules,
    steer_windows,
)
from controllers.policy import COOKIE_FLOOD, HostSpec, SlicePolicy, SliceSpec, SwitchSpec, slice_rules
from experiments.agents.traffic import PROBE_RECORD
from topologies.backup import Outage, with_outages
from topologies.factory import BACKUP_LINK, BACKUP_SITE_LINK, FactoryTopo
from topologies.leo_links import scenario_link_schedules, schedule_rows
from topologies.scenario import parse_scenario
from topologies.validate import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "experiments" / "leo_failover" / "scenario.toml"


@pytest.fixture()
def raw() -> dict:
    return tomllib.loads(SCENARIO.read_text())


# --- scenario ---------------------------------------------------------------------------------------
def test_the_experiments_scenario_declares_a_backup_outages_and_a_protected_slice(raw: dict) -> None:
    s = parse_scenario(raw)
    assert s.backup is not None and s.backup.switch == "bk1" and s.backup.kind == "terrestrial"
    assert s.backup.link.uplink.delay_ms == 20.0 and s.backup.link.downlink.rate_mbps == 5.0
    assert [(o.start_s, o.duration_s, o.kind) for o in s.leo.outages] == [
        (33.0, 3.0, "outage"), (45.0, 3.0, "fade"), (93.0, 3.0, "outage"), (105.0, 3.0, "fade")]
    assert s.leo.outages[1].loss_pct == 30.0 and s.leo.outages[0].loss_pct == 100.0
    assert (s.backup.fade_loss_pct, s.backup.fade_window_ms) == (10.0, 1000.0)
    assert {sl.name: sl.leo_protection for sl in s.slices}["mmtc"] == "steer"
    assert {sl.name: sl.leo_protection for sl in s.slices}["telemetry"] == "none"


@pytest.mark.parametrize(("edit", "key", "allowed"), [
    (lambda r: r["slices"][2].update(leo_protection="duplicate"), "slices[2].leo_protection", "none"),
    (lambda r: r.pop("backup"), "slices[2].leo_protection", "[backup]"),
    (lambda r: r["backup"].update(kind="fibre"), "backup.kind", "terrestrial"),
    (lambda r: r["backup"].update(detect_ms=0), "backup.detect_ms", ">"),
    (lambda r: r["backup"].update(switch="upf1"), "node names", "unique"),
    (lambda r: r["backup"].update(colour="red"), "backup.colour", ""),
    (lambda r: r["leo"]["outages"][1].update(start_s=34.0), "leo.outages[1].start_s", "36"),
    (lambda r: r["leo"]["outages"][0].update(duration_s=0), "leo.outages[0].duration_s", ">"),
    (lambda r: r["leo"]["outages"][1].update(loss_pct=0), "leo.outages[1].loss_pct", ">"),
    (lambda r: r["leo"]["outages"][1].update(loss_pct=120), "leo.outages[1].loss_pct", "100"),
    (lambda r: r["backup"].update(fade_loss_pct=0), "backup.fade_loss_pct", ">"),
    (lambda r: r["backup"].update(fade_window_ms=10), "backup.fade_window_ms", "50"),
])
def test_bad_backup_or_outage_input_names_the_key(raw: dict, edit, key: str, allowed: str) -> None:
    raw = copy.deepcopy(raw)
    edit(raw)
    with pytest.raises(ConfigError) as info:
        parse_scenario(raw)
    assert key in str(info.value) and allowed in str(info.value)


def test_outages_need_an_orbit_model(raw: dict) -> None:
    raw = copy.deepcopy(raw)
    del raw["leo"]["orbit"], raw["leo"]["compute_host"]
    with pytest.raises(ConfigError, match="leo.outages"):
        parse_scenario(raw)


def test_an_outage_takes_the_link_down_exactly_in_its_window(raw: dict) -> None:
    s = parse_scenario(raw)
    frames = scenario_link_schedules(s, 40.0)
    for name, frame in frames.items():
        for direction in ("uplink", "downlink"):
            rows = schedule_rows(frame, direction)
            times = [r.t_s for r in rows]
            assert times == sorted(times) and len(set(times)) == len(times), name
            assert 33.0 in times and 36.0 in times
            for r in rows:  # the row in effect: down from 33 s until 36 s (and 93-96 s), up elsewhere
                assert r.up == (not (33.0 <= r.t_s < 36.0 or 93.0 <= r.t_s < 96.0)), (name, direction, r.t_s)


def test_with_outages_keeps_every_other_value() -> None:
    frame = pd.DataFrame({"t_s": [0.0, 1.0, 2.0] * 2, "direction": ["uplink"] * 3 + ["downlink"] * 3,
                          "up": [True] * 6, "delay_ms": [10.0, 11.0, 12.0, 5.0, 6.0, 7.0]})
    out = with_outages(frame, (Outage(0.5, 1.0),))
    up = out[out["direction"] == "uplink"]
    assert up["t_s"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert up["up"].tolist() == [True, False, False, True, True]
    assert up["delay_ms"].tolist() == [10.0, 10.0, 11.0, 11.0, 12.0]
    assert with_outages(frame, ()) is frame


def test_a_fade_raises_the_loss_in_its_window_and_keeps_the_link_up() -> None:
    frame = pd.DataFrame({"t_s": [0.0, 1.0, 2.0] * 2, "direction": ["uplink"] * 3 + ["downlink"] * 3,
                          "up": [True] * 6, "loss_pct": [0.0, 50.0, 0.0] * 2,
                          "delay_ms": [10.0, 11.0, 12.0] * 2})
    out = with_outages(frame, (Outage(0.5, 1.0, loss_pct=30.0),))
    for direction in ("uplink", "downlink"):
        part = out[out["direction"] == direction]
        assert part["t_s"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
        assert part["up"].all()
        assert part["loss_pct"].tolist() == [0.0, 30.0, 50.0, 50.0, 0.0]  # never lowered by the fade
        assert part["delay_ms"].tolist() == [10.0, 10.0, 11.0, 11.0, 12.0]


def test_the_topology_adds_the_backup_switch_between_upf_and_ground_station(raw: dict) -> None:
    topo = FactoryTopo(scenario=parse_scenario(raw), switch_prefix="fsab")
    links = {info["link_name"]: (a, b) for a, b, info in topo.links(withInfo=True)}
    assert links[BACKUP_SITE_LINK] == ("fsabupf1", "fsabbk1")
    assert links[BACKUP_LINK] == ("fsabbk1", "fsabgs1")
    assert topo.nodeInfo("fsabbk1")["role"] == "backup"
    for a, b, info in topo.links(withInfo=True):  # root-namespace port names still fit 15 characters
        for node, port in ((a, info["port1"]), (b, info["port2"])):
            if topo.isSwitch(node):
                assert len(f"{node}-eth{port}") <= 15


# --- adaptation: pure parts -------------------------------------------------------------------------
def test_steer_windows_widen_each_boundary_window_and_merge_overlaps() -> None:
    w = steer_windows([12.0, 27.0, 27.1], 0.075, 0.140, 0.05, 0.05)
    assert w == [(pytest.approx(11.875), pytest.approx(12.19)), (pytest.approx(26.875), pytest.approx(27.29))]
    assert steer_windows([0.05], 0.075, 0.14, 0.05, 0.05)[0][0] == 0.0  # never before the run


def test_fault_detector_goes_down_after_a_silence_and_up_after_a_clean_hold() -> None:
    ms = 1_000_000
    d = FaultDetector(detect_ms=100, hold_s=0.5)
    assert d.update(0) is None  # nothing judged before the first echo
    for t in range(0, 200, 10):
        d.echo(t * ms)
        assert d.update(t * ms) is None
    assert d.update(290 * ms) is None      # 100 ms of silence is not yet a fault
    assert d.update(291 * ms) == "down"
    assert d.update(400 * ms) is None
    for t in range(1000, 1300, 10):        # echoes again, 300 ms: not yet up
        d.echo(t * ms)
        assert d.update(t * ms) is None
    d.echo(1300 * ms)
    assert d.update(1400 * ms) is None     # a 100 ms stretch without echoes... still healthy
    d.echo(1450 * ms)                      # 150 ms gap: the healthy stretch starts again
    assert d.update(1500 * ms) is None
    for t in range(1460, 1960, 10):
        d.echo(t * ms)
    assert d.update(1950 * ms) == "up" and not d.down


def test_fault_detector_goes_down_when_the_heartbeats_lose_more_than_the_limit() -> None:
    ms = 1_000_000
    d = FaultDetector(detect_ms=100, hold_s=0.5, interval_ms=10, loss_pct=10, window_ms=1000)

    def beat(t_ms: int, lost: bool = False) -> str | None:
        if not lost:
            d.echo((t_ms + 30) * ms, t_ms * ms)  # a 30 ms round trip
        return d.update((t_ms + 30) * ms)

    assert all(beat(t) is None for t in range(0, 3000, 10))
    assert d.last_loss_pct == 0.0
    # from 3 s on every second heartbeat lost: no silence, but the window's share passes 10 % about
    # 200 ms into the fade, judged 100 ms (detect_ms) after the heartbeats' sending
    states = {t: beat(t, lost=(t // 10) % 2 == 1) for t in range(3000, 5000, 10)}
    (down_at,) = [t for t, s in states.items() if s == "down"]
    assert 3250 <= down_at + 30 <= 3450 and d.cause == "lossy", down_at
    # clean again from 5 s: the share falls to 10 % once at most 200 ms of the fade is left in the
    # window (~5.9 s), then 0.5 s of clean before up
    states = {t: beat(t) for t in range(5000, 8000, 10)}
    (up_at,) = [t for t, s in states.items() if s == "up"]
    assert 6300 <= up_at + 30 <= 6500 and not d.down and d.cause is None, up_at


def test_desired_via_puts_faults_before_windows_and_nothing_moves_when_off() -> None:
    w = [(10.0, 10.5)]
    assert desired_via(10.2, w, False, enabled=False) == ("leo", "adaptation off")
    assert desired_via(10.2, w, False, enabled=True) == ("backup", "reconfiguration")
    assert desired_via(20.0, w, True, enabled=True) == ("backup", "LEO path down")
    assert desired_via(20.0, w, True, True, "lossy") == ("backup", "LEO path lossy")
    assert desired_via(20.0, w, False, enabled=True) == ("leo", "LEO path up")


SWITCHES = [  # UE 10.0.0.1, cloud 10.0.0.9; ports: via the LEO tree, via the backup tree
    SteerSwitch(1, {"10.0.0.1": 1, "10.0.0.9": 2}, {"10.0.0.1": 1, "10.0.0.9": 3}),  # UPF: cloud differs
    SteerSwitch(2, {"10.0.0.1": 1, "10.0.0.9": 2}, {"10.0.0.1": 3, "10.0.0.9": 2}),  # ground station
    SteerSwitch(3, {"10.0.0.1": 1, "10.0.0.9": 1}, {"10.0.0.1": 1, "10.0.0.9": 2}),  # backup switch
    SteerSwitch(4, {"10.0.0.1": 1, "10.0.0.9": 2}, {"10.0.0.1": 1, "10.0.0.9": 1}),  # LEO terminal
]


def test_steer_rules_move_both_directions_where_the_trees_differ_and_back() -> None:
    to_backup = steer_rules(SWITCHES, [("10.0.0.1", "10.0.0.9")], "backup")
    assert [(dpid, r.match["ipv4_src"], r.match["ipv4_dst"], r.actions[0].port) for dpid, r in to_backup] == [
        (1, "10.0.0.1", "10.0.0.9", 3), (2, "10.0.0.9", "10.0.0.1", 3)]
    back = steer_rules(SWITCHES, [("10.0.0.1", "10.0.0.9")], "leo")
    assert [(d, r.actions[0].port) for d, r in back] == [(1, 2), (2, 1)]
    for (_, a), (_, b) in zip(to_backup, back, strict=True):  # same match and priority: ADD replaces
        assert a.match == b.match and a.priority == b.priority == PRIO_STEER and a.cookie == COOKIE_STEER
    with pytest.raises(ValueError, match="via"):
        steer_rules(SWITCHES, [], "geo")


def test_a_switch_that_floods_nothing_has_no_flood_rules() -> None:
    hosts = (HostSpec("a", "10.0.0.1", "02:00:00:00:00:01", "s"),)
    for flood in (True, False):
        policy = SlicePolicy(slices={"s": SliceSpec("s", 10)}, hosts=hosts,
                             switches=(SwitchSpec("b", 1, (), {"02:00:00:00:00:01": 1}, flood=flood),))
        assert any(r.cookie == COOKIE_FLOOD for r in slice_rules(policy, 1)) is flood
        assert SlicePolicy.from_dict(policy.to_dict()) == policy


# --- the steering loop (what the leo_adaptation app runs) ------------------------------------------
def _config(probe: Path) -> SteeringConfig:
    return SteeringConfig(start_ns=0, on_from_s=10.0, end_s=20.0, windows_s=((2.0, 2.5), (12.0, 12.5)),
                          pairs=(("10.0.0.1", "10.0.0.9"),), switches=tuple(SWITCHES), probe_path=str(probe),
                          detect_ms=100, hold_s=1.0)


def test_the_steering_config_survives_json(tmp_path: Path) -> None:
    config = _config(tmp_path / "probe.bin")
    assert SteeringConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ECHO_RECORD.format == PROBE_RECORD.format  # the loop reads what the probe agent writes


def test_the_steering_loop_follows_windows_and_heartbeats_only_once_adaptation_is_on(tmp_path: Path) -> None:
    probe = tmp_path / "probe.bin"
    s = 1_000_000_000
    installed: list[list] = []
    loop = SteeringLoop(_config(probe), lambda rules: installed.append(rules))

    def echoes(t0_s: float, t1_s: float) -> None:
        with probe.open("ab") as f:
            t = t0_s
            while t < t1_s:
                f.write(PROBE_RECORD.pack(0, 0, 0, round(t * s)))
                t += 0.01

    echoes(0.0, 3.0)
    for t in (1.0, 2.2, 2.9):           # off arm: the window passes, nothing moves
        assert loop.step(round(t * s)) is False
    assert installed == []
    echoes(3.0, 12.7)
    loop.step(round(12.2 * s))           # on arm, inside a window: to the backup
    loop.step(round(12.6 * s))           # window over, echoes still coming: back on LEO
    assert [c["via"] for c in loop.changes] == ["backup", "leo"]
    assert [c["reason"] for c in loop.changes] == ["reconfiguration", "LEO path up"]
    loop.step(round(12.85 * s))          # silence since 12.69 s: a fault
    assert loop.detections[-1]["state"] == "down" and loop.changes[-1]["via"] == "backup"
    assert loop.changes[-1]["reason"] == "LEO path down"
    echoes(14.0, 15.2)
    loop.step(round(15.1 * s))           # 1.1 s of echoes: up, back on LEO
    assert loop.detections[-1]["state"] == "up" and loop.changes[-1]["via"] == "leo"
    assert len(installed) == 4 and all(len(r) == 2 for r in installed)
    assert all(c["applied_ns"] and c["error"] is None for c in loop.changes)
    echoes(15.2, 25.0)
    assert loop.step(round(20.5 * s)) is False  # after the traffic's end nothing is judged
    assert loop.status()["via"] == "leo" and len(loop.status()["changes"]) == 4


def test_the_steering_loop_moves_a_protected_slice_off_a_lossy_path_and_back(tmp_path: Path) -> None:
    from dataclasses import replace

    probe = tmp_path / "probe.bin"
    config = replace(_config(probe), windows_s=(), interval_ms=10.0, fade_loss_pct=10.0,
                     fade_window_ms=1000.0)
    assert SteeringConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    loop = SteeringLoop(config, lambda rules: None)
    with probe.open("ab") as f:  # 10 ms heartbeats, 20 ms round trip; a third lost from 13 s to 15 s
        for k in range(2000):
            if not (1300 <= k < 1500 and k % 3 == 0):
                f.write(PROBE_RECORD.pack(k, k * 10_000_000, 0, k * 10_000_000 + 20_000_000))
    for t in range(1000, 2000):  # every 10 ms from 10 s (the on arm) to 20 s
        loop.step(t * 10_000_000)
    assert [(d["state"], d["cause"]) for d in loop.detections] == [("down", "lossy"), ("up", "lossy")]
    assert [(c["via"], c["reason"]) for c in loop.changes] == [("backup", "LEO path lossy"),
                                                              ("leo", "LEO path up")]
    assert 13.1 < loop.changes[0]["t_s"] < 13.6 and loop.detections[0]["loss_pct"] > 10.0
    # the fade ended at 15 s: the share falls to 10 % at ~15.8 s, then the 1 s hold
    assert 16.5 < loop.changes[1]["t_s"] < 17.2


def test_a_refused_change_counts_as_failed_only_when_no_retry_made_it_good() -> None:
    from experiments.kinds.leo_failover.analysis import unresolved_failures

    ok = {"via": "backup", "error": None}
    refused = {"via": "backup", "error": "dpid 0x7 is not ready (resync under way)"}
    assert unresolved_failures([refused, refused, ok]) == []          # retried until accepted
    assert unresolved_failures([refused, {"via": "leo", "error": None}]) == [refused]  # never steered
    assert unresolved_failures([ok, refused]) == [refused]           # the run ended refused


def test_a_change_the_switches_refuse_is_recorded_and_retried(tmp_path: Path) -> None:
    loop = SteeringLoop(_config(tmp_path / "probe.bin"), lambda rules: "dpid 0x1 is not connected")
    assert loop.step(12_100_000_000) is True
    assert loop.changes[-1]["error"] == "dpid 0x1 is not connected" and loop.changes[-1]["applied_ns"] is None
    assert loop.via == "leo"  # not moved: tried again RETRY_S (0.1 s) later, not at every step
    loop.install = lambda rules: None
    assert loop.step(12_150_000_000) is False and len(loop.changes) == 1
    loop.step(12_200_000_000)
    assert loop.via == "backup" and loop.changes[-1]["error"] is None


# --- the kind's analysis ----------------------------------------------------------------------------
def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One protected flow every 10 ms for 20 s; arms of 10 s; a spike (+40 ms) and a lost packet in
    the off arm's window only; an outage 14-15 s that loses 10 packets before the new path."""
    from experiments.kinds.leo_failover import analysis

    flows = pd.DataFrame({"flow_id": [1], "slice": ["mmtc"], "interval_ms": [10.0], "start_offset_s": [0.0]})
    due = analysis.due_times(flows, 20.0)
    t = due["t_s"].to_numpy()
    keep = ~((t >= 5.0) & (t < 5.011)) & ~((t >= 14.0) & (t < 14.1))
    got = pd.DataFrame({"slice": "mmtc", "flow_id": 1, "t_s": t[keep],
                        "owd_ms": [60.0 if 4.95 <= x < 5.2 else 20.0 for x in t[keep]], "on_time": True})
    return got, due


def test_periods_split_each_arm_and_the_verdict_sees_the_spike_only_when_off() -> None:
    from experiments.kinds.leo_failover import analysis

    got, due = _tables()
    boundary, outages = [(4.95, 5.2), (14.95 - 10, 15.2 - 10), (15.95, 16.2)], [(14.0, 15.0)]
    assert list(analysis.period_of([4.85, 4.9, 5.19, 13.96, 14.99, 15.5], boundary, outages)) == [
        "other", "boundary", "boundary", "outage", "outage", "other"]  # windows open LEAD_S early
    arms = analysis.period_figures(got, due, 10.0, 1.0, boundary, outages)
    off, on = arms["off"]["slices"]["mmtc"], arms["on"]["slices"]["mmtc"]
    assert arms["off"]["window_s"] == [1.0, 10.0] and off["outage"]["packets"] == 0
    assert off["boundary"]["lost_pkts"] == 2 and off["boundary"]["owd_ms_p99"] == 60.0
    assert on["boundary"]["lost_pkts"] == 0 and on["boundary"]["owd_ms_max"] == 20.0
    assert on["outage"]["lost_pkts"] == 10 and on["other"]["lost_pkts"] == 0
    v = analysis.verdict(arms, ["mmtc"], 5.0)
    assert v["slices"]["mmtc"]["off"]["spike_ms_p99"] == 40.0 and v["spikes_removed"] is True
    assert analysis.verdict(arms, [], 5.0)["spikes_removed"] is False


def test_reactions_time_the_path_change_and_count_the_packets_lost_before_it() -> None:
    from experiments.kinds.leo_failover import analysis

    got, due = _tables()
    changes = [{"t_s": 14.11, "via": "backup", "applied_s": 14.12},
               {"t_s": 17.0, "via": "leo", "applied_s": 17.01}]
    (r,) = analysis.reactions([(14.0, 15.0)], changes,
                              [{"t_s": 14.11, "state": "down"}, {"t_s": 17.0, "state": "up"}], 10.0,
                              got, due, ["mmtc"])
    assert r["arm"] == "on" and r["detect_ms"] == pytest.approx(110.0)
    assert r["reaction_ms"] == pytest.approx(120.0)
    assert r["back_on_leo_s"] == 17.01 and not r["already_on_backup"]
    assert r["lost_before_new_path_pkts"] == {"mmtc": 10} == r["lost_in_outage_pkts"]
    later = [{"t_s": 30.0, "via": "backup", "applied_s": 30.01},
             {"t_s": 30.3, "via": "leo", "applied_s": 30.31}]
    (never,) = analysis.reactions([(14.0, 15.0)], later, [], 10.0, got, due, ["mmtc"])
    assert never["reaction_ms"] is None and never["back_on_leo_s"] is None  # a later window is not a return
    assert never["lost_before_new_path_pkts"] == {"mmtc": 10}


def test_sla_bins_mark_a_bin_violated_when_one_due_packet_missed() -> None:
    from experiments.kinds.leo_failover import analysis

    got, due = _tables()
    bins = analysis.sla_bins(got, due, 20.0, 1.0)
    assert len(bins) == 20 and set(bins[bins["state"] == "violated"]["t_s"]) == {5.0, 14.0}
    assert (bins[bins["state"] == "ok"]["due"] == 100).all()

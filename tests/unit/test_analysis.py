"""Raw records -> tidy packets -> per-slice summary, on synthetic data with known answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments.agents.traffic import RECORD
from experiments.framework.plotting import save
from experiments.framework.streaming import TwoPassQuantiles
from experiments.kinds.slices import analysis, figures
from experiments.kinds.slices.traffic import FlowPlan, flows_table, plan_flows
from topologies.scenario import load_scenario


def _write_raw(path, rows) -> None:
    path.write_bytes(b"".join(RECORD.pack(*row) for row in rows))


def _flows(tmp_path, plans: list[FlowPlan], scheduled: dict[str, int]) -> pd.DataFrame:
    for plan in plans:
        (tmp_path / f"send-{plan.ue}.json").write_text(json.dumps(
            {"packets_scheduled": scheduled[plan.ue], "packets_sent": scheduled[plan.ue],
             "send_errors": 0}))
    return flows_table(plans, tmp_path)


def test_summary_counts_loss_and_deadline_from_sent_packets(tmp_path) -> None:
    plans = [FlowPlan(1, "agv1", "agv", "urllc", "edge1", 100, 10.0, 10.0, 46),
             FlowPlan(2, "sensor1", "sensor", "mmtc", "cloud1", 200, 50.0, 100.0, 10)]
    flows = _flows(tmp_path, plans, {"agv1": 10, "sensor1": 4})
    ms = 1_000_000
    # agv1: 8 of 10 received; delays 1..8 ms, one (8 ms) DSCP-marked wrong, one duplicate.
    agv = [(1, k, 1000 * ms, 1000 * ms + (k + 1) * ms, 100, 46 << 2 if k != 7 else 0) for k in range(8)]
    agv.append(agv[0])
    # sensor1: all 4 received; 150 ms is beyond the 100 ms bound.
    sensor = [(2, k, 0, d * ms, 200, 10 << 2) for k, d in enumerate((20, 30, 40, 150))]
    _write_raw(tmp_path / "recv-edge1.bin", agv)
    _write_raw(tmp_path / "recv-cloud1.bin", sensor)
    packets = analysis.tidy_packets(sorted(tmp_path.glob("recv-*.bin")), flows)
    assert len(packets) == 12  # duplicate dropped
    summary = analysis.slice_summary(packets, flows)
    urllc, mmtc = summary["urllc"], summary["mmtc"]
    assert urllc["packets"] == 10 and urllc["packets_received"] == 8
    assert urllc["loss_pct"] == pytest.approx(20.0)
    assert urllc["deadline_met_pct"] == pytest.approx(80.0)  # lost packets miss the deadline
    assert urllc["owd_ms_p50"] == pytest.approx(4.5)
    assert urllc["dscp_marked_pct"] == pytest.approx(87.5)
    assert mmtc["loss_pct"] == 0 and mmtc["deadline_met_pct"] == pytest.approx(75.0)
    assert mmtc["owd_ms_max"] == pytest.approx(150.0)
    table = analysis.format_table(summary)
    assert "urllc" in table and "mmtc" in table
    owd = TwoPassQuantiles(())
    for name, group in packets.groupby("slice"):
        owd.count(name, group["owd_ms"].to_numpy())
    paths = save(figures.owd_cdf({n: owd.histogram(n) for n in ("urllc", "mmtc")},
                                 {"urllc": 10.0, "mmtc": 100.0}), tmp_path / "f")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_packets_touched_by_a_host_stall_are_left_out_of_timing_and_counted(tmp_path) -> None:
    import numpy as np

    from experiments.framework import stalls
    from topologies.hoststall import read_record

    plans = [FlowPlan(1, "agv1", "agv", "urllc", "edge1", 100, 10.0, 5.0, 46)]
    flows = _flows(tmp_path, plans, {"agv1": 10})
    ms, t0 = 1_000_000, 1_700_000_000_000_000_000
    # ten packets 10 ms apart, 1 ms each, but the two sent at 50 and 60 ms took 9 ms: a stall
    # [t0 + 52 ms, t0 + 68 ms] was in their flight (the sentinel's period is 1 ms)
    rows = [(1, k, t0 + 10 * k * ms, t0 + 10 * k * ms + (9 if k in (5, 6) else 1) * ms, 100, 46 << 2)
            for k in range(10)]
    _write_raw(tmp_path / "recv-edge1.bin", rows)
    (tmp_path / "hoststall.txt").write_text(
        f"start 0 {t0} 1000000 300000 1\nstall 0 {t0 + 53 * ms} {t0 + 68 * ms} {15 * ms} 5\n"
        f"rt 1\nend 0 {t0 + 100 * ms} 100 {15 * ms} 5000 99 1\n")
    record = read_record(tmp_path / "hoststall.txt")
    packets = stalls.flag(analysis.tidy_packets([tmp_path / "recv-edge1.bin"], flows), record)
    assert packets["host_stall"].tolist() == [k in (5, 6) for k in range(10)]
    left_out = analysis.slice_summary(packets, flows)["urllc"]
    assert left_out["packets_host_stall"] == 2 and left_out["packets_received"] == 10
    assert left_out["owd_ms_max"] == pytest.approx(1.0) and left_out["deadline_met_pct"] == 100.0
    kept = analysis.slice_summary(packets, flows, include_host_stalls=True)["urllc"]
    assert kept["owd_ms_max"] == pytest.approx(9.0) and kept["deadline_met_pct"] == pytest.approx(80.0)
    block = stalls.block(record, packets, include=False)
    assert block["excluded_from_timing"] and block["packets_flagged"] == 2 and block["stalls"] == 1
    assert "left out" in stalls.line(block)
    assert not stalls.flag(packets.drop(columns="host_stall"), None)["host_stall"].any()
    assert np.isclose(block["packets_flagged_pct"], 20.0)


def test_truncated_raw_file_is_an_error(tmp_path) -> None:
    path = tmp_path / "recv-x.bin"
    path.write_bytes(b"\0" * (RECORD.size + 3))
    with pytest.raises(ValueError, match="whole number"):
        analysis.read_records(path)


def test_plan_flows_matches_scenario() -> None:
    scenario = load_scenario(None)
    plans = plan_flows(scenario)
    assert [p.flow_id for p in plans] == list(range(1, len(scenario.ues) + 1))
    cam = next(p for p in plans if p.kind == "camera")
    assert cam.payload_bytes * 8 / (cam.interval_ms * 1000) == pytest.approx(8.0)
    assert cam.dscp_expected == 34 and cam.latency_bound_ms == 10.0


def test_probe_records_give_rtt_one_way_delays_and_loss(tmp_path) -> None:
    from experiments.agents.traffic import PROBE_RECORD

    ms = 1_000_000
    start = 10_000 * ms
    rows = [(k, start + k * 20 * ms, start + k * 20 * ms + 18 * ms, start + k * 20 * ms + 30 * ms)
            for k in range(4) if k != 2]  # probe 2 lost
    (tmp_path / "probe-edge1-cloud1.bin").write_bytes(b"".join(PROBE_RECORD.pack(*r) for r in rows))
    (tmp_path / "probe-edge1-cloud1.json").write_text(json.dumps({"probes_scheduled": 4}))
    rtt = analysis.tidy_probes([tmp_path / "probe-edge1-cloud1.bin"], start)
    assert list(rtt["seq"]) == [0, 1, 2, 3]
    assert rtt["rtt_ms"].isna().tolist() == [False, False, True, False]
    got = rtt.dropna()
    assert (got["rtt_ms"] == 30.0).all() and (got["uplink_ms"] == 18.0).all()
    assert (got["downlink_ms"] == 12.0).all() and list(got["t_s"]) == [0.0, 0.02, 0.06]
    summary = analysis.probe_summary(rtt)["edge1->cloud1"]
    assert summary["loss_pct"] == 25.0 and summary["rtt_ms_p50"] == 30.0
    fig = figures.rtt_timeline(rtt, None)
    assert save(fig, tmp_path / "rtt")[0].stat().st_size > 1000


def test_summary_carries_the_loss_split_and_the_table_shows_it(tmp_path) -> None:
    from experiments.framework.accounting import Stream, account, reconciliation

    plans = [FlowPlan(1, "agv1", "agv", "urllc", "edge1", 100, 10.0, 10.0, 46)]
    flows = _flows(tmp_path, plans, {"agv1": 10})
    _write_raw(tmp_path / "recv-edge1.bin", [(1, k, 0, 1_000_000, 100, 46 << 2) for k in range(7)])
    packets = analysis.tidy_packets([tmp_path / "recv-edge1.bin"], flows)
    radio = ("radio_agv1", "uplink")
    counters = {"links": {"radio_agv1": {"uplink": {"rx": 10, "tx": 7, "dropped_loss": 2,
                                                    "dropped_error": 1, "held": 0}}}}
    loss = account([Stream("urllc", (radio,), "edge1", 10, 10, 0, 7)], counters)
    summary = analysis.slice_summary(packets, flows, loss)
    urllc = summary["urllc"]
    assert urllc["loss_pct"] == pytest.approx(30.0) and urllc["lost_pkts"] == 3
    assert (urllc["modelled_loss_pkts"], urllc["emulator_loss_pkts"], urllc["unattributed_loss_pkts"]) \
        == (2, 1, 0)
    summary["loss_accounting"] = {"total": loss["total"]}
    summary["reconciliation"] = reconciliation(["2 duplicate packets"], {})
    table = analysis.format_table(summary)
    assert "lost packets by cause" in table and "COUNTS DO NOT RECONCILE: 2 duplicate packets" in table
    assert "loss_accounting" not in table.split("lost packets")[0]  # not drawn as a slice row


def test_service_lines_say_what_the_run_can_claim() -> None:
    base = {"availability_pct": 99.91, "availability_pct_ci95": [99.85, 99.92], "survival_violations": 3,
            "mtbf_s": 10.0, "availability_target_pct": 99.9, "messages_needed_for_target": 3688,
            "messages_considered": 49893}
    lines = analysis.service_lines({"embb": {"service": {**base, "target_met": "undetermined"}},
                                    "urllc": {"service": {**base, "target_met": False, "mtbf_s": None,
                                                          "mtbf_s_at_least": 40.0}}})
    embb = next(line for line in lines if line.startswith("embb"))
    assert "undetermined: the interval holds the target" in embb and "3,688" in embb and "49,893" in embb
    urllc = next(line for line in lines if line.startswith("urllc"))
    assert urllc.endswith("False") and ">=40" in urllc
    assert analysis.service_lines({"mmtc": {"packets": 1}}) == []

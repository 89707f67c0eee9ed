"""Packets -> TS 22.104 messages (experiments/kinds/slices/messages.py), hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.kinds.slices import messages
from experiments.kinds.slices.traffic import FlowPlan
from topologies.hoststall import StallRecord

T0 = 1_000_000_000_000  # traffic start (ns)
MS = 1_000_000


def _table(*plans: tuple[FlowPlan, int]) -> pd.DataFrame:
    rows = []
    for plan, scheduled in plans:
        rows.append({**plan.__dict__, "sender": plan.sender, "packets_scheduled": scheduled})
    by_id = {r["flow_id"]: r["packets_scheduled"] for r in rows}
    for r in rows:
        r["seq_space"] = by_id[r["reply_to"]] if r["model"] == "status" else r["packets_scheduled"]
    return pd.DataFrame(rows)


def _packets(flow_id: int, seq: np.ndarray, send_ns: np.ndarray, recv_ns: np.ndarray,
             stall: np.ndarray | None = None) -> pd.DataFrame:
    return pd.DataFrame({"flow_id": flow_id, "seq": seq, "send_ns": send_ns, "recv_ns": recv_ns,
                         "host_stall": np.zeros(seq.size, bool) if stall is None else stall})


def _periodic(flow_id: int = 1, survival_ms: float = 10.0) -> FlowPlan:
    return FlowPlan(flow_id, "agv1", "agv", "urllc", "edge1", 100, 10.0, 10.0, 46,
                    survival_time_ms=survival_ms, target_pct=99.9)


def test_periodic_flow_single_loss_tolerated_double_loss_is_down() -> None:
    flows = _table((_periodic(), 100))  # 1 s at 10 ms
    seq = np.setdiff1d(np.arange(100), [40, 60, 61])
    send = T0 + seq * 10 * MS
    out = messages.MessageOutcomes(flows, T0, 1.0, include_stalls=False)
    # two chunks, the second holding the packets after the losses (arrival order)
    first = seq < 50
    out.add(_packets(1, seq[first], send[first], send[first] + 2 * MS))
    out.add(_packets(1, seq[~first], send[~first], send[~first] + 2 * MS))
    metrics, summary = out.flow_metrics()[1]
    # seq 40 lost: due at 410 ms, 41 arrives at 412 ms: a 2 ms outage, shorter than the 10 ms survival time.
    # seq 60-61 lost: due at 610 ms, 62 arrives at 622 ms: 12 ms > 10 ms: DOWN for 12 ms.
    assert metrics.survival_violations == 1
    assert metrics.outages == [pytest.approx((0.6, 0.612))] or \
        [tuple(round(x, 6) for x in o) for o in metrics.outages] == [(0.6, 0.612)]
    assert summary["availability_pct"] == pytest.approx(100 * (1 - 0.012))
    assert metrics.messages_considered == 100 and metrics.messages_down == 2
    assert summary["lost"] == 3 and summary["deadline_misses"] == 0
    assert summary["loss_bursts"] == {1: 1, 2: 1} or summary["loss_bursts"] == {"1": 1, "2": 1}
    assert summary["jitter_ms"] == pytest.approx(0.0)
    assert summary["target_met"] in (False, "undetermined")
    assert summary["messages_needed_for_target"] > 100


def test_late_message_fails_but_is_not_lost_and_stalls_are_excluded() -> None:
    flows = _table((_periodic(survival_ms=0.0), 50))
    seq = np.arange(50)
    send = T0 + seq * 10 * MS
    recv = send + 2 * MS
    recv[10] = send[10] + 15 * MS          # late (bound 10 ms)
    stall = np.zeros(50, bool)
    stall[30] = True
    recv[30] = send[30] + 50 * MS          # late, but a host stall touched it: excluded
    out = messages.MessageOutcomes(flows, T0, 0.5, include_stalls=False)
    out.add(_packets(1, seq, send, recv, stall))
    metrics, summary = out.flow_metrics()[1]
    assert summary["deadline_misses"] == 1 and summary["lost"] == 0
    assert metrics.messages_considered == 49
    # survival 0: the late message is a violation, down from its due time (110 ms) to 11's arrival (112)
    assert metrics.survival_violations == 1
    assert [tuple(round(x, 6) for x in o) for o in metrics.outages] == [(0.1, 0.102)]


def test_video_frame_on_time_only_when_complete_within_its_deadline() -> None:
    plan = FlowPlan(1, "cam1", "camera", "embb", "edge1", 1000, 1.0, 10.0, 34, model="video",
                    message_bound_ms=40.0, survival_time_ms=0.0, target_pct=99.0, frame_rate_fps=25.0,
                    gop_frames=2, i_frame_bytes=3000, p_frame_bytes=1000, frame_spread_ms=0.0)
    # frames: 0 = I (3 packets), 1 = P (1 packet), 2 = I, 3 = P; 40 ms apart; 8 packets in 160 ms
    flows = _table((plan, 8))
    seq = np.arange(8)
    send = T0 + np.array([0, 0, 0, 40, 80, 80, 80, 120]) * MS
    recv = send + 5 * MS
    recv[2] = send[2] + 45 * MS        # frame 0's last packet after its 40 ms deadline: frame 0 fails
    keep = seq != 5                     # frame 2 incomplete: fails
    out = messages.MessageOutcomes(flows, T0, 0.16, include_stalls=False)
    out.add(_packets(1, seq[keep], send[keep], recv[keep]))
    metrics, summary = out.flow_metrics()[1]
    assert summary["messages"] == 4 and metrics.messages_considered == 4
    assert summary["deadline_met"] == 2


def test_control_loop_cycles_from_command_schedule_to_status_arrival() -> None:
    command = FlowPlan(1, "agv1", "agv", "urllc", "agv1", 120, 10.0, 10.0, 46, source="edge1",
                       direction="downlink", model="command", survival_time_ms=10.0, target_pct=99.9)
    status = FlowPlan(2, "agv1", "agv", "urllc", "edge1", 80, 10.0, 10.0, 46, model="status", reply_to=1,
                      message_bound_ms=6.0, survival_time_ms=10.0, target_pct=99.9)
    flows = _table((command, 20), (status, 19))   # command 7 lost: 19 replies
    out = messages.MessageOutcomes(flows, T0, 0.2, include_stalls=False)
    seq = np.setdiff1d(np.arange(20), [7])
    sched = T0 + seq * 10 * MS
    out.add(_packets(1, seq, sched, sched + 2 * MS))                      # commands: 2 ms down
    cycle = np.where(seq == 12, 8, 4) * MS                               # cycle 12 over its 6 ms bound
    out.add(_packets(2, seq, sched + 2 * MS, sched + cycle))
    result = out.flow_metrics()
    loop = result[2][1]
    assert loop["messages"] == 20 and loop["lost"] == 1 and loop["deadline_misses"] == 1
    assert loop["cycle_ms"]["p50"] == pytest.approx(4.0)
    assert loop["reply_turnaround_ms"]["p50"] == pytest.approx(0.0)  # status sent when the command arrived
    cycles = out.cycle_times()
    assert sorted(cycles["cycle_ms"].round(3).unique()) == [4.0, 8.0] and len(cycles) == 19
    # per slice the loop counts by its cycles (not its command packets as well)
    metrics = {i: m for i, (m, _) in result.items()}
    service = messages.slice_service(flows, metrics, {i: o for i, (_, o) in result.items()})
    assert service["urllc"]["messages_considered"] == 20


def test_outage_table_rows() -> None:
    flows = _table((_periodic(survival_ms=0.0), 10))
    seq = np.array([0, 1, 2, 5, 6, 7, 8, 9])
    send = T0 + seq * 10 * MS
    out = messages.MessageOutcomes(flows, T0, 0.1, include_stalls=False)
    out.add(_packets(1, seq, send, send + MS))
    metrics = {i: m for i, (m, _) in out.flow_metrics().items()}
    table = out.outage_table(metrics)  # seq 3-4 lost: down from 3's due time (40 ms) to 5's arrival (51 ms)
    assert table[["ue", "slice"]].values.tolist() == [["agv1", "urllc"]]
    assert table["start_s"].round(6).tolist() == [0.04] and table["end_s"].round(6).tolist() == [0.051]


def _record(*windows_ms: tuple[float, float]) -> StallRecord:
    """A sentinel record with these stall windows (ms after T0); period 1 ms (widened back by it)."""
    windows = np.array([[T0 + round(a * MS), T0 + round(b * MS)] for a, b in windows_ms], dtype=np.int64)
    return StallRecord(windows, np.full(len(windows), MS, dtype=np.int64), 1000, 1.0, 300.0, 1000.0,
                       True, True)


def test_a_stall_anywhere_in_a_loop_cycle_or_before_a_late_send_leaves_the_message_out() -> None:
    command = FlowPlan(1, "agv1", "agv", "urllc", "agv1", 120, 10.0, 10.0, 46, source="edge1",
                       direction="downlink", model="command", survival_time_ms=10.0, target_pct=99.9)
    status = FlowPlan(2, "agv1", "agv", "urllc", "edge1", 80, 10.0, 10.0, 46, model="status", reply_to=1,
                      message_bound_ms=6.0, survival_time_ms=10.0, target_pct=99.9)
    flows = _table((command, 10), (status, 10))
    seq = np.arange(10)
    sched = T0 + seq * 10 * MS
    cmd_send = sched.copy()
    cmd_send[3] += 5 * MS                    # the command left 5 ms late: a stall held its sender
    cmd_recv = cmd_send + 2 * MS
    status_send = cmd_recv.copy()
    status_recv = status_send + 2 * MS       # cycle 3: 9 ms > 6 ms bound; cycle 6 below
    status_send[6], status_recv[6] = cmd_recv[6] + 4 * MS, cmd_recv[6] + 5 * MS  # the UE stalled
    # stalls: 30.5-34.5 ms (before command 3 left), 63.5-65.5 ms (between command 6's arrival at 62
    # and its status' send at 66); no packet's own flight overlaps either, widened back by 1 ms
    record = _record((30.5, 34.5), (63.5, 65.5))
    assert not record.flag(np.concatenate([cmd_send, status_send]),
                           np.concatenate([cmd_recv, status_recv])).any()
    for stalls, excluded in ((None, 0), (record, 2)):
        out = messages.MessageOutcomes(flows, T0, 0.1, include_stalls=False, stalls=stalls)
        out.add(_packets(1, seq, cmd_send, cmd_recv))
        out.add(_packets(2, seq, status_send, status_recv))
        metrics, loop = out.flow_metrics()[2]
        assert metrics.messages_considered == 10 - excluded
        assert loop["deadline_misses"] == 2 - excluded, stalls
    # the same record with the run including host stalls: nothing left out
    out = messages.MessageOutcomes(flows, T0, 0.1, include_stalls=True, stalls=record)
    out.add(_packets(1, seq, cmd_send, cmd_recv))
    out.add(_packets(2, seq, status_send, status_recv))
    assert out.flow_metrics()[2][1]["deadline_misses"] == 2

"""Packets -> TS 22.104 messages per flow: which message was on time, when the service was down.

A *message* is what the application waits for (TS 22.104 Annex C): a packet of a periodic flow or a
control loop's command; a whole frame of a video flow (on time when its last packet arrives within
the frame deadline of the frame's scheduled start); a control loop's *cycle* (command scheduled ->
its status received, within the cycle bound). :class:`MessageOutcomes` sees every tidy packet chunk
once (in the same pass as the per-slice figures, packetstream.store_packets) and keeps per flow one
byte per message, the arrival times of the on-time messages that may end an outage (those whose
predecessor was not on time), per-frame counters, cycle times and the RFC 3550 jitter state; then
experiments/framework/reliability.py turns each flow's messages into availability, survival-time
violations and MTBF, and experiments/framework/confidence.py says what the run can claim.

Messages a host stall touched are neither successes nor failures (excluded), unless the run
includes host stalls in its timing figures. A message is touched when its packet was
(stalls.flag: a stall during its flight) or a stall window overlaps [its scheduled start, its
arrival]: a message's deadline counts from its schedule, so a sender the host did not run on time,
and for a loop the whole cycle (command, the UE's answer, status), are inside what it measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework import confidence, reliability
from experiments.framework.stats import percentile
from experiments.kinds.slices.models import Pattern
from experiments.kinds.slices.traffic import flow_pattern
from topologies.hoststall import StallRecord, flag_packets

LOST, LATE, ON_TIME, EXCLUDED = 0, 1, 2, 3
CYCLE_QS = (50, 99, 99.9)


@dataclass
class _Flow:
    """One flow's message state (see the module docstring)."""

    row: Any
    model: str                    # FlowPlan.model
    base_ns: int                  # when its schedule starts (a status flow: its command's)
    pattern: Pattern              # its schedule (a status flow: its command's)
    bound_ns: int                 # a message's deadline after its scheduled start
    messages: int
    status: np.ndarray
    arrivals: list[np.ndarray] = field(default_factory=list)   # (message, recv_ns) pairs kept
    frame_ok: np.ndarray | None = None      # video: packets of each frame on time so far
    frame_last: np.ndarray | None = None    # video: latest arrival of each frame
    frame_stall: np.ndarray | None = None   # video: a packet of the frame met a host stall
    cycles_ms: list[np.ndarray] = field(default_factory=list)
    stamps: np.ndarray | None = None        # loops: command received (command flow), status sent (status)


class MessageOutcomes:
    """Per-flow TS 22.104 messages of a run, chunk by chunk (flows: flows_table rows with
    ``seq_space``; ``start_ns`` and ``duration_s``: the traffic's start and length; ``stalls``: the
    run's host-stall record, for the messages' own rule, see the module docstring)."""

    def __init__(self, flows: pd.DataFrame, start_ns: int, duration_s: float, include_stalls: bool,
                 stalls: StallRecord | None = None) -> None:
        self.start_ns, self.duration_s, self.include = int(start_ns), float(duration_s), include_stalls
        self.stall_windows = stalls.widened_windows() if stalls is not None and len(stalls) else None
        rows = {int(r.flow_id): r for r in flows.itertuples()}
        self.flows: dict[int, _Flow] = {}
        self.jitter = reliability.JitterAccumulator()
        for fid, r in rows.items():
            model = getattr(r, "model", "periodic")
            command = rows.get(int(r.reply_to)) if model == "status" else r
            if command is None:
                continue
            pattern = flow_pattern(command)
            assert pattern is not None
            base = self.start_ns + round(float(command.start_offset_s) * 1e9)
            bound_ms = float(r.message_bound_ms) or float(r.latency_bound_ms)
            seq_space = int(getattr(r, "seq_space", r.packets_scheduled))
            messages = int(pattern.message_of(np.array([seq_space - 1]))[0]) + 1 if seq_space else 0
            f = _Flow(r, model, base, pattern, round(bound_ms * 1e6), messages,
                      np.zeros(messages, dtype=np.uint8))
            if model in ("command", "status"):
                f.stamps = np.full(messages, -1, dtype=np.int64)
            if model == "video":
                f.frame_ok = np.zeros(messages, dtype=np.int64)
                f.frame_last = np.full(messages, -1, dtype=np.int64)
                f.frame_stall = np.zeros(messages, dtype=bool)
            self.flows[fid] = f

    def add(self, chunk: pd.DataFrame) -> None:
        """One chunk of tidy, flagged packets (each (flow, seq) once over all chunks)."""
        if chunk.empty:
            return
        order = chunk.sort_values(["flow_id", "recv_ns"], kind="stable")
        self.jitter.add(order["flow_id"].to_numpy(np.int64), order["send_ns"].to_numpy(np.int64),
                        order["recv_ns"].to_numpy(np.int64))
        stall_all = chunk["host_stall"].to_numpy(bool) if "host_stall" in chunk else \
            np.zeros(len(chunk), bool)
        for fid, idx in chunk.groupby("flow_id", sort=False).indices.items():
            f = self.flows.get(int(fid))
            if f is None:
                continue
            seq = chunk["seq"].to_numpy(np.int64)[idx]
            recv = chunk["recv_ns"].to_numpy(np.int64)[idx]
            stall = stall_all[idx] & (not self.include)
            msg = f.pattern.message_of(seq)
            sched = f.base_ns + f.pattern.message_start_ns(msg)
            if self.stall_windows is not None and not self.include:
                stall = stall | flag_packets(self.stall_windows, sched, recv)
            on_time = recv <= sched + f.bound_ns
            if f.frame_ok is not None:
                self._frames(f, msg, recv, on_time, stall)
                continue
            if f.stamps is not None:
                f.stamps[msg] = chunk["send_ns"].to_numpy(np.int64)[idx] if f.model == "status" else recv
            if f.model == "status":
                f.cycles_ms.append((recv[~stall] - sched[~stall]) / 1e6)
            f.status[msg] = np.where(stall, EXCLUDED, np.where(on_time, ON_TIME, LATE))
            # keep the arrival of on-time messages whose predecessor is not (yet) on time: only such
            # a message can end an outage
            prev = f.status[np.maximum(msg - 1, 0)]
            keep = on_time & ~stall & ((msg == 0) | (prev != ON_TIME))
            if keep.any():
                f.arrivals.append(np.stack([msg[keep], recv[keep]]))

    @staticmethod
    def _frames(f: _Flow, msg: np.ndarray, recv: np.ndarray, on_time: np.ndarray, stall: np.ndarray) -> None:
        assert f.frame_ok is not None and f.frame_last is not None and f.frame_stall is not None
        np.add.at(f.frame_ok, msg, on_time.astype(np.int64))
        np.maximum.at(f.frame_last, msg, recv)
        f.frame_stall[msg[stall]] = True

    # --- results --------------------------------------------------------------------------------
    def flow_metrics(self) -> dict[int, tuple[reliability.ServiceMetrics, dict[str, Any]]]:
        """Per flow: its ServiceMetrics and its summary.json figures."""
        jitter = self.jitter.result()
        return {fid: self._flow(fid, f, jitter.get(fid)) for fid, f in self.flows.items()}

    def _flow(self, fid: int, f: _Flow, jitter: dict[str, Any] | None
              ) -> tuple[reliability.ServiceMetrics, dict[str, Any]]:
        messages = np.arange(f.messages, dtype=np.int64)
        due = f.base_ns + f.pattern.message_start_ns(messages) + f.bound_ns
        arrival = np.full(f.messages, -1, dtype=np.int64)
        if f.frame_ok is not None:
            assert f.frame_last is not None and f.frame_stall is not None
            complete = f.frame_ok == f.pattern.packets_in_message(f.messages)
            ok = complete
            arrival = f.frame_last
            excluded = f.frame_stall
        else:
            ok = f.status == ON_TIME
            excluded = f.status == EXCLUDED
            if f.arrivals:
                kept = np.concatenate(f.arrivals, axis=1)
                arrival[kept[0]] = kept[1]
            # arrived messages whose arrival was not kept cannot end an outage: a placeholder at
            # their deadline (on time) or just after it (late) says they arrived
            arrival = np.where((arrival < 0) & (f.status == ON_TIME), due, arrival)
            arrival = np.where(f.status == LATE, due + 1, arrival)
        end_ns = self.start_ns + round(self.duration_s * 1e9)
        metrics = reliability.service_metrics(due, arrival, ok, float(f.row.survival_time_ms),
                                              f.base_ns + f.bound_ns, end_ns + f.bound_ns, excluded)
        out: dict[str, Any] = {"model": f.model, "messages": f.messages,
                               **metrics.as_summary(), **(jitter or {"jitter_ms": None})}
        out.update(self._claims(metrics, float(f.row.target_pct), f.pattern.period_ns /
                                f.pattern.messages_per_period / 1e9))
        if f.cycles_ms:
            cycles = np.concatenate(f.cycles_ms)
            out["cycle_ms"] = {f"p{q:g}".replace(".", ""): percentile(cycles, q) for q in CYCLE_QS}
            out["cycle_ms"]["p99_ci95"] = [None if v is None else round(float(v), 4)
                                           for v in confidence.quantile_ci(cycles, 99)]
        command = self.flows.get(int(f.row.reply_to)) if f.model == "status" else None
        if command is not None and command.stamps is not None and f.stamps is not None:
            both = (command.stamps >= 0) & (f.stamps >= 0)
            turn = (f.stamps[both] - command.stamps[both]) / 1e6  # the emulator's part of each cycle
            out["reply_turnaround_ms"] = {"p50": percentile(turn, 50), "p99": percentile(turn, 99),
                                          "max": round(float(turn.max()), 4) if turn.size else None}
        return metrics, out

    @staticmethod
    def _claims(metrics: reliability.ServiceMetrics, target_pct: float, interval_s: float) -> dict[str, Any]:
        """Availability target: met, missed or undetermined at 95 %, and the sample it would need."""
        up = metrics.messages_considered - metrics.messages_down
        needed = confidence.messages_needed(target_pct)
        return {"availability_target_pct": target_pct,
                "target_met": confidence.target_verdict(up, metrics.messages_considered, target_pct),
                "messages_needed_for_target": needed,
                "run_s_needed_for_target": round(needed * interval_s, 1)}

    def outage_table(self, metrics: dict[int, reliability.ServiceMetrics]) -> pd.DataFrame:
        """The DOWN intervals of every flow in s since the traffic start (availability timeline):
        flow_id, ue, slice, model, start_s, end_s."""
        rows = []
        for fid, m in metrics.items():
            f = self.flows[fid]
            shift_s = (f.base_ns + f.bound_ns - self.start_ns) / 1e9  # the flow's window start
            rows += [{"flow_id": fid, "ue": f.row.ue, "slice": f.row.slice,
                      "model": f.model,
                      "start_s": round(shift_s + float(s), 9), "end_s": round(shift_s + float(e), 9)}
                     for s, e in m.outages]
        return pd.DataFrame(rows, columns=["flow_id", "ue", "slice", "model", "start_s", "end_s"])

    def cycle_times(self) -> pd.DataFrame:
        """Every control-loop cycle time (ms) with its flow (the cycle CDF figure)."""
        frames = [pd.DataFrame({"flow_id": fid, "ue": f.row.ue, "cycle_ms": np.concatenate(f.cycles_ms)})
                  for fid, f in self.flows.items() if f.cycles_ms]
        return pd.concat(frames, ignore_index=True) if frames else \
            pd.DataFrame({"flow_id": pd.Series(dtype="int64"), "ue": pd.Series(dtype=str),
                          "cycle_ms": pd.Series(dtype=float)})


SERVICE_MODELS = ("periodic", "video", "status")  # a slice's services (a loop counts by its cycles)


def slice_service(flows: pd.DataFrame, metrics: dict[int, reliability.ServiceMetrics],
                  per_flow: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per slice: its service flows' metrics pooled (reliability.pooled), the target verdict on
    the pooled messages and the sample that would resolve it."""
    out: dict[str, dict[str, Any]] = {}
    for name, group in flows.groupby("slice", sort=False):
        ids = [int(i) for i, m in zip(group["flow_id"], group.get("model", pd.Series("periodic",
                                                                                      index=group.index)),
                                      strict=True) if m in SERVICE_MODELS and int(i) in metrics]
        if not ids:
            continue
        pooled = reliability.pooled([metrics[i] for i in ids])
        target = float(group["target_pct"].iloc[0]) if "target_pct" in group else 0.0
        considered = sum(metrics[i].messages_considered for i in ids)
        up = considered - sum(metrics[i].messages_down for i in ids)
        jitters = [(per_flow[i].get("jitter_ms"), metrics[i].messages_considered) for i in ids]
        weighted = [(j, n) for j, n in jitters if j is not None and n]
        pooled.update({
            "availability_target_pct": target,
            "target_met": confidence.target_verdict(up, considered, target) if target else "undetermined",
            "messages_needed_for_target": confidence.messages_needed(target) if target else None,
            "jitter_ms": round(sum(j * n for j, n in weighted) / sum(n for _, n in weighted), 4)
            if weighted else None,
        })
        out[str(name)] = pooled
    return out

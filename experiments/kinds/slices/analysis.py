"""Raw packet records -> tidy tables (Parquet) -> per-slice summary.

Loss counts every scheduled packet that was not received (send errors, packets still in flight at
stop, emulator drops and modelled drops alike: ``loss_pct`` = ``lost_pkts`` / ``packets``); the
split by cause is in ``modelled_loss_pkts`` / ``emulator_loss_pkts`` / ``in_flight_at_stop_pkts``
/ ``unattributed_loss_pkts`` (experiments/framework/accounting.py). ``deadline_met_pct`` is the
share of *sent* packets that arrived within the slice's bound: a lost packet is a missed deadline,
as in 3GPP TS 22.104's availability definition. Packets a host stall touched (``host_stall``,
experiments/framework/stalls.py) are left out of the delay and deadline figures unless asked for:
``deadline_met_pct`` is then of the sent packets no stall touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.agents.traffic import PROBE_RECORD
from experiments.framework import accounting, fidelity, stalls
from experiments.framework.accounting import LOSS_KEYS
from experiments.framework.stats import percentile, share_pct
from experiments.kinds.slices.packetstream import (  # noqa: F401 (read_records: this module's API too)
    SliceFigures,
    read_records,
    read_records_empty,
    tidy_records,
)


def tidy_packets(raw_files: list[Path], flows: pd.DataFrame) -> pd.DataFrame:
    """Received packets of small receiver files joined with their flow (UE, kind, slice, bound)."""
    frames = [read_records(p) for p in raw_files]
    return tidy_records(pd.concat(frames, ignore_index=True) if frames else read_records_empty(), flows)


def slice_summary(packets: pd.DataFrame, flows: pd.DataFrame,
                  loss: dict[str, dict[str, Any]] | None = None,
                  include_host_stalls: bool = False) -> dict[str, dict[str, Any]]:
    """Per-slice figures of an in-memory packets table (one chunk): see :func:`summary_from`."""
    return summary_from(SliceFigures(include_host_stalls).run([packets]), flows, loss)


def summary_from(figures: SliceFigures, flows: pd.DataFrame,
                 loss: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per-slice figures: OWD percentiles, loss, share of sent packets within the bound; with
    ``loss`` (accounting.account by slice) the loss split (LOSS_KEYS) too. Delay and deadline
    figures leave out packets flagged ``host_stall`` unless the figures were counted with
    ``include``; the packets were counted chunk by chunk (packetstream.SliceFigures)."""
    summary: dict[str, dict[str, Any]] = {}
    for name, slice_flows in flows.groupby("slice", sort=False):  # scenario order
        summary[str(name)] = figures.slice_row(str(name), int(slice_flows["packets_scheduled"].sum()),
                                               int(slice_flows["dscp_expected"].iloc[0]),
                                               float(slice_flows["latency_bound_ms"].iloc[0]))
        if loss is not None and str(name) in loss:
            summary[str(name)].update({k: loss[str(name)][k] for k in LOSS_KEYS})
    return summary


PROBE_DTYPE = np.dtype([("seq", "<u4"), ("_pad", "V4"), ("send_ns", "<u8"), ("echo_ns", "<u8"),
                        ("recv_ns", "<u8")])
assert PROBE_DTYPE.itemsize == PROBE_RECORD.size


def tidy_probes(raw_files: list[Path], start_ns: int) -> pd.DataFrame:
    """Echoed probes: RTT and both one-way delays, with send time since the traffic start.

    Probes that were sent but never echoed appear with NaN delays (from the client's summary).
    """
    frames = []
    for path in raw_files:
        pair = path.stem.removeprefix("probe-")
        source, target = pair.split("-", 1)
        data = path.read_bytes()
        if len(data) % PROBE_RECORD.size:
            raise ValueError(f"{path}: not a whole number of {PROBE_RECORD.size}-byte records")
        rec = np.frombuffer(data, dtype=PROBE_DTYPE)
        sent = json.loads(path.with_suffix(".json").read_text())["probes_scheduled"]
        got = pd.DataFrame({"seq": rec["seq"].astype("int64"),
                            "send_ns": rec["send_ns"].astype("int64"),
                            "echo_ns": rec["echo_ns"].astype("int64"),
                            "recv_ns": rec["recv_ns"].astype("int64")}).drop_duplicates("seq")
        frame = pd.DataFrame({"seq": np.arange(sent, dtype="int64")}).merge(got, on="seq", how="left")
        frame.insert(0, "target", target)
        frame.insert(0, "source", source)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["source", "target", "seq", "t_s", "rtt_ms", "uplink_ms",
                                     "downlink_ms"])
    df = pd.concat(frames, ignore_index=True)
    df["t_s"] = (df["send_ns"] - start_ns) / 1e9
    df["rtt_ms"] = (df["recv_ns"] - df["send_ns"]) / 1e6
    df["uplink_ms"] = (df["echo_ns"] - df["send_ns"]) / 1e6
    df["downlink_ms"] = (df["recv_ns"] - df["echo_ns"]) / 1e6
    return df


def probe_summary(rtt: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Per probe pair: RTT percentiles, one-way medians, loss."""
    out: dict[str, dict[str, float | int | None]] = {}
    for (source, target), group in rtt.groupby(["source", "target"], sort=True):
        values = group["rtt_ms"].dropna().to_numpy()
        out[f"{source}->{target}"] = {
            "probes": int(len(group)),
            "rtt_ms_p50": percentile(values, 50),
            "rtt_ms_p99": percentile(values, 99),
            "rtt_ms_max": round(float(values.max()), 4) if values.size else None,
            "uplink_ms_p50": percentile(group["uplink_ms"].dropna().to_numpy(), 50),
            "downlink_ms_p50": percentile(group["downlink_ms"].dropna().to_numpy(), 50),
            "loss_pct": share_pct(len(group) - values.size, len(group)),
        }
    return out


# summary.json keys that are not slices (cell_load and points: the cell_load kind's; arms, isolation,
# enforcement: the isolation kind's; leo_failover: its kind's)
NOT_SLICES = ("probes", "loss_accounting", "reconciliation", "host_stalls", "fidelity", "handovers",
              "cell_load", "points", "flows", "arms", "isolation", "enforcement", "sla", "leo_failover")


def format_table(summary: dict[str, dict]) -> str:
    """A fixed-width per-slice table for the terminal, with the loss split and reconciliation."""
    header = (f"{'slice':<7} {'packets':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
              f"{'loss %':>7} {'bound ms':>9} {'in bound %':>10} {'DSCP ok %':>9}")
    lines = [header, "-" * len(header)]

    def f(value: float | None, width: int, digits: int = 3) -> str:
        return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    slices = {name: s for name, s in summary.items() if name not in NOT_SLICES}
    for name, s in slices.items():
        lines.append(f"{name:<7} {s['packets']:>8d} {f(s['owd_ms_p50'], 8)} {f(s['owd_ms_p99'], 8)} "
                     f"{f(s['owd_ms_p999'], 9)} {f(s['loss_pct'], 7, 2)} {f(s['latency_bound_ms'], 9, 1)} "
                     f"{f(s['deadline_met_pct'], 10, 3)} {f(s['dscp_marked_pct'], 9, 1)}")
    lines += service_lines(slices)
    total = summary.get("loss_accounting", {}).get("total")
    if total is not None:
        rows = [*((n, s) for n, s in slices.items() if "lost_pkts" in s), ("total", total)]
        lines += ["", *accounting.loss_table("lost packets by cause", "slice", rows)]
        lines.append("(modelled: loss/down/bottleneck queue the scenario asked for; emulator: send errors, "
                     "socket and relay drops; shared: drops on links other slices use too; total "
                     "includes probes)")
        by_port = total.get("emulator_detail", {}).get("switch_socket_drops_by_port") or {}
        if by_port:
            lines.append(f"warning: {sum(by_port.values())} packets were dropped at the userspace switch's "
                         "receive sockets (ovs-vswitchd fell behind under CPU load): "
                         + ", ".join(f"{port} {n}" for port, n in by_port.items()))
        if total["unattributed_loss_pkts"] > 0:
            lines.append(f"warning: {total['unattributed_loss_pkts']} lost packets are explained by no "
                         "counter (dropped inside a switch or a host's stack, e.g. under CPU load): "
                         "emulator loss, not modelled loss")
    for pair, p in summary.get("probes", {}).items():
        lines.append(f"RTT probes {pair}: p50 {f(p['rtt_ms_p50'], 0)} ms, p99 {f(p['rtt_ms_p99'], 0)} ms, "
                     f"max {f(p['rtt_ms_max'], 0)} ms, loss {f(p['loss_pct'], 0, 2)} % "
                     f"({p['probes']} probes)")
    ho = summary.get("handovers")
    if ho:
        lines.append(f"handovers: {ho.get('applied', 0)} of {ho['planned']} planned applied (handovers.json; "
                     f"move lag max {ho.get('lag_ms_max')} ms, inside the interruption); UPF path "
                     f"switched by the controller {ho.get('path_switched', 0)} times, at most "
                     f"{ho.get('path_switch_ms_max')} ms after the handover")
    if "host_stalls" in summary:
        lines.append(stalls.line(summary["host_stalls"]))
    if "fidelity" in summary:
        lines.append(fidelity.line(summary["fidelity"]))
    verdict = accounting.reconciliation_line(summary)
    if verdict is not None:
        lines.append(verdict)
    return "\n".join(lines)


def service_lines(slices: dict[str, dict]) -> list[str]:
    """The TS 22.104 block of the terminal table: per slice availability (with its 95 % interval),
    survival-time violations, MTBF and what the run can say about the availability target."""
    rows = [(name, s["service"]) for name, s in slices.items() if s.get("service")]
    if not rows:
        return []
    header = (f"{'slice':<7} {'availability %':>14} {'95 % CI (messages)':>23} {'violations':>10} "
              f"{'MTBF s':>9} {'target %':>9}  target met")
    lines = ["", "TS 22.104 service (Annex C: down when an outage outlasts the survival time; per flow: "
             "summary.json 'flows')", header, "-" * len(header)]
    for name, v in rows:
        ci = v.get("availability_pct_ci95")
        ci_text = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a"
        mtbf = v.get("mtbf_s")
        least = v.get("mtbf_s_at_least")
        mtbf_text = f"{mtbf:.1f}" if mtbf is not None else (f">={least:.0f}" if least is not None else "n/a")
        avail = v.get("availability_pct")
        verdict = v.get("target_met")
        if verdict == "undetermined" and v.get("messages_needed_for_target"):
            verdict = (f"undetermined: the interval holds the target (a run without a failure would "
                       f"need >= {v['messages_needed_for_target']:,} messages; this one had "
                       f"{v.get('messages_considered', 0):,})")
        lines.append(f"{name:<7} {avail if avail is not None else float('nan'):>14.4f} {ci_text:>23} "
                     f"{v.get('survival_violations', 0):>10d} {mtbf_text:>9} "
                     f"{v.get('availability_target_pct', float('nan')):>9g}  {verdict}")
    return lines

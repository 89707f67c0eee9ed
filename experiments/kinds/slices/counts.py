"""Count reconciliation and loss accounting of the ``slices`` kind (see experiments/framework/accounting.py).

Checks (exact, no tolerance; any failure fails the run):

* every flow's sender wrote its summary; it scheduled exactly the packets the plan asks for
  (``ceil(duration / interval)``) and ``sent + send_errors == scheduled`` (why a packet was not
  sent is in ``send_errors_by_errno``);
* every receiver's record file is complete: a whole number of records, as many as its ``.done``
  file says it received (no ``.done``: the receiver did not finish);
* no phantom packet (unknown flow, a sequence number the sender never scheduled, or a flow received
  by a host it was not sent to), no duplicate ``(flow, seq)``; no flow received more than it sent;
* probes: ``echoes <= sent <= scheduled``, no duplicate or unscheduled probe;
* link counters: every emulated link readable; each link direction transmitted at least the
  received packets that crossed it; the relay's ``rx = tx + drops + held`` with ``held >= 0``.

Packets still in flight when the receivers stop (after ``drain_s``) are lost by the drain rule:
they are counted in ``lost_pkts`` and, while the relay still holds them, in
``in_flight_at_stop_pkts``; they never fail the reconciliation. Unattributed loss is reported,
not failed on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.agents.traffic import PROBE_RECORD, RECORD
from experiments.framework.accounting import Stream, path_hops
from experiments.kinds.slices.packetstream import PacketChunks, PacketCounts
from experiments.kinds.slices.traffic import flow_pattern


def planned_packets(duration_s: float, interval_ms: float) -> int:
    """Packets the sender schedules: ``T + k * interval`` for every k with ``k * interval < duration``."""
    interval_ns, duration_ns = int(interval_ms * 1e6), int(duration_s * 1e9)
    return math.ceil(duration_ns / interval_ns) if interval_ns > 0 else 0


def planned_flow_packets(flow: Any, duration_s: float) -> int | None:
    """Packets a flow's schedule holds (a flows-table row); None for a control loop's status flow,
    which sends one reply per command received."""
    length_s = duration_s - getattr(flow, "start_offset_s", 0.0)
    pattern = flow_pattern(flow)
    return None if pattern is None else pattern.packets_scheduled(int(length_s * 1e9))


def read_receivers(raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Per destination with a record file: ``{"bytes": file size, "done": its .done content or None}``
    (the records themselves are read in chunks: packetstream.PacketChunks)."""
    receivers = {}
    for path in sorted(raw_dir.glob("recv-*.bin")):
        done_path = Path(f"{path}.done")
        receivers[path.stem.removeprefix("recv-")] = {
            "bytes": path.stat().st_size,
            "done": json.loads(done_path.read_text()) if done_path.exists() else None}
    return receivers


def count_packets(raw_dir: Path, flows: pd.DataFrame) -> PacketCounts:
    """The checks of one pass over every record file, keeping no packet (for callers that need
    only the counts; a run's collect gets them while it writes packets.parquet)."""
    chunks = PacketChunks(flows, None)
    for _ in chunks.files(raw_dir):
        pass
    return chunks.counts


def reconcile_flows(packets: PacketCounts, flows: pd.DataFrame, duration_s: float,
                    receivers: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, int]]:
    """Problems and totals of the checks in the module docstring (flows: ``flows_table`` rows;
    ``packets``: what the pass over the record files counted)."""
    problems: list[str] = []
    for dest, info in sorted(receivers.items()):
        if info["done"] is None:
            problems.append(f"receiver on {dest}: no .done file (it did not finish; records may be partial)")
        elif info["bytes"] % RECORD.size or info["bytes"] // RECORD.size != info["done"]["packets_received"]:
            problems.append(f"receiver on {dest}: record file has {info['bytes']} bytes, expected "
                            f"{info['done']['packets_received']} records of {RECORD.size} bytes")
    for dest in sorted(set(flows["destination"]) - set(receivers)):
        problems.append(f"receiver on {dest}: no record file")
    planned = 0
    for f in flows.itertuples():
        plan = planned_flow_packets(f, duration_s)
        planned += plan if plan is not None else f.packets_scheduled
        if not getattr(f, "sender_summary", True):
            problems.append(f"sender {f.ue}: no summary (it did not finish)")
            continue
        if plan is not None and f.packets_scheduled != plan:
            problems.append(f"sender {f.ue}: scheduled {f.packets_scheduled} packets, plan says {plan}")
        if f.packets_sent + f.send_errors != f.packets_scheduled:
            problems.append(f"sender {f.ue}: sent {f.packets_sent} + errors {f.send_errors} "
                            f"!= scheduled {f.packets_scheduled}")
    if packets.duplicates:
        problems.append(f"{packets.duplicates} duplicate packets (same flow and sequence number "
                        "received twice)")
    if packets.phantoms:
        problems.append(f"{packets.phantoms} phantom packets (unknown flow, unscheduled sequence "
                        "number or wrong receiver)")
    for f in flows.itertuples():
        got = packets.received.get(int(f.flow_id), 0)
        if got > f.packets_sent:
            problems.append(f"flow {f.flow_id} ({f.ue}): received {got} > sent {f.packets_sent}")
    checks = {"planned_pkts": planned, "scheduled_pkts": int(flows["packets_scheduled"].sum()),
              "sent_pkts": int(flows["packets_sent"].sum()), "send_errors": int(flows["send_errors"].sum()),
              "received_pkts": packets.total(), "duplicate_pkts": packets.duplicates,
              "phantom_pkts": packets.phantoms}
    checks["lost_pkts"] = checks["scheduled_pkts"] - checks["received_pkts"]
    return problems, checks


def reconcile_probes(raw_dir: Path) -> list[str]:
    """Probe clients: summary present, echoes <= sent <= scheduled, no duplicate or unscheduled probe."""
    problems = []
    for path in sorted(raw_dir.glob("probe-*.bin")):
        summary_path = path.with_suffix(".json")
        if not summary_path.exists():
            problems.append(f"{path.stem}: no summary (the probe client did not finish)")
            continue
        s = json.loads(summary_path.read_text())
        data = path.read_bytes()
        if len(data) % PROBE_RECORD.size:
            problems.append(f"{path.stem}: record file truncated ({len(data)} bytes)")
            continue
        seqs = pd.Series([r[0] for r in PROBE_RECORD.iter_unpack(data)], dtype="int64")
        if not s["echoes_received"] <= s["probes_sent"] <= s["probes_scheduled"]:
            problems.append(f"{path.stem}: echoes {s['echoes_received']}, sent {s['probes_sent']}, "
                            f"scheduled {s['probes_scheduled']} do not nest")
        if seqs.duplicated().any() or (seqs >= s["probes_scheduled"]).any():
            problems.append(f"{path.stem}: duplicate or unscheduled probe sequence numbers")
    return problems


def streams(flows: pd.DataFrame, received: pd.Series, links: list[tuple[str, str, str]],
            raw_dir: Path | None = None, group: str = "slice",
            moved: Mapping[str, frozenset[str]] | None = None) -> list[Stream]:
    """Flows (grouped by ``group``: "slice" or "flow_id") and probes as accounting streams.
    ``moved``: UEs that handed over -> the links of the cells they were in; their packets crossed
    one cell or another, so their paths leave those links out (they count for no cell)."""
    moved = moved or {}

    def path(ue: str, source: str, dest: str) -> tuple:
        hops = path_hops(links, source, dest)
        return tuple(h for h in hops if h[0] not in moved[ue]) if ue in moved else hops

    out = [Stream(str(getattr(f, group)), path(f.ue, getattr(f, "sender", f.ue), f.destination),
                  f.destination,
                  int(f.packets_scheduled), int(f.packets_sent), int(f.send_errors),
                  int(received.get(f.flow_id, 0)))
           for f in flows.itertuples()]
    for path in sorted(raw_dir.glob("probe-*.json")) if raw_dir else []:
        source, target = path.stem.removeprefix("probe-").split("-", 1)
        s = json.loads(path.read_text())
        out.append(Stream("probes", path_hops(links, source, target) + path_hops(links, target, source),
                          path.stem, s["probes_scheduled"], s["probes_sent"],
                          s["probes_scheduled"] - s["probes_sent"], s["echoes_received"]))
    return out


def socket_drops(receivers: dict[str, dict[str, Any]]) -> dict[str, int | None]:
    """Kernel drops of each receiving socket (from the receivers' .done files)."""
    return {dest: (info["done"] or {}).get("socket_drops") for dest, info in receivers.items()}

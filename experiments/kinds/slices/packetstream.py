"""Raw receiver records -> tidy packet chunks and per-slice figures, in memory bounded in run length.

A 1-hour run of the 124-UE factory receives ~10^8 packets (3 GB of raw records), more than an
analysis may hold. So the slices kind never holds them: :class:`PacketChunks` reads every receiver
file in chunks of ``CHUNK_RECORDS`` records; each chunk is checked (unknown flow, a sequence number
never scheduled or the wrong receiver: *phantom*; a (flow, seq) seen before: *duplicate*, found
with one byte per scheduled packet), joined with its flow, flagged for host stalls and handed on
(the run skeleton writes each chunk as a row group of ``packets.parquet``). :class:`SliceFigures`
counts every chunk as it passes and takes the exact percentiles in a second pass over
``packets.parquet`` (experiments/framework/streaming.py: exact, not a sketch). The same code serves
an in-memory table (one chunk), so small and large runs give figures by one definition.

Peak memory: one chunk (~50 MB), one byte per scheduled packet, the percentile histograms and the
values of their planned bins (``factorysat bench analysis`` measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from experiments.agents.traffic import RECORD
from experiments.framework.confidence import ci_pct
from experiments.framework.fidelity import send_lateness_ms
from experiments.framework.results import StoredTable, write_parquet_chunks
from experiments.framework.stalls import flag
from experiments.framework.stats import share_pct
from experiments.framework.streaming import TwoPassQuantiles
from experiments.kinds.slices.traffic import flow_pattern
from topologies.hoststall import StallRecord

RECORD_DTYPE = np.dtype([("flow_id", "<u4"), ("seq", "<u4"), ("send_ns", "<u8"), ("recv_ns", "<u8"),
                         ("bytes", "<u4"), ("tos", "u1"), ("_pad", "V3")])
assert RECORD_DTYPE.itemsize == RECORD.size
RECORD_FIELDS = ("flow_id", "seq", "send_ns", "recv_ns", "bytes", "tos")
CHUNK_RECORDS = 1 << 19        # 16 MiB of raw records per chunk
OWD_QS = (50, 99, 99.9)        # the slice table's percentiles
OWD_CI_QS = (99, 99.9)         # ... with a 95 % interval (few samples in the tail: a wide one)
LATE_QS = (99, 99.9)           # sender lateness (summary.json "fidelity")
ALL = "__all__"                # the lateness group of every slice together


def read_records(path: Path) -> pd.DataFrame:
    """One (small) receiver file as a DataFrame; a trailing partial record is an error."""
    data = path.read_bytes()
    if len(data) % RECORD.size:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of {RECORD.size}-byte records")
    array = np.frombuffer(data, dtype=RECORD_DTYPE)
    return pd.DataFrame({name: array[name] for name in RECORD_FIELDS})


def read_records_empty() -> pd.DataFrame:
    return pd.DataFrame({n: pd.Series(dtype=RECORD_DTYPE[n]) for n in RECORD_FIELDS})


def tidy_records(records: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """Raw records (duplicates dropped, unknown flows left out) joined with their flow."""
    records = records.drop_duplicates(["flow_id", "seq"])
    packets = records.merge(flows, on="flow_id", how="inner", validate="many_to_one")
    packets["owd_ms"] = (packets["recv_ns"].astype("int64") - packets["send_ns"].astype("int64")) / 1e6
    packets["dscp"] = (packets["tos"].to_numpy() >> 2).astype("uint8")
    packets["on_time"] = packets["owd_ms"] <= packets["latency_bound_ms"]
    columns = ["ue", "kind", "slice", "destination", "flow_id", "seq", "send_ns", "recv_ns",
               "owd_ms", "bytes", "dscp", "on_time"]
    return packets[columns].sort_values(["flow_id", "seq"], ignore_index=True)


def record_chunks(path: Path, chunk: int = CHUNK_RECORDS) -> Iterator[np.ndarray]:
    """A receiver file's whole records, ``chunk`` at a time (a partial tail record is left out:
    reconciliation reports it from the file size)."""
    whole = path.stat().st_size // RECORD_DTYPE.itemsize
    with open(path, "rb") as handle:
        for start in range(0, whole, chunk):
            yield np.fromfile(handle, dtype=RECORD_DTYPE, count=min(chunk, whole - start))


@dataclass
class PacketCounts:
    """What the checks of one pass found (counts.reconcile_flows reads these)."""

    duplicates: int = 0
    phantoms: int = 0
    received: dict[int, int] = field(default_factory=dict)  # flow_id -> unique packets received

    def total(self) -> int:
        return sum(self.received.values())


class PacketChunks:
    """Checks and tidies raw records chunk by chunk for the flows of ``flows`` (flows_table rows)."""

    def __init__(self, flows: pd.DataFrame, record: StallRecord | None) -> None:
        self.flows = flows
        self.record = record
        ids = flows["flow_id"].to_numpy(dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self._ids = ids
        space = "seq_space" if "seq_space" in flows else "packets_scheduled"  # a status flow: its commands'
        self._scheduled = flows[space].to_numpy(dtype=np.int64)
        self._offset = np.concatenate([[0], np.cumsum(self._scheduled)])
        self._dest = flows["destination"].astype(str).to_numpy()
        self._seen = np.zeros(int(self._offset[-1]), dtype=bool)  # one byte per scheduled packet
        self._received = np.zeros(len(ids), dtype=np.int64)
        self._duplicates = self._phantoms = 0

    @property
    def counts(self) -> PacketCounts:
        """What the chunks so far held: duplicates, phantoms, new packets per flow."""
        return PacketCounts(self._duplicates, self._phantoms,
                            {int(f): int(n) for f, n in zip(self._ids, self._received, strict=True)})

    def add(self, dest: str, records: np.ndarray) -> pd.DataFrame:
        """One chunk of ``dest``'s receiver file -> its new, valid packets, tidied and flagged."""
        flow = records["flow_id"].astype(np.int64)
        seq = records["seq"].astype(np.int64)
        if len(self._ids):
            at = np.minimum(np.searchsorted(self._sorted_ids, flow), len(self._ids) - 1)
            known = self._sorted_ids[at] == flow
            safe = np.where(known, self._order[at], 0)
            valid = known & (seq < self._scheduled[safe]) & (self._dest[safe] == dest)
        else:  # no flows: every record is a phantom
            safe = np.zeros(len(flow), dtype=np.int64)
            valid = np.zeros(len(flow), dtype=bool)
        self._phantoms += int((~valid).sum())
        pos = (self._offset[safe] + seq)[valid]
        first = np.zeros(pos.size, dtype=bool)
        first[np.unique(pos, return_index=True)[1]] = True   # first of each (flow, seq) in the chunk
        new = first & ~self._seen[pos]
        self._duplicates += int(pos.size - new.sum())
        self._seen[pos[new]] = True
        keep = np.flatnonzero(valid)[new]
        self._received += np.bincount(safe[keep], minlength=len(self._ids))
        frame = pd.DataFrame({n: records[n][keep] for n in RECORD_FIELDS})
        return flag(tidy_records(frame, self.flows), self.record)

    def files(self, raw_dir: Path) -> Iterator[pd.DataFrame]:
        """Every receiver file of ``raw_dir`` (``recv-<dest>.bin``), chunk by chunk; at least one
        (possibly empty) chunk, so the table always has its columns."""
        yielded = False
        for path in sorted(raw_dir.glob("recv-*.bin")):
            dest = path.stem.removeprefix("recv-")
            for records in record_chunks(path):
                yield self.add(dest, records)
                yielded = True
        if not yielded:
            yield self.add("", np.zeros(0, dtype=RECORD_DTYPE))


class SliceFigures:
    """Per-slice counts and exact percentiles of the packets table, chunk by chunk (two passes).

    ``intervals_ms``: flow_id -> send interval (for sender lateness, fidelity.py); ``start_ns``: the
    traffic start all schedules count from; ``include``: keep host-stall packets in the timing
    figures (they always count as received)."""

    def __init__(self, include: bool, intervals_ms: dict[int, float] | None = None,
                 start_ns: int | None = None, offsets_s: dict[int, float] | None = None,
                 patterns: dict[int, Any] | None = None) -> None:
        self.include = include
        self.intervals_ms = dict(intervals_ms or {})  # periodic flows
        self.patterns = dict(patterns or {})          # flow_id -> models.Pattern (video flows)
        self.offsets_s = dict(offsets_s or {})  # flow_id -> its start after traffic start
        self.start_ns = start_ns
        self.owd = TwoPassQuantiles(OWD_QS, ci_percentiles=OWD_CI_QS)
        self.late = TwoPassQuantiles(LATE_QS)
        self.n: dict[str, dict[str, Any]] = {}

    def count(self, chunk: pd.DataFrame) -> None:
        """Pass 1 over one chunk of tidy packets."""
        for name, group in chunk.groupby("slice", sort=False, observed=True):
            c = self.n.setdefault(str(name), {"received": 0, "host_stall": 0, "timed": 0, "on_time": 0,
                                              "dscp": {}, "owd_max": None})
            flagged, timed = self._timing(group)
            c["received"] += len(group)
            c["host_stall"] += int(flagged.sum())
            c["timed"] += len(timed)
            c["on_time"] += int(timed["on_time"].sum())
            for dscp, n in group["dscp"].value_counts().items():
                c["dscp"][int(dscp)] = c["dscp"].get(int(dscp), 0) + int(n)
            owd = timed["owd_ms"].to_numpy(dtype=np.float64)
            if owd.size:
                top = float(owd.max())
                c["owd_max"] = top if c["owd_max"] is None else max(c["owd_max"], top)
            self.owd.count(str(name), owd)
            late = self._lateness(group[~flagged])
            self.late.count(str(name), late)
            self.late.count(ALL, late)

    def plan(self) -> None:
        self.owd.plan()
        self.late.plan()

    def gather(self, chunk: pd.DataFrame) -> None:
        """Pass 2 over the same chunks."""
        for name, group in chunk.groupby("slice", sort=False, observed=True):
            flagged, timed = self._timing(group)
            self.owd.gather(str(name), timed["owd_ms"].to_numpy(dtype=np.float64))
            late = self._lateness(group[~flagged])
            self.late.gather(str(name), late)
            self.late.gather(ALL, late)

    def second_pass(self, chunks: Iterable[pd.DataFrame]) -> SliceFigures:
        """Plan, then gather over the chunks pass 1 counted (the same ones, again)."""
        self.plan()
        for chunk in chunks:
            self.gather(chunk)
        return self

    def run(self, chunks: list[pd.DataFrame]) -> SliceFigures:
        """Both passes over in-memory chunks."""
        for chunk in chunks:
            self.count(chunk)
        return self.second_pass(chunks)

    def slice_row(self, name: str, sent: int, expected_dscp: int, bound_ms: float) -> dict[str, Any]:
        """The summary.json figures of one slice (analysis.slice_summary's keys)."""
        c = self.n.get(name, {"received": 0, "host_stall": 0, "timed": 0, "on_time": 0, "dscp": {},
                              "owd_max": None})
        left_out = c["received"] - c["timed"]
        return {
            "packets": sent,
            "packets_received": c["received"],
            "packets_host_stall": c["host_stall"],
            "owd_ms_p50": self.owd.percentile(name, 50),
            "owd_ms_p99": self.owd.percentile(name, 99),
            "owd_ms_p999": self.owd.percentile(name, 99.9),
            "owd_ms_p99_ci95": self.owd.percentile_ci(name, 99),
            "owd_ms_p999_ci95": self.owd.percentile_ci(name, 99.9),
            "owd_ms_max": round(c["owd_max"], 4) if c["owd_max"] is not None else None,
            "loss_pct": share_pct(sent - c["received"], sent),
            "deadline_met_pct": share_pct(c["on_time"], sent - left_out),
            "deadline_met_pct_ci95": ci_pct(c["on_time"], sent - left_out) if sent - left_out >= c["on_time"]
            else None,
            "latency_bound_ms": bound_ms,
            "dscp_marked_pct": round(100.0 * c["dscp"].get(expected_dscp, 0) / c["received"], 2)
            if c["received"] else None,
        }

    def flagged(self) -> int:
        return sum(c["host_stall"] for c in self.n.values())

    def received(self) -> int:
        return sum(c["received"] for c in self.n.values())

    def _timing(self, group: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """A slice's packets in a chunk: which a host stall touched, and those its timing counts."""
        flagged = group["host_stall"].to_numpy(dtype=bool) if "host_stall" in group else \
            np.zeros(len(group), dtype=bool)
        return flagged, group if self.include else group[~flagged]

    def _lateness(self, packets: pd.DataFrame) -> np.ndarray:
        """Send lateness of the packets of scheduled flows (a control loop's status has none)."""
        if self.start_ns is None or packets.empty:
            return np.zeros(0)
        ids = packets["flow_id"]
        parts = [send_lateness_ms(packets[ids.isin(self.intervals_ms.keys())], self.intervals_ms,
                                  self.start_ns, self.offsets_s)]
        for fid, group in packets[ids.isin(self.patterns.keys())].groupby("flow_id"):
            base = self.start_ns + round(self.offsets_s.get(int(fid), 0.0) * 1e9)
            scheduled = base + self.patterns[int(fid)].send_offset_ns(group["seq"].to_numpy(np.int64))
            parts.append((group["send_ns"].to_numpy(np.int64) - scheduled) / 1e6)
        return np.concatenate(parts)


def store_packets(raw_dir: Path, flows: pd.DataFrame, record: StallRecord | None, out: Path,
                  include: bool, start_ns: int | None, outcomes: Any = None
                  ) -> tuple[StoredTable, PacketCounts, SliceFigures]:
    """Every receiver file of ``raw_dir`` -> ``out`` (packets.parquet), chunk by chunk, counted as
    it passes (and handed to ``outcomes``, messages.MessageOutcomes, when given); then the
    percentiles' second pass over ``out``. Memory: see the module docstring."""
    chunks = PacketChunks(flows, record)
    offsets = dict(zip(flows["flow_id"], flows["start_offset_s"], strict=True)) if "start_offset_s" in flows \
        else None
    model = flows["model"] if "model" in flows else pd.Series("periodic", index=flows.index)
    periodic = flows[model.isin(["periodic", "command"])]
    patterns = {int(r.flow_id): flow_pattern(r) for r in flows[model == "video"].itertuples()}
    figures = SliceFigures(include, dict(zip(periodic["flow_id"], periodic["interval_ms"], strict=True)),
                           start_ns, offsets, patterns)

    def counted() -> Iterator[pd.DataFrame]:
        for chunk in chunks.files(raw_dir):
            figures.count(chunk)
            if outcomes is not None:
                outcomes.add(chunk)
            yield chunk

    stored = write_parquet_chunks(out, counted())
    figures.second_pass(parquet_chunks(stored.path))
    return stored, chunks.counts, figures


HIST_COLUMNS = ["slice", "owd_ms", "host_stall"]


def owd_histograms(chunks: Iterable[pd.DataFrame], exclude_stalls: bool
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Per slice, binned one-way delays of a stored packets table's chunks (``parquet_chunks(path,
    HIST_COLUMNS)``; figures.owd_cdf draws them) and how many packets a host stall touched were
    left out."""
    owd, left_out = TwoPassQuantiles(()), 0
    for chunk in chunks:
        flagged = chunk["host_stall"].to_numpy(dtype=bool) if exclude_stalls else np.zeros(len(chunk), bool)
        left_out += int(flagged.sum())
        for name, group in chunk[~flagged].groupby("slice", sort=False, observed=True):
            owd.count(str(name), group["owd_ms"].to_numpy(dtype=float))
    return {str(name): owd.histogram(name) for name in owd.groups}, left_out


PASS_COLUMNS = ["slice", "flow_id", "seq", "send_ns", "owd_ms", "on_time", "dscp", "host_stall"]


def parquet_chunks(path: Path, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """A Parquet table's row groups, one DataFrame at a time (only ``columns``; default: what the
    per-slice figures read)."""
    if not path.exists():  # named as a missing file (pyarrow's own error does not carry the name)
        raise FileNotFoundError(2, "No such file", str(path))
    table = pq.ParquetFile(path)  # opened now: a damaged file fails here, not later
    wanted = [c for c in (columns or PASS_COLUMNS) if c in table.schema_arrow.names]
    return (table.read_row_group(i, columns=wanted).to_pandas() for i in range(table.num_row_groups))

"""The slices kind's chunked analysis (packetstream.py) against a plain whole-data computation:
same checks (duplicates across chunk boundaries, phantoms), same per-slice figures, same
sender-lateness percentiles, whatever the chunk size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.agents.traffic import RECORD
from experiments.framework.fidelity import send_lateness_ms
from experiments.framework.results import StoredTable, write_parquet_chunks
from experiments.framework.stats import percentile
from experiments.kinds.slices import analysis, packetstream
from experiments.kinds.slices.traffic import FlowPlan, flows_table

START = 10**15
PLANS = [FlowPlan(1, "agv1", "agv", "urllc", "edge1", 100, 1.0, 10.0, 46),
         FlowPlan(2, "cam1", "camera", "embb", "edge1", 1200, 0.5, 10.0, 34),
         FlowPlan(3, "sensor1", "sensor", "mmtc", "cloud1", 200, 5.0, 100.0, 10)]
SCHEDULED = {1: 3000, 2: 6000, 3: 600}


@pytest.fixture
def raw(tmp_path: Path) -> tuple[Path, pd.DataFrame, dict]:
    """Record files with duplicates, phantoms and a wrong receiver; the expected valid packets."""
    rng = np.random.default_rng(5)
    for plan in PLANS:
        n = SCHEDULED[plan.flow_id]
        (tmp_path / f"send-{plan.ue}.json").write_text(json.dumps(
            {"packets_scheduled": n, "packets_sent": n, "send_errors": 0}))
    rows: dict[str, list[tuple]] = {"edge1": [], "cloud1": []}
    valid = []
    for plan in PLANS:
        interval_ns = int(plan.interval_ms * 1e6)
        for seq in rng.choice(SCHEDULED[plan.flow_id], int(SCHEDULED[plan.flow_id] * 0.9), replace=False):
            send = START + int(seq) * interval_ns + int(rng.exponential(20_000))
            owd = int(rng.lognormal(np.log(2e6), 0.5))
            row = (plan.flow_id, int(seq), send, send + owd, plan.payload_bytes, plan.dscp_expected << 2)
            rows[plan.destination].append(row)
            valid.append(row)
    dup = rows["edge1"][5]
    rows["edge1"] += [dup, dup]                                  # two duplicates, far apart
    rows["edge1"].insert(100, (9, 0, START, START + 1, 100, 0))  # unknown flow
    rows["edge1"].insert(200, (1, 3000, START, START + 1, 100, 0))  # never scheduled
    rows["cloud1"].insert(7, (1, 0, START, START + 1, 100, 0))   # wrong receiver
    for dest, records in rows.items():
        (tmp_path / f"recv-{dest}.bin").write_bytes(b"".join(RECORD.pack(*r) for r in records))
    expected = pd.DataFrame(valid, columns=["flow_id", "seq", "send_ns", "recv_ns", "bytes", "tos"])
    return tmp_path, flows_table(PLANS, tmp_path), {"expected": expected, "duplicates": 2, "phantoms": 3}


@pytest.mark.parametrize("chunk", [97, 1000, packetstream.CHUNK_RECORDS])
def test_chunked_pass_equals_the_whole_data(raw, chunk: int, monkeypatch) -> None:
    raw_dir, flows, truth = raw
    monkeypatch.setattr(packetstream, "CHUNK_RECORDS", chunk)
    monkeypatch.setattr(packetstream.record_chunks, "__defaults__", (chunk,))
    chunks = packetstream.PacketChunks(flows, None)
    figures = packetstream.SliceFigures(False, dict(zip(flows["flow_id"], flows["interval_ms"], strict=True)),
                                        START)

    def counted():
        for c in chunks.files(raw_dir):
            figures.count(c)
            yield c

    stored = write_parquet_chunks(raw_dir / "packets.parquet", counted())
    figures.plan()
    for c in packetstream.parquet_chunks(stored.path):
        figures.gather(c)
    expected = truth["expected"].merge(flows, on="flow_id")
    assert isinstance(stored, StoredTable) and stored.rows == len(expected)
    assert chunks.counts.duplicates == truth["duplicates"] and chunks.counts.phantoms == truth["phantoms"]
    assert chunks.counts.received == expected.groupby("flow_id").size().to_dict()
    owd = (expected["recv_ns"] - expected["send_ns"]) / 1e6
    late = send_lateness_ms(expected, dict(zip(flows["flow_id"], flows["interval_ms"], strict=True)), START)
    summary = analysis.summary_from(figures, flows)
    for name in ("urllc", "embb", "mmtc"):
        mine = (expected["slice"] == name).to_numpy()
        assert summary[name]["packets_received"] == mine.sum()
        for q, key in ((50, "owd_ms_p50"), (99, "owd_ms_p99"), (99.9, "owd_ms_p999")):
            assert summary[name][key] == percentile(owd[mine], q), (name, q)
        assert figures.late.percentile(name, 99.9) == percentile(late[mine], 99.9)
    assert figures.late.percentile(packetstream.ALL, 99) == percentile(late, 99)
    stored_table = pd.read_parquet(stored.path)
    assert len(stored_table) == stored.rows and not stored_table.duplicated(["flow_id", "seq"]).any()


def test_write_parquet_chunks_is_atomic_and_needs_a_chunk(tmp_path: Path) -> None:
    def failing():
        yield pd.DataFrame({"a": [1, 2]})
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_parquet_chunks(tmp_path / "t.parquet", failing())
    assert list(tmp_path.iterdir()) == []  # no half file, no temporary left
    with pytest.raises(ValueError, match="at least one"):
        write_parquet_chunks(tmp_path / "t.parquet", iter(()))
    stored = write_parquet_chunks(tmp_path / "t.parquet", [pd.DataFrame({"a": [1]}),
                                                           pd.DataFrame({"a": [2, 3]})])
    assert stored.rows == 3 and pd.read_parquet(stored.path)["a"].tolist() == [1, 2, 3]

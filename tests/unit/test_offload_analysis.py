"""Offload analysis: every request is a row, misses keep their reason, parts sum to the response."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.framework.plotting import save
from experiments.framework.results import write_json
from experiments.kinds.offload import analysis, figures
from experiments.kinds.offload.kind import OffloadKind
from experiments.kinds.offload.model import OffloadParams, Target

MS = 1_000_000
START = 1_000 * 1_000_000_000
ROLES = {"edge1": "edge", "sat1": "orbit"}


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _client(rid: int, target: str, status: str, response_ms: float | None = None,
            uplink_ms: float = 0.0, compute_ms: float = 0.0, **extra) -> dict:
    send = START + rid * 250 * MS
    rec = {"request_id": rid, "target": target, "scheduled_ns": send, "status": status,
           "send_start_ns": send, "send_end_ns": send + MS, "fragments": 5, "fragments_sent": 5,
           "send_errors": 0, **extra}
    if response_ms is not None:
        done = send + int(uplink_ms * MS)
        rec.update(first_recv_ns=send + MS, complete_ns=done, compute_start_ns=done,
                   reply_send_ns=done + int(compute_ms * MS), reply_recv_ns=send + int(response_ms * MS))
    return rec


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    _write(tmp_path / "client-cam1.jsonl", [
        _client(0, "edge1", "ok", 12.0, 8.0, 1.5),
        _client(1, "sat1", "ok", 150.0, 100.0, 0.5),      # answered, but after the 100 ms deadline
        _client(2, "edge1", "timeout"),                    # fragments lost on the way
        _client(3, "sat1", "timeout"),                     # server replied, reply lost
        _client(4, "edge1", "late", 1500.0, 1400.0, 1.0),  # reply after the timeout: a miss
        _client(5, "sat1", "timeout", send_errors=2, fragments_sent=3),
    ])
    _write(tmp_path / "server-edge1.jsonl", [
        {"request_id": 0, "status": "replied", "fragments": 5, "fragments_received": 5},
        {"request_id": 2, "status": "incomplete", "fragments": 5, "fragments_received": 3,
         "first_recv_ns": START, "last_recv_ns": START},
        {"request_id": 4, "status": "replied", "fragments": 5, "fragments_received": 5}])
    sent3 = START + 3 * 250 * MS
    _write(tmp_path / "server-sat1.jsonl", [
        {"request_id": 1, "status": "replied", "fragments": 5, "fragments_received": 5},
        {"request_id": 3, "status": "replied", "fragments": 5, "fragments_received": 5,
         "complete_ns": sent3 + 90 * MS, "reply_send_ns": sent3 + 91 * MS}])
    return tmp_path


PARAMS = OffloadParams(targets=(Target("edge1", "Orin", 137.5), Target("sat1", "Sat", 744.0)),
                       deadline_ms=100.0, timeout_ms=1000.0)


def test_tidy_requests_keeps_every_request_with_its_outcome(raw: Path) -> None:
    df = analysis.tidy_requests(raw, PARAMS, ROLES, START)
    assert list(df["request_id"]) == list(range(6))
    assert list(df["outcome"]) == ["ok", "ok", "fragments_lost", "reply_lost", "late", "send_error"]
    assert list(df["ok"]) == [True, True, False, False, False, False]
    assert list(df["within_deadline"]) == [True, False, False, False, False, False]
    assert list(df["fragments_received"]) == [5, 5, 3, 5, 5, 0]
    ok = df[df["ok"]]
    assert (ok["uplink_ms"] + ok["compute_ms"] + ok["downlink_ms"]).tolist() == \
        pytest.approx(ok["response_ms"].tolist())
    assert df.loc[0, ["uplink_ms", "compute_ms", "downlink_ms"]].tolist() == pytest.approx([8.0, 1.5, 2.5])
    assert df.loc[3, "uplink_ms"] == pytest.approx(90.0)  # from the server log: the uplink worked
    assert df.loc[1, "t_s"] == pytest.approx(0.25)
    assert df.loc[0, "compute_model_ms"] == pytest.approx(PARAMS.compute_ms()["edge1"])


def test_summary_counts_misses_and_deadline_over_all_requests(raw: Path, tmp_path: Path) -> None:
    df = analysis.tidy_requests(raw, PARAMS, ROLES, START)
    predicted = {"edge1": {"response_ms": 10.0}, "sat1": {"response_ms": 140.0}}
    summary = analysis.summarise(df, PARAMS, ROLES, predicted)
    edge, sat = summary["targets"]["edge1"], summary["targets"]["sat1"]
    assert (edge["requests"], edge["ok"], edge["success_pct"]) == (3, 1, pytest.approx(33.333, abs=1e-3))
    assert edge["within_deadline_pct"] == pytest.approx(33.333, abs=1e-3)
    assert edge["failures"] == {"fragments_lost": 1, "late": 1}
    assert sat["within_deadline_pct"] == 0.0 and sat["response_ms_p50"] == pytest.approx(150.0)
    assert sat["failures"] == {"reply_lost": 1, "send_error": 1}
    assert edge["role"] == "edge" and sat["predicted"]["response_ms"] == 140.0
    text = OffloadKind().print_summary(summary)
    assert "edge1" in text and "sat1" in text and "modelled" in text
    write_json(tmp_path / "summary.json", summary)
    assert json.loads((tmp_path / "summary.json").read_text())["targets"]["sat1"]["ok"] == 1
    paths = save(figures.response_figure(df, summary), tmp_path / "offload_response")
    assert all(p.stat().st_size > 1000 for p in paths)
    assert [p.suffix for p in paths] == [".png", ".pdf"]

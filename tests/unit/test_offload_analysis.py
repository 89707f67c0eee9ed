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


def test_requests_reconcile_and_datagram_loss_is_split(raw: Path) -> None:
    from experiments.framework.accounting import account, topology_links
    from topologies.factory import FactoryTopo
    from topologies.scenario import load_scenario

    client, servers, problems = analysis.read_logs(raw, PARAMS)
    assert problems == []
    problems, checks = analysis.reconcile_requests(client, servers, planned=6)
    assert problems == [] and checks["client_requests"] == 6 and checks["server_records"] == 5
    links = topology_links(FactoryTopo(scenario=load_scenario(None)))
    streams = analysis.datagram_streams(client, servers, "cam1", links)
    up_edge, down_edge, up_sat, down_sat = streams
    assert (up_edge.scheduled, up_edge.sent, up_edge.received) == (15, 15, 13)
    assert (down_edge.scheduled, down_edge.received) == (2, 2)
    assert (up_sat.sent, up_sat.send_errors, up_sat.received) == (13, 2, 10)
    assert (down_sat.scheduled, down_sat.received) == (2, 1)
    assert up_edge.path[0] == ("radio_cam1", "uplink") and up_edge.path[-1] == ("edge", "uplink")
    edge_link = {"rx": 13, "tx": 13, "dropped_loss": 0, "held": 0}
    counters = {"links": {"radio_cam1": {"uplink": {"rx": 28, "tx": 26, "dropped_loss": 2, "held": 0},
                                         "downlink": {"rx": 3, "tx": 3, "held": 0}},
                          "edge": {"uplink": edge_link}}, "unavailable": {}}
    loss = account(streams, counters)
    assert loss["edge1"]["lost_pkts"] == 2 and loss["edge1"]["shared_link_drops_pkts"] == 2
    assert loss["sat1"]["emulator_loss_pkts"] == 2  # the two fragments that could not be sent
    assert loss["total"]["modelled_loss_pkts"] == 2 and loss["total"]["lost_pkts"] == 2 + 5 + 1
    summary = {"targets": {"edge1": {"datagram_loss": loss["edge1"]}}, "loss_accounting":
               {"total": loss["total"]}, "reconciliation": {"ok": True, "problems": []}}
    text = analysis.format_summary({**summary, "deadline_ms": 100.0, "model": "m", "inference_gop": 1.0,
                                    "request_bytes": 1, "client": "cam1", "targets": {}})
    assert "counts reconcile" in text and "total" in text


@pytest.mark.parametrize("case", ["phantom", "duplicate", "fragments", "reply", "missing", "truncated"])
def test_requests_that_do_not_add_up_fail(raw: Path, case: str) -> None:
    server = raw / "server-edge1.jsonl"
    if case == "phantom":  # a record of a request sent to sat1
        server.write_text(server.read_text() + json.dumps(
            {"request_id": 1, "status": "incomplete", "fragments": 5, "fragments_received": 1}) + "\n")
    elif case == "duplicate":
        server.write_text(server.read_text() + server.read_text().splitlines()[0] + "\n")
    elif case == "fragments":
        _write(raw / "client-cam1.jsonl", [_client(0, "edge1", "timeout", fragments_sent=4)])
    elif case == "reply":  # the client has a reply the server never sent
        _write(server, [])
    elif case == "truncated":
        server.write_text(server.read_text()[:-20])
    client, servers, problems = analysis.read_logs(raw, PARAMS)
    more, _ = analysis.reconcile_requests(client, servers, planned=7 if case == "missing" else 6)
    problems += more
    expected = {"phantom": "never sent there", "duplicate": "duplicate", "fragments": "!= 5",
                "reply": "never sent", "missing": "the schedule has 7", "truncated": "partial line"}
    assert any(expected[case] in p for p in problems), problems

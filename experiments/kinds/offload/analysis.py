"""Analysis of the offload experiment: raw JSON lines -> one row per request -> summary.

Every request the client scheduled is a row, answered or not: a request counts as a success only
if its reply came back within the timeout, and ``within_deadline_pct`` is the share of *all*
requests answered within the deadline (a miss is a missed deadline, as in 3GPP TS 22.104's
availability definition). Misses carry their reason (``outcome``), found by joining the server's log:
``fragments_lost`` (the request never completed at the server), ``reply_lost`` (the server replied,
nothing came back), ``late`` (the reply came after the timeout), ``send_error``, ``not_replied``.

Times (CLOCK_REALTIME shared by every host): response = reply received - first fragment sent;
uplink = last fragment received at the server - first fragment sent; compute = reply sent - request
complete (the MODELLED compute sleep, plus FIFO wait and timer overshoot); downlink = reply received
- reply sent. The three parts sum to the response exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework import accounting, stalls
from experiments.framework.accounting import Stream, path_hops
from experiments.framework.stats import percentile, share_pct
from experiments.kinds.offload.model import OffloadParams

COLUMNS = ["request_id", "target", "role", "hardware", "t_s", "outcome", "ok", "within_deadline",
           "response_ms", "uplink_ms", "compute_ms", "downlink_ms", "compute_model_ms", "send_ms",
           "fragments", "fragments_sent", "fragments_received", "send_start_ns", "complete_ns",
           "reply_send_ns", "reply_recv_ns"]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _outcome(client: dict, server: dict | None) -> str:
    if client["status"] in ("ok", "late"):
        return client["status"]
    if client.get("send_errors"):
        return "send_error"
    if server is None or server["status"] == "incomplete":
        return "fragments_lost"
    return "reply_lost" if server["status"] == "replied" else "not_replied"


def tidy_requests(raw_dir: Path, params: OffloadParams, roles: dict[str, str], start_ns: int
                  ) -> pd.DataFrame:
    """One row per scheduled request (client log joined with the target's server log)."""
    servers = {t.host: {r["request_id"]: r for r in read_lines(raw_dir / f"server-{t.host}.jsonl")}
               for t in params.targets}
    hardware = {t.host: t.hardware for t in params.targets}
    compute = params.compute_ms()
    rows = []
    for c in read_lines(raw_dir / f"client-{params.client}.jsonl"):
        s = servers[c["target"]].get(c["request_id"])
        outcome = _outcome(c, s)
        times = {k: c.get(k, (s or {}).get(k)) for k in ("complete_ns", "reply_send_ns")}
        start, recv = c["send_start_ns"], c.get("reply_recv_ns")
        done, sent = times["complete_ns"], times["reply_send_ns"]
        received = (s or {}).get("fragments_received", 0)
        if outcome in ("ok", "late"):
            received = c["fragments"]
        rows.append({
            "request_id": c["request_id"], "target": c["target"], "role": roles[c["target"]],
            "hardware": hardware[c["target"]], "t_s": (start - start_ns) / 1e9, "outcome": outcome,
            "ok": outcome == "ok",
            "response_ms": (recv - start) / 1e6 if recv else np.nan,
            "uplink_ms": (done - start) / 1e6 if done else np.nan,
            "compute_ms": (sent - done) / 1e6 if sent and done else np.nan,
            "downlink_ms": (recv - sent) / 1e6 if recv and sent else np.nan,
            "compute_model_ms": compute[c["target"]], "send_ms": (c["send_end_ns"] - start) / 1e6,
            "fragments": c["fragments"], "fragments_sent": c["fragments_sent"],
            "fragments_received": received, "send_start_ns": start, "complete_ns": done,
            "reply_send_ns": sent, "reply_recv_ns": recv})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["within_deadline"] = df["ok"] & (df["response_ms"] <= params.deadline_ms)
    for col in ("complete_ns", "reply_send_ns", "reply_recv_ns"):
        df[col] = df[col].astype("Int64")
    return df.sort_values("request_id", ignore_index=True)


def summarise(requests: pd.DataFrame, params: OffloadParams, roles: dict[str, str],
              predicted: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per target: response percentiles, parts, success and deadline shares, failure reasons."""
    targets = {}
    for t in params.targets:
        g = requests[requests["target"] == t.host]
        ok = g[g["ok"]]
        n = len(g)
        targets[t.host] = {
            "role": roles[t.host], "hardware": t.hardware, "peak_tops": t.peak_tops,
            "utilisation_pct": t.utilisation_pct, "requests": n, "ok": int(len(ok)),
            "success_pct": share_pct(len(ok), n, digits=3),
            "within_deadline_pct": share_pct(int(g["within_deadline"].sum()), n, digits=3),
            "response_ms_p50": percentile(ok["response_ms"], 50, digits=3),
            "response_ms_p99": percentile(ok["response_ms"], 99, digits=3),
            "response_ms_max": percentile(ok["response_ms"], 100, digits=3),
            "uplink_ms_p50": percentile(ok["uplink_ms"], 50, digits=3),
            "compute_ms_p50": percentile(ok["compute_ms"], 50, digits=3),
            "downlink_ms_p50": percentile(ok["downlink_ms"], 50, digits=3),
            "compute_model_ms": round(t.compute_ms(params.inference_gop), 4),
            "predicted": predicted.get(t.host),
            "failures": {k: int(v) for k, v in g.loc[~g["ok"], "outcome"].value_counts().items()},
        }
    return {"targets": targets, "client": params.client, "schedule": "targets in turn",
            "model": params.model, "inference_gop": params.inference_gop,
            "request_bytes": params.request_bytes, "reply_bytes": params.reply_bytes,
            "interval_ms": params.interval_ms, "timeout_ms": params.timeout_ms,
            "deadline_ms": params.deadline_ms}


def format_summary(summary: dict[str, Any]) -> str:
    """A fixed-width per-target table for the terminal."""
    def f(value: float | None, width: int, digits: int = 2) -> str:
        return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    deadline = summary["deadline_ms"]
    header = (f"{'target':<8} {'role':<6} {'reqs':>5} {'ok %':>7} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'<=' + format(deadline, 'g') + ' ms %':>11} {'up p50':>7} {'comp p50':>8} "
              f"{'down p50':>8} {'model p50':>9}")
    lines = [f"offload of {summary['model']} ({summary['inference_gop']:g} GOP), "
             f"{summary['request_bytes']} B requests from {summary['client']}, targets in turn",
             header, "-" * len(header)]
    for host, s in summary["targets"].items():
        pred = (s.get("predicted") or {}).get("response_ms")
        lines.append(f"{host:<8} {s['role']:<6} {s['requests']:>5d} {f(s['success_pct'], 7, 1)} "
                     f"{f(s['response_ms_p50'], 8)} {f(s['response_ms_p99'], 8)} "
                     f"{f(s['within_deadline_pct'], 11, 1)} {f(s['uplink_ms_p50'], 7)} "
                     f"{f(s['compute_ms_p50'], 8)} {f(s['downlink_ms_p50'], 8)} {f(pred, 9)}")
    lines.append("compute is modelled (sleep of ops / (peak TOPS x utilisation)); network parts are "
                 "measured; 'model p50' = predict_response_ms")
    total = summary.get("loss_accounting", {}).get("total")
    if total is not None:
        rows = [(h, s.get("datagram_loss")) for h, s in summary["targets"].items()] + [("total", total)]
        lines += accounting.loss_table("lost datagrams by cause", "target", [(n, d) for n, d in rows if d])
    if "host_stalls" in summary:
        lines.append(stalls.line(summary["host_stalls"]))
    verdict = accounting.reconciliation_line(summary)
    if verdict is not None:
        lines.append(verdict)
    return "\n".join(lines)


# --- count reconciliation and datagram loss accounting ------------------------------------------------

def read_logs(raw_dir: Path, params: OffloadParams) -> tuple[list[dict], dict[str, list[dict]], list[str]]:
    """Client records, server records per target, and problems reading them (missing or cut files)."""
    problems: list[str] = []

    def load(path: Path, who: str) -> list[dict]:
        if not path.exists():
            problems.append(f"{who}: no log {path.name} (it did not finish)")
            return []
        text = path.read_text()
        if text and not text.endswith("\n"):
            problems.append(f"{who}: {path.name} ends in a partial line (truncated)")
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            problems.append(f"{who}: {path.name} is not valid JSON lines ({exc.msg}, line {exc.lineno})")
            return []

    client = load(raw_dir / f"client-{params.client}.jsonl", f"client on {params.client}")
    servers = {t.host: load(raw_dir / f"server-{t.host}.jsonl", f"server on {t.host}")
               for t in params.targets}
    return client, servers, problems


def reconcile_requests(client: list[dict], servers: dict[str, list[dict]], planned: int
                       ) -> tuple[list[str], dict[str, int]]:
    """Every planned request has one client record; fragments sent + errors = fragments; server
    records only for requests sent to that server, once each, with no more fragments than were
    sent; a reply the client received was sent by the server. Exact, no tolerance."""
    problems: list[str] = []
    ids = [c["request_id"] for c in client]
    if len(client) != planned or set(ids) != set(range(planned)):
        problems.append(f"client recorded {len(client)} requests ({len(set(ids))} distinct ids), "
                        f"the schedule has {planned}")
    by_id = {c["request_id"]: c for c in client}
    for c in client:
        if c["fragments_sent"] + c["send_errors"] != c["fragments"]:
            problems.append(f"request {c['request_id']}: fragments sent {c['fragments_sent']} + errors "
                            f"{c['send_errors']} != {c['fragments']}")
    phantom = duplicates = 0
    for host, records in servers.items():
        seen: set[int] = set()
        for s in records:
            rid = s["request_id"]
            duplicates += rid in seen
            seen.add(rid)
            c = by_id.get(rid)
            if c is None or c["target"] != host or s["fragments_received"] > c["fragments_sent"]:
                phantom += 1
        replied = {s["request_id"] for s in records if s["status"] == "replied" and not s.get("send_error")}
        for c in client:
            if c["target"] == host and c.get("reply_recv_ns") and c["request_id"] not in replied:
                problems.append(f"request {c['request_id']}: the client got a reply {host} never sent")
    if duplicates:
        problems.append(f"{duplicates} duplicate server records")
    if phantom:
        problems.append(f"{phantom} server records of requests never sent there (or more fragments "
                        "than were sent)")
    checks = {"planned_requests": planned, "client_requests": len(client),
              "server_records": sum(len(r) for r in servers.values()),
              "duplicate_records": int(duplicates), "phantom_records": phantom}
    return problems, checks


def datagram_streams(client: list[dict], servers: dict[str, list[dict]], client_host: str,
                     links: list[tuple[str, str, str]]) -> list[Stream]:
    """Per target: request fragments (client -> server) and replies (server -> client)."""
    out = []
    for host, records in servers.items():
        mine = [c for c in client if c["target"] == host]
        got = {s["request_id"]: s["fragments_received"] for s in records}
        replies = [s for s in records if s["status"] == "replied"]
        errors = sum(1 for s in replies if s.get("send_error"))
        out += [Stream(host, path_hops(links, client_host, host), host,
                       sum(c["fragments"] for c in mine), sum(c["fragments_sent"] for c in mine),
                       sum(c["send_errors"] for c in mine),
                       sum(min(got.get(c["request_id"], 0), c["fragments_sent"]) for c in mine)),
                Stream(host, path_hops(links, host, client_host), client_host, len(replies),
                       len(replies) - errors, errors, sum(1 for c in mine if c.get("reply_recv_ns")))]
    return out

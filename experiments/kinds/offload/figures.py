"""Analysis and figure of the offload experiment: raw JSON lines -> one row per request -> summary.

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
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments.kinds.slices.figures import save  # noqa: E402,F401  (re-exported for experiments.kinds.offload.kind)

if TYPE_CHECKING:
    from experiments.kinds.offload.kind import OffloadParams

# role -> (colour, label), Okabe-Ito colour-blind-safe palette as in experiments.kinds.slices.figures
TARGET_STYLE: dict[str, tuple[str, str]] = {
    "edge": ("#009E73", "factory edge"),
    "orbit": ("#CC79A7", "in-orbit"),
    "cloud": ("#0072B2", "ground cloud"),
}
PART_STYLE = {"uplink_ms": ("#E69F00", "uplink (request transfer)"),
              "compute_ms": ("#000000", "compute (modelled)"),
              "downlink_ms": ("#56B4E9", "downlink (reply)")}
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


def _pct(values: pd.Series, q: float) -> float | None:
    v = values.dropna().to_numpy()
    return round(float(np.percentile(v, q)), 3) if v.size else None


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
            "success_pct": round(100.0 * len(ok) / n, 3) if n else None,
            "within_deadline_pct": round(100.0 * int(g["within_deadline"].sum()) / n, 3) if n else None,
            "response_ms_p50": _pct(ok["response_ms"], 50), "response_ms_p99": _pct(ok["response_ms"], 99),
            "response_ms_max": _pct(ok["response_ms"], 100),
            "uplink_ms_p50": _pct(ok["uplink_ms"], 50), "compute_ms_p50": _pct(ok["compute_ms"], 50),
            "downlink_ms_p50": _pct(ok["downlink_ms"], 50),
            "compute_model_ms": round(t.compute_ms(params.inference_gop), 4),
            "predicted": predicted.get(t.host),
            "failures": {k: int(v) for k, v in g.loc[~g["ok"], "outcome"].value_counts().items()},
        }
    return {"targets": targets, "client": params.client, "schedule": "targets in turn",
            "model": params.model, "inference_gop": params.inference_gop,
            "request_bytes": params.request_bytes, "reply_bytes": params.reply_bytes,
            "interval_ms": params.interval_ms, "timeout_ms": params.timeout_ms,
            "deadline_ms": params.deadline_ms}


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


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
    return "\n".join(lines)


def response_figure(requests: pd.DataFrame, summary: dict[str, Any]) -> plt.Figure:
    """Left: response-time CDF per target (misses keep it below 1). Right: median parts, stacked."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 4.0), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.6, 1.0]})
    deadline = summary["deadline_ms"]
    names = list(summary["targets"])
    for host in names:
        s = summary["targets"][host]
        colour, label = TARGET_STYLE.get(s["role"], ("#7F7F7F", s["role"]))
        g = requests[requests["target"] == host]
        ok = np.sort(g.loc[g["ok"], "response_ms"].to_numpy())
        if len(g) == 0 or ok.size == 0:
            continue
        y = np.arange(0, ok.size + 1) / len(g)
        ax.step(np.append(ok[:1], ok), y, where="post", color=colour, linewidth=1.6,
                label=f"{host}: {label}, {s['hardware']} (n={len(g)}, ok {s['success_pct']:.0f} %)")
    ax.axvline(deadline, color="#7F7F7F", linestyle="--", linewidth=0.9)
    ax.set_xscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"response time (ms, log); dashed: {deadline:g} ms deadline (TS 22.104)")
    ax.set_ylabel("share of requests answered")
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)

    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for part, (colour, label) in PART_STYLE.items():
        values = np.array([summary["targets"][h][f"{part}_p50"] or 0.0 for h in names])
        bx.bar(x, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom += values
    predicted = [(summary["targets"][h].get("predicted") or {}).get("response_ms") for h in names]
    if any(p is not None for p in predicted):
        bx.plot(x, [np.nan if p is None else p for p in predicted], "_", color="#D55E00",
                markersize=30, markeredgewidth=2, linestyle="none", label="model: predicted response")
    for i, h in enumerate(names):
        comp = summary["targets"][h]["compute_ms_p50"]
        if comp is not None:
            bx.annotate(f"compute {comp:.2f} ms", (x[i], bottom[i]), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    bx.set_xticks(x, [f"{h}\n{TARGET_STYLE.get(summary['targets'][h]['role'], ('', h))[1]}"
                      for h in names])
    bx.set_ylabel("median of each part (ms)")
    top = max([float(bottom.max())] + [p for p in predicted if p is not None])
    bx.set_ylim(0, max(1.0, top * 1.15))
    bx.grid(True, axis="y", alpha=0.3)
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncol=2)
    fig.suptitle(f"Inference offload: {summary['model']}, {summary['request_bytes'] // 1000} kB "
                 f"request, {summary['reply_bytes']} B reply; compute modelled, network emulated",
                 fontsize=9)
    return fig

"""Figure of the offload experiment: response-time CDF per target and the median of each part."""

from __future__ import annotations

from typing import Any

import matplotlib.ticker as ticker
import numpy as np
import pandas as pd

from experiments.framework.plotting import plt

# role -> (colour, label), Okabe-Ito colour-blind-safe palette as in experiments.kinds.slices.figures
TARGET_STYLE: dict[str, tuple[str, str]] = {
    "edge": ("#009E73", "factory edge"),
    "orbit": ("#CC79A7", "in-orbit"),
    "cloud": ("#0072B2", "ground cloud"),
}
PART_STYLE = {"uplink_ms": ("#E69F00", "uplink (request transfer)"),
              "compute_ms": ("#000000", "compute (modelled)"),
              "downlink_ms": ("#56B4E9", "downlink (reply)")}

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

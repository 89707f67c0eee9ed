"""The handover timeline of a run with [mobility]: per moving UE, each cell's received power with
the serving cell marked, and the UE's one-way delays, with every handover and its interruption."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.framework.plotting import plt, save

CELL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


def handover_timeline(samples: pd.DataFrame, handovers: list[dict], delays: dict[str, pd.DataFrame],
                      out_stem: Path) -> list[Path]:
    """``samples``: mobility.parquet; ``handovers``: handovers.json 'applied' (or 'planned');
    ``delays``: per UE a frame of (t_s, owd_ms) of its received packets."""
    ues = sorted(samples["ue"].unique())
    fig, axes = plt.subplots(2, len(ues), figsize=(5.2 * len(ues), 5.6), squeeze=False, sharex=True,
                             layout="constrained")
    cells = sorted(samples["cell"].unique())
    for j, ue in enumerate(ues):
        top, bottom = axes[0][j], axes[1][j]
        mine = samples[samples["ue"] == ue]
        for i, cell in enumerate(cells):
            c = mine[mine["cell"] == cell]
            colour = CELL_COLOURS[i % len(CELL_COLOURS)]
            top.plot(c["t_s"], c["rsrp_dbm"], color=colour, linewidth=0.8, alpha=0.6, label=f"{cell} RSRP")
            serving = c[c["serving"]]
            top.plot(serving["t_s"], serving["rsrp_dbm"], ".", color=colour, markersize=2,
                     label=f"{cell} serving")
        d = delays.get(ue)
        if d is not None and len(d):
            bottom.plot(d["t_s"], d["owd_ms"], ".", markersize=2, color="#000000",
                        label=f"{ue} one-way delay")
        for h in handovers:
            if h["ue"] != ue:
                continue
            for ax in (top, bottom):
                ax.axvspan(h["t_s"], h["t_s"] + h["interruption_ms"] / 1000, color="#D55E00", alpha=0.3)
                ax.axvline(h["t_s"], color="#D55E00", linewidth=0.8)
            top.annotate(f"{h['source']}->{h['target']}", (h["t_s"], top.get_ylim()[1]), fontsize=7,
                         va="top", rotation=90)
        top.set_title(f"{ue}: handovers (red: interruption)")
        top.set_ylabel("received power (dBm)")
        bottom.set_ylabel("one-way delay (ms)")
        bottom.set_xlabel("time since traffic start (s)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        top.legend(fontsize=7, loc="lower left")
    paths = save(fig, out_stem)
    plt.close(fig)
    return paths

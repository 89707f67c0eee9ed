"""Figures of an LEO schedule: elevation, slant range, serving satellite and modelled RTT over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from topologies.leo.schedule import modelled_rtt, schedule_summary  # noqa: E402


def leo_schedule_figure(df: pd.DataFrame, out_png: Path) -> list[Path]:
    """Four stacked panels over t_s; writes ``out_png`` and the same stem as PDF; returns paths."""
    rtt = modelled_rtt(df)
    up = rtt["up"].to_numpy()
    t = rtt["t_s"].to_numpy()
    boundary_t = rtt.loc[rtt["in_boundary"], "t_s"].to_numpy()

    fig, axes = plt.subplots(4, 1, figsize=(9, 8.5), sharex=True, constrained_layout=True)
    ax_el, ax_sr, ax_sat, ax_rtt = axes
    ax_el.plot(t, np.where(up, rtt["elevation_deg"], np.nan), color="tab:blue", lw=1)
    ax_el.set_ylabel("elevation (deg)")
    ax_sr.plot(t, np.where(up, rtt["slant_range_km"], np.nan), color="tab:green", lw=1)
    ax_sr.set_ylabel("slant range (km)")
    ax_sat.step(t, np.where(up, rtt["serving_sat"], np.nan), where="post", color="tab:purple", lw=1)
    ax_sat.set_ylabel("serving satellite")
    ax_rtt.step(t, rtt["rtt_ms"], where="post", color="tab:red", lw=0.8,
                label="modelled RTT (up + down one-way)")
    ax_rtt.scatter(boundary_t, rtt.loc[rtt["in_boundary"], "rtt_ms"], s=8, color="black",
                   zorder=3, label="reconfiguration boundary window")
    ax_rtt.set_ylabel("RTT (ms)")
    ax_rtt.set_xlabel("time since schedule start (s)")
    ax_rtt.set_ylim(0, np.nanmax(rtt["rtt_ms"]) * 1.3)
    ax_rtt.legend(loc="upper right", fontsize=8, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    s = schedule_summary(df)
    fig.suptitle(
        f"LEO schedule: RTT median {s['rtt_median_ms']:.1f} ms, p95 {s['rtt_p95_ms']:.1f} ms "
        f"(time-weighted); boundary median {s['rtt_boundary_median_ms']:.1f} ms; "
        f"ISL share {s['isl_share_pct']:.0f} %",
        fontsize=10,
    )
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_pdf = out_png.with_suffix(".pdf")
    fig.savefig(out_png, dpi=150)
    fig.savefig(out_pdf)
    plt.close(fig)
    return [out_png, out_pdf]

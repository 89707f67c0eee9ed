"""The ``cell_load`` kind: cameras are added one by one to a cell that also serves AGVs and
sensors; per step, each slice's one-way delay, loss and share within its bound (steps.py).

Everything else is the ``slices`` kind's (flows, records, loss accounting, fidelity, the handover
timeline when the scenario has [mobility]); only the cameras' start times and the per-step summary
and figures are this kind's. The run's duration is split into (cameras + 1) equal steps: step 0 has
no camera, step k has k. summary.json ``points: [{cameras, offered_mbps, slices: {name: {owd_ms_p50,
owd_ms_p99, loss_pct, deadline_met_pct}}}]``; figures ``cell_load_cdf.png`` (delay CDF per slice at
each load) and ``cell_load_p99.png`` (per-slice p99 and deadline share against offered load).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.framework.plotting import save
from experiments.framework.session import RunSession
from experiments.framework.stats import number_text as _f
from experiments.kinds.cell_load import figures, steps
from experiments.kinds.slices import packetstream
from experiments.kinds.slices.kind import SlicesKind
from experiments.kinds.slices.traffic import FlowPlan, plan_flows
from topologies.validate import ConfigError, Table


@dataclass(frozen=True)
class CellLoadParams:
    cell: str = "gnb1"         # the cell whose cameras are added step by step
    settle_s: float = 1.0      # left out at the start of each step (queues settle)


class CellLoadKind(SlicesKind):
    """Per-slice delay of one cell as its cameras are added one per step."""

    name = "cell_load"

    def parse_params(self, raw: Any) -> CellLoadParams:
        d = CellLoadParams()
        with Table(raw, "params") as t:
            return CellLoadParams(t.str("cell", d.cell), t.number("settle_s", d.settle_s, min=0, max=60))

    def check(self, experiment: Any, scenario: Any, params: CellLoadParams) -> None:
        super().check(experiment, scenario, params)
        cells = [c.name for c in scenario.cells]
        if params.cell not in cells:
            raise ConfigError("params.cell", params.cell, ", ".join(cells))
        cameras = self.cameras(scenario, params)
        if not cameras:
            raise ConfigError("params.cell", params.cell, "a cell with at least one camera UE")
        step_s = experiment.duration_s / (len(cameras) + 1)
        if step_s <= 2 * params.settle_s:
            raise ConfigError("experiment.duration_s", experiment.duration_s,
                              f"more than {2 * params.settle_s * (len(cameras) + 1):g} s: {len(cameras) + 1} "
                              f"steps, each longer than twice params.settle_s")

    @staticmethod
    def cameras(scenario: Any, params: CellLoadParams) -> list[str]:
        return [u.name for u in scenario.ues if u.cell == params.cell and u.kind == "camera"]

    def step_s(self, session: RunSession, params: CellLoadParams) -> float:
        return session.duration_s / (len(self.cameras(session.scenario, params)) + 1)

    def flow_plan(self, session: RunSession, params: CellLoadParams) -> list[FlowPlan]:
        """Camera i of the cell starts at (i + 1) steps; every other flow at traffic start."""
        order = {ue: i for i, ue in enumerate(self.cameras(session.scenario, params))}
        step_s = self.step_s(session, params)
        return [replace(f, start_offset_s=round((order[f.ue] + 1) * step_s, 6)) if f.ue in order else f
                for f in plan_flows(session.scenario)]

    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: CellLoadParams
                  ) -> dict[str, Any]:
        summary = super().summarise(tables, session, params)
        in_cell = [u.name for u in session.scenario.ues if u.cell == params.cell]
        block = {"cell": params.cell, "cameras": self.cameras(session.scenario, params),
                 "step_s": round(self.step_s(session, params), 6), "settle_s": params.settle_s,
                 "duration_s": session.duration_s, "ues": in_cell,
                 "nr": ((session.metadata.get("link_engine") or {}).get("cells") or {}).get("nr", {}).get(
                     params.cell)}
        summary["cell_load"] = block
        summary["points"] = self.points(session.run_dir, block)
        return summary

    @staticmethod
    def cell_packets(run_dir: Path, block: dict[str, Any]) -> tuple[pd.DataFrame, Any]:
        """The cell's own flows and the stored packets' chunks (steps.py reads them)."""
        flows = pd.read_parquet(run_dir / "flows.parquet")
        chunks = packetstream.parquet_chunks(run_dir / "packets.parquet",
                                             ["slice", "flow_id", "seq", "owd_ms", "on_time", "host_stall"])
        return flows[flows["ue"].isin(block["ues"])], chunks

    @classmethod
    def points(cls, run_dir: Path, block: dict[str, Any]) -> list[dict[str, Any]]:
        flows, chunks = cls.cell_packets(run_dir, block)
        return steps.step_points(chunks, flows, block["cameras"], block["step_s"], block["settle_s"],
                                 block["duration_s"])

    def draw_figures(self, run_dir: Path) -> list[Path]:
        paths = super().draw_figures(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        block, points = summary["cell_load"], summary["points"]
        flows, chunks = self.cell_packets(run_dir, block)
        delays = steps.step_delays(chunks, flows, len(points), block["step_s"], block["settle_s"])
        bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=False))
        paths += save(figures.cdf_per_step(delays, points, bounds), run_dir / "cell_load_cdf")
        paths += save(figures.p99_vs_load(points, bounds), run_dir / "cell_load_p99")
        return paths

    def print_summary(self, summary: dict[str, Any]) -> str:
        lines = [super().print_summary(summary), "",
                 f"cell {summary['cell_load']['cell']}: per step (cameras on), per slice p50 / p99 ms, "
                 "loss %, in bound %"]
        names = list(summary["points"][0]["slices"]) if summary["points"] else []
        lines.append(f"{'cams':>4} {'Mbit/s':>7} " + " ".join(f"{n:>30}" for n in names))
        for p in summary["points"]:
            cells = []
            for n in names:
                s = p["slices"][n]
                cells.append(f"{_f(s['owd_ms_p50']):>6}/{_f(s['owd_ms_p99']):>7} {_f(s['loss_pct']):>6} "
                             f"{_f(s['deadline_met_pct']):>7}")
            row = " ".join(f"{c:>30}" for c in cells)
            lines.append(f"{p['cameras']:>4} {p['offered_mbps']:>7.1f} {row}")
        return "\n".join(lines)

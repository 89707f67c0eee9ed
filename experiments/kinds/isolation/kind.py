"""The ``isolation`` kind: does slice enforcement protect URLLC when cameras overload the cell?

One run, two arms of equal length: enforcement **off** (a slice-unaware cell and FIFO transport
queues), then **on** (the slices' RAN shares, N3 marking and per-slice DSCP queues on every shaped
link): what each arm sets is ``controllers.enforcement.enforcement_plan``. The off plan is applied
before the senders start; the on plan at the arm boundary by a timer thread (its lag recorded).
Everything else is the ``slices`` kind's (flows, records, loss accounting, TS 22.104, fidelity).

summary.json adds ``arms: {off: {window_s, slices: {name: {owd_ms_p50, owd_ms_p99, owd_ms_p9999,
loss_pct, deadline_met_pct, deadline_met_pct_ci95, target_met, ...}}}, on: {...}}``, ``isolation``
(the protected slice's share within bound per arm against ``params.threshold_pct``) and
``enforcement`` (each arm's plan, what was set, when). Figures ``isolation_cdf.png`` (delay CDF per
slice, off vs on) and ``isolation_timeline.png`` (share within bound per second, per slice).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from controllers.enforcement import apply_plan, enforcement_plan
from experiments.framework.plotting import save
from experiments.framework.session import RunSession
from experiments.framework.stats import number_text as _f
from experiments.kinds.isolation import arms, figures
from experiments.kinds.slices import packetstream
from experiments.kinds.slices.kind import SlicesKind
from topologies.validate import ConfigError, Table


@dataclass(frozen=True)
class IsolationParams:
    settle_s: float = 2.0            # left out at the start of each arm (queues drain, policy takes hold)
    protected_slice: str = "urllc"   # the slice whose isolation is judged
    threshold_pct: float = 99.99     # its share within bound that enforcement must keep


class IsolationKind(SlicesKind):
    """Per-slice delay and deadline share with slice enforcement off, then on, in one run."""

    name = "isolation"

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def parse_params(self, raw: Any) -> IsolationParams:
        d = IsolationParams()
        with Table(raw, "params") as t:
            return IsolationParams(t.number("settle_s", d.settle_s, min=0, max=600),
                                   t.str("protected_slice", d.protected_slice),
                                   t.number("threshold_pct", d.threshold_pct, min=0, max=100))

    def check(self, experiment: Any, scenario: Any, params: IsolationParams) -> None:
        super().check(experiment, scenario, params)
        names = [s.name for s in scenario.slices]
        if params.protected_slice not in names:
            raise ConfigError("params.protected_slice", params.protected_slice, ", ".join(names))
        if experiment.duration_s / len(arms.ARMS) <= 2 * params.settle_s:
            raise ConfigError("experiment.duration_s", experiment.duration_s,
                              f"more than {2 * params.settle_s * len(arms.ARMS):g} s: {len(arms.ARMS)} arms, "
                              "each longer than twice params.settle_s")
        if scenario.link_backend != "relay":
            raise ConfigError("site.link_backend", scenario.link_backend,
                              '"relay" (per-slice DSCP queues run on the relay\'s links)')

    @staticmethod
    def arm_s(session: RunSession) -> float:
        return session.duration_s / len(arms.ARMS)

    # --- the two arms -----------------------------------------------------------------------------
    def _apply(self, session: RunSession, enforce: bool) -> dict[str, Any]:
        scenario = session.scenario
        plan = enforcement_plan(scenario.slices, enforce)
        began = time.monotonic()
        nr_cells = [c.name for c in scenario.cells if c.nr is not None]
        applied = apply_plan(session.network.engine, plan, nr_cells, {u.name: u.slice for u in scenario.ues})
        return {"plan": plan.summary(), "applied": applied,
                "took_ms": round((time.monotonic() - began) * 1000, 3)}

    def before_traffic(self, session: RunSession, params: IsolationParams) -> None:
        self._stop.clear()
        session.metadata["enforcement"] = {"arms": {"off": {**self._apply(session, False), "at_s": None}}}

    def traffic_started(self, session: RunSession, params: IsolationParams, start_ns: int) -> None:
        at = time.monotonic() + (start_ns - time.time_ns()) / 1e9 + self.arm_s(session)
        self._thread = threading.Thread(target=self._switch_on, args=(session, at), name="enforcement",
                                        daemon=True)
        self._thread.start()

    def _switch_on(self, session: RunSession, at_monotonic_s: float) -> None:
        if self._stop.wait(max(0.0, at_monotonic_s - time.monotonic())):
            return
        record: dict[str, Any] = {"at_s": self.arm_s(session)}
        try:
            record["applied_lag_ms"] = round((time.monotonic() - at_monotonic_s) * 1000, 3)
            record.update(self._apply(session, True))
        except Exception as exc:  # a relay that died: the watchdog ends the run; say what happened here
            record["error"] = f"{type(exc).__name__}: {exc}"
        session.metadata["enforcement"]["arms"]["on"] = record

    def traffic_ended(self, session: RunSession, params: IsolationParams) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def reconcile(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any) -> list[str]:
        problems = super().reconcile(tables, session, params)
        on = session.metadata.get("enforcement", {}).get("arms", {}).get("on")
        if on is None:
            problems.append("isolation: enforcement was never switched on (the run ended before the arm "
                            "boundary)")
        elif "error" in on:
            problems.append(f"isolation: switching enforcement on failed: {on['error']}")
        return problems

    # --- results ------------------------------------------------------------------------------------
    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: IsolationParams
                  ) -> dict[str, Any]:
        summary = super().summarise(tables, session, params)
        block = {"arm_s": round(self.arm_s(session), 6), "settle_s": params.settle_s,
                 "duration_s": session.duration_s,
                 "protected_slice": params.protected_slice, "threshold_pct": params.threshold_pct,
                 "targets": {s.name: s.reliability_target_pct for s in session.scenario.slices}}
        summary["arms"] = self.arm_figures(session.run_dir, block)
        summary["isolation"] = arms.verdict(summary["arms"], params.protected_slice, params.threshold_pct)
        summary["enforcement"] = {**block, **session.metadata.get("enforcement", {})}
        return summary

    @staticmethod
    def chunks(run_dir: Path) -> Any:
        return packetstream.parquet_chunks(run_dir / "packets.parquet", arms.COLUMNS)

    @classmethod
    def arm_figures(cls, run_dir: Path, block: dict[str, Any]) -> dict[str, Any]:
        flows = pd.read_parquet(run_dir / "flows.parquet")
        delays = arms.arm_delays(cls.chunks(run_dir), flows, block["arm_s"], block["settle_s"])
        due = arms.due_per_arm(flows, block["arm_s"], block["settle_s"], block["duration_s"])
        return arms.arm_summary(delays, due, flows, block["targets"], block["arm_s"], block["settle_s"])

    def draw_figures(self, run_dir: Path) -> list[Path]:
        paths = super().draw_figures(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        block = summary["enforcement"]
        flows = pd.read_parquet(run_dir / "flows.parquet")
        delays = arms.arm_delays(self.chunks(run_dir), flows, block["arm_s"], block["settle_s"])
        bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=False))
        paths += save(figures.cdf_per_arm(delays, summary["arms"], bounds), run_dir / "isolation_cdf")
        timeline = figures.share_per_second(self.chunks(run_dir), flows, block["duration_s"])
        paths += save(figures.timeline(timeline, block["arm_s"], summary["isolation"]),
                      run_dir / "isolation_timeline")
        return paths

    def print_summary(self, summary: dict[str, Any]) -> str:
        lines = [super().print_summary(summary), "",
                 "slice enforcement: per arm and slice, one-way delay p50 / p99 / p99.99 ms, loss %, "
                 "within bound % [95 % interval]"]
        for arm in arms.ARMS:
            block = summary["arms"][arm]
            lines.append(f"  {arm:>3} ({block['window_s'][0]:g}-{block['window_s'][1]:g} s)")
            for name, s in block["slices"].items():
                ci = s["deadline_met_pct_ci95"]
                lines.append(f"      {name:>8}: {_f(s['owd_ms_p50'])} / {_f(s['owd_ms_p99'])} / "
                             f"{_f(s['owd_ms_p9999'])}  loss {_f(s['loss_pct'])}  within bound "
                             f"{_f(s['deadline_met_pct'], 4)}"
                             + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                             + f"  ({s['packets']} packets)")
        v = summary["isolation"]
        lines.append(f"  {v['slice']} within bound >= {v['threshold_pct']:g} %: off "
                     f"{_yes(v['holds']['off'])}, on {_yes(v['holds']['on'])} -> isolation "
                     f"{'shown' if v['isolation_shown'] else 'NOT shown'}; at 95 % confidence: off "
                     f"{_yes(v['confident']['off'])}, on {_yes(v['confident']['on'])} -> "
                     f"{'shown' if v['isolation_shown_confident'] else 'not shown'}")
        return "\n".join(lines)


def _yes(v: bool | str | None) -> str:
    return "-" if v is None else v if isinstance(v, str) else "yes" if v else "no"

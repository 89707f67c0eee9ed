"""The live per-slice SLA monitor of a run: a daemon thread sampling the link engine's counters.

Every ``interval_s`` :class:`SlaMonitor` reads a counter snapshot (the run binds ``read_counters``
to ``LinkEngine.counters``), diffs it with the previous one, classifies each slice
(sla_state.py: the MODEL's per-hop delay and loss, not a measured end-to-end delay), feeds an
:class:`~experiments.framework.sla_state.SlaTimeline` and appends one JSON line per slice to
``sla_samples.jsonl``. :func:`sla_table` and :func:`sla_state_figure` turn the timeline into the
run's ``sla_timeline.parquet`` and its figure.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import pandas as pd

from experiments.framework.plotting import plt, slice_style
from experiments.framework.sla_state import (
    AT_RISK,
    NO_TRAFFIC,
    OK,
    VIOLATED,
    SlaThresholds,
    SlaTimeline,
    classify,
    sample_slice,
)
from topologies.validate import ConfigError

QueueNames = dict[tuple[str, str], list[str]]
# stop() waits this long (at least) for a round in progress, e.g. a read of a slow relay
STOP_JOIN_S = 5.0
TABLE_COLUMNS = ["t_s", "slice", "state", "metric", "value", "limit"]
# Figure band colours per state (Okabe-Ito based; the slices' own colours label the rows)
STATE_COLOURS = {OK: "#8FD3B0", AT_RISK: "#F0E442", VIOLATED: "#D55E00", NO_TRAFFIC: "#DDDDDD"}
STATE_LABELS = {OK: "ok", AT_RISK: "at risk", VIOLATED: "violated", NO_TRAFFIC: "no traffic"}


class SliceLike(Protocol):
    """What the monitor needs of a slice (topologies.scenario.Slice has it)."""

    @property
    def name(self) -> str: ...
    @property
    def latency_bound_ms(self) -> float: ...
    @property
    def reliability_target_pct(self) -> float: ...


def queue_class_names(queue_configs: Mapping[tuple[str, str], Any]) -> QueueNames:
    """(link, direction) -> class names in class order, from ``LinkEngine.queue_configs`` (a
    QueueConfig each; None, queues switched off: left out)."""
    return {key: [c.name for c in config.classes] for key, config in queue_configs.items()
            if config is not None}


class SlaMonitor:
    """Samples ``read_counters`` every ``interval_s`` in a daemon thread (see the module docstring).

    ``queue_names`` is read every round (queues can be reconfigured); ``clock`` is the timebase of
    ``start``'s ``t0`` (``time.monotonic`` in a run). A round that raises is counted and its text
    kept (``errors``, ``last_error``); the next good round diffs against the last good snapshot.
    """

    def __init__(self, read_counters: Callable[[], dict], queue_names: Callable[[], Mapping],
                 slices: Sequence[SliceLike], interval_s: float = 1.0, out_path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 thresholds: SlaThresholds = SlaThresholds(),
                 slice_hops: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, int | float) or not interval_s > 0:
            raise ConfigError("interval_s", interval_s, "a number of seconds > 0")
        names = [s.name for s in slices]
        if not names or len(set(names)) != len(names):
            raise ConfigError("slices", names, "at least one slice, names unique")
        self.read_counters, self.queue_names, self.slices = read_counters, queue_names, list(slices)
        self.interval_s, self.out_path, self.clock, self.thresholds = interval_s, out_path, clock, thresholds
        self.slice_hops = {k: tuple(v) for k, v in (slice_hops or {}).items()}  # FIFO hops attributed
        self.rounds = 0
        self.errors = 0
        self.last_error: str | None = None
        self._t0 = 0.0
        self._prev: tuple[float, dict] | None = None
        self._timeline = SlaTimeline()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: IO[str] | None = None

    # --- life cycle --------------------------------------------------------------------------------
    def start(self, t0: float) -> None:
        """Start sampling; times are seconds since ``t0`` (the clock's value at the run's start)."""
        if self._thread is not None:
            raise RuntimeError("SlaMonitor.start: already started")
        self._t0 = t0
        if self.out_path is not None:
            self._out = open(self.out_path, "a", encoding="utf-8")  # closed in stop()
        self._thread = threading.Thread(target=self._run, name="sla-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop the thread (a round in progress finishes) and return the summary: per slice seconds
        per state, violations and the first one's start, the transitions, rounds and errors."""
        self._stop.set()
        alive = False
        if self._thread is not None:
            self._thread.join(max(STOP_JOIN_S, 2 * self.interval_s))
            alive = self._thread.is_alive()
        with self._lock:
            if self._out is not None and not alive:
                self._out.close()
                self._out = None
            return {"interval_s": self.interval_s, "rounds": self.rounds, "errors": self.errors,
                    "last_error": self.last_error, "thread_still_running": alive,
                    "slices": self._timeline.summary(), "transitions": self._timeline.to_records()}

    def current(self) -> dict[str, dict[str, Any]]:
        """{slice: {state, since_s, metric, value, limit}} now (thread-safe)."""
        with self._lock:
            return self._timeline.current()

    def timeline(self) -> SlaTimeline:
        """The timeline (read it after :meth:`stop`; it is not copied)."""
        return self._timeline

    # --- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        due = self.clock()
        while not self._stop.is_set():
            self.round()
            due += self.interval_s
            wait = due - self.clock()
            if wait < 0:  # a late round: the next one now, no burst to catch up
                due, wait = self.clock(), 0.0
            if self._stop.wait(wait):
                break

    def round(self) -> None:
        """One sample of every slice (the first round only takes the baseline snapshot); never raises."""
        t_s = None
        try:
            t_s = self.clock() - self._t0
            snapshot = self.read_counters()
            names = {tuple(k): list(v) for k, v in self.queue_names().items()}
            prev = self._prev
            if prev is None:
                with self._lock:
                    self._prev, self._timeline.t0_s = (t_s, snapshot), t_s
                    self.rounds += 1
                return
            records = []
            for s in self.slices:
                sample = sample_slice(prev[1], snapshot, names, s.name, self.slice_hops.get(s.name, ()))
                state = classify(sample, s.latency_bound_ms, s.reliability_target_pct, self.thresholds)
                records.append((s.name, state, {
                    "t_s": round(t_s, 6), "t_start_s": round(prev[0], 6), "slice": s.name,
                    "state": state.state, "metric": state.metric, "value": state.value,
                    "limit": state.limit, **sample.to_record()}))
            lines = "".join(json.dumps(r, sort_keys=False) + "\n" for _, _, r in records)
            with self._lock:
                for name, state, _ in records:
                    self._timeline.feed(t_s, name, state, t_start_s=prev[0])
                self._prev = (t_s, snapshot)
                self.rounds += 1
                if self._out is not None:
                    self._out.write(lines)  # one write per round: whole lines
                    self._out.flush()
        except Exception as exc:  # a dead relay, a malformed snapshot, a full disk: next round
            with self._lock:
                self.errors += 1
                when = "?" if t_s is None else f"{t_s:.3f}"
                self.last_error = f"t_s={when}: {type(exc).__name__}: {exc}"


# --- the run's table and figure --------------------------------------------------------------------
def sla_table(timeline: SlaTimeline) -> pd.DataFrame:
    """The transitions as rows (``t_s``: when the state began) plus one closing row per slice at its
    last sample time in its current state, so each state's band runs from its row to the next."""
    rows = [{"t_s": t.t_s, "slice": t.slice, "state": t.to, "metric": t.metric, "value": t.value,
             "limit": t.limit} for t in timeline.transitions]
    current = timeline.current()
    rows += [{"t_s": t_end, "slice": name, "state": current[name]["state"],
              "metric": current[name]["metric"], "value": current[name]["value"],
              "limit": current[name]["limit"]} for name, t_end in timeline.last_t_s.items()]
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["limit"] = frame["limit"].astype(float)
    return frame.sort_values(["slice", "t_s"], kind="stable").reset_index(drop=True)


def sla_state_figure(frame: pd.DataFrame, slices: Sequence[str | SliceLike],
                     t_switch_s: float | None = None) -> plt.Figure:
    """One row per slice: coloured bands (ok / at risk / violated / no traffic) over time, from an
    :func:`sla_table` frame; ``t_switch_s``: a dashed line where the policy switched."""
    names = [s if isinstance(s, str) else s.name for s in slices]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.4))
    for row, name in enumerate(names):
        rows = frame[frame["slice"] == name].sort_values("t_s", kind="stable")
        times, states = rows["t_s"].tolist(), rows["state"].tolist()
        for (t, state), t_next in zip(zip(times, states, strict=True), times[1:], strict=False):
            if t_next > t:
                ax.broken_barh([(t, t_next - t)], (row - 0.4, 0.8), facecolors=STATE_COLOURS[state])
    ax.set_yticks(range(len(names)), [slice_style(n)[1] for n in names])
    for label, name in zip(ax.get_yticklabels(), names, strict=True):
        label.set_color(slice_style(name)[0])
    ax.set_ylim(len(names) - 0.5, -0.5)
    handles: list[Any] = [plt.Rectangle((0, 0), 1, 1, color=STATE_COLOURS[s]) for s in STATE_COLOURS]
    labels = [STATE_LABELS[s] for s in STATE_COLOURS]
    if t_switch_s is not None:
        handles.append(ax.axvline(t_switch_s, color="black", linestyle="--", linewidth=1))
        labels.append("policy switch")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(names) > 2 else -0.4),
              ncol=len(labels), frameon=False, fontsize=8)
    ax.set_xlabel("time since start (s)")
    ax.set_title("Per-slice SLA state (model delay and loss per interval)", fontsize=10)
    fig.tight_layout()
    return fig

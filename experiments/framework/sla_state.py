"""Per-slice SLA state while a run runs: interval samples from counter snapshots, a classifier, a timeline.

What is judged is the MODEL's per-hop delay and loss: what the emulated RAN (the NR cells' slot
model, topologies/links/relay/nrcell.c) and the per-slice transport queues (relay.c's class queues)
imposed on a slice's packets in one interval, read as the difference of two snapshots of the
cumulative counters ``LinkEngine.counters()`` returns. It is NOT a measured end-to-end delay: host
and switch time, link propagation delay, serialisation and the application are not in it. The run's
packets give the measured one after the run (the kinds' analysis); this is the live view a
northbound API can serve while the run goes on.

- :func:`sample_slice` -> :class:`SlaSample`: per RAN direction (summed over the NR cells that have
  the slice) packets out, drops (HARQ, buffer) and the model delay's p99 over the interval from the
  delay histograms' deltas; per shaped transport direction whose queue configuration has a class
  named like the slice, packets taken, queue drops, mean and max wait (arrival to start of
  serialisation). Directions with a rate but no per-slice queues (one FIFO) are not attributed to
  any slice: their counters do not say whose packets they were.
- :func:`classify` -> :class:`SlaState` (ok / at_risk / violated / no_traffic; rules on the function).
- :class:`SlaTimeline`: the transitions and the current state per slice, time spent in each state.

Pure functions; sla_monitor.py samples a running engine with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from topologies.validate import ConfigError

DIRECTIONS = ("uplink", "downlink")
STATES = ("ok", "at_risk", "violated", "no_traffic")
OK, AT_RISK, VIOLATED, NO_TRAFFIC = STATES

# relay/nrcell.c NR_HIST_BINS: the histogram's last bin (this index) holds every delay beyond
# NR_HIST_BINS * hist_bin_ns (100 ms); a quantile falling there is reported at that lower edge.
NR_HIST_OVERFLOW_BIN = 2000
# The RAN delay quantile judged against the latency bound: p99 of the interval's packets (nearest
# rank, the bin's upper edge: "99 % of the packets waited at most this").
RAN_DELAY_QUANTILE = 0.99
# A delay estimate above this share of the bound (and within the bound) makes the slice "at risk":
# the early warning before the bound is crossed.
DEFAULT_AT_RISK_FRACTION = 0.8
_RANK_EPS = 1e-9  # q * n computed in floating point: 0.99 * 300 must give rank 297, not 298


@dataclass(frozen=True)
class RanFigures:
    """One RAN direction of a slice over an interval, summed over the NR cells that have the slice."""

    out: int
    dropped_harq: int
    dropped_buffer: int
    p99_ms: float | None  # the model's per-packet delay p99 (None: no packet left in the interval)


@dataclass(frozen=True)
class TransportFigures:
    """The slice's class on one shaped direction over an interval."""

    taken: int                   # packets taken for serialisation (tx delta)
    dropped: int                 # dropped_queue delta
    mean_wait_ms: float | None   # wait_sum delta / taken (None: nothing taken)
    max_wait_ms: float | None    # the interval's max if wait_max grew in it, else the mean
    max_wait_exact: bool         # True: wait_max grew (max_wait_ms is the interval's max)
    queued: int                  # packets waiting at the interval's end (a gauge)


@dataclass(frozen=True)
class SlaSample:
    """One slice's figures over one interval (the difference of two counter snapshots).

    ``ran``: per direction, present when some NR cell has the slice in both snapshots; ``transport``:
    per ``"link/direction"`` whose queues have a class named like the slice; ``missing``: what could
    not be diffed (``"nr:CELL"``, ``"link:LINK/DIRECTION"``: unavailable in a snapshot)."""

    slice: str
    ran: Mapping[str, RanFigures]
    transport: Mapping[str, TransportFigures]
    missing: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """JSON-ready figures (nested by RAN direction and transport direction)."""
        return {"ran": {d: asdict(f) for d, f in self.ran.items()},
                "transport": {k: asdict(f) for k, f in self.transport.items()},
                "missing": list(self.missing)}


@dataclass(frozen=True)
class SlaState:
    """A slice's state over an interval and what decided it: ``metric`` compared as ``value`` vs
    ``limit`` (ms for delays, % for delivered shares; None where there is nothing to compare)."""

    state: str
    metric: str
    value: float | None
    limit: float | None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state: got {self.state!r}; allowed one of {', '.join(STATES)}")


@dataclass(frozen=True)
class SlaThresholds:
    """The classifier's tunable threshold (see :func:`classify`)."""

    at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION

    def __post_init__(self) -> None:
        f = self.at_risk_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1:
            raise ConfigError("at_risk_fraction", f, "a number in (0, 1] (a share of the latency bound)")


# --- samples -----------------------------------------------------------------------------------
def _restarted(cur: Mapping[str, Any], prev: Mapping[str, Any], key: str) -> bool:
    """A packet counter that went down: a new relay or a reset; then the current values are the interval's."""
    return cur.get(key, 0) < prev.get(key, 0)


def _delta(cur: Mapping[str, Any], prev: Mapping[str, Any], key: str, restarted: bool) -> int:
    return int(cur.get(key, 0)) - (0 if restarted else int(prev.get(key, 0)))


def hist_delta_ms(cur: Mapping[str, Any], prev: Mapping[str, Any], bin_ns: float,
                  restarted: bool) -> dict[float, int]:
    """{bin's upper edge (ms): packets in the interval} from two sparse ``delay_hist`` lists; the
    overflow bin is keyed by its lower edge (a lower bound of those delays)."""
    before = {} if restarted else {int(b): int(n) for b, n in prev.get("delay_hist", [])}
    out: dict[float, int] = {}
    for b, n in cur.get("delay_hist", []):
        d = int(n) - before.get(int(b), 0)
        if d > 0:
            edge = int(b) if int(b) >= NR_HIST_OVERFLOW_BIN else int(b) + 1
            out[edge * bin_ns / 1e6] = out.get(edge * bin_ns / 1e6, 0) + d
    return out


def hist_quantile(hist: Mapping[float, int], q: float = RAN_DELAY_QUANTILE) -> float | None:
    """The nearest-rank ``q`` quantile of a {value: count} histogram; None when it is empty."""
    n = sum(hist.values())
    if n <= 0:
        return None
    rank, seen = max(1, math.ceil(q * n - _RANK_EPS)), 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)  # not reached


def _ran_figures(prev: Mapping[str, Any], cur: Mapping[str, Any], slice_name: str,
                 missing: list[str]) -> dict[str, RanFigures]:
    totals = {d: [0, 0, 0] for d in DIRECTIONS}
    hists: dict[str, dict[float, int]] = {d: {} for d in DIRECTIONS}
    found = False
    prev_cells, cur_cells = prev.get("nr_cells", {}), cur.get("nr_cells", {})
    for cell in sorted(set(cur_cells) | set(prev_cells)):
        now, before = cur_cells.get(cell, {}), prev_cells.get(cell, {})
        has = [slice_name in s.get("slice_names", []) for s in (now, before)]
        if not all(has):  # a cell without the slice, or one unreadable in a snapshot
            if any(has) or "unavailable" in now or "unavailable" in before:
                missing.append(f"nr:{cell}")
            continue
        found = True
        s_now = now["slices"][now["slice_names"].index(slice_name)]
        s_before = before["slices"][before["slice_names"].index(slice_name)]
        for d in DIRECTIONS:
            c, p = s_now[d], s_before[d]
            r = _restarted(c, p, "out") or _restarted(c, p, "in")
            for i, key in enumerate(("out", "dropped_harq", "dropped_buffer")):
                totals[d][i] += _delta(c, p, key, r)
            for value, n in hist_delta_ms(c, p, now["hist_bin_ns"], r).items():
                hists[d][value] = hists[d].get(value, 0) + n
    if not found:
        return {}
    return {d: RanFigures(out=totals[d][0], dropped_harq=totals[d][1], dropped_buffer=totals[d][2],
                          p99_ms=hist_quantile(hists[d])) for d in DIRECTIONS}


def _transport_figures(c: Mapping[str, Any], p: Mapping[str, Any]) -> TransportFigures:
    r = _restarted(c, p, "tx") or _restarted(c, p, "rx")
    taken = _delta(c, p, "tx", r)
    mean = _delta(c, p, "wait_sum_ns", r) / taken / 1e6 if taken > 0 else None
    grew = int(c.get("wait_max_ns", 0)) > (0 if r else int(p.get("wait_max_ns", 0)))
    return TransportFigures(taken=taken, dropped=_delta(c, p, "dropped_queue", r), mean_wait_ms=mean,
                            max_wait_ms=int(c.get("wait_max_ns", 0)) / 1e6 if grew and taken > 0 else mean,
                            max_wait_exact=grew and taken > 0, queued=int(c.get("queued", 0)))


def _fifo_as_class(d: Mapping[str, Any]) -> dict[str, int]:
    """A FIFO direction's serialiser counters under the names of a queue class's."""
    names = {"tx": "serialised", "rx": "serialised", "wait_sum_ns": "wait_sum_ns",
             "wait_max_ns": "wait_max_ns", "dropped_queue": "dropped_queue", "queued": "queued"}
    return {k: int(d.get(v, 0)) for k, v in names.items()}


def sample_slice(prev: Mapping[str, Any], cur: Mapping[str, Any],
                 queue_names: Mapping[tuple[str, str], Sequence[str]], slice_name: str,
                 fifo_hops: Iterable[tuple[str, str]] = ()) -> SlaSample:
    """Slice ``slice_name``'s figures between counter snapshots ``prev`` and ``cur`` (``counters()``
    output); ``queue_names``: (link, direction) -> its queue classes' names in class order;
    ``fifo_hops``: the (link, direction) hops the slice's flows cross.

    Transport: a shaped direction with per-slice queues counts with the class named like the slice;
    one of ``fifo_hops`` without queues counts with its FIFO serialiser's counters (``serialised``,
    ``wait_sum_ns``, ``wait_max_ns``, ``dropped_queue``: relay.c), which every slice crossing it
    shares: its waits and its drop share are attributed to each of them (key ``LINK/DIR fifo``).
    The max wait: a cumulative max says nothing about an interval unless it grew in it (then it is
    the interval's max); otherwise the interval's mean stands in."""
    missing: list[str] = []
    ran = _ran_figures(prev, cur, slice_name, missing)
    transport: dict[str, TransportFigures] = {}
    for (link, direction), names in sorted(queue_names.items()):
        if slice_name not in names:
            continue
        i, key = list(names).index(slice_name), f"{link}/{direction}"
        now = cur.get("links", {}).get(link, {}).get(direction, {}).get("classes", [])
        before = prev.get("links", {}).get(link, {}).get(direction, {}).get("classes", [])
        if i >= len(now) or i >= len(before):
            missing.append(f"link:{key}")
            continue
        transport[key] = _transport_figures(now[i], before[i])
    for link, direction in sorted(set(fifo_hops)):
        if (link, direction) in queue_names:
            continue  # its classes count (above)
        now_d = cur.get("links", {}).get(link, {}).get(direction)
        before_d = prev.get("links", {}).get(link, {}).get(direction)
        if now_d is None or before_d is None or "serialised" not in now_d or "serialised" not in before_d:
            continue  # not shaped, not a relay link, or unreadable: nothing to attribute
        if not now_d["serialised"] or (now_d["serialised"] == before_d["serialised"]
                                       and now_d.get("dropped_queue") == before_d.get("dropped_queue")):
            continue  # never a serialiser (unshaped; an NR cell's own link), or idle, or its queues took over
        key = f"{link}/{direction} fifo"
        transport[key] = _transport_figures(_fifo_as_class(now_d), _fifo_as_class(before_d))
    return SlaSample(slice=slice_name, ran=ran, transport=transport, missing=tuple(missing))


# --- classification ----------------------------------------------------------------------------
def _hops(sample: SlaSample) -> list[tuple[str, int, int]]:
    """(drop metric, packets passed, packets dropped) per hop of the slice."""
    hops = []
    for d, f in sample.ran.items():
        cause = "harq" if f.dropped_harq > f.dropped_buffer else "buffer"
        hops.append((f"dropped:ran_{d}_{cause}", f.out, f.dropped_harq + f.dropped_buffer))
    hops += [(f"dropped:transport_queue:{k}", f.taken, f.dropped) for k, f in sample.transport.items()]
    return hops


def delay_estimate(sample: SlaSample) -> tuple[str, float] | None:
    """(metric, ms): the worst path's model delay, RAN p99 of the worse direction plus the largest
    transport wait of the slice's class; the metric names the terms (None: no term)."""
    terms = []
    ran = [(f.p99_ms, f"ran_{d}_p99_ms") for d, f in sample.ran.items() if f.p99_ms is not None]
    if ran:
        terms.append(max(ran, key=lambda t: t[0]))
    wait = [(f.max_wait_ms, f"transport_wait_ms:{k}") for k, f in sample.transport.items()
            if f.max_wait_ms is not None]
    if wait:
        terms.append(max(wait, key=lambda t: t[0]))
    if not terms:
        return None
    return "+".join(name for _, name in terms), sum(v for v, _ in terms)


def classify(sample: SlaSample, bound_ms: float, target_pct: float,
             thresholds: SlaThresholds = SlaThresholds()) -> SlaState:
    """The slice's state over the sample's interval (first rule that holds):

    - ``no_traffic``: no packet passed or was dropped on any of its hops (metric "packets");
    - ``violated``: a hop's delivered share in the interval, 100 passed / (passed + dropped), is
      below ``target_pct`` (metric "dropped:HOP_CAUSE", value the share, limit the target); or the
      worst path's delay estimate (:func:`delay_estimate`) exceeds ``bound_ms``;
    - ``at_risk``: the estimate exceeds ``thresholds.at_risk_fraction`` x ``bound_ms`` (limit that
      product); or some hop dropped a packet while its share stays at or above the target;
    - ``ok``: otherwise (metric the delay estimate against the bound, or "packets" without one).

    The share is per hop (the worst one), not per path: a path across two lossy hops delivers less.
    One interval's share from few packets is coarse (1 drop in 50 is 98 %); what a whole run can
    claim is confidence.py's. Delays are the model's (module docstring), not measured ones.
    """
    if isinstance(bound_ms, bool) or not isinstance(bound_ms, int | float) or not bound_ms > 0:
        raise ConfigError("latency_bound_ms", bound_ms, "a number > 0")
    if isinstance(target_pct, bool) or not isinstance(target_pct, int | float) or not 0 < target_pct <= 100:
        raise ConfigError("reliability_target_pct", target_pct, "a number in (0, 100]")
    hops = _hops(sample)
    if not any(passed or dropped for _, passed, dropped in hops):
        return SlaState(NO_TRAFFIC, "packets", 0.0, None)
    shares = [(100.0 * passed / (passed + dropped), name) for name, passed, dropped in hops if dropped]
    worst = min(shares, key=lambda s: s[0]) if shares else None
    delay = delay_estimate(sample)
    at_risk_ms = thresholds.at_risk_fraction * bound_ms
    if worst is not None and worst[0] < target_pct:
        return SlaState(VIOLATED, worst[1], worst[0], float(target_pct))
    if delay is not None and delay[1] > bound_ms:
        return SlaState(VIOLATED, delay[0], delay[1], float(bound_ms))
    if delay is not None and delay[1] > at_risk_ms:
        return SlaState(AT_RISK, delay[0], delay[1], at_risk_ms)
    if worst is not None:
        return SlaState(AT_RISK, worst[1], worst[0], float(target_pct))
    if delay is not None:
        return SlaState(OK, delay[0], delay[1], float(bound_ms))
    return SlaState(OK, "packets", float(sum(passed for _, passed, _ in hops)), None)


# --- timeline ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transition:
    """Slice ``slice`` entered ``to`` at ``t_s`` (the start of the first interval in that state)."""

    t_s: float
    slice: str
    from_state: str | None  # None: the slice's first interval
    to: str
    metric: str
    value: float | None
    limit: float | None


class SlaTimeline:
    """States per interval in, transitions and the current state per slice out.

    :meth:`feed` takes the state of the interval ``(t_start_s, t_s]`` (default start: the slice's
    previous ``t_s``, else ``t0_s``); a state holds from the start of its first interval."""

    def __init__(self, t0_s: float = 0.0) -> None:
        self.t0_s = t0_s
        self.transitions: list[Transition] = []
        self.last_t_s: dict[str, float] = {}
        self._current: dict[str, tuple[SlaState, float]] = {}
        self._seconds: dict[str, dict[str, float]] = {}

    def feed(self, t_s: float, slice_name: str, state: SlaState, t_start_s: float | None = None) -> None:
        start = self.last_t_s.get(slice_name, self.t0_s) if t_start_s is None else t_start_s
        if t_s < start:
            raise ValueError(f"t_s: got {t_s}; allowed >= the interval's start {start}")
        seconds = self._seconds.setdefault(slice_name, dict.fromkeys(STATES, 0.0))
        seconds[state.state] += t_s - start
        before = self._current.get(slice_name)
        if before is None or before[0].state != state.state:
            self.transitions.append(Transition(start, slice_name, before[0].state if before else None,
                                               state.state, state.metric, state.value, state.limit))
            self._current[slice_name] = (state, start)
        else:
            self._current[slice_name] = (state, before[1])  # same state: its latest figures
        self.last_t_s[slice_name] = t_s

    def current(self) -> dict[str, dict[str, Any]]:
        """{slice: {state, since_s, metric, value, limit}} of the latest interval (a northbound view)."""
        return {name: {"state": s.state, "since_s": since, "metric": s.metric, "value": s.value,
                       "limit": s.limit} for name, (s, since) in self._current.items()}

    def seconds(self) -> dict[str, dict[str, float]]:
        """{slice: {state: seconds in it}} over the intervals fed."""
        return {name: dict(per_state) for name, per_state in self._seconds.items()}

    def to_records(self) -> list[dict[str, Any]]:
        """The transitions as rows: t_s, slice, from, to, metric, value, limit."""
        return [{"t_s": t.t_s, "slice": t.slice, "from": t.from_state, "to": t.to, "metric": t.metric,
                 "value": t.value, "limit": t.limit} for t in self.transitions]

    def summary(self) -> dict[str, Any]:
        """Per slice: seconds per state, violations (entries into "violated"), first violation's start."""
        out: dict[str, Any] = {}
        for name, per_state in self._seconds.items():
            entered = [t.t_s for t in self.transitions if t.slice == name and t.to == VIOLATED]
            out[name] = {"seconds": dict(per_state), "violations": len(entered),
                         "first_violation_s": entered[0] if entered else None}
        return out

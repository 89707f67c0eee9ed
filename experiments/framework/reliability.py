"""Service metrics of 3GPP TS 22.104 Annex C from message outcomes: availability, survival time, MTBF.

Definitions (3GPP TS 22.104 Annex C; the terms as in TS 22.261 §3.1):

- Message k is *due* at ``due_ns[k]``: its scheduled send time plus the latency bound. It is
  *successful* iff it arrived correct and on time (``ok[k]``); ``arrival_ns[k]`` is its arrival time,
  -1 when it never arrived. Messages come in message order (due times non-decreasing).
- Only messages with ``window_start_ns <= due_ns < window_end_ns`` and not ``excluded[k]`` are
  *considered*. An excluded message (e.g. one a host stall of the emulator touched) is neither
  success nor failure: it neither ends nor starts a burst.
- A *failure burst* is a maximal run of consecutive considered messages that are not successful. It
  starts at the due time d_i of its first message and ends at the arrival a_j of the next successful
  message (at ``window_end_ns`` when none follows). Outage duration = end - d_i.
- A burst is a *survival-time violation*, a failure of the communication service, iff its outage
  duration exceeds ``survival_time_ms`` (strictly): the service is DOWN over [d_i, end). A shorter
  burst is not a failure; the service stays up. ``survival_time_ms = 0``: every burst is a failure.
  Down time is counted inside the window only, and once where DOWN intervals overlap. With a latency
  bound longer than the transfer interval the next message can arrive before d_i: no outage (a
  failure only when ``survival_time_ms = 0``, and then without down time).
- Over the window (``window_s``): ``down_s`` is the time DOWN, ``up_s = window_s - down_s``,
  ``availability_pct = 100 up_s / window_s`` (communication service availability);
  ``survival_violations`` counts the violating bursts; ``mtbf_s = up_s / survival_violations``
  (mean time between failures). Without a failure there is no MTBF, only the one-sided 95 % bound
  of a time-truncated test with zero failures, ``mtbf_s_at_least = up_s / 3`` (2T / chi2(0.95; 2)
  = T / 2.996, the "rule of three": Hanley & Lippman-Hand, JAMA 249 (1983) 1743-1745).
- Per message: ``messages_down`` (considered messages inside a violating burst) gives
  ``availability_msgs_pct`` with its Clopper-Pearson interval ``availability_pct_ci95``;
  ``deadline_met`` (successful messages: TS 22.261's reliability) gives ``deadline_met_pct`` and
  ``deadline_met_pct_ci95``; a failed message either arrived late or corrupted
  (``deadline_misses``) or never arrived (``lost``).
- ``loss_bursts`` / ``failure_bursts``: {run length: count} of consecutive considered messages that
  never arrived / were not successful; ``outages``: the DOWN intervals [start_s, end_s] relative to
  the window start (for a timeline).

:func:`jitter_ms` and :class:`JitterAccumulator` give the interarrival jitter of RFC 3550 §6.4.1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.framework.confidence import ci_pct

_R = 15.0 / 16.0                 # RFC 3550: J += (|D| - J) / 16
_BLOCK = 256
_BLOCK_WEIGHTS = (1.0 - _R) * _R ** np.arange(_BLOCK - 1, -1, -1, dtype=float)
_DIGITS = 6


@dataclass(frozen=True)
class ServiceMetrics:
    """One flow's service metrics over a window (see the module docstring)."""

    survival_time_ms: float | None
    window_s: float
    up_s: float
    down_s: float
    availability_pct: float
    survival_violations: int
    mtbf_s: float | None
    mtbf_s_at_least: float | None
    messages_considered: int
    messages_excluded: int
    messages_down: int
    availability_msgs_pct: float | None
    availability_pct_ci95: list[float] | None
    deadline_met: int
    deadline_met_pct: float | None
    deadline_met_pct_ci95: list[float] | None
    deadline_misses: int
    lost: int
    loss_bursts: dict[int, int]
    failure_bursts: dict[int, int]
    outages: list[list[float]]

    def as_summary(self) -> dict[str, Any]:
        """JSON-ready: shares and times rounded to 6 decimals, burst lengths as string keys; no outages."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "outages":
                continue
            if name.endswith("_bursts"):
                value = {str(length): count for length, count in sorted(value.items())}
            elif isinstance(value, float):
                value = round(value, _DIGITS)
            out[name] = value
        return out


def _share(count: int, total: int) -> float | None:
    return 100.0 * count / total if total else None


def _build(*, survival_time_ms: float | None, window_ns: int, down_ns: int, violations: int,
           considered: int, excluded: int, down_msgs: int, met: int, misses: int, lost: int,
           loss_bursts: dict[int, int], failure_bursts: dict[int, int],
           outages: list[list[float]]) -> ServiceMetrics:
    """The derived fields from the counts (one flow, or several pooled)."""
    up_ns = window_ns - down_ns
    up_s = up_ns / 1e9
    return ServiceMetrics(
        survival_time_ms=survival_time_ms, window_s=window_ns / 1e9, up_s=up_s, down_s=down_ns / 1e9,
        availability_pct=100.0 * up_ns / window_ns, survival_violations=violations,
        mtbf_s=up_s / violations if violations else None,
        mtbf_s_at_least=None if violations else up_s / 3.0,
        messages_considered=considered, messages_excluded=excluded, messages_down=down_msgs,
        availability_msgs_pct=_share(considered - down_msgs, considered),
        availability_pct_ci95=ci_pct(considered - down_msgs, considered),
        deadline_met=met, deadline_met_pct=_share(met, considered),
        deadline_met_pct_ci95=ci_pct(met, considered), deadline_misses=misses, lost=lost,
        loss_bursts=loss_bursts, failure_bursts=failure_bursts, outages=outages)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of every run of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    return starts, np.flatnonzero(edges == -1) - starts


def _histogram(lengths: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(lengths, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _array(name: str, values: Any, dtype: type, size: int | None) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if size is not None and array.size != size:
        raise ValueError(f"{name} must have as many values as due_ns ({size}), got {array.size}")
    return array


def service_metrics(due_ns: np.ndarray, arrival_ns: np.ndarray, ok: np.ndarray, survival_time_ms: float,
                    window_start_ns: int, window_end_ns: int,
                    excluded: np.ndarray | None = None) -> ServiceMetrics:
    """One flow's :class:`ServiceMetrics` from its messages' outcomes (see the module docstring)."""
    due = _array("due_ns", due_ns, np.int64, None)
    arrival = _array("arrival_ns", arrival_ns, np.int64, due.size)
    good = _array("ok", ok, bool, due.size)
    skip = np.zeros(due.size, bool) if excluded is None else _array("excluded", excluded, bool, due.size)
    survival_time_ms = float(survival_time_ms)
    if not (math.isfinite(survival_time_ms) and survival_time_ms >= 0.0):
        raise ValueError(f"survival_time_ms must be a finite number >= 0, got {survival_time_ms!r}")
    window_start_ns, window_end_ns = int(window_start_ns), int(window_end_ns)
    if window_end_ns <= window_start_ns:
        raise ValueError(f"window_end_ns must be > window_start_ns ({window_start_ns}), got {window_end_ns}")
    if np.any(np.diff(due) < 0):
        raise ValueError("due_ns must be non-decreasing (messages in message order)")
    if np.any(good & (arrival < 0)):
        raise ValueError("ok must be False for a message that never arrived (arrival_ns = -1)")

    in_window = (due >= window_start_ns) & (due < window_end_ns)
    considered = in_window & ~skip
    due, arrival, good = due[considered], arrival[considered], good[considered]
    failed = ~good
    lost = failed & (arrival < 0)

    starts, lengths = _runs(failed)
    after = starts + lengths                                    # the next considered message: a success
    end_ns = np.where(after < due.size, arrival[np.minimum(after, due.size - 1)], window_end_ns)
    begin_ns = due[starts]
    violating = (end_ns - begin_ns > survival_time_ms * 1e6) | (survival_time_ms == 0.0)
    down_from = begin_ns[violating]
    down_to = np.maximum(np.minimum(end_ns[violating], window_end_ns), down_from)
    down_ns, outages = 0, []
    if down_from.size:                                          # union of [from, to), sorted by from
        reach = np.maximum.accumulate(down_to)
        first = np.flatnonzero(np.concatenate(([True], down_from[1:] > reach[:-1])))
        merged_from, merged_to = down_from[first], np.maximum.reduceat(down_to, first)
        down_ns = int((merged_to - merged_from).sum())
        outages = ((np.column_stack((merged_from, merged_to)) - window_start_ns) / 1e9).tolist()

    return _build(survival_time_ms=survival_time_ms, window_ns=window_end_ns - window_start_ns,
                  down_ns=down_ns, violations=int(violating.sum()), considered=int(due.size),
                  excluded=int((in_window & skip).sum()), down_msgs=int(lengths[violating].sum()),
                  met=int(good.sum()), misses=int((failed & (arrival >= 0)).sum()), lost=int(lost.sum()),
                  loss_bursts=_histogram(_runs(lost)[1]), failure_bursts=_histogram(lengths),
                  outages=outages)


def pooled(metrics: Sequence[ServiceMetrics]) -> dict[str, Any]:
    """Several flows (one slice) as one summary: times, counts and bursts summed; availability, MTBF
    and the intervals from the sums (availability_pct = 100 sum(up) / sum(window))."""
    if not metrics:
        raise ValueError("metrics must hold at least one ServiceMetrics")
    survivals = {m.survival_time_ms for m in metrics}
    loss: Counter[int] = Counter()
    failure: Counter[int] = Counter()
    for m in metrics:
        loss.update(m.loss_bursts)
        failure.update(m.failure_bursts)
    window_ns = sum(round(m.window_s * 1e9) for m in metrics)
    merged = _build(
        survival_time_ms=survivals.pop() if len(survivals) == 1 else None, window_ns=window_ns,
        down_ns=sum(round(m.down_s * 1e9) for m in metrics),
        violations=sum(m.survival_violations for m in metrics),
        considered=sum(m.messages_considered for m in metrics),
        excluded=sum(m.messages_excluded for m in metrics), down_msgs=sum(m.messages_down for m in metrics),
        met=sum(m.deadline_met for m in metrics), misses=sum(m.deadline_misses for m in metrics),
        lost=sum(m.lost for m in metrics), loss_bursts=dict(loss), failure_bursts=dict(failure), outages=[])
    return {"flows": len(metrics)} | merged.as_summary()


# --- jitter (RFC 3550 §6.4.1) ---------------------------------------------------------------------
def _fold_j(j: float, abs_d: np.ndarray) -> float:
    """J after ``J += (|D| - J)/16`` over ``abs_d``: J_end = r^m J + (1 - r) sum r^(m-i) |D_i|, in
    blocks of 256 (weights r^0..r^255), the blocks then combined with powers of r^256 (those of old
    blocks underflow to 0, harmlessly: their share of J is below double precision)."""
    x = abs_d.astype(float)
    n_blocks, rest = divmod(x.size, _BLOCK)
    with np.errstate(under="ignore"):
        if n_blocks:
            sums = x[: n_blocks * _BLOCK].reshape(n_blocks, _BLOCK) @ _BLOCK_WEIGHTS
            r_block = _R**_BLOCK
            j = r_block**n_blocks * j + (r_block ** np.arange(n_blocks - 1, -1, -1, dtype=float)) @ sums
        if rest:
            j = _R**rest * j + _BLOCK_WEIGHTS[_BLOCK - rest:] @ x[n_blocks * _BLOCK:]
    return float(j)


class _JitterState:
    """One flow's running jitter: the last packet, the count and sum of |D|, and RFC 3550's J (ns)."""

    def __init__(self) -> None:
        self.last: tuple[Any, Any] | None = None
        self.n_d = 0
        self.sum_abs_d = 0.0
        self.j = 0.0

    def feed(self, send: np.ndarray, recv: np.ndarray) -> None:
        if send.size == 0:
            return
        transit = recv - send                  # D_i = (R_i - R_{i-1}) - (S_i - S_{i-1}) = diff of transit
        if self.last is not None:
            transit = np.concatenate(([self.last[1] - self.last[0]], transit))
        abs_d = np.abs(np.diff(transit))
        self.n_d += abs_d.size
        self.sum_abs_d += float(abs_d.sum(dtype=np.float64))   # float: no int64 overflow on odd input
        self.j = _fold_j(self.j, abs_d)
        self.last = (send[-1], recv[-1])

    def result(self) -> dict[str, float | None]:
        if not self.n_d:
            return {"jitter_ms": None, "jitter_rfc3550_ms": None}
        return {"jitter_ms": self.sum_abs_d / self.n_d / 1e6, "jitter_rfc3550_ms": self.j / 1e6}


def _pair(send_ns: Any, recv_ns: Any) -> tuple[np.ndarray, np.ndarray]:
    send, recv = np.asarray(send_ns), np.asarray(recv_ns)
    if send.ndim != 1 or recv.ndim != 1:
        raise ValueError("send_ns and recv_ns must be one-dimensional")
    if recv.size != send.size:
        raise ValueError(f"recv_ns must have as many values as send_ns ({send.size}), got {recv.size}")
    if send.dtype.kind not in "iu" or recv.dtype.kind not in "iu":   # ints stay exact in int64
        return send.astype(float, copy=False), recv.astype(float, copy=False)
    return send.astype(np.int64, copy=False), recv.astype(np.int64, copy=False)


def jitter_ms(send_ns: np.ndarray, recv_ns: np.ndarray) -> dict[str, float | None]:
    """Interarrival jitter of received packets given in arrival order, with
    D_i = (R_i - R_{i-1}) - (S_i - S_{i-1}): ``jitter_ms`` = mean |D| (what RFC 3550's estimator J
    tracks) and ``jitter_rfc3550_ms`` = the final J of ``J += (|D| - J)/16`` from J = 0; None values
    with fewer than 2 packets."""
    state = _JitterState()
    state.feed(*_pair(send_ns, recv_ns))
    return state.result()


class JitterAccumulator:
    """:func:`jitter_ms` per flow over chunks of records of many flows interleaved, each chunk in
    arrival order (and the chunks in order); the same results as feeding everything at once."""

    def __init__(self) -> None:
        self._flows: dict[Hashable, _JitterState] = {}

    def add(self, flow_ids: np.ndarray, send_ns: np.ndarray, recv_ns: np.ndarray) -> None:
        """Take one chunk of records."""
        send, recv = _pair(send_ns, recv_ns)
        ids = np.asarray(flow_ids)
        if ids.ndim != 1 or ids.size != send.size:
            raise ValueError(f"flow_ids must be one-dimensional with as many values as send_ns "
                             f"({send.size}), got shape {ids.shape}")
        if not ids.size:
            return
        order = np.argsort(ids, kind="stable")                 # by flow, arrival order kept
        grouped = ids[order]
        bounds = np.concatenate(([0], np.flatnonzero(grouped[1:] != grouped[:-1]) + 1, [ids.size]))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            rows = order[lo:hi]
            key = grouped[lo].item() if isinstance(grouped[lo], np.generic) else grouped[lo]
            self._flows.setdefault(key, _JitterState()).feed(send[rows], recv[rows])

    def result(self) -> dict[Hashable, dict[str, float | None]]:
        """{flow id: {"jitter_ms": ..., "jitter_rfc3550_ms": ...}} in the order the flows first came."""
        return {key: state.result() for key, state in self._flows.items()}

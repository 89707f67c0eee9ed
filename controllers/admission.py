"""Admission control for guaranteed-rate flows on a sliced cell, as pure functions (no I/O, no clock).

A client (the northbound API, ``controllers/northbound.py``) asks for a :class:`FlowRequest`: a named
flow of one UE in one slice and direction, with the rate it wants guaranteed and, optionally, the
latency bound it needs. :func:`check_admission` answers with a :class:`Decision`:

- the slice must exist;
- the flow's name must not already be admitted;
- a latency bound asked for must not be tighter than the slice's ``latency_bound_ms`` (the slice
  cannot promise less than its own bound);
- the slice must guarantee a rate at all: its guaranteed share of the cell in a direction is
  ``ran.min_pct / 100 x capacity`` (TS 28.541 RRMPolicyRatio minimum); with ``min_pct`` 0 nothing
  can be guaranteed;
- the guaranteed rates of the slice's admitted flows in that direction, plus this one, must fit in
  that share (exactly full is admitted).

Every refusal's reason names the rule and the numbers; ``headroom_mbps`` is the slice's guaranteed
share minus what its admitted flows use in that direction, after admission (or before it, when
refused; None for an unknown slice).

The request's JSON shape (``FlowRequest.to_dict()`` writes it, ``from_dict`` reads it)::

    {"name": "agv1-video", "ue": "agv1", "slice": "embb", "direction": "uplink",
     "rate_mbps": 4.0, "packet_bytes": 1200, "latency_bound_ms": 50.0}

``latency_bound_ms`` may be left out or null (no latency asked for).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from topologies.nr.config import SliceRan
from topologies.validate import ConfigError, check_int, check_number, check_str

DIRECTIONS = ("uplink", "downlink")
# Flow names appear in URLs (DELETE /v1/flows/{name}) and in the run's records: plain, URL-safe.
FLOW_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FLOW_NAME_TEXT = "1-64 letters, digits, '_', '.' or '-' starting with a letter or digit"
MAX_PACKET_BYTES = 65535  # the largest IPv4 packet
# Rates summed from JSON floats: a sum within this relative tolerance of the share is "exactly full".
REL_TOLERANCE = 1e-9


class SliceLike(Protocol):
    """The part of a scenario slice (topologies.scenario.Slice) admission reads."""

    name: str
    latency_bound_ms: float
    ran: SliceRan


@dataclass(frozen=True)
class FlowRequest:
    """A flow that asks for a guaranteed rate in one slice and direction of its UE's cell.

    The constructor validates exactly as :meth:`from_dict` does (``ConfigError`` naming the field
    and what is allowed); ``rate_mbps`` and ``latency_bound_ms`` are stored as floats.
    """

    name: str
    ue: str
    slice: str
    direction: str          # "uplink" | "downlink"
    rate_mbps: float        # the guaranteed rate asked for, > 0
    packet_bytes: int       # the flow's packet size, 1..65535
    latency_bound_ms: float | None = None  # None: no latency asked for

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not FLOW_NAME_RE.fullmatch(self.name):
            raise ConfigError("name", self.name, FLOW_NAME_TEXT)
        for key in ("ue", "slice"):
            value = check_str(key, getattr(self, key))
            if not value:
                raise ConfigError(key, value, "a non-empty string")
        check_str("direction", self.direction, DIRECTIONS)
        object.__setattr__(self, "rate_mbps",
                           check_number("rate_mbps", self.rate_mbps, min=0, min_exclusive=True))
        check_int("packet_bytes", self.packet_bytes, min=1, max=MAX_PACKET_BYTES, why="an IP packet")
        if self.latency_bound_ms is not None:
            object.__setattr__(self, "latency_bound_ms",
                               check_number("latency_bound_ms", self.latency_bound_ms, min=0,
                                            min_exclusive=True, why="or null for none"))

    @classmethod
    def from_dict(cls, raw: Any) -> FlowRequest:
        """Validate a request dict (the JSON shape in the module docstring)."""
        keys = field_names()
        if not isinstance(raw, Mapping):
            raise ConfigError("<root>", raw, "an object with the keys " + ", ".join(keys))
        unknown = sorted((k for k in raw if k not in keys), key=str)
        if unknown:
            raise ConfigError(str(unknown[0]), raw[unknown[0]],
                              "no such key here; known keys: " + ", ".join(keys))
        missing = [k for k in keys if k not in raw and k != "latency_bound_ms"]
        if missing:
            raise ConfigError(missing[0], None, "this key is required")
        return cls(**{k: raw[k] for k in keys if k in raw})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict that :meth:`from_dict` accepts."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def field_names() -> tuple[str, ...]:
    """A request's keys, in order."""
    return tuple(f.name for f in fields(FlowRequest))


@dataclass(frozen=True)
class Decision:
    """Admission's answer: admitted or not, why (with the numbers), and the slice's headroom."""

    admitted: bool
    reason: str
    headroom_mbps: float | None  # guaranteed share - admitted rates (after admission; before when refused)

    def to_dict(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "reason": self.reason, "headroom_mbps": self.headroom_mbps}


def guaranteed_mbps(ran: SliceRan, capacity_mbps: float) -> float:
    """A slice's guaranteed rate in a direction of capacity ``capacity_mbps``: its minimum share."""
    return ran.min_pct * capacity_mbps / 100


def admitted_mbps(admitted: Sequence[FlowRequest], slice_name: str, direction: str) -> float:
    """The guaranteed rates of the ``admitted`` flows of a slice in a direction, summed."""
    return math.fsum(f.rate_mbps for f in admitted if f.slice == slice_name and f.direction == direction)


def check_admission(request: FlowRequest, slices: Mapping[str, SliceLike], capacity_mbps: Mapping[str, float],
                    admitted: Sequence[FlowRequest]) -> Decision:
    """Whether ``request`` can be admitted next to the ``admitted`` flows (rules: module docstring).

    ``capacity_mbps`` maps each direction to the cell's capacity in it; a direction it lacks is the
    caller's error (``ValueError``), not a refusal.
    """
    slice_ = slices.get(request.slice)
    if slice_ is None:
        known = ", ".join(map(repr, slices)) or "none"
        return Decision(False, f"unknown slice {request.slice!r} (known: {known})", None)
    direction = request.direction
    if direction not in capacity_mbps:
        raise ValueError(f"capacity_mbps: no capacity for {direction!r}; allowed keys: "
                         + ", ".join(DIRECTIONS))
    capacity = check_number(f"capacity_mbps[{direction!r}]", capacity_mbps[direction], min=0)
    share = guaranteed_mbps(slice_.ran, capacity)
    used = admitted_mbps(admitted, request.slice, direction)
    before = share - used
    where = f"slice {request.slice!r} {direction}"

    if any(f.name == request.name for f in admitted):
        return Decision(False, f"duplicate name: a flow named {request.name!r} is already admitted", before)
    bound = slice_.latency_bound_ms
    if request.latency_bound_ms is not None and request.latency_bound_ms < bound:
        return Decision(False, f"latency: the flow asks {_num(request.latency_bound_ms)} ms, "
                               f"slice {request.slice!r} guarantees {_num(bound)} ms", before)
    if share <= 0:
        return Decision(False, f"no guarantee: {where} has min_pct {_num(slice_.ran.min_pct)} % of "
                               f"{_num(capacity)} Mbit/s, so no rate can be guaranteed", before)
    total = used + request.rate_mbps
    if total - share > REL_TOLERANCE * share:
        return Decision(False, f"share: {where} guarantees {_num(share)} Mbit/s (min_pct "
                               f"{_num(slice_.ran.min_pct)} % of {_num(capacity)} Mbit/s); admitted flows "
                               f"use {_num(used)} Mbit/s, this one asks {_num(request.rate_mbps)} Mbit/s: "
                               f"{_num(total - share)} Mbit/s over", before)
    after = max(0.0, share - total)
    return Decision(True, f"admitted: {where} guarantees {_num(share)} Mbit/s; {_num(total)} Mbit/s now "
                          f"admitted, {_num(after)} Mbit/s left", after)


def _num(x: float) -> str:
    """A number for a reason: up to 9 significant digits, so a hair over a bound shows, float noise not."""
    return f"{x:.9g}"

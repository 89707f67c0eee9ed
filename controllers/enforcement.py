"""Slice SLA enforcement as pure data: what each enforcement point is told, from the scenario's slices.

Nothing here touches a switch, a relay or a clock; :func:`enforcement_plan` turns the slices into an
:class:`EnforcementPlan` and the runner (or an app) applies it:

- **RAN** (every NR cell): each slice's share of the resource blocks (TS 28.541 RRMPolicyRatio:
  dedicated / minimum / maximum, priority), its link-adaptation target (BLER) and uplink grant type,
  as an O-RAN near-RT RIC sets them over E2. With enforcement **off** the cell is slice-unaware: one
  pool (no dedicated or minimum share, every slice up to 100 %, equal priority), the cell's default
  link adaptation (TS 38.214 section 5.2.2.1: target BLER 0.1, CQI table 1) and dynamic grants.
- **Transport** (every shaped link direction, the relay's DSCP queues): the slice(s) of the highest
  RAN priority, when it is above the others', get strict-priority classes; every other slice a
  weighted class (deficit round robin: a guaranteed share of the rate when busy, work-conserving)
  whose weight is its guaranteed share ``ran.min_pct``; the share no slice reserves is split evenly
  between the slices without a minimum and unmarked (best-effort) traffic, so none of them starves
  (each at least 1). Off: one FIFO.
- **N3 marking** (every UE's radio link): the gNB marks each UE's uplink with its slice's DSCP, as it
  maps QoS flows to transport DSCPs on N3 (TS 38.415 / TS 29.281), so the backhaul's queues see it.
  Off: packets are left as the UE sent them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from topologies.links.queues import QueueClass, QueueConfig
from topologies.nr.config import SliceRan

BEST_EFFORT = "best_effort"  # the queue class of traffic no slice marks
# A slice-unaware cell: one pool, equal priority, TS 38.214 5.2.2.1's default target BLER 0.1 (CQI
# table 1), dynamic grants: SliceRan's defaults.
UNSLICED_RAN = SliceRan()


class SliceLike(Protocol):
    """The part of a scenario slice (topologies.scenario.Slice) the policy reads."""

    name: str
    dscp: int
    ran: SliceRan


@dataclass(frozen=True)
class EnforcementPlan:
    """What every enforcement point is told, in one state (on or off)."""

    enforce: bool
    ran: tuple[tuple[str, SliceRan], ...]   # every NR cell: (slice, its share), in scenario order
    queues: QueueConfig | None              # every shaped link direction; None: one FIFO
    n3_dscp: Mapping[str, int | None]       # slice -> DSCP its UEs' uplink gets on N3 (None: unmarked)

    def summary(self) -> dict[str, Any]:
        """JSON-able description (metadata.json)."""
        return {
            "enforce": self.enforce,
            "ran": {name: {"dedicated_pct": r.dedicated_pct, "min_pct": r.min_pct, "max_pct": r.max_pct,
                           "priority": r.priority, "bler_pct": r.bler_pct, "uplink_grant": r.uplink_grant}
                    for name, r in self.ran},
            "queues": None if self.queues is None else [
                {"name": c.name, "dscps": list(c.dscps), "strict": c.strict, "weight": c.weight}
                for c in self.queues.classes],
            "n3_dscp": dict(self.n3_dscp),
        }


def ran_shares(slices: Sequence[SliceLike], enforce: bool) -> tuple[tuple[str, SliceRan], ...]:
    """Each slice's RAN policy: the scenario's ``ran`` with enforcement on, one pool without."""
    return tuple((s.name, s.ran if enforce else UNSLICED_RAN) for s in slices)


def slice_queues(slices: Sequence[SliceLike]) -> QueueConfig:
    """The DSCP queue classes of a shaped link (see the module docstring): strict classes first, by
    RAN priority then scenario order; then weighted classes; best effort last (the default)."""
    if not slices:
        raise ValueError("slices: at least one slice is needed to build queues")
    priorities = [s.ran.priority for s in slices]
    top, bottom = max(priorities), min(priorities)
    strict = [s for s in slices if s.ran.priority == top and top > bottom]
    weighted = [s for s in slices if s not in strict]
    minimum = {s.name: round(s.ran.min_pct) for s in weighted}
    sharing = sum(1 for m in minimum.values() if m <= 0) + 1  # + best effort
    rest = max(1, (100 - sum(m for m in minimum.values() if m > 0)) // sharing)
    classes = [QueueClass(s.name, (s.dscp,), True, 0) for s in strict]
    classes += [QueueClass(s.name, (s.dscp,), False, minimum[s.name] if minimum[s.name] > 0 else rest)
                for s in weighted]
    marked = {s.dscp for s in slices}
    classes.append(QueueClass(BEST_EFFORT, tuple(d for d in range(64) if d not in marked), False, rest))
    return QueueConfig(tuple(classes), default_class=len(classes) - 1)


def enforcement_plan(slices: Sequence[SliceLike], enforce: bool) -> EnforcementPlan:
    """The plan for every enforcement point with enforcement on or off."""
    return EnforcementPlan(
        enforce=enforce,
        ran=ran_shares(slices, enforce),
        queues=slice_queues(slices) if enforce else None,
        n3_dscp={s.name: (s.dscp if enforce else None) for s in slices},
    )


class EnforcedNetwork(Protocol):
    """The part of the link engine (topologies.links.engine.LinkEngine) a plan is applied to."""

    def nr_plan(self, cell: str) -> Any: ...
    def set_slice_shares(self, cell: str, plan: Any) -> None: ...
    def shaped_directions(self) -> list[tuple[str, str]]: ...
    def set_queues(self, link_name: str, direction: str, config: QueueConfig | None) -> None: ...
    def set_n3_dscp(self, radio_link: str, dscp: int | None) -> None: ...


def apply_plan(engine: EnforcedNetwork, plan: EnforcementPlan, cells: Iterable[str],
               ue_slices: Mapping[str, str]) -> dict[str, Any]:
    """Tell every enforcement point ``plan``: the NR ``cells``' shares, every shaped direction's
    queues, each UE's (name -> slice) N3 marking. What was set, per point (metadata)."""
    done: dict[str, Any] = {"cells": [], "queues": [], "n3_marked_ues": 0}
    for cell in cells:
        current = engine.nr_plan(cell)
        if current is not None:
            engine.set_slice_shares(cell, current.with_shares(plan.ran))
            done["cells"].append(cell)
    for link, direction in engine.shaped_directions():
        engine.set_queues(link, direction, plan.queues)
        done["queues"].append(f"{link}/{direction}")
    for ue, slice_name in ue_slices.items():
        engine.set_n3_dscp(f"radio_{ue}", plan.n3_dscp.get(slice_name))
        done["n3_marked_ues"] += plan.n3_dscp.get(slice_name) is not None
    return done

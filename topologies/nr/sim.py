"""Run the relay's NR cell model (relay/nrcell.c) on a list of arrivals, with no sockets and no
clock (relay/nrsim.c): for tests against hand-computed cases and for the model-only delays the cell
benchmark compares the emulator with."""

from __future__ import annotations

import functools
import json
import random
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from topologies.links.relayproc import build_tool
from topologies.nr.config import NrPlan

LOST_HARQ = -1     # every HARQ transmission failed
LOST_BUFFER = -2   # the UE's buffer was full


@dataclass(frozen=True)
class Delivery:
    """One packet the model is done with; ``dep_ns`` < 0: lost (LOST_HARQ / LOST_BUFFER)."""

    ue: int
    direction: str  # "uplink" | "downlink"
    arr_ns: int
    dep_ns: int

    @property
    def delay_ms(self) -> float:
        return (self.dep_ns - self.arr_ns) / 1e6


class NrSimError(RuntimeError):
    """The model refused its input (the message is nrsim's) or could not be built."""


def simulate(plan: NrPlan | list[str], ues: Mapping[int, int], arrivals: Iterable[tuple[int, int, str, int]],
             seed: int = 1, stats_at_ns: int | None = None,
             interruptions: Iterable[tuple[int, int, int]] = ()) -> list[Delivery]:
    """Deliveries for ``arrivals`` (t_ns, ue id, 'uplink'|'downlink', bytes; in time order) in one cell
    of ``plan`` (or its wire lines) whose UEs are ``ues`` (id -> slice index). ``stats_at_ns``: also
    read the cell's counters once every slot up to then is processed (:func:`simulate_with_stats`)."""
    return simulate_with_stats(plan, ues, arrivals, seed, stats_at_ns, interruptions)[0]


def simulate_with_stats(plan: NrPlan | list[str], ues: Mapping[int, int],
                        arrivals: Iterable[tuple[int, int, str, int]], seed: int = 1,
                        stats_at_ns: int | None = None, interruptions: Iterable[tuple[int, int, int]] = (),
                        ) -> tuple[list[Delivery], dict | None]:
    """:func:`simulate`, and the cell's counters at ``stats_at_ns`` (relay nrstats JSON) or None.
    ``interruptions``: (ue, from_ns, until_ns) handover interruptions."""
    binary = build_tool("nrsim")
    if binary is None:
        raise NrSimError("the NR model needs a C compiler (gcc or cc) to build relay/nrsim.c")
    lines = [f"seed {seed}"]
    lines += [f"nr {w}" for w in (plan.wire_lines() if isinstance(plan, NrPlan) else plan)]
    lines += [f"ue {u} {s}" for u, s in ues.items()]
    lines += [f"off {u} {a} {b}" for u, a, b in interruptions]
    lines += [f"pkt {t} {u} {d[0]} {n}" for t, u, d, n in arrivals]
    if stats_at_ns is not None:
        lines += [f"run {stats_at_ns}", "stats"]
    out = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=600, check=False)
    deliveries, stats = [], None
    for line in out.stdout.splitlines():
        if line.startswith("err"):
            raise NrSimError(line[4:])
        if line.startswith("stats "):
            stats = json.loads(line[6:])
        if line.startswith("pkt "):
            _, ue, d, arr, dep = line.split()
            deliveries.append(Delivery(int(ue), "uplink" if d == "u" else "downlink", int(arr), int(dep)))
    return deliveries, stats


@functools.lru_cache(maxsize=64)
def unloaded_median_ms(plan: NrPlan, slice_index: int, direction: str, size_bytes: int = 100) -> float:
    """The model's median one-way delay of a lone UE of slice ``slice_index`` sending ``size_bytes``
    packets in ``direction`` ('uplink' | 'downlink') 15-25 ms apart (every packet finds an idle UE):
    what a path model uses for an NR cell's air interface, unloaded."""
    rng = random.Random(1)
    t, arrivals = 10_000_000, []
    for _ in range(400):
        t += rng.randrange(15_000_000, 25_000_000)
        arrivals.append((t, 1, direction, size_bytes))
    delays = sorted(d.delay_ms for d in simulate(plan, {1: slice_index}, arrivals) if d.dep_ns >= 0)
    return delays[len(delays) // 2]

"""Link parameters: one direction of a link, bursty loss, and schedule rows.

Delivery semantics (both backends): a packet arriving at time t is dropped if the direction is
down (``up = False``) or lost (``loss_pct``, or the Gilbert-Elliott chain if ``loss_burst`` is set;
decided per packet on arrival). Otherwise it waits in a drop-tail queue (``queue_limit_pkts`` /
``queue_limit_bytes``) for serialisation at ``rate_mbps`` and leaves at
``max(tx_done + delay_ms + jitter_sample, departure of the previous packet)``.

So order is always preserved: jitter never reorders packets. A negative jitter sample that would
overtake the previous packet is absorbed (the packet leaves right behind its predecessor), so when
packets are closer together than the jitter the realised delay distribution is skewed upwards
relative to the configured one (its mean rises, its spread shrinks). Delay decreases likewise
never reorder: packets queue behind the slower ones sent earlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from topologies.config_schema import bounds, check_fields, parse_table
from topologies.validate import ConfigError, Table, check_number

JITTER_DISTRIBUTIONS = ("uniform", "normal", "pareto")
# Default queue when none is configured: the bandwidth-delay product of this direction's rate over
# an RTT estimated as twice its one-way delay, but never below this many full-size frames.
MIN_QUEUE_PKTS = 64
FRAME_BYTES = 1514  # Ethernet frame with a 1500 B MTU, without FCS (what the kernel counts)


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a two-state Markov chain stepped once per packet; all values in percent.

    In state good a packet is lost with ``loss_good_pct``, in state bad with ``loss_bad_pct``; after
    the loss decision the chain moves good->bad with ``p_good_to_bad_pct`` and bad->good with
    ``p_bad_to_good_pct``. Mean loss = (r*loss_good + p*loss_bad) / (p + r).
    """

    p_good_to_bad_pct: float = field(metadata=bounds(min=0, max=100))
    p_bad_to_good_pct: float = field(metadata=bounds(min=0, max=100))
    loss_good_pct: float = field(default=0.0, metadata=bounds(min=0, max=100))
    loss_bad_pct: float = field(default=100.0, metadata=bounds(min=0, max=100))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.p_good_to_bad_pct + self.p_bad_to_good_pct <= 0:
            raise ConfigError("p_bad_to_good_pct", self.p_bad_to_good_pct,
                              "p_good_to_bad_pct + p_bad_to_good_pct > 0 (the chain must be able to move)")

    def mean_loss_pct(self) -> float:
        """Stationary loss rate of the chain, in percent."""
        p, r = self.p_good_to_bad_pct, self.p_bad_to_good_pct
        return (r * self.loss_good_pct + p * self.loss_bad_pct) / (p + r)


@dataclass(frozen=True)
class DirectionParams:
    """One direction of a link; the defaults are transparent (no delay, loss or rate limit).

    jitter_distribution: ``uniform`` on [-jitter, +jitter]; ``normal`` with sigma = jitter;
    ``pareto`` zero-mean Pareto (shape 3) scaled to standard deviation = jitter. See the module
    docstring for what jitter does to order (nothing: it is absorbed, never reorders).
    loss_burst, if set, replaces loss_pct. rate_mbps None = unlimited. Queue limits None = sized to
    the bandwidth-delay product (see ``effective_queue_limit_bytes``). up=False drops everything.
    """

    delay_ms: float = field(default=0.0, metadata=bounds(min=0, max=3_600_000))  # up to an hour
    jitter_ms: float = field(default=0.0, metadata=bounds(min=0, max=3_600_000))
    jitter_distribution: str = field(default="normal", metadata=bounds(choices=JITTER_DISTRIBUTIONS))
    loss_pct: float = field(default=0.0, metadata=bounds(min=0, max=100))
    loss_burst: GilbertElliott | None = None
    rate_mbps: float | None = field(default=None, metadata=bounds(min=0, max=1_000_000, min_exclusive=True))
    queue_limit_pkts: int | None = field(default=None, metadata=bounds(min=1))
    queue_limit_bytes: int | None = field(default=None, metadata=bounds(min=1))
    up: bool = True

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_table(cls, table: Table) -> DirectionParams:
        """Parse a TOML table with keys named like the fields (``loss_burst`` a sub-table)."""
        return parse_table(cls, table)

    def is_transparent(self) -> bool:
        """True when this direction changes nothing (so a plain veth pair will do)."""
        return (self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0
                and self.loss_burst is None and self.rate_mbps is None and self.up
                and self.queue_limit_pkts is None and self.queue_limit_bytes is None)

    def effective_queue_limit_bytes(self) -> int | None:
        """Byte limit of the rate queue: the configured one, or the BDP default (None = unlimited)."""
        if self.queue_limit_bytes is not None:
            return self.queue_limit_bytes
        if self.rate_mbps is None:
            return None
        if self.queue_limit_pkts is not None:
            return None
        bdp = self.rate_mbps * 1e6 / 8 * (2 * self.delay_ms / 1000)
        return max(math.ceil(bdp), MIN_QUEUE_PKTS * FRAME_BYTES)

    def with_row(self, row: ScheduleRow) -> DirectionParams:
        """These parameters with a schedule row's delay, jitter, loss, rate and up applied."""
        from dataclasses import replace
        return replace(self, delay_ms=row.delay_ms, jitter_ms=row.jitter_ms, loss_pct=row.loss_pct,
                       rate_mbps=row.rate_mbps, up=row.up)


@dataclass(frozen=True)
class ScheduleRow:
    """One row of a per-direction schedule, taking effect ``t_s`` after the schedule's start.

    A row replaces delay, jitter, loss, rate and up; the other fields (jitter distribution, queue
    limits, loss_burst) keep the link's current values. The last row stays in effect.
    """

    t_s: float
    delay_ms: float
    jitter_ms: float
    loss_pct: float
    rate_mbps: float | None
    up: bool

    def __post_init__(self) -> None:
        check_number("t_s", self.t_s, min=0)
        check_number("delay_ms", self.delay_ms, min=0, max=3_600_000)
        check_number("jitter_ms", self.jitter_ms, min=0, max=3_600_000)
        check_number("loss_pct", self.loss_pct, min=0, max=100)
        if self.rate_mbps is not None:
            check_number("rate_mbps", self.rate_mbps, min=0, max=1_000_000, min_exclusive=True)
        if not isinstance(self.up, bool):
            raise ConfigError("up", self.up, "true or false")


def check_schedule(rows: list[ScheduleRow] | tuple[ScheduleRow, ...]) -> None:
    """Rows must be ScheduleRow objects in non-decreasing ``t_s`` order; at least one."""
    if not rows:
        raise ConfigError("schedule", rows, "at least one row")
    for i, row in enumerate(rows):
        if not isinstance(row, ScheduleRow):
            raise ConfigError(f"schedule[{i}]", row, "a ScheduleRow")
        if i and row.t_s < rows[i - 1].t_s:
            raise ConfigError(f"schedule[{i}].t_s", row.t_s,
                              f"a time >= the previous row's t_s ({rows[i - 1].t_s})")

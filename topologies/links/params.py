"""Link parameters: one direction of a link, bursty loss, and schedule rows.

Delivery semantics (both backends): a packet arriving at time t is dropped if the direction is
down (``up = False``) or lost (``loss_pct``, or the Gilbert-Elliott chain if ``loss_burst`` is set;
decided per packet on arrival). Otherwise, with ``rate_mbps`` set, it joins the *bottleneck queue*:
the packets accepted and not yet fully serialised at ``rate_mbps`` (the one being serialised
included). The queue is drop-tail: a packet that would make it longer than ``queue_limit_pkts``
packets or ``queue_limit_bytes`` bytes is dropped. A queue limit needs a rate (without one nothing
waits, so a limit there is a ConfigError). The packet leaves at
``max(tx_done + delay_ms + jitter_sample, departure of the previous packet)``.

So order is always preserved: jitter never reorders packets. A negative jitter sample that would
overtake the previous packet is absorbed (the packet leaves right behind its predecessor), so when
packets are closer together than the jitter the realised delay distribution is skewed upwards
relative to the configured one (its mean rises, its spread shrinks). Delay decreases likewise
never reorder: packets queue behind the slower ones sent earlier.

Encodings shared by both backends (so that they mean the same numbers): rates are whole bytes per
second (:func:`rate_bytes_per_s`, what tc's netem rate carries), probabilities are steps of
1/(2^32 - 1) (:func:`prob_steps`, what netem carries), times are whole nanoseconds. Every bound
below states why it is there; what only one backend cannot do is checked by the backend
(:meth:`topologies.links.backend.LinkBackend.check`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from topologies.config_schema import bounds, check_fields, parse_table
from topologies.validate import ConfigError, Table, check_number

JITTER_DISTRIBUTIONS = ("uniform", "normal", "pareto")
# Default queue when none is configured (with a rate): the bandwidth-delay product of this
# direction's rate over an RTT estimated as twice its one-way delay, in full-size frames, but
# never below this many frames.
MIN_QUEUE_PKTS = 64
FRAME_BYTES = 1514  # Ethernet frame with a 1500 B MTU, without FCS (what the kernel counts)

# Bounds, each with its reason (shown in the error).
DELAY_MAX_MS = 3_600_000
DELAY_WHY = "at most an hour: every packet is held that long in memory"
# netem caps its jitter at INT_MAX ns (sch_netem.c netem_change: tabledist() takes 32 bits)
JITTER_MAX_MS = 2_147
JITTER_WHY = "netem's jitter is a 32-bit count of ns (2.147 s); both backends share the bound"
# Rates are whole bytes/s on both backends (tc's netem rate is bytes/s, 64 bits); below 1 kbit/s a
# full-size frame takes over 12 s to serialise and the byte/s rounding is above 0.4 %.
RATE_MIN_MBPS = 0.001
# netem is always given a rate (it keeps order only with one) and "unlimited" is this rate.
RATE_MAX_MBPS = 100_000
RATE_WHY = ("1 kbit/s to 100 Gbit/s: rates are whole bytes/s (tc); the top is what netem uses "
            "for 'unlimited' (leave rate_mbps unset for no limit)")
# netem's limit is a 32-bit packet count that must also hold the packets in its delay line.
QUEUE_MAX_PKTS = 1_000_000
QUEUE_PKTS_WHY = "netem's 32-bit limit must also hold the packets in its delay line"
# The relay holds at most 512 MiB of packets in all (relay.c MAX_MEM_BYTES).
QUEUE_MAX_BYTES = 512 << 20
QUEUE_BYTES_WHY = "the relay holds at most 512 MiB of packets (relay.c MAX_MEM_BYTES)"
# Probabilities are steps of 1/(2^32 - 1) on both backends, as netem encodes them (iproute2
# set_percent: rint(p * UINT32_MAX)); a non-zero percentage must be at least one step.
PROB_STEPS = 0xFFFF_FFFF
PROB_MIN_PCT = 100 / PROB_STEPS
PROB_WHY = (f"0, or {PROB_MIN_PCT:.3g} to 100: probabilities are steps of 1/2^32 "
            "(netem's encoding, used by both backends)")


def prob_steps(pct: float) -> int:
    """A percentage as the integer steps of 1/(2^32 - 1) both backends use (netem's encoding)."""
    return round(pct / 100 * PROB_STEPS)


def prob_fraction(pct: float) -> float:
    """The probability (0..1) both backends apply for ``pct``: rounded to netem's steps."""
    return prob_steps(pct) / PROB_STEPS


def rate_bytes_per_s(rate_mbps: float) -> int:
    """A rate as the whole bytes per second both backends use (tc's netem rate unit)."""
    return round(rate_mbps * 1e6 / 8)


def check_prob(path: str, pct: float) -> None:
    """A percentage that is a probability: 0, or at least one step (see ``PROB_WHY``)."""
    check_number(path, pct, min=0, max=100, why=PROB_WHY)
    if 0 < pct < PROB_MIN_PCT:
        raise ConfigError(path, pct, PROB_WHY)


def _prob(default: float) -> Any:
    return field(default=default, metadata=bounds(min=0, max=100, why=PROB_WHY))


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a two-state Markov chain stepped once per packet; all values in percent.

    In state good a packet is lost with ``loss_good_pct``, in state bad with ``loss_bad_pct``; after
    the loss decision the chain moves good->bad with ``p_good_to_bad_pct`` and bad->good with
    ``p_bad_to_good_pct``. Mean loss = (r*loss_good + p*loss_bad) / (p + r). netem's ``loss
    gemodel`` steps the same chain in the same order (sch_netem.c loss_gilb_ell).
    """

    p_good_to_bad_pct: float = field(metadata=bounds(min=0, max=100, why=PROB_WHY))
    p_bad_to_good_pct: float = field(metadata=bounds(min=0, max=100, why=PROB_WHY))
    loss_good_pct: float = _prob(0.0)
    loss_bad_pct: float = _prob(100.0)

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("p_good_to_bad_pct", "p_bad_to_good_pct", "loss_good_pct", "loss_bad_pct"):
            check_prob(name, getattr(self, name))
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
    loss_burst, if set, replaces loss_pct. rate_mbps None = unlimited. Queue limits (the
    bottleneck queue in front of the rate; only with a rate) None = the BDP default in packets
    (see ``effective_queue_limit_pkts``). up=False drops everything.
    """

    delay_ms: float = field(default=0.0, metadata=bounds(min=0, max=DELAY_MAX_MS, why=DELAY_WHY))
    jitter_ms: float = field(default=0.0, metadata=bounds(min=0, max=JITTER_MAX_MS, why=JITTER_WHY))
    jitter_distribution: str = field(default="normal", metadata=bounds(choices=JITTER_DISTRIBUTIONS))
    loss_pct: float = _prob(0.0)
    loss_burst: GilbertElliott | None = None
    rate_mbps: float | None = field(default=None, metadata=bounds(min=RATE_MIN_MBPS, max=RATE_MAX_MBPS,
                                                                  why=RATE_WHY))
    queue_limit_pkts: int | None = field(default=None, metadata=bounds(min=1, max=QUEUE_MAX_PKTS,
                                                                       why=QUEUE_PKTS_WHY))
    queue_limit_bytes: int | None = field(default=None, metadata=bounds(min=1, max=QUEUE_MAX_BYTES,
                                                                        why=QUEUE_BYTES_WHY))
    up: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_prob("loss_pct", self.loss_pct)
        if self.rate_mbps is None:
            for name in ("queue_limit_pkts", "queue_limit_bytes"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, getattr(self, name), "unset unless rate_mbps is set: the queue "
                                      "limit bounds the queue in front of the rate (packets waiting to be "
                                      "serialised); without a rate nothing waits")

    @classmethod
    def from_table(cls, table: Table) -> DirectionParams:
        """Parse a TOML table with keys named like the fields (``loss_burst`` a sub-table)."""
        return parse_table(cls, table)

    def is_transparent(self) -> bool:
        """True when this direction changes nothing (so a plain veth pair will do)."""
        return (self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0
                and self.loss_burst is None and self.rate_mbps is None and self.up
                and self.queue_limit_pkts is None and self.queue_limit_bytes is None)

    def effective_queue_limit_pkts(self) -> int | None:
        """Packet limit of the bottleneck queue: the configured one; with a rate and no limit at all
        configured, the BDP default (rate x 2 x delay in full-size frames, at least
        ``MIN_QUEUE_PKTS``); None = no packet limit (no rate, or only a byte limit)."""
        if self.queue_limit_pkts is not None or self.rate_mbps is None or self.queue_limit_bytes is not None:
            return self.queue_limit_pkts
        bdp_bytes = self.rate_mbps * 1e6 / 8 * (2 * self.delay_ms / 1000)
        return max(math.ceil(bdp_bytes / FRAME_BYTES), MIN_QUEUE_PKTS)

    def effective_queue_limit_bytes(self) -> int | None:
        """Byte limit of the bottleneck queue: the configured one (None = no byte limit)."""
        return self.queue_limit_bytes

    def with_row(self, row: ScheduleRow) -> DirectionParams:
        """These parameters with a schedule row's delay, jitter, loss, rate and up applied."""
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
        check_number("delay_ms", self.delay_ms, min=0, max=DELAY_MAX_MS, why=DELAY_WHY)
        check_number("jitter_ms", self.jitter_ms, min=0, max=JITTER_MAX_MS, why=JITTER_WHY)
        check_prob("loss_pct", self.loss_pct)
        if self.rate_mbps is not None:
            check_number("rate_mbps", self.rate_mbps, min=RATE_MIN_MBPS, max=RATE_MAX_MBPS, why=RATE_WHY)
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

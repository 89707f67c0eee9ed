"""An NR cell's configuration (scenario ``[[cells]] nr``), each slice's RAN share (``[[slices]] ran``)
and the plan the relay's cell model runs (relay/nrcell.c: what is modelled, per slot).

Units are in every name. Sources: numerology and slots TS 38.211 section 4; TDD patterns and the S
slot TS 38.213 section 11.1; PRBs per bandwidth TS 38.101-1 Table 5.3.2-1; capacity TS 38.306
section 4.1.2; N1/N2 TS 38.214 Tables 5.3-1 and 6.4-1; SR and configured-grant periodicities TS 38.331;
slice shares TS 28.541 RRMPolicyRatio; target BLER 0.1 TS 38.214 section 5.2.2.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from topologies.config_schema import bounds, parse_table
from topologies.nr.profiles import PROFILES
from topologies.validate import ConfigError, Table

RADIO_MODELS = ("nr", "fixed")
SCHEDULERS = ("round_robin", "proportional_fair")
GRANTS = ("dynamic", "configured")

# TS 38.101-1 Table 5.3.2-1 (FR1) and TS 38.101-2 Table 5.3.2-1 (FR2, 120 kHz): PRBs per bandwidth.
PRBS_BY_SCS_KHZ: dict[int, dict[float, int]] = {
    15: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 40: 216, 50: 270},
    30: {5: 11, 10: 24, 15: 38, 20: 51, 25: 65, 30: 78, 40: 106, 50: 133, 60: 162, 70: 189, 80: 217,
         90: 245, 100: 273},
    60: {10: 11, 15: 18, 20: 24, 25: 31, 30: 38, 40: 51, 50: 65, 60: 79, 70: 93, 80: 107, 90: 121,
         100: 135},
    120: {50: 32, 100: 66, 200: 132, 400: 264},
}
# TS 38.214 Table 5.3-1 (N1, PDSCH decoding, capability 1, no additional DMRS) and Table 6.4-1
# (N2, PUSCH preparation, capability 1), in symbols, by numerology.
N1_SYMBOLS = (8, 10, 17, 20)
N2_SYMBOLS = (10, 12, 23, 36)
# TS 38.331 SchedulingRequestResourceConfig periodicities of a slot or longer, in slots.
SR_PERIODS_SLOTS = (1, 2, 4, 5, 8, 10, 16, 20, 40, 80, 160, 320, 640)
# TS 38.306 section 4.1.2: Rmax = 948/1024; overhead 0.14 DL / 0.08 UL in FR1 (0.18 / 0.10 in FR2).
OVERHEAD = {"downlink": 0.14, "uplink": 0.08}


@dataclass(frozen=True)
class NrCell:
    """One cell's NR parameters (``[[cells]] nr``); a profile (profiles.py) gives the defaults."""

    profile: str = field(default="commercial", metadata=bounds(choices=tuple(PROFILES)))
    numerology: int = field(default=1, metadata=bounds(min=0, max=3, why="TS 38.211: 15-120 kHz SCS"))
    tdd_pattern: str = "DDDSU"          # checked in __post_init__: D, S, U letters, 1-80 slots
    special_slot_symbols: tuple[int, ...] = (10, 2, 2)  # S slot: downlink, guard, uplink symbols
    bandwidth_mhz: float = field(default=100.0, metadata=bounds(min=5, max=400))
    prbs: int | None = field(default=None, metadata=bounds(min=1, max=275, why="TS 38.101: 275 at most"))
    layers_dl: int = field(default=4, metadata=bounds(min=1, max=8))
    layers_ul: int = field(default=1, metadata=bounds(min=1, max=4))
    # Average spectral efficiency per resource element (Qm x code rate) instead of the peak's
    # Qm x 948/1024: TS 38.214 Table 5.2.2.1-2 CQI 12 (64QAM, 666/1024) downlink and CQI 10
    # (64QAM, 466/1024) uplink, as NR-REFERENCES.md suggests for an average rather than a peak.
    spectral_efficiency_dl_bits: float = field(default=3.9023, metadata=bounds(min=0.1, max=7.4063))
    spectral_efficiency_ul_bits: float = field(default=2.7305, metadata=bounds(min=0.1, max=7.4063))
    sr_period_slots: int = field(default=10, metadata=bounds(min=1, max=640))
    sr_offset_slots: int = field(default=4, metadata=bounds(min=0, max=639))
    k1_slots: int = field(default=1, metadata=bounds(min=0, max=32))
    k2_slots: int = field(default=1, metadata=bounds(min=0, max=32))
    gnb_processing_ms: float = field(default=0.5, metadata=bounds(min=0, max=100))
    ue_decode_ms: float | None = field(default=None, metadata=bounds(min=0, max=100))  # None: N1's duration
    gnb_decode_ms: float = field(default=0.357, metadata=bounds(min=0, max=100))
    dl_implementation_ms: float = field(default=0.0, metadata=bounds(min=0, max=1000))
    ul_implementation_ms: float = field(default=0.0, metadata=bounds(min=0, max=1000))
    first_grant_bytes: int = field(default=512, metadata=bounds(min=16, max=1_000_000))
    harq_max_transmissions: int = field(default=4,
                                        metadata=bounds(min=1, max=16, why="TS 38.321: 4 by default"))
    scheduler: str = field(default="round_robin", metadata=bounds(choices=SCHEDULERS))
    configured_grant: bool = False      # offered to slices whose ran.uplink_grant is "configured"
    # n78 (3.3-3.8 GHz); German campus networks use 3.7-3.8 GHz (Rischke et al. 2021). Used by the
    # floor plan's path loss (topologies/mobility.py), not by the slot model.
    carrier_ghz: float = field(default=3.75, metadata=bounds(min=0.5, max=100, why="TR 38.901: 0.5-100 GHz"))
    # Per UE and direction (RLC/PDCP buffer): an assumption, about 1 s of a 8 Mbit/s camera.
    ue_buffer_bytes: int = field(default=1_000_000, metadata=bounds(min=10_000, max=1_000_000_000))

    def __post_init__(self) -> None:
        p = self.tdd_pattern
        if not (1 <= len(p) <= 80 and set(p) <= set("DSU")):
            raise ConfigError("tdd_pattern", p, "1-80 letters D, S, U (TS 38.213 section 11.1)")
        s = self.special_slot_symbols
        if len(s) != 3 or sum(s) != 14 or min(s) < 0:
            raise ConfigError("special_slot_symbols", list(s),
                              "[downlink, guard, uplink] symbols summing to 14")
        if not ("D" in p or ("S" in p and s[0])) or not ("U" in p or ("S" in p and s[2])):
            raise ConfigError("tdd_pattern", p, "a pattern with downlink and uplink symbols")
        if self.sr_period_slots not in SR_PERIODS_SLOTS:
            raise ConfigError("sr_period_slots", self.sr_period_slots,
                              f"one of {', '.join(map(str, SR_PERIODS_SLOTS))} (TS 38.331)")
        if not any(self.has_uplink(k) for k in range(self.sr_offset_slots, self.sr_offset_slots
                                                      + self.sr_period_slots * len(p), self.sr_period_slots)):
            raise ConfigError("sr_offset_slots", self.sr_offset_slots,
                              f"an offset below {self.sr_period_slots} whose occasions fall on slots"
                              " with uplink symbols")
        if self.sr_offset_slots >= self.sr_period_slots:
            raise ConfigError("sr_offset_slots", self.sr_offset_slots, f"0..{self.sr_period_slots - 1}")
        if self.k1_slots * 14 < N1_SYMBOLS[self.numerology]:
            need = math.ceil(N1_SYMBOLS[self.numerology] / 14)
            raise ConfigError("k1_slots", self.k1_slots,
                              f"at least {need}: N1 is {N1_SYMBOLS[self.numerology]} symbols at numerology "
                              f"{self.numerology} (TS 38.214 Table 5.3-1)")
        if self.k2_slots * 14 < N2_SYMBOLS[self.numerology]:
            need = math.ceil(N2_SYMBOLS[self.numerology] / 14)
            raise ConfigError("k2_slots", self.k2_slots,
                              f"at least {need}: N2 is {N2_SYMBOLS[self.numerology]} symbols at numerology "
                              f"{self.numerology} (TS 38.214 Table 6.4-1)")
        if self.configured_grant and "U" not in p:
            raise ConfigError("configured_grant", True,
                              "false, or a tdd_pattern with a U slot (configured-grant occasions are on "
                              "U slots)")
        if self.prbs is None and self.bandwidth_mhz not in PRBS_BY_SCS_KHZ[self.scs_khz]:
            raise ConfigError("bandwidth_mhz", self.bandwidth_mhz,
                              f"at {self.scs_khz} kHz one of "
                              f"{', '.join(f'{b:g}' for b in PRBS_BY_SCS_KHZ[self.scs_khz])}"
                              " (TS 38.101), or give prbs")

    # --- derived -----------------------------------------------------------------------------
    @property
    def scs_khz(self) -> int:
        return 15 << self.numerology

    @property
    def slot_ms(self) -> float:
        return 1.0 / (1 << self.numerology)

    @property
    def prb_count(self) -> int:
        return self.prbs if self.prbs is not None else PRBS_BY_SCS_KHZ[self.scs_khz][self.bandwidth_mhz]

    @property
    def ue_decode_ms_value(self) -> float:
        """The UE's decode time: ``ue_decode_ms`` or N1's duration (TS 38.214 Table 5.3-1)."""
        if self.ue_decode_ms is not None:
            return self.ue_decode_ms
        return N1_SYMBOLS[self.numerology] * self.slot_ms / 14

    def has_uplink(self, slot: int) -> bool:
        c = self.tdd_pattern[slot % len(self.tdd_pattern)]
        return c == "U" or (c == "S" and self.special_slot_symbols[2] > 0)

    def symbol_share(self, direction: str) -> float:
        """Share of the grid's symbols in ``direction`` ('uplink' | 'downlink')."""
        i, full = (0, "D") if direction == "downlink" else (2, "U")
        n = sum(14 if c == full else self.special_slot_symbols[i] if c == "S" else 0
                for c in self.tdd_pattern)
        return n / (14 * len(self.tdd_pattern))

    def bits_per_prb_symbol(self, direction: str) -> float:
        """TS 38.306 section 4.1.2 per PRB and symbol: layers x Qm x R x 12 x (1 - OH), with the
        average spectral efficiency for Qm x R."""
        if direction == "downlink":
            return self.layers_dl * self.spectral_efficiency_dl_bits * 12 * (1 - OVERHEAD["downlink"])
        return self.layers_ul * self.spectral_efficiency_ul_bits * 12 * (1 - OVERHEAD["uplink"])

    def capacity_mbps(self, direction: str) -> float:
        """The cell's average capacity in ``direction`` (TS 38.306 formula, average efficiency)."""
        symbols_per_s = 14 * 1000 * (1 << self.numerology) * self.symbol_share(direction)
        return self.bits_per_prb_symbol(direction) * self.prb_count * symbols_per_s / 1e6


@dataclass(frozen=True)
class SliceRan:
    """A slice's share of every NR cell (``[[slices]] ran``), as TS 28.541 RRMPolicyRatio."""

    dedicated_pct: float = field(default=0.0, metadata=bounds(min=0, max=100))
    min_pct: float = field(default=0.0, metadata=bounds(min=lambda r: r.dedicated_pct, max=100))
    max_pct: float = field(default=100.0, metadata=bounds(min=lambda r: r.min_pct, max=100))
    priority: int = field(default=1,
                          metadata=bounds(min=0, max=255, why="srsRAN's slice priority; higher first"))
    bler_pct: float = field(default=10.0, metadata=bounds(min=0, max=99))  # TS 38.214 5.2.2.1: target 0.1
    uplink_grant: str = field(default="dynamic", metadata=bounds(choices=GRANTS))
    # every n-th full uplink (U) slot: PUSCH occasions on U slots (the S slot's few uplink symbols
    # are left to control channels, as usual)
    cg_period_ul_slots: int = field(default=1, metadata=bounds(min=1, max=1000))
    cg_bytes: int = field(default=256, metadata=bounds(min=16, max=1_000_000))
    cg_repetitions: int = field(default=1, metadata=bounds(min=1, max=8))

    def __post_init__(self) -> None:
        if self.cg_repetitions not in (1, 2, 4, 8):
            raise ConfigError("cg_repetitions", self.cg_repetitions, "1, 2, 4 or 8 (TS 38.331 repK)")


DEFAULT_SLICE_RAN = SliceRan()


def parse_nr_cell(t: Table) -> NrCell:
    """``[[cells]] nr``: its ``profile``'s values, overridden by the keys the table gives."""
    profile = t.raw.get("profile", "commercial")
    if profile not in PROFILES:
        raise ConfigError(t.key("profile"), profile, ", ".join(PROFILES))
    merged = {**PROFILES[profile], **t.raw}
    return parse_table(NrCell, Table(merged, t.path))


def parse_slice_ran(t: Table) -> SliceRan:
    return parse_table(SliceRan, t)


def check_shares(slices: list[tuple[str, SliceRan]], path: str = "slices") -> None:
    """TS 28.541: the minimum shares of all slices sum to 100 % at most."""
    total = sum(ran.min_pct for _, ran in slices)
    if total > 100:
        raise ConfigError(f"{path}[*].ran.min_pct", total,
                          "minimum shares summing to 100 at most (TS 28.541)")


@dataclass(frozen=True)
class NrPlan:
    """What the relay's cell model is told: the cell, and the slices in index order."""

    cell: NrCell
    slices: tuple[tuple[str, SliceRan], ...]

    def slice_index(self, name: str) -> int:
        for i, (n, _) in enumerate(self.slices):
            if n == name:
                return i
        raise ValueError(f"slice {name!r}: allowed {', '.join(n for n, _ in self.slices)}")

    def wire_lines(self) -> list[str]:
        """The ``nr CELL ...`` requests after CELL (relay/nrcell.c nr_config), ``on`` last."""
        c = self.cell
        s_dl, s_gap, s_ul = c.special_slot_symbols
        ns = lambda ms: str(round(ms * 1e6))  # noqa: E731
        lines = [
            f"grid {c.numerology} {c.tdd_pattern} {s_dl} {s_gap} {s_ul} {c.prb_count} "
            f"{c.bits_per_prb_symbol('uplink'):.6f} {c.bits_per_prb_symbol('downlink'):.6f}",
            f"timing {c.sr_period_slots} {c.sr_offset_slots} {c.k1_slots} {c.k2_slots} "
            f"{ns(c.gnb_processing_ms)} {ns(c.ue_decode_ms_value)} {ns(c.gnb_decode_ms)} "
            f"{ns(c.ul_implementation_ms)} {ns(c.dl_implementation_ms)} {c.first_grant_bytes} "
            f"{c.harq_max_transmissions} {1 if c.scheduler == 'proportional_fair' else 0} "
            f"{c.ue_buffer_bytes}",
        ]
        return [*lines, *self.slice_lines(), "on"]

    def slice_lines(self) -> list[str]:
        """The ``slice IDX ...`` requests, one per slice: before ``on`` they configure the cell, after
        it they change a running cell's shares (relay/nrcell.c)."""
        c, n = self.cell, self.cell.prb_count
        lines = []
        for i, (_, r) in enumerate(self.slices):
            cg = r.uplink_grant == "configured" and c.configured_grant
            lines.append(
                f"slice {i} {math.floor(r.dedicated_pct * n / 100)} {math.floor(r.min_pct * n / 100)} "
                f"{math.floor(r.max_pct * n / 100)} {r.priority} "
                f"{r.bler_pct / 100:.6g} {r.bler_pct / 100:.6g} "
                f"{r.cg_period_ul_slots if cg else 0} {r.cg_bytes} {r.cg_repetitions}")
        return lines

    def with_shares(self, slices: tuple[tuple[str, SliceRan], ...]) -> NrPlan:
        """This cell with other shares for the same slices, in the same order (a RAN policy change)."""
        names, own = [n for n, _ in slices], [n for n, _ in self.slices]
        if names != own:
            raise ValueError(f"slices {names}: allowed exactly {own}, in that order")
        check_shares(list(slices))
        return NrPlan(self.cell, slices)

    def metadata(self) -> dict[str, Any]:
        """The cell as run (metadata.json): parameters, PRBs, capacity per direction, slice PRBs."""
        c = self.cell
        n = c.prb_count
        return {
            "profile": c.profile, "numerology": c.numerology, "slot_ms": c.slot_ms,
            "tdd_pattern": c.tdd_pattern,
            "special_slot_symbols": list(c.special_slot_symbols), "prbs": n,
            "capacity_mbps": {d: round(c.capacity_mbps(d), 3) for d in ("uplink", "downlink")},
            "parameters": {k: getattr(c, k) for k in c.__dataclass_fields__},
            "slices": {name: {"dedicated_prbs": math.floor(r.dedicated_pct * n / 100),
                              "min_prbs": math.floor(r.min_pct * n / 100),
                              "max_prbs": math.floor(r.max_pct * n / 100), "priority": r.priority,
                              "bler_pct": r.bler_pct,
                              "uplink_grant": r.uplink_grant if c.configured_grant else "dynamic"}
                       for name, r in self.slices},
        }

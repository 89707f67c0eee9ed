"""A scenario's backup backhaul (``[backup]``) and scripted LEO outages (``[[leo.outages]]``).

``[backup]`` declares a second way from the site to the cloud beside the LEO link: a switch on
site (``switch``, joined to the UPF) and an emulated link from it to the ground station's side
(``link``, per direction like any link). It carries nothing until the controller steers a slice
over it: slices with ``leo_protection = "steer"`` are moved to it around each LEO reconfiguration
instant (the schedule is known in advance) and when the LEO path stops answering (a fault), and
back afterwards (``controllers/adaptation.py`` decides, README "LEO-aware failover"). Its other
keys say how: the guard times around each boundary window, the detection of a fault (no
heartbeat echo for ``detect_ms``, or more than ``fade_loss_pct`` of the heartbeats lost over
``fade_window_ms``: the path breaks a loss SLA), and how long the LEO path must answer again,
within that loss, before the slices go back.

``[[leo.outages]]`` (only with ``[leo.orbit]``) script faults of the terminal's satellite link for
``duration_s`` from ``start_s`` after the schedule's start: with ``loss_pct`` 100 (the default)
the link is down (an obstruction, a dish fault); below 100 it stays up and loses that share of
packets at random, both ways (a *fade*: heavy rain on the Ku/Ka-band link lowers its signal, the
modem drops to a more robust coding or loses frames). Applied to every orbit-driven link
(:func:`with_outages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from topologies.validate import ConfigError, Table

LEO_PROTECTION = ("none", "steer")   # a slice's [[slices]] leo_protection
BACKUP_KINDS = ("terrestrial", "geo")  # what the backup is (a label; its link says how it behaves)
MAX_OUTAGE_S = 3600.0                  # one hour, the longest run
HEARTBEAT_WINDOW_MS = (50.0, 60_000.0)  # fade_window_ms: allowed range


@dataclass(frozen=True)
class Backup:
    """``[backup]``: the backup switch, its link to the ground station's side and the steering timing."""

    switch: str
    kind: str
    link: Any                   # topologies.scenario.LinkPair (uplink = towards the cloud)
    guard_before_ms: float      # steer this long before a reconfiguration's boundary window opens
    guard_after_ms: float       # ... and back this long after it closes
    detect_ms: float            # no echo for this long: the LEO path is declared down
    failback_hold_s: float      # echoes for this long without a gap: the slices go back to LEO
    fade_loss_pct: float = 10.0   # more heartbeats lost than this over fade_window_ms: down too
    fade_window_ms: float = 1000.0  # the window that loss share is taken over


@dataclass(frozen=True)
class Outage:
    """From ``start_s`` (after the schedule's start) for ``duration_s`` the LEO link is down
    (``loss_pct`` 100) or fades: it loses ``loss_pct`` of the packets at random."""

    start_s: float
    duration_s: float
    loss_pct: float = 100.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def kind(self) -> str:
        return "outage" if self.loss_pct >= 100.0 else "fade"


def parse_backup(t: Table, link: Any) -> Backup:
    """``[backup]`` (``link``: its already parsed ``link`` pair)."""
    return Backup(
        switch=t.name("switch", "bk1"),
        kind=t.str("kind", "terrestrial", choices=BACKUP_KINDS),
        link=link,
        # defaults: a margin of 50 ms on either side of the 75 ms / 140 ms boundary window covers
        # the time the controller takes to change a path (measured: README "LEO-aware failover")
        guard_before_ms=t.number("guard_before_ms", 50.0, min=0, max=5000),
        guard_after_ms=t.number("guard_after_ms", 50.0, min=0, max=5000),
        # BFD-like detection (RFC 5880: detect time = interval x multiplier) on the experiment's
        # heartbeat probes; 100 ms is longer than the LEO path's own delay jump at a reconfiguration
        # (+60 ms round trip), so a boundary window alone is not declared a fault
        detect_ms=t.number("detect_ms", 100.0, min=1, max=60_000),
        failback_hold_s=t.number("failback_hold_s", 2.0, min=0, max=600),
        # a loss SLA on the heartbeat: above 10 % lost the protected slices (mMTC: 99.9 % target)
        # cannot meet theirs on that path. 1 s holds 100 heartbeats at the experiment's 10 ms; a
        # reconfiguration's own loss (10 % each way in its 215 ms window, topologies/leo/config.py:
        # ~4 echoes) stays well below it
        fade_loss_pct=t.number("fade_loss_pct", 10.0, min=0, max=100, min_exclusive=True),
        fade_window_ms=t.number("fade_window_ms", 1000.0, min=HEARTBEAT_WINDOW_MS[0],
                                max=HEARTBEAT_WINDOW_MS[1]),
    )


def parse_outages(tables: list[Table]) -> tuple[Outage, ...]:
    """``[[leo.outages]]``: in time order, none overlapping another."""
    outages = []
    for t in tables:
        with t:
            outages.append(Outage(t.number("start_s", min=0, max=MAX_OUTAGE_S),
                                  t.number("duration_s", min=0, min_exclusive=True, max=MAX_OUTAGE_S),
                                  t.number("loss_pct", 100.0, min=0, max=100, min_exclusive=True)))
    for i in range(1, len(outages)):
        if outages[i].start_s < outages[i - 1].end_s:
            raise ConfigError(f"leo.outages[{i}].start_s", outages[i].start_s,
                              f"at least {outages[i - 1].end_s:g} (after the previous outage ends; "
                              "outages in time order, not overlapping)")
    return tuple(outages)


def with_outages(frame: pd.DataFrame, outages: tuple[Outage, ...]) -> pd.DataFrame:
    """A link schedule (rows ``t_s``, ``direction``, ``up``, ``loss_pct``, ...) with each outage in it.

    Per direction, a row is added at each outage's start (the row then in effect, changed as below)
    and at its end (the row then in effect, as it was), and every row inside is changed: down for an
    outage, its loss raised to at least the fade's ``loss_pct`` for a fade; nothing else changes. A
    schedule row holds until the next one, so the change holds exactly in [start_s, end_s).
    """
    if not outages:
        return frame
    parts = []
    for _direction, part in frame.groupby("direction", sort=False, observed=True):
        part = part.sort_values("t_s", kind="stable")
        added = []
        for o in outages:
            for t_s in (o.start_s, o.end_s):
                before = part[part["t_s"] <= t_s]
                if before.empty:
                    continue
                row = before.iloc[[-1]].copy()
                row["t_s"] = t_s
                added.append(row)
        part = pd.concat([part, *added], ignore_index=True).sort_values("t_s", kind="stable")
        for o in outages:
            inside = (part["t_s"] >= o.start_s) & (part["t_s"] < o.end_s)
            if o.kind == "outage":
                part.loc[inside, "up"] = False
            else:
                part.loc[inside, "loss_pct"] = part.loc[inside, "loss_pct"].clip(lower=o.loss_pct)
        parts.append(part.drop_duplicates(subset=["t_s"], keep="last"))
    return pd.concat(parts, ignore_index=True).sort_values(["t_s"], kind="stable").reset_index(drop=True)

"""Packets a host stall touched (topologies/hoststall.py): flagged, left out of timing figures by
default, counted apart, and said so in the summary and on the figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from topologies.hoststall import StallRecord

WHY = ("their measured delay holds time this machine did not run the emulator (hypervisor steal, "
       "interrupt work): a host stall, not the network model or the emulator")


def flag(packets: pd.DataFrame, record: StallRecord | None, send: str = "send_ns",
         recv: str = "recv_ns") -> pd.DataFrame:
    """``packets`` with a bool ``host_stall`` column (all False without a sentinel record): a stall
    window overlapped the packet's flight [``send``, ``recv``] (a missing ``recv``: its send)."""
    if record is None or packets.empty:
        return packets.assign(host_stall=np.zeros(len(packets), dtype=bool))
    received = pd.to_numeric(packets[recv], errors="coerce").to_numpy(dtype=np.float64)
    sent = packets[send].to_numpy().astype(np.int64)
    received_ns = np.where(np.isfinite(received), received, sent).astype(np.int64)
    return packets.assign(host_stall=record.flag(sent, received_ns))


def timing_packets(packets: pd.DataFrame, include: bool) -> pd.DataFrame:
    """The packets delay and deadline figures are computed on."""
    if include or "host_stall" not in packets:
        return packets
    return packets[~packets["host_stall"].to_numpy(dtype=bool)]


def block(record: StallRecord | None, packets: pd.DataFrame, include: bool,
          unavailable: str | None = None, rule: str | None = None) -> dict[str, Any]:
    """``summary.json["host_stalls"]``: what the sentinel saw and what was done with it."""
    flagged = int(packets["host_stall"].sum()) if "host_stall" in packets else 0
    return block_counts(record, flagged, len(packets), include, unavailable, rule)


def block_counts(record: StallRecord | None, flagged: int, total: int, include: bool,
                 unavailable: str | None = None, rule: str | None = None) -> dict[str, Any]:
    """:func:`block` from counts: ``flagged`` of ``total`` packets (a table read in chunks)."""
    if record is None:
        return {"detected": False, "reason": unavailable or "no host-stall sentinel ran",
                "packets_flagged": 0, "excluded_from_timing": False}
    out = {"detected": True, **record.summary(flagged=flagged, packets=total),
           "excluded_from_timing": not include and flagged > 0,
           "rule": rule or "flagged when a stall window (widened back by one sentinel period) "
                           "overlaps the packet's flight [sent, received]",
           "why": WHY}
    if not record.complete:
        out["warning"] = ("the sentinel stopped before the run ended: stalls after its last line "
                          "are not detected")
    return out


def line(stalls: dict[str, Any]) -> str:
    """One line for the terminal summary."""
    if not stalls.get("detected"):
        return f"host stalls: not detected ({stalls.get('reason')}); delay figures include any"
    text = (f"host stalls: {stalls['stalls']} (> {stalls['threshold_ms']} ms, {stalls['stall_total_ms']} ms "
            f"in all, {stalls['stalls_per_min']}/min, steal {stalls['steal_ms']} ms); "
            f"{stalls['packets_flagged']} of {stalls.get('unit', 'received packets')} "
            f"({stalls['packets_flagged_pct']} %) touched")
    if stalls["excluded_from_timing"]:
        text += ", left out of the delay and deadline figures (--include-host-stalls keeps them)"
    elif stalls["packets_flagged"]:
        text += ", kept in the delay and deadline figures (--include-host-stalls)"
    if "warning" in stalls:
        text += f"; warning: {stalls['warning']}"
    return text

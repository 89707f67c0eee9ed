"""LEO-aware adaptation: when protected slices leave the LEO link, and the flow rules that move them
(no os-ken: the leo_adaptation app drives it with its clock, the tests with theirs).

* **Proactive**: the LEO link reconfigures on a known grid (every 15 s; the boundary window of each
  instant I is [I - before, I + after), topologies/leo/config.py ``Handover``). ``steer_windows``
  widens each window by the guard times of ``[backup]`` and merges overlaps: inside a window the
  protected slices ride the backup backhaul.
* **Reactive**: :class:`FaultDetector` watches the heartbeat echoes over the LEO path (a probe from
  the site's edge server to the cloud, as BFD does, RFC 5880): no echo for ``detect_ms`` -> the
  path is down; echoes again for ``hold_s`` without such a gap -> up.
* :func:`desired_via`: backup inside a window or while the path is down (when adaptation is on),
  LEO otherwise, with the reason.
* :class:`SteeringLoop`: the above, step by step, on the heartbeat's echo records as they are
  written; the ``leo_adaptation`` controller app runs it (controllers/apps/leo_adaptation.py).
* :func:`steer_rules`: at each switch where the two paths between a protected UE and a remote
  host part (on both trees, between the two: the UPF and the ground station), one rule per
  direction of the pair, in the forwarding table above the MAC rules (``PRIO_STEER``). Switches
  on one path only (the terminal, the backup switch) keep their own tree's forwarding, so packets
  in flight on either path when it changes go on to their destination. Moving back re-adds the
  same rules with the LEO port (an OF1.3 ADD of the same match and priority replaces in place), so
  a path change never removes forwarding.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controllers.policy import COOKIE_APP, ETH_TYPE_IPV4, TABLE_FORWARD, FlowRule, Output

VIA = ("leo", "backup")
RETRY_S = 0.1                # a path change the switches refused is tried again this much later
PRIO_STEER = 20              # above the MAC rules (PRIO_UNICAST 10) of the forwarding table
COOKIE_STEER = COOKIE_APP | 0x7


def steer_windows(instants_s: Iterable[float], before_s: float, after_s: float,
                  guard_before_s: float, guard_after_s: float) -> list[tuple[float, float]]:
    """[start, end) of each instant's boundary window widened by the guards, merged, from 0."""
    spans = sorted((max(0.0, i - before_s - guard_before_s), i + after_s + guard_after_s)
                   for i in instants_s)
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def in_windows(t_s: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t_s < b for a, b in windows)


class FaultDetector:
    """Up/down of a path from the receive times of its heartbeat echoes (ns, one clock).

    ``echo(recv_ns)`` for each echo in arrival order; ``update(now_ns)`` returns ``"down"`` when
    no echo came for ``detect_ms`` (before the first echo nothing is judged), ``"up"`` once echoes
    have come for ``hold_s`` with no gap longer than ``detect_ms``, else None.
    """

    def __init__(self, detect_ms: float, hold_s: float) -> None:
        if detect_ms <= 0 or hold_s < 0:
            raise ValueError(f"detect_ms > 0 and hold_s >= 0; got {detect_ms}, {hold_s}")
        self.detect_ns = round(detect_ms * 1e6)
        self.hold_ns = round(hold_s * 1e9)
        self.last_echo_ns: int | None = None
        self.healthy_since_ns: int | None = None
        self.down = False

    def echo(self, recv_ns: int) -> None:
        if self.last_echo_ns is None or recv_ns - self.last_echo_ns > self.detect_ns:
            self.healthy_since_ns = recv_ns  # the first echo after a gap starts a healthy stretch
        self.last_echo_ns = max(recv_ns, self.last_echo_ns or recv_ns)

    def update(self, now_ns: int) -> str | None:
        if self.last_echo_ns is None:
            return None
        quiet = now_ns - self.last_echo_ns > self.detect_ns
        if not self.down and quiet:
            self.down = True
            return "down"
        if (self.down and not quiet and self.healthy_since_ns is not None
                and now_ns - self.healthy_since_ns >= self.hold_ns):
            self.down = False
            return "up"
        return None


def desired_via(t_s: float, windows: list[tuple[float, float]], path_down: bool, enabled: bool
                ) -> tuple[str, str]:
    """(``"leo"`` | ``"backup"``, reason) for the protected slices at run time ``t_s``."""
    if not enabled:
        return "leo", "adaptation off"
    if path_down:
        return "backup", "LEO path down"
    if in_windows(t_s, windows):
        return "backup", "reconfiguration"
    return "leo", "LEO path up"


@dataclass(frozen=True)
class SteerSwitch:
    """A switch's output port towards each host IPv4 address over the LEO tree and the backup tree."""

    dpid: int
    via_leo: Mapping[str, int]
    via_backup: Mapping[str, int]


def steer_rule(src_ip: str, dst_ip: str, port: int) -> FlowRule:
    """Forwarding table: IPv4 from ``src_ip`` to ``dst_ip`` leaves on ``port``."""
    return FlowRule(TABLE_FORWARD, PRIO_STEER, {"eth_type": ETH_TYPE_IPV4, "ipv4_src": src_ip,
                                                "ipv4_dst": dst_ip}, (Output(port),), COOKIE_STEER)


def steer_rules(switches: Iterable[SteerSwitch], pairs: Iterable[tuple[str, str]], via: str
                ) -> list[tuple[int, FlowRule]]:
    """(dpid, rule) putting both directions of each (UE, remote) address pair on ``via``, at every
    switch on the path between the two in both trees (its ports towards them differ in each) where
    the trees leave by different ports; [] where they never part."""
    if via not in VIA:
        raise ValueError(f"via={via!r}; allowed: {', '.join(VIA)}")
    out = []
    pairs = list(pairs)
    for sw in switches:
        for ue, remote in pairs:
            if not (_between(sw.via_leo, ue, remote) and _between(sw.via_backup, ue, remote)):
                continue
            for src, dst in ((ue, remote), (remote, ue)):
                leo, backup = sw.via_leo.get(dst), sw.via_backup.get(dst)
                if leo is None or backup is None or leo == backup:
                    continue
                out.append((sw.dpid, steer_rule(src, dst, backup if via == "backup" else leo)))
    return out


def _between(ports: Mapping[str, int], a: str, b: str) -> bool:
    """In a tree, a switch is on the path between ``a`` and ``b`` iff its ports towards them differ."""
    return a in ports and b in ports and ports[a] != ports[b]


# --- the loop the leo_adaptation app runs -------------------------------------------------------
# One heartbeat echo as the probe agent stores it (experiments/agents/traffic.py PROBE_RECORD: seq,
# send_ns, echo_ns, recv_ns); the loop reads recv_ns.
ECHO_RECORD = struct.Struct("<I4xQQQ")


@dataclass(frozen=True)
class SteeringConfig:
    """What the run tells the leo_adaptation app at traffic start (the JSON of ``to_dict``)."""

    start_ns: int                           # traffic start, CLOCK_REALTIME
    on_from_s: float                        # adaptation acts from here on (the "on" arm)
    end_s: float                            # the heartbeat stops with the traffic: nothing judged after
    windows_s: tuple[tuple[float, float], ...]
    pairs: tuple[tuple[str, str], ...]      # (protected UE address, remote address)
    switches: tuple[SteerSwitch, ...]
    probe_path: str                         # the heartbeat's raw echo records, growing as they come
    detect_ms: float
    hold_s: float

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in ("start_ns", "on_from_s", "end_s", "probe_path", "detect_ms",
                                                 "hold_s")},
                "windows_s": [list(w) for w in self.windows_s], "pairs": [list(p) for p in self.pairs],
                "switches": [{"dpid": s.dpid, "via_leo": dict(s.via_leo), "via_backup": dict(s.via_backup)}
                             for s in self.switches]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SteeringConfig:
        return cls(int(raw["start_ns"]), float(raw["on_from_s"]), float(raw["end_s"]),
                   tuple((float(a), float(b)) for a, b in raw["windows_s"]),
                   tuple((str(u), str(r)) for u, r in raw["pairs"]),
                   tuple(SteerSwitch(int(s["dpid"]), {str(k): int(v) for k, v in s["via_leo"].items()},
                                     {str(k): int(v) for k, v in s["via_backup"].items()})
                         for s in raw["switches"]),
                   str(raw["probe_path"]), float(raw["detect_ms"]), float(raw["hold_s"]))


class SteeringLoop:
    """Echoes and the clock in, path changes out: ``step(now_ns)`` reads the echoes added to the
    probe's file, runs the detector and, when the protected pairs must move, calls ``install(rules)``
    (returns an error string or None) and records the change; a refused change is recorded and
    tried again ``RETRY_S`` later."""

    def __init__(self, config: SteeringConfig, install: Callable[[list[tuple[int, FlowRule]]], str | None]
                 ) -> None:
        self.config = config
        self.install = install
        self.detector = FaultDetector(config.detect_ms, config.hold_s)
        self.via = "leo"
        self.changes: list[dict[str, Any]] = []     # t_s, via, reason, rules, applied_ns, error
        self.detections: list[dict[str, Any]] = []  # t_s, state ("down" | "up")
        self._offset = 0
        self._retry_ns = 0  # after a refused change: not before this instant

    def step(self, now_ns: int) -> bool:
        """One look; True if something was recorded (a detection or a path change)."""
        c = self.config
        for recv_ns in self._new_echoes():
            self.detector.echo(recv_ns)
        t_s = (now_ns - c.start_ns) / 1e9
        if t_s >= c.end_s:
            return False
        state = self.detector.update(now_ns)
        if state is not None:
            self.detections.append({"t_s": round(t_s, 6), "state": state})
        via, reason = desired_via(t_s, list(c.windows_s), self.detector.down, enabled=t_s >= c.on_from_s)
        if via == self.via or now_ns < self._retry_ns:
            return state is not None
        rules = steer_rules(c.switches, c.pairs, via)
        error = self.install(rules)
        self.changes.append({"t_s": round(t_s, 6), "via": via, "reason": reason, "rules": len(rules),
                             "applied_ns": None if error else time.time_ns(), "error": error})
        if error is None:
            self.via = via
        else:
            self._retry_ns = now_ns + round(RETRY_S * 1e9)
        return True

    def _new_echoes(self) -> list[int]:
        """Receive times (ns) of the whole echo records added to the probe's file since the last call."""
        try:
            with open(self.config.probe_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = len(data) - len(data) % ECHO_RECORD.size
        self._offset += whole
        return [ECHO_RECORD.unpack_from(data, i)[3] for i in range(0, whole, ECHO_RECORD.size)]

    def status(self) -> dict[str, Any]:
        return {"via": self.via, "changes": self.changes, "detections": self.detections}

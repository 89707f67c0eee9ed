"""LEO-aware adaptation: when protected slices leave the LEO link, and the flow rules that move them
(no os-ken: the leo_adaptation app drives it with its clock, the tests with theirs).

* **Proactive**: the LEO link reconfigures on a known grid (every 15 s; the boundary window of each
  instant I is [I - before, I + after), topologies/leo/config.py ``Handover``). ``steer_windows``
  widens each window by the guard times of ``[backup]`` and merges overlaps: inside a window the
  protected slices ride the backup backhaul.
* **Reactive**: :class:`FaultDetector` watches the heartbeat echoes over the LEO path (a probe from
  the site's edge server to the cloud, as BFD does, RFC 5880): no echo for ``detect_ms`` -> the
  path is down; more than ``loss_pct`` of the heartbeats lost over ``window_ms`` (a fade: the path
  breaks the protected slices' loss SLA) -> down too; echoes again for ``hold_s`` without such a
  gap, and that long within the loss limit -> up.
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
from collections import deque
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
    """Up/down of a path from its heartbeat echoes (ns, one clock).

    ``echo(recv_ns, send_ns)`` for each echo in arrival order; ``update(now_ns)`` returns ``"down"``
    when no echo came for ``detect_ms`` (``cause`` "silent"; before the first echo nothing is
    judged) or, given the heartbeat's ``interval_ms`` and a ``loss_pct`` limit, when more than that
    share of the heartbeats sent in the ``window_ms`` ending ``detect_ms`` ago (later ones may be on
    their way) did not come back (``cause`` "lossy"; judged once the first heartbeat is that old);
    ``"up"`` once echoes have come for ``hold_s`` with no gap longer than ``detect_ms`` and, with a
    loss limit, the loss has been within it that long; else None.
    """

    def __init__(self, detect_ms: float, hold_s: float, interval_ms: float | None = None,
                 loss_pct: float | None = None, window_ms: float = 1000.0) -> None:
        if detect_ms <= 0 or hold_s < 0:
            raise ValueError(f"detect_ms > 0 and hold_s >= 0; got {detect_ms}, {hold_s}")
        if loss_pct is not None and (interval_ms is None or interval_ms <= 0 or window_ms < interval_ms):
            raise ValueError(f"a loss limit needs interval_ms > 0 and window_ms >= it; got {interval_ms}, "
                             f"{window_ms}")
        self.detect_ns = round(detect_ms * 1e6)
        self.hold_ns = round(hold_s * 1e9)
        self.loss_limit = loss_pct
        self.window_ns = round(window_ms * 1e6)
        self.expected = window_ms / interval_ms if interval_ms else 0.0  # heartbeats in a window
        self.last_echo_ns: int | None = None
        self.healthy_since_ns: int | None = None
        self.first_send_ns: int | None = None
        self.sends: deque[int] = deque()           # send times of the echoes in the window, in order
        self.clean_since_ns: int | None = None     # the loss within its limit since
        self.down = False
        self.cause: str | None = None              # why it is down: "silent" | "lossy"
        self.last_loss_pct: float | None = None

    def echo(self, recv_ns: int, send_ns: int | None = None) -> None:
        if self.last_echo_ns is None or recv_ns - self.last_echo_ns > self.detect_ns:
            self.healthy_since_ns = recv_ns  # the first echo after a gap starts a healthy stretch
        self.last_echo_ns = max(recv_ns, self.last_echo_ns or recv_ns)
        if self.loss_limit is not None and send_ns is not None:
            if self.first_send_ns is None:
                self.first_send_ns = send_ns
            if not self.sends or send_ns >= self.sends[-1]:  # a duplicate or a reordered echo: once
                self.sends.append(send_ns)

    def loss_pct(self, now_ns: int) -> float | None:
        """Share of the heartbeats sent in [now - detect - window, now - detect) that came back
        missing, %; None before the first heartbeat is that old (or without a loss limit)."""
        if self.loss_limit is None or self.first_send_ns is None:
            return None
        end = now_ns - self.detect_ns
        start = end - self.window_ns
        if start < self.first_send_ns:
            return None
        while self.sends and self.sends[0] < start:
            self.sends.popleft()
        received = sum(1 for s in self.sends if s < end)
        return max(0.0, 100.0 * (1.0 - received / self.expected))

    def update(self, now_ns: int) -> str | None:
        if self.last_echo_ns is None:
            return None
        quiet = now_ns - self.last_echo_ns > self.detect_ns
        loss = self.last_loss_pct = self.loss_pct(now_ns)
        lossy = loss is not None and self.loss_limit is not None and loss > self.loss_limit
        if lossy:
            self.clean_since_ns = None
        elif self.clean_since_ns is None:
            self.clean_since_ns = now_ns
        if not self.down and (quiet or lossy):
            self.down, self.cause = True, "silent" if quiet else "lossy"
            return "down"
        clean_long = (self.loss_limit is None
                      or (self.clean_since_ns is not None and now_ns - self.clean_since_ns >= self.hold_ns))
        if (self.down and not quiet and not lossy and clean_long and self.healthy_since_ns is not None
                and now_ns - self.healthy_since_ns >= self.hold_ns):
            self.down, self.cause = False, None
            return "up"
        return None


DOWN_REASONS = {"silent": "LEO path down", "lossy": "LEO path lossy"}  # FaultDetector.cause -> reason


def desired_via(t_s: float, windows: list[tuple[float, float]], path_down: bool, enabled: bool,
                cause: str | None = None) -> tuple[str, str]:
    """(``"leo"`` | ``"backup"``, reason) for the protected slices at run time ``t_s`` (``cause``:
    the detector's, when the path is down)."""
    if not enabled:
        return "leo", "adaptation off"
    if path_down:
        return "backup", DOWN_REASONS.get(cause or "silent", "LEO path down")
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
# send_ns, echo_ns, recv_ns); the loop reads send_ns and recv_ns.
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
    interval_ms: float | None = None        # the heartbeat's; with fade_loss_pct: the loss SLA
    fade_loss_pct: float | None = None
    fade_window_ms: float = 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in ("start_ns", "on_from_s", "end_s", "probe_path", "detect_ms",
                                                 "hold_s", "interval_ms", "fade_loss_pct", "fade_window_ms")},
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
                   str(raw["probe_path"]), float(raw["detect_ms"]), float(raw["hold_s"]),
                   _number(raw.get("interval_ms")), _number(raw.get("fade_loss_pct")),
                   float(raw.get("fade_window_ms", 1000.0)))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


class SteeringLoop:
    """Echoes and the clock in, path changes out: ``step(now_ns)`` reads the echoes added to the
    probe's file, runs the detector and, when the protected pairs must move, calls ``install(rules)``
    (returns an error string or None) and records the change; a refused change is recorded and
    tried again ``RETRY_S`` later."""

    def __init__(self, config: SteeringConfig, install: Callable[[list[tuple[int, FlowRule]]], str | None]
                 ) -> None:
        self.config = config
        self.install = install
        self.detector = FaultDetector(config.detect_ms, config.hold_s, config.interval_ms,
                                      config.fade_loss_pct, config.fade_window_ms)
        self.via: str | None = "leo"  # None: unknown (the switches lost the rules): install again
        self.changes: list[dict[str, Any]] = []     # t_s, via, reason, rules, applied_ns, error
        self.detections: list[dict[str, Any]] = []  # t_s, state ("down" | "up"), cause, loss_pct
        self._offset = 0
        self._retry_ns = 0  # after a refused change: not before this instant

    def step(self, now_ns: int) -> bool:
        """One look; True if something was recorded (a detection or a path change)."""
        c = self.config
        for send_ns, recv_ns in self._new_echoes():
            self.detector.echo(recv_ns, send_ns)
        t_s = (now_ns - c.start_ns) / 1e9
        if t_s >= c.end_s:
            return False
        cause = self.detector.cause
        state = self.detector.update(now_ns)
        if state is not None:
            loss = self.detector.last_loss_pct
            self.detections.append({"t_s": round(t_s, 6), "state": state,
                                    "cause": self.detector.cause if state == "down" else cause,
                                    "loss_pct": None if loss is None else round(loss, 2)})
        via, reason = desired_via(t_s, list(c.windows_s), self.detector.down, t_s >= c.on_from_s,
                                  self.detector.cause)
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

    def _new_echoes(self) -> list[tuple[int, int]]:
        """(send, receive) times (ns) of the whole echo records added to the probe's file since the
        last call."""
        try:
            with open(self.config.probe_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = len(data) - len(data) % ECHO_RECORD.size
        self._offset += whole
        return [(rec[1], rec[3]) for rec in (ECHO_RECORD.unpack_from(data, i)
                                             for i in range(0, whole, ECHO_RECORD.size))]

    def rules_lost(self) -> None:
        """The switches replaced their rules (a resync): the steering ones are gone, so the path in
        force is LEO's; if the slices were on the backup, the next step installs it again."""
        if self.via == "backup":
            self.via = None

    def resume(self, previous: Mapping[str, Any]) -> None:
        """Carry on the records of an earlier run of the loop (a restarted controller's app)."""
        self.changes = [*previous.get("changes", []), *self.changes]
        self.detections = [*previous.get("detections", []), *self.detections]

    def status(self) -> dict[str, Any]:
        return {"via": self.via, "changes": self.changes, "detections": self.detections}

"""The run's adaptation loop: the LEO path's heartbeat echoes and the reconfiguration grid in, steering
requests to the controller out (the decisions are controllers/adaptation.py's pure functions).

Every ``POLL_S`` the thread reads the echoes the heartbeat probe wrote since the last look (its
raw file grows record by record: experiments/agents/traffic.py ``probe``), feeds their receive
times to a :class:`~controllers.adaptation.FaultDetector`, and asks
:func:`~controllers.adaptation.desired_via` where the protected slices belong now. A change becomes
one request line to the controller's slice_switch app (``network.steer``: every rule of the change
at once); the app applies it and records the instant (controller_status.json ``path_switches``).
The detector runs in both arms (a fault is detected either way); only the "on" arm acts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from controllers.adaptation import FaultDetector, desired_via, steer_rules
from experiments.agents.traffic import PROBE_RECORD

POLL_S = 0.002  # how often the echoes and the clock are looked at (the detector's resolution)


class RunSteering:
    """A thread steering ``pairs`` (UE address, remote address) between the LEO and the backup path."""

    def __init__(self, network: Any, pairs: list[tuple[str, str]], windows: list[tuple[float, float]],
                 probe_path: Path, start_ns: int, on_from_s: float, detect_ms: float, hold_s: float,
                 end_s: float = float("inf")) -> None:
        self.network = network
        self.switches = network.steer_switches()
        self.pairs = pairs
        self.windows = windows
        self.probe_path = probe_path
        self.start_ns = start_ns
        self.on_from_s = on_from_s
        self.end_s = end_s  # the heartbeat stops with the traffic: nothing is judged after it
        self.detector = FaultDetector(detect_ms, hold_s)
        self.via = "leo"
        self.changes: list[dict[str, Any]] = []   # t_s, via, reason, seq, rules, sent_s
        self.detections: list[dict[str, Any]] = []  # t_s, state ("down" | "up")
        self.error: str | None = None
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leo-steering", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_S):
                self.step(time.time_ns())
        except Exception as exc:  # recorded: the kind reports it as a problem of the run
            self.error = f"{type(exc).__name__}: {exc}"

    def step(self, now_ns: int) -> None:
        """One look: new echoes, the detector, and a steering request if the path must change."""
        for recv_ns in self._new_echoes():
            self.detector.echo(recv_ns)
        t_s = (now_ns - self.start_ns) / 1e9
        if t_s >= self.end_s:
            return
        state = self.detector.update(now_ns)
        if state is not None:
            self.detections.append({"t_s": round(t_s, 6), "state": state})
        via, reason = desired_via(t_s, self.windows, self.detector.down, enabled=t_s >= self.on_from_s)
        if via != self.via:
            rules = steer_rules(self.switches, self.pairs, via)
            record = self.network.steer(rules)
            sent_s = (record.get("sent_ns", now_ns) - self.start_ns) / 1e9
            self.changes.append({"t_s": round(t_s, 6), "via": via, "reason": reason, "seq": record["seq"],
                                 "rules": len(rules), "sent_s": round(sent_s, 6)})
            self.via = via

    def _new_echoes(self) -> list[int]:
        """Receive times (ns) of the whole echo records added to the probe's file since the last call."""
        try:
            with self.probe_path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = len(data) - len(data) % PROBE_RECORD.size
        self._offset += whole
        return [PROBE_RECORD.unpack_from(data, i)[3] for i in range(0, whole, PROBE_RECORD.size)]

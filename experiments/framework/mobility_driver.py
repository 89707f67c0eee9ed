"""Apply a run's handovers (topologies/mobility.py) while the traffic runs, in a thread.

Per handover at schedule time t (t = 0 is traffic start): shortly before t, the UE's interruption
[t, t + interruption) goes into the relay's NR model with its exact CLOCK_MONOTONIC times (it is
applied in the data path, with no control lag); at t the UE's radio link moves to the target cell
(``LinkEngine.move_ue``), and the controller is told (a path switch, as a 5G core tells the UPF:
the UPF's rule for the UE's address moves to the target cell's port; until then the source cell
forwards its downlink over Xn). The move's lag behind t is recorded per handover
(``applied_lag_ms``): it lands inside the interruption, when the UE is not scheduled anyway, as long
as it is shorter; the path switch's, from the controller's status file, in ``path_switch_ms``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from topologies.mobility import MobilitySchedule

LEAD_S = 0.05  # the interruption is sent this long before its start


class MobilityDriver:
    """Handovers of ``schedule`` on ``engine`` from ``t0_monotonic_s`` on."""

    def __init__(self, engine: Any, schedule: MobilitySchedule, t0_monotonic_s: float,
                 path_switch: Callable[[str, str], dict[str, Any]] | None = None) -> None:
        self.engine = engine
        self.path_switch = path_switch  # tells the controller where the UE is now (network.py)
        self.schedule = schedule
        self.t0 = t0_monotonic_s
        self.applied: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mobility", daemon=True)

    def start(self) -> MobilityDriver:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Stop (handovers not yet due are not applied); what was applied, one dict per handover."""
        self._stop.set()
        self._thread.join(timeout_s)
        return list(self.applied)

    def _sleep_until(self, t_monotonic: float) -> bool:
        return not self._stop.wait(max(0.0, t_monotonic - time.monotonic()))

    def _run(self) -> None:
        for h in self.schedule.handovers:
            at = self.t0 + h.t_s
            link = f"radio_{h.ue}"
            record = {**vars(h), "applied": False, "applied_lag_ms": None, "error": None}
            if not self._sleep_until(at - LEAD_S):
                return
            try:
                self.engine.interrupt_ue(link, at, at + h.interruption_ms / 1000)
                if not self._sleep_until(at):
                    return
                self.engine.move_ue(link, h.target)
                record.update(applied=True, applied_lag_ms=round((time.monotonic() - at) * 1000, 3))
                if self.path_switch is not None:
                    record["path_switch_seq"] = self.path_switch(h.ue, h.target)["seq"]
            except Exception as exc:  # a relay that died: the watchdog ends the run; say what happened
                record["error"] = f"{type(exc).__name__}: {exc}"
            self.applied.append(record)

"""The ``leo_adaptation`` app: LEO-aware steering of protected slices, inside the controller.

Listed beside a switch app (``slice_switch`` or ``slice_monitor``), whose connected datapaths and
``add_flow`` it uses (it finds that app among the running ones). At traffic start the run writes
``ADAPTATION_FILE_NAME`` beside the status file (``controllers.adaptation.SteeringConfig``: the
reconfiguration windows, the protected address pairs, each switch's ports on the LEO and the backup
tree, the heartbeat's record file, the detector's settings). From then on the app's thread looks
every ``TICK_S`` (``controllers.adaptation.SteeringLoop``): new heartbeat echoes, the fault
detector, the windows; when the protected slices must move it installs every rule of the change
at once and writes ``ADAPTATION_STATUS_FILE_NAME`` (each change with the instant its flow mods were
sent, each detection).

Steering rules carry the switch app's generation, so a switch's resync (on every (re)connect,
a controller restart included) removes them: the app installs only on switches the switch app
reports ready (resync done; else the change is refused and tried again 100 ms later), and when a
switch becomes ready again while the slices are on the backup it installs that path again. A
restarted controller's app starts its loop afresh (the whole heartbeat record, the windows) and
keeps the earlier app's changes and detections from the status file, adding the restart's instant
to ``restarts_s``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from controllers.adaptation import SteeringConfig, SteeringLoop
from controllers.apps import ADAPTATION_FILE_NAME, ADAPTATION_STATUS_FILE_NAME, ENV_STATUS
from controllers.apps.slice_switch import SliceSwitch, write_status_atomic
from controllers.policy import FlowRule
from controllers.sdn import app_manager, hub, ofproto_v1_3

TICK_S = 0.002  # the loop's resolution: a fault is seen within detect_ms + TICK_S of the last echo


class LeoAdaptation(app_manager.OSKenApp):
    """Steers the protected slices between the LEO and the backup path (see the module docstring)."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        status = os.environ.get(ENV_STATUS)
        if not status:
            raise RuntimeError(f"environment variable {ENV_STATUS} is not set (the launcher sets it)")
        self.config_path = Path(status).with_name(ADAPTATION_FILE_NAME)
        self.status_path = Path(status).with_name(ADAPTATION_STATUS_FILE_NAME)
        self.loop: SteeringLoop | None = None
        self.error: str | None = None
        self.restarts_s: list[float] = []
        self.ready: set[tuple[int, int]] = set()  # (dpid, rule generation) of the ready switches

    def start(self) -> None:
        """os-ken's start hook: the event loop, plus the steering thread."""
        super().start()
        self.threads.append(hub.spawn(self._run))

    def _run(self) -> None:
        while self.is_active:
            hub.sleep(TICK_S)
            try:
                self.tick(time.time_ns())
            except Exception as exc:  # os-ken's hub swallows a thread's exceptions: record it and stop
                self.logger.exception("leo adaptation stopped")  # (the run reports the error)
                self.error = f"{type(exc).__name__}: {exc}"
                self._write_status()
                return

    def tick(self, now_ns: int) -> None:
        """Start the loop once the run's configuration is there, then take one step."""
        if self.loop is None:
            if not self.config_path.exists():
                return
            config = SteeringConfig.from_dict(json.loads(self.config_path.read_text()))
            self.loop = SteeringLoop(config, self.install)
            self.ready = self._ready_switches()
            previous = self._previous_status()
            if previous is not None:  # a restarted controller: the earlier app's records stay
                self.loop.resume(previous)
                at_s = round((now_ns - config.start_ns) / 1e9, 6)
                self.restarts_s = [*previous.get("restarts_s", []), at_s]
            self.logger.info("leo adaptation: %d pairs, %d windows, acting from %.1f s", len(config.pairs),
                             len(config.windows_s), config.on_from_s)
            self._write_status()
        ready = self._ready_switches()
        if ready - self.ready:  # a switch resynced: its steering rules are gone
            self.loop.rules_lost()
        self.ready = ready
        if self.loop.step(now_ns):
            self._write_status()

    def _ready_switches(self) -> set[tuple[int, int]]:
        switch = self.switch_app()
        return {(dpid, switch.generation.get(dpid, 0)) for dpid in switch.ready_dpids}

    def _previous_status(self) -> dict[str, Any] | None:
        try:
            previous = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return previous if isinstance(previous, dict) and previous.get("configured") else None

    def switch_app(self) -> SliceSwitch:
        """The running switch app (slice_switch or an app extending it)."""
        for app in app_manager.SERVICE_BRICKS.values():
            if isinstance(app, SliceSwitch):
                return app
        raise LookupError("no switch app (slice_switch or one extending it) is running beside leo_adaptation")

    def install(self, rules: list[tuple[int, FlowRule]]) -> str | None:
        """Send every rule through the switch app; None, or why nothing was sent."""
        switch = self.switch_app()
        missing = sorted({dpid for dpid, _ in rules if dpid not in switch.connected})
        if missing:
            return f"dpid {', '.join(f'{d:#x}' for d in missing)} is not connected"
        resyncing = sorted({dpid for dpid, _ in rules if dpid not in switch.ready_dpids})
        if resyncing:  # its resync would delete what is sent now
            return f"dpid {', '.join(f'{d:#x}' for d in resyncing)} is not ready (resync under way)"
        for dpid, rule in rules:
            switch.add_flow(switch.connected[dpid], rule)
        return None

    def _write_status(self) -> None:
        status = self.loop.status() if self.loop else {"via": None, "changes": [], "detections": []}
        write_status_atomic(self.status_path, {**status, "configured": self.loop is not None,
                                               "error": self.error, "restarts_s": self.restarts_s})

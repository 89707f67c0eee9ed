"""One run's life cycle, shared by every experiment kind.

``with RunSession(experiment, options) as session:`` validates the inputs and computes the orbit
schedules (nothing created yet if that fails), makes the run folder, builds the network, and on
leaving removes everything the run created, whatever happened. Inside, ``session.start_clock()``
starts the link schedules and returns the shared traffic start instant. After a clean exit the
experiment writes its tables and figures, then calls ``session.complete()`` (marker written last).
"""

from __future__ import annotations

import errno
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from experiments.framework.controlplane import RunControlPlane
from experiments.framework.definition import Experiment
from experiments.framework.leo_link import build_leo_schedules
from experiments.framework.mobility_driver import MobilityDriver
from experiments.framework.network import EmulatedNetwork
from experiments.framework.pcap import PcapRequest, RunCapture
from experiments.framework.results import (
    base_metadata,
    disk_full,
    mark_complete,
    mark_failed,
    new_run_dir,
    write_json,
    write_parquet,
)
from experiments.framework.watchdog import Watchdog, data_path_probe, ovs_daemon_checks
from topologies.errors import RunFailed
from topologies.hoststall import HostStallSentinel, StallRecord
from topologies.scenario import Scenario, load_scenario

log = logging.getLogger(__name__)
SCHEDULE_SLACK_S = 10.0  # schedule length beyond traffic + drain (clock start margin)
CLOCK_LEAD_S = 1.0  # traffic and schedules start this long after start_clock()


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of the experiment and scenario."""

    duration_s: float | None = None
    link_backend: str | None = None
    ovs_datapath: str | None = None
    seed: int | None = None
    scenario_path: Path | None = None
    results_root: Path | None = None
    progress: bool = True
    include_host_stalls: bool = False  # keep packets a host stall touched in delay figures
    ovs_realtime: bool | None = None  # userspace OVS's packet thread real-time (None: the default)
    scenario: Scenario | None = None  # an in-memory scenario (benchmarks); overrides scenario_path
    pcap: PcapRequest | None = None  # --pcap: interfaces to capture (pcap.py)
    northbound: bool = False  # --northbound: the REST API on 127.0.0.1 during the run (controlplane.py)
    sla_monitor: bool = False  # --sla-monitor (also [controller] sla_monitor, or --northbound)


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    figure_paths: list[Path]


class Terminated(Exception):
    """SIGTERM received: unwind like Ctrl-C so that teardown runs."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated("terminated by SIGTERM")


class SigtermUnwinds:
    """``with SigtermUnwinds():`` SIGTERM raises :class:`Terminated` inside (main thread only), so
    teardown and the FAILED marker still happen; nested uses keep the outer handler."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> SigtermUnwinds:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is not _on_sigterm):
            self._previous = signal.signal(signal.SIGTERM, _on_sigterm)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False


def _enospc(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_failure(run_dir: Path) -> RunFailed:
    """The one failure a full results disk is reported as."""
    return RunFailed(f"results disk full: {run_dir}", component="results disk")


def disk_failure(exc: BaseException, run_dir: Path) -> RunFailed | None:
    """``results disk full: <run_dir>`` if ``exc`` came from a full results disk, else None."""
    if isinstance(exc, RunFailed) and exc.component == "results disk":
        return None  # already says so
    if _enospc(exc) or (isinstance(exc, OSError) and disk_full(run_dir)):
        return disk_full_failure(run_dir)
    return None


def failure_record(exc: BaseException) -> dict[str, Any]:
    """What ``FAILED`` says about ``exc``: reason, component, log path, exception type."""
    if isinstance(exc, KeyboardInterrupt):
        reason = "interrupted"
    elif isinstance(exc, Terminated):
        reason = "terminated by SIGTERM"
    elif isinstance(exc, RunFailed):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    record = {"reason": reason, "component": getattr(exc, "component", None),
              "log_path": getattr(exc, "log_path", None), "exception": type(exc).__name__}
    if hasattr(exc, "detected_realtime_ns"):  # a death the watchdog saw: when (CLOCK_REALTIME)
        record["detected_realtime_ns"] = exc.detected_realtime_ns
    return record


class RunSession:
    """Scenario, run folder, metadata, network and schedules of one run."""

    def __init__(self, experiment: Experiment, options: RunOptions = RunOptions()) -> None:
        self.experiment = experiment
        self.options = options
        scenario = options.scenario or (load_scenario(options.scenario_path) if options.scenario_path
                                        else experiment.load_scenario())
        if options.seed is not None:
            scenario = replace(scenario, seed=options.seed)
        self.scenario: Scenario = scenario
        self.duration_s = options.duration_s or experiment.duration_s
        self.warnings: list[str] = []  # printed and stored in metadata.json (skeleton.py)
        self.leo = build_leo_schedules(scenario, self.duration_s + experiment.drain_s + SCHEDULE_SLACK_S)
        self.mobility = scenario.mobility_schedule(self.duration_s + experiment.drain_s)
        self.mobility_driver: MobilityDriver | None = None
        self.network = EmulatedNetwork(scenario, options.link_backend, options.ovs_datapath,
                                       self.leo.initial() if self.leo else None,
                                       controller_apps=experiment.controller_apps,
                                       ovs_realtime=options.ovs_realtime)
        self.pcap = RunCapture(options.pcap, scenario)  # --pcap: names checked now, nothing created yet
        self.control_plane = RunControlPlane(options.northbound,  # --northbound / the SLA monitor
                                             options.sla_monitor or experiment.sla_monitor)
        self.run_id = ""
        self.run_dir = Path()
        self.metadata: dict[str, Any] = {}
        self.problems: list[str] = []
        self.start_ns = 0  # CLOCK_REALTIME ns of traffic start, set by start_clock()
        self.watchdog: Watchdog | None = None
        self.data_path_after_death: dict[str, Any] | None = None  # set if the controller died
        self.sentinel: HostStallSentinel | None = None
        self.host_stalls: StallRecord | None = None  # what the sentinel saw, set at teardown
        self._sigterm = SigtermUnwinds()

    @property
    def raw_dir(self) -> Path:
        return self.run_dir / "raw"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def __enter__(self) -> RunSession:
        self.run_id, self.run_dir = new_run_dir(self.experiment.name, self.options.results_root)
        self._write_inputs()
        self.metadata = {**base_metadata(), "experiment": self.experiment.name, "run_id": self.run_id,
                         "scenario_source": self.scenario.source, "seed": self.scenario.seed,
                         "duration_s": self.duration_s, "link_backend": self.network.backend,
                         "ovs_datapath": self.network.datapath, "warnings": list(self.warnings),
                         "include_host_stalls": self.options.include_host_stalls}
        self.save_metadata()
        self._sigterm.__enter__()
        try:
            self.say(f"building the network ({len(self.scenario.ues)} UEs, link backend "
                     f"{self.network.backend}, OVS datapath {self.network.datapath})")
            t0 = time.monotonic()
            self.network.start(self.run_dir)
            self.metadata["bringup_s"] = round(time.monotonic() - t0, 3)
            self.metadata.update(self.network.metadata())
            self._start_sentinel()
            self.save_metadata()
            self._start_watching()
            self.pcap.start(self.network, self.run_dir, self.metadata)  # --pcap: before any traffic
            self.control_plane.start(self.scenario, self.network, self.run_dir, self.metadata)
            self.save_metadata()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        """Stop watching, tear everything down, record why the run failed (if it did).

        A component death the watchdog recorded, or a full results disk, replaces an ordinary
        exception as the cause (it is what made the traffic stage fail); Ctrl-C and SIGTERM stay.
        """
        death = self.watchdog.stop() if self.watchdog is not None else None
        if self.watchdog is not None:
            self.metadata["watched"] = list(self.watchdog.history)
        cause = exc
        if not isinstance(exc, KeyboardInterrupt | Terminated):
            if death is not None:
                cause = death
            elif exc is not None and (disk_full(self.run_dir) or _enospc(exc)):
                cause = disk_full_failure(self.run_dir)
        if cause is not None:
            self.metadata["error"] = repr(exc) if exc is not None else None  # no COMPLETE marker
            self.metadata["failure"] = failure_record(cause)
            if self.data_path_after_death is not None:
                self.metadata["failure"]["data_path_after_death"] = self.data_path_after_death
        self.pcap.stop(self.metadata)  # --pcap: after the receivers stopped, before the network goes
        self.control_plane.stop(self.metadata, self.run_dir, self.start_ns)
        self._stop_sentinel()
        self._stop_mobility()
        try:
            if self.network.engine is not None:  # counters as of the end (schedule rows applied)
                self.metadata["link_engine"] = self.network.engine.metadata()
        except Exception as meta_exc:  # never let metadata block the teardown
            log.warning("could not read link-engine metadata at teardown: %s", meta_exc)
        try:
            self.problems = self.network.stop()
        finally:
            self._sigterm.__exit__()
        if self.problems:
            log.error("teardown left objects behind: %s; run `factorysat clean`", self.problems)
        self.metadata["teardown_problems"] = self.problems
        try:
            self.save_metadata()
        except OSError as meta_exc:  # a full disk must not hide the cause
            log.warning("could not write metadata.json: %s", meta_exc)
        if cause is not None and cause is not exc:
            raise cause from exc

    def _stop_mobility(self) -> None:
        """Stop applying handovers; store what was applied (``handovers.json``: the run's handover
        events, each with its time, UE, source, target, interruption and the move's lag)."""
        if self.mobility is None or not self.run_dir.is_dir():
            return
        applied = self.mobility_driver.stop() if self.mobility_driver is not None else []
        self.mobility_driver = None
        done = self._path_switches_applied()
        for a in applied:  # when the controller moved the UPF's rule, after the handover instant
            ns = done.get(a.get("path_switch_seq"))
            a["path_switch_ms"] = round((ns - self.start_ns) / 1e6 - a["t_s"] * 1000, 3) if ns else None
        write_json(self.run_dir / "handovers.json", {"planned": self.mobility.handovers_table(),
                                                     "applied": applied})
        switched = [a["path_switch_ms"] for a in applied if a["path_switch_ms"] is not None]
        self.metadata["handovers"] = {"planned": len(self.mobility.handovers), "applied": sum(
            1 for a in applied if a["applied"]), "lag_ms_max": max(
            (a["applied_lag_ms"] for a in applied if a["applied"]), default=None),
            "path_switched": len(switched), "path_switch_ms_max": max(switched, default=None)}

    def _path_switches_applied(self) -> dict[int, int]:
        """seq -> CLOCK_REALTIME ns the controller applied that path switch (its status file)."""
        controller = self.network.controller
        status = (controller.read_status() if controller is not None else None) or {}
        return {p["seq"]: p["applied_ns"] for p in status.get("path_switches", []) if p.get("applied_ns")}

    def _start_sentinel(self) -> None:
        """Watch for host stalls for the rest of the run (``raw/hoststall.txt``, hoststall.py).

        Without it the run still works; its figures then include stalled packets, and say so."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        sentinel = HostStallSentinel(self.raw_dir / "hoststall.txt")
        try:
            self.sentinel = sentinel.start()
            self.metadata["host_stalls"] = {"sentinel": sentinel.implementation, "pid": sentinel.pid}
        except (OSError, RuntimeError) as exc:
            reason = f"host-stall sentinel unavailable ({exc}): stalled packets cannot be left out"
            self.metadata["host_stalls"] = {"unavailable": reason}
            self.warnings.append(reason)
            self.metadata["warnings"] = list(self.warnings)
            print(f"factorysat: warning: {reason}", file=sys.stderr, flush=True)

    def _stop_sentinel(self) -> None:
        """Stop the sentinel and keep its record (a torn record is kept: ``sentinel_complete``)."""
        if self.sentinel is None:
            return
        sentinel, self.sentinel = self.sentinel, None
        try:
            self.host_stalls = sentinel.stop()
            self.metadata["host_stalls"] = {"sentinel": sentinel.implementation,
                                            **self.host_stalls.summary()}
        except (OSError, ValueError) as exc:
            self.metadata["host_stalls"] = {"unavailable": f"host-stall record unreadable: {exc}"}

    def _start_watching(self) -> None:
        """Watch the results disk, the OVS daemons, the link engine and the controller."""
        dog = Watchdog(on_death=self._on_death)
        dog.protected.add(RunSession.__exit__.__code__)
        run_dir = self.run_dir
        dog.watch("results disk", "results disk",
                  lambda: disk_full_failure(run_dir) if disk_full(run_dir) else None)
        for name, check in ovs_daemon_checks().items():
            dog.watch(name, name, check)
        for name, check in self.network.components().items():
            dog.watch(name, name, check)
        self.metadata["watched"] = dog.watched()
        self.watchdog = dog
        dog.start()

    def _on_death(self, failure: RunFailed) -> None:
        """In the watchdog thread, before the run is interrupted: with the controller dead, do the
        switches (fail mode secure) keep forwarding on the flows already installed?"""
        if failure.component == "controller":
            self.data_path_after_death = data_path_probe(self.network.bridges())

    def fail(self, exc: BaseException) -> None:
        """Mark the run folder FAILED with ``exc``'s reason (no-op before the folder exists)."""
        if self.run_dir == Path() or not self.run_dir.is_dir():
            return
        record = {**failure_record(exc), "run_dir": str(self.run_dir)}
        if self.data_path_after_death is not None:
            record["data_path_after_death"] = self.data_path_after_death
        mark_failed(self.run_dir, record)

    def start_clock(self) -> int:
        """Start the link schedules; return the shared start instant (CLOCK_REALTIME ns).

        Schedule ``t_s = 0`` and the first packet of every flow are the same instant.
        """
        t0_monotonic = time.monotonic() + CLOCK_LEAD_S
        start_ns = time.time_ns() + int((t0_monotonic - time.monotonic()) * 1e9)
        if self.leo:
            self.leo.apply(self.network.engine, t0_monotonic)
        if self.mobility is not None and self.mobility.handovers:
            self.mobility_driver = MobilityDriver(self.network.engine, self.mobility, t0_monotonic,
                                                  self.network.path_switch).start()
        self.start_ns = start_ns
        self.metadata["traffic_start_realtime_ns"] = start_ns
        self.metadata["schedule_t0"] = "traffic start" if self.leo else None
        self.save_metadata()
        return start_ns

    def progress(self, start_ns: int, duration_s: float | None = None) -> None:
        """Show a progress bar until ``start + duration`` (CLOCK_REALTIME); a component death
        ends it at once (RunFailed)."""
        duration_s = self.duration_s if duration_s is None else duration_s
        total = max(1, round(duration_s))
        end_ns = start_ns + int(duration_s * 1e9)
        with tqdm(total=total, unit="s", desc="traffic", disable=not self.options.progress,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s") as bar:
            while (now := time.time_ns()) < end_ns:
                if self.watchdog is not None:
                    self.watchdog.raise_if_failed()
                self.network.guard_realtime((now - start_ns) / 1e9)
                done = min(total, int(max(0.0, (now - start_ns) / 1e9)))
                if done != bar.n:
                    bar.update(done - bar.n)
                time.sleep(0.2)
            bar.update(total - bar.n)
        self.metadata["ovs_realtime"] = self.network.realtime_state()

    def complete(self) -> None:
        """Write the completion marker; call after every table and figure is written."""
        if self.problems:
            raise RunFailed(f"teardown left objects behind, run not marked complete: {self.problems}; "
                            "run `factorysat clean`", component="teardown")
        mark_complete(self.run_dir)

    def save_metadata(self) -> None:
        write_json(self.run_dir / "metadata.json", self.metadata)

    def say(self, text: str) -> None:
        if self.options.progress:
            print(f"factorysat: {text}", flush=True)

    def _write_inputs(self) -> None:
        source = self.experiment.file or self.experiment.folder / "experiment.toml"
        shutil.copyfile(source, self.run_dir / "experiment.toml")
        write_json(self.run_dir / "scenario.resolved.json",
                   {"source": self.scenario.source, "seed": self.scenario.seed,
                    "duration_s": self.duration_s, "scenario": self.scenario.raw})
        if self.leo:
            self.leo.save(self.run_dir / "leo_schedule.parquet")
        if self.mobility is not None:  # every measurement of every routed UE (figures, analysis)
            write_parquet(self.run_dir / "mobility.parquet", pd.DataFrame(self.mobility.samples))

"""A run's live control plane: the SLA monitor and the northbound REST API over the running network.

The SLA monitor (``experiments/framework/sla_monitor.py``) runs with ``--sla-monitor``, an
experiment's ``[controller] sla_monitor = true`` or ``--northbound`` (the API serves its states): it
samples the link engine's counters every second from bring-up to teardown and leaves
``sla_samples.jsonl``, ``sla_timeline.parquet`` (times from traffic start) and ``metadata.json``
``sla_monitor`` (per slice seconds per state, violations, transitions).

:class:`RunSliceControl` is the run's ``controllers.northbound.SliceControl``: it describes the
scenario's slices with the RAN shares the NR cells run now and their SLA state (when an SLA monitor
runs), changes a slice's RAN share in every NR cell at once (validated first: a refused change
changes nothing), and admits flows by ``controllers.admission.check_admission`` against the
capacity of the UE's cell. Admission records a guarantee; it does not start traffic (the run's
flows come from the scenario). :class:`RunControlPlane` starts the API when the network is up,
writes ``northbound.json`` (URL and token, mode 0600) into the run folder, and records the requests
and changes in ``metadata.json`` ``northbound`` when the run ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllers.admission import Decision, FlowRequest, check_admission
from controllers.northbound import NorthboundServer, ran_with_changes
from experiments.framework.accounting import path_hops, topology_links
from experiments.framework.results import write_parquet
from experiments.framework.sla_monitor import SlaMonitor, queue_class_names, sla_table
from topologies.scenario import Scenario

CREDENTIALS_FILE = "northbound.json"
SLA_SAMPLES_FILE = "sla_samples.jsonl"
SLA_TABLE_FILE = "sla_timeline.parquet"
SLA_INTERVAL_S = 1.0  # one counter snapshot per second: ~1 relay request per link (cheap at demo scale)


class RunSliceControl:
    """The northbound API's view of a running network (``engine``: its LinkEngine)."""

    def __init__(self, scenario: Scenario, engine: Any,
                 sla_state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.scenario = scenario
        self.engine = engine
        self.sla_state = sla_state
        self.nr_cells = [c.name for c in scenario.cells if c.nr is not None]
        self.admitted: list[FlowRequest] = []
        self.changes: list[dict[str, Any]] = []  # every RAN change applied, in order
        self._cell_of = {u.name: u.cell for u in scenario.ues}

    def _shares(self) -> tuple[tuple[str, Any], ...]:
        if self.nr_cells:
            return self.engine.nr_plan(self.nr_cells[0]).slices
        return tuple((s.name, s.ran) for s in self.scenario.slices)

    def slices(self) -> dict[str, dict]:
        shares = dict(self._shares())
        state = self.sla_state() if self.sla_state is not None else {}
        return {s.name: {"dscp": s.dscp, "latency_bound_ms": s.latency_bound_ms,
                         "reliability_target_pct": s.reliability_target_pct,
                         "ran": _ran_dict(shares[s.name]),
                         "sla": state.get(s.name, {"state": "not monitored"}),
                         "admitted_flows": sum(f.slice == s.name for f in self.admitted)}
                for s in self.scenario.slices}

    def set_ran(self, name: str, changes: dict) -> dict:
        if not self.nr_cells:
            raise ValueError('no NR cell in this scenario: RAN shares apply to radio_model = "nr" cells')
        new = ran_with_changes(self._shares(), name, changes)  # KeyError / ConfigError: nothing changed
        for cell in self.nr_cells:
            self.engine.set_slice_shares(cell, self.engine.nr_plan(cell).with_shares(new))
        ran = _ran_dict(dict(new)[name])
        self.changes.append({"monotonic_s": time.monotonic(), "slice": name, "changes": dict(changes),
                             "ran": ran})
        return {"slice": name, "ran": ran, "cells": list(self.nr_cells)}

    def flows(self) -> list[dict]:
        return [f.to_dict() for f in self.admitted]

    def admit_flow(self, request: FlowRequest) -> Decision:
        cell = self._cell_of.get(request.ue)
        if cell is None:
            raise ValueError(f"ue {request.ue!r}: allowed {', '.join(sorted(self._cell_of))}")
        plan = self.engine.nr_plan(cell)
        if plan is None:
            raise ValueError(f"ue {request.ue!r} is in cell {cell!r}, which has no NR model: its capacity "
                             "per slice is not known, so nothing can be guaranteed")
        capacity = {d: plan.cell.capacity_mbps(d) for d in ("uplink", "downlink")}
        slices = {s.name: _SliceNow(s.name, s.latency_bound_ms, ran) for s in self.scenario.slices
                  for n, ran in plan.slices if n == s.name}
        same_cell = [f for f in self.admitted if self._cell_of.get(f.ue) == cell]
        decision = check_admission(request, slices, capacity, same_cell)
        if decision.admitted:
            self.admitted.append(request)
        return decision

    def remove_flow(self, name: str) -> None:
        for i, f in enumerate(self.admitted):
            if f.name == name:
                del self.admitted[i]
                return
        raise KeyError(name)


class _SliceNow:
    """A slice with the RAN share its cell runs now (what admission reads)."""

    def __init__(self, name: str, latency_bound_ms: float, ran: Any) -> None:
        self.name, self.latency_bound_ms, self.ran = name, latency_bound_ms, ran


def _ran_dict(ran: Any) -> dict[str, Any]:
    return {"dedicated_pct": ran.dedicated_pct, "min_pct": ran.min_pct, "max_pct": ran.max_pct,
            "priority": ran.priority}


def slice_hops(scenario: Scenario, links: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Slice -> the (link, direction) hops its UEs' flows cross, both ways between each UE and its
    traffic's destination (what the SLA monitor attributes FIFO links by)."""
    out: dict[str, set[tuple[str, str]]] = {}
    for ue in scenario.ues:
        hops = out.setdefault(ue.slice, set())
        for a, b in ((ue.name, ue.traffic.destination), (ue.traffic.destination, ue.name)):
            with contextlib.suppress(ValueError):  # no path: nothing to attribute
                hops.update(path_hops(links, a, b))
    return {name: sorted(h) for name, h in out.items()}


class RunControlPlane:
    """Starts a run's SLA monitor (``monitor``) and northbound API (``northbound``, which implies the
    monitor) once the network is up, stops them at teardown and records them."""

    def __init__(self, northbound: bool, monitor: bool) -> None:
        self.northbound = northbound
        self.monitor_on = monitor or northbound
        self.server: NorthboundServer | None = None
        self.control: RunSliceControl | None = None
        self.monitor: SlaMonitor | None = None
        self._monitor_t0_ns = 0  # CLOCK_REALTIME of the monitor's t = 0

    def start(self, scenario: Scenario, network: Any, run_dir: Path, metadata: dict[str, Any]) -> None:
        """``network``: the run's EmulatedNetwork (its ``engine``, and ``topo`` for the slices' paths)."""
        engine = network.engine
        if self.monitor_on:
            topo = getattr(network, "topo", None)
            hops = slice_hops(scenario, topology_links(topo)) if topo is not None else {}
            self.monitor = SlaMonitor(engine.counters, lambda: queue_class_names(engine.queue_configs),
                                      scenario.slices, SLA_INTERVAL_S, run_dir / SLA_SAMPLES_FILE,
                                      slice_hops=hops)
            self._monitor_t0_ns = time.time_ns()
            self.monitor.start(time.monotonic())
        if self.northbound:
            self.control = RunSliceControl(scenario, engine, self.monitor.current if self.monitor else None)
            self.server = NorthboundServer(self.control)
            port, _token = self.server.start()
            path = self.server.write_credentials(run_dir / CREDENTIALS_FILE)
            metadata["northbound"] = {"url": self.server.url, "port": port, "credentials": path.name}

    def stop(self, metadata: dict[str, Any], run_dir: Path, traffic_start_ns: int) -> None:
        """Stop both; the monitor's table is written with times from ``traffic_start_ns``
        (CLOCK_REALTIME; 0: no traffic started, times from the monitor's start)."""
        if self.server is not None:
            self.server.stop()
            assert self.control is not None
            metadata["northbound"] = {**metadata.get("northbound", {}), "requests": self.server.requests,
                                      "ran_changes": self.control.changes,
                                      "admitted_flows": self.control.flows()}
            self.server = None
        if self.monitor is not None:
            summary = self.monitor.stop()
            offset_s = (traffic_start_ns - self._monitor_t0_ns) / 1e9 if traffic_start_ns else 0.0
            table = sla_table(self.monitor.timeline())
            write_parquet(run_dir / SLA_TABLE_FILE, table.assign(t_s=table["t_s"] - offset_s))
            metadata["sla_monitor"] = {**summary, "traffic_start_s": round(offset_s, 6),
                                       "samples": SLA_SAMPLES_FILE, "table": SLA_TABLE_FILE,
                                       "note": "states judge the model's per-hop delay and loss "
                                               "(RAN p99 + the slice's queue wait), not measured "
                                               "end-to-end delay; times in the table from traffic start"}
            self.monitor = None

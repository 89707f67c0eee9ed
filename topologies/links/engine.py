"""LinkEngine: the emulated links of one run, by name, on one link backend (a strategy).

The engine holds what every backend shares: the links by name, the two direction names, schedule
validation, delay compensation (the backend's own latency and the switch hop, through
:func:`topologies.links.compensation.compensate`) and floor warnings. Everything that touches
packets is the backend's (:class:`topologies.links.backend.LinkBackend`, chosen from
:data:`topologies.links.backends.REGISTRY`).

Cells (gNBs, :mod:`topologies.links.cells`) are the engine's second strategy,
:class:`topologies.links.cellplane.CellPlane`: it serves them in a relay, whatever the backend,
and the engine hands it every link whose ``cell`` is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies.errors import RunFailed
from topologies.links.backend import BackendContext, BackendLink, Endpoint, LinkBackend, Setting
from topologies.links.backends import REGISTRY, metadata_keys, select_backend
from topologies.links.backends.relay import RelayBackend
from topologies.links.cellplane import CellPlane
from topologies.links.commands import tool_versions
from topologies.links.compensation import compensate
from topologies.links.direction import DIRECTIONS, DOWNLINK, UPLINK, check_direction
from topologies.links.params import DirectionParams, ScheduleRow, check_schedule
from topologies.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass
class _Link:
    name: str
    emulated: bool                              # False: a plain veth pair, no backend involved
    switch_hops: dict[str, int]                 # direction -> switches it enters (0 or 1)
    backend_link: BackendLink | None = None     # set once the backend made its interfaces
    params: dict[str, DirectionParams] = field(default_factory=dict)  # as configured, per direction
    backend: LinkBackend | None = None          # who serves it: the engine's backend, or the cells' relay
    cell: str | None = None                     # a cell's own link, radio link or backhaul: the cell
    inside: tuple[bool, bool] = (False, False)  # (node1 end, node2 end) inside the cells' relay
    ue_mac: str | None = None                   # a UE's radio link: the UE's address
    ue_slice: str | None = None                 # a UE's radio link: the UE's slice (NR cells)


class LinkEngine:
    """Per-direction link emulation for one run (see the package docstring for semantics).

    ``backend``: ``auto`` or a name in ``BACKENDS``; ``calibrate``: measure the backend's own
    latency at start (subtracted from every delay); ``backend_options``: passed to the backend
    class (e.g. ``relay_impl="python"`` for the relay).
    """

    def __init__(self, backend: str, tag: str, manifest: Manifest, log_dir: Path,
                 seed: int | None = None, calibrate: bool = True, **backend_options: Any) -> None:
        self.backend_name = select_backend(backend)
        self.tag = tag
        self.manifest = manifest
        self.log_dir = Path(log_dir)
        self.seed = seed
        ctx = BackendContext(tag=tag, manifest=manifest, log_dir=self.log_dir, seed=seed,
                             calibrate=calibrate)
        self.backend: LinkBackend = REGISTRY[self.backend_name](ctx, **backend_options)
        self._links: dict[str, _Link] = {}
        # One-way latency of one switch on this machine (measured by the runner, see
        # ovs_calibrate). A direction that enters a switch has it subtracted from its delay, so
        # the end-to-end delay of a path matches the sum of the configured link delays.
        self.switch_hop_ms = 0.0
        self.shortfall_ms: dict[str, dict[str, float]] = {}  # link -> direction -> worst uncompensated
        self._lock = threading.Lock()
        self._queue_modelled: set[tuple[str, str]] = set()  # (link, direction) that ever had a rate
        self.queue_configs: dict[tuple[str, str], Any] = {}  # (link, direction) -> per-slice queues set
        self._started = False
        self._link_class: type | None = None
        self._cell_class: type | None = None
        self.cell_plane = CellPlane(self, ctx, self._links)  # the cells (see the docstring)

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the backend (for the relay: its namespace and process, then calibration)."""
        if self._started:
            return
        self._started = True
        self.backend.start()

    def stop(self) -> None:
        """Stop schedules and the backend, remove what it created. Idempotent."""
        self.cell_plane.stop()
        self.backend.stop()
        self._started = False

    def failed(self) -> RunFailed | None:
        """The backend's process or thread that died mid-run (relay, tc batch, replayer), or None."""
        if not self._started:
            return None
        return self.cell_plane.failed() or self.backend.failed()

    def data_path_pids(self) -> list[int]:
        """Processes of the data path (relays), for CPU accounting."""
        return [*self.backend.data_path_pids(), *self.cell_plane.data_path_pids()]

    @property
    def link_class(self) -> type:
        """A Mininet Link subclass bound to this engine (see mnlink.make_link_class)."""
        if self._link_class is None:
            from topologies.links.mnlink import make_link_class  # imports Mininet: only when used
            self._link_class = make_link_class(self)
        return self._link_class

    @property
    def cell_class(self) -> type:
        """A Mininet Switch subclass whose data plane is a cell of this engine (cells.make_cell_class)."""
        if self._cell_class is None:
            from topologies.links.cells import make_cell_class  # imports Mininet: only when used
            self._cell_class = make_cell_class(self)
        return self._cell_class

    @property
    def cell_backend(self) -> RelayBackend | None:
        """The relay serving cells: the backend itself if it is the relay, else the cells' own."""
        return self.cell_plane.relay

    @property
    def calibration(self) -> dict[str, Any]:
        """The backend's own latency (``offset_ms``, ``floor_ms``, ``measured``, method)."""
        return self.backend.calibration()

    # --- live control ----------------------------------------------------------------------
    def set_params(self, link_name: str, direction: str, params: DirectionParams) -> None:
        """Change one direction now; hitless (nothing queued is lost, order kept). Cancels a schedule."""
        link = self._emulated(link_name, direction)
        if not isinstance(params, DirectionParams):
            raise TypeError("params must be a DirectionParams")
        setting = self._setting(link, direction, params)
        link.params[direction] = params
        link.backend.set(link.backend_link, direction, setting)

    def set_schedule(self, link_name: str, direction: str, rows: Sequence[ScheduleRow],
                     t0_monotonic_s: float) -> None:
        """Replay ``rows`` (t_s relative to ``t0_monotonic_s`` on CLOCK_MONOTONIC) on one direction."""
        rows = list(rows)
        check_schedule(rows)
        link = self._emulated(link_name, direction)
        base = link.params[direction]
        settings = [self._setting(link, direction, base.with_row(r), r.t_s) for r in rows]
        link.backend.schedule(link.backend_link, direction, settings, t0_monotonic_s)
        link.params[direction] = settings[-1].params

    def stats(self, link_name: str) -> dict[str, dict[str, Any]]:
        """Per-direction counters ``{"uplink": {...}, "downlink": {...}}`` (keys: see the backend)."""
        link = self._emulated(link_name, UPLINK)
        return link.backend.stats(link.backend_link)

    def counters(self) -> dict[str, Any]:
        """Every emulated link's counters now: ``{"links": {link: {direction: counters}}, "totals":
        {direction: {key: sum}}, "unavailable": {link: why}}``; a link whose counters cannot be read
        is listed in ``unavailable``, never an exception (this runs at teardown, also after a
        failure). Each direction also gets ``queue_modelled`` (it had a rate at some time, so queue
        drops are the bottleneck model's) and ``held`` = packets in the data path now (relay:
        rx - tx - every drop; netem: its backlog)."""
        links: dict[str, dict[str, dict[str, Any]]] = {}
        unavailable: dict[str, str] = {}
        for name, link in sorted(self._links.items()):
            if not link.emulated or link.backend_link is None:
                continue
            try:
                links[name] = self.stats(name)
            except Exception as exc:  # dead relay, tc failure, ...
                unavailable[name] = f"{type(exc).__name__}: {exc}"
                continue
            for direction, counters in links[name].items():
                # an NR cell's buffer drops are its model's (a UE's buffer full: ue_buffer_bytes)
                nr_cell = link.inside == (True, True) and link.cell in self.cell_plane.nr_plans
                counters["queue_modelled"] = (name, direction) in self._queue_modelled or nr_cell
                if "rx" in counters and "tx" in counters:
                    counters["held"] = counters["rx"] - counters["tx"] - sum(
                        v for k, v in counters.items() if k.startswith("dropped_") and isinstance(v, int))
                elif "backlog_pkts" in counters:  # netem: what its queue holds now
                    counters["held"] = counters["backlog_pkts"]
        nr_cells = self.cell_plane.nr_counters()
        for cell, stats in nr_cells.items():  # what an NR cell's buffers hold is in the cell's link
            for direction, held in stats.get("buffered", {}).items():
                counters = links.get(self.cell_plane.cells[cell], {}).get(direction)
                if counters is not None and "held" in counters:
                    counters["held"] += held
        totals: dict[str, dict[str, int]] = {}
        for per_direction in links.values():
            for direction, counters in per_direction.items():
                total = totals.setdefault(direction, {})
                for key, value in counters.items():
                    if isinstance(value, int) and not isinstance(value, bool):
                        total[key] = max(total.get(key, 0), value) if key.endswith("_max_ns") \
                            else total.get(key, 0) + value
        return {"backend": self.backend_name, "links": links, "totals": totals,
                "unavailable": unavailable, "nr_cells": nr_cells}

    def metadata(self) -> dict[str, Any]:
        """Backend, its own keys, calibration, versions and every link's counters (metadata.json)."""
        return {
            "backend": self.backend_name,
            **dict.fromkeys(metadata_keys()),  # every backend's keys; None for the others'
            **self.backend.metadata(),
            "calibration": self.calibration,
            "seed": self.seed,
            "links": len(self._links),
            "cells": self.cell_plane.metadata(),
            "switch_hop_ms_compensated": self.switch_hop_ms,
            # link -> direction -> worst part of the charged switch latency a delay could not absorb
            "switch_hop_shortfall_ms": {k: dict(v) for k, v in self.shortfall_ms.items() if any(v.values())},
            "versions": tool_versions(),
            "link_counters": self.counters(),
        }

    # --- building links (the Mininet link class, mnlink.py, calls these in this order) ----------
    def add_link(self, name: str, emulated: bool, switch_hops: Mapping[str, int] | None = None,
                 cell: str | None = None, cell_end: int = 0, ue_mac: str | None = None,
                 ue_slice: str | None = None) -> None:
        """Register link ``name``; ``emulated`` False for a plain veth pair; ``switch_hops``: per
        direction, the number of switches it enters (their latency is compensated). ``cell``: the
        link's end ``cell_end`` (1 = node1, 2 = node2) is that cell: node2 for a UE's radio link
        (it joins the cell; ``ue_mac``: the UE's address, which the cell delivers to), node1 for
        the cell's backhaul."""
        hops = {d: 0 for d in DIRECTIONS} | {check_direction(d): n for d, n in (switch_hops or {}).items()}
        fields = self.cell_plane.link_fields(name, cell, cell_end, ue_mac)  # checked by the cell plane
        fields["ue_slice"] = ue_slice
        with self._lock:
            if name in self._links:
                raise ValueError(f"link_name {name!r} is already used in this engine")
            self._links[name] = _Link(name=name, emulated=emulated or cell is not None, switch_hops=hops,
                                      **fields)

    def make_intf_pair(self, name: str, end1: Endpoint, end2: Endpoint,
                       options: Mapping[str, Any] | None = None) -> None:
        """Have the backend create an emulated link's interfaces (node1's end first)."""
        link = self._link(name)
        if link.cell is not None:  # a cell's link: made in the cells' relay
            link.backend_link = self.cell_plane.make_inside_link(link, end1, end2, options)
        else:
            link.backend_link = self.backend.make_intf_pair(name, end1, end2, dict(options or {}))

    # --- cells (the cell plane's: see its module) -----------------------------------------------
    def add_cell(self, cell: str, uplink: DirectionParams, downlink: DirectionParams,
                 nr: Any = None) -> str:
        """Create cell ``cell`` (its UEs share ``uplink`` / ``downlink``; ``nr``: an NrPlan, the NR
        slot model instead); the name of its link."""
        return self.cell_plane.add_cell(cell, uplink, downlink, nr)

    def set_slice_shares(self, cell: str, plan: Any) -> None:
        """Change running NR cell ``cell``'s slice shares to ``plan``'s (an NrPlan of the same
        slices): a RAN controller's policy change, from the next slot (relay/nrcell.c)."""
        self.cell_plane.set_slice_shares(cell, plan)

    def set_queues(self, link_name: str, direction: str, config: Any) -> None:
        """Per-slice DSCP queues (a topologies.links.queues.QueueConfig; None: one FIFO again) on
        a shaped direction of ``link_name``. The relay's links have them; on the netem path they
        are not built yet, which is said here rather than ignored."""
        link = self._emulated(link_name, direction)
        setter = getattr(link.backend, "set_queues", None)
        if setter is None:
            raise RunFailed(f"link {link_name!r}: per-slice queues run on the relay link backend only; "
                            f"this link is on {self.backend_name} (set site.link_backend = \"relay\")")
        setter(link.backend_link, direction, config)
        self.queue_configs[(link_name, direction)] = config

    def shaped_directions(self) -> list[tuple[str, str]]:
        """(link, direction) of every emulated direction with a rate now, where a queue forms (an NR
        cell's own link is left out: its model schedules, it has no serialiser)."""
        out = []
        for name, link in sorted(self._links.items()):
            if not link.emulated or link.backend_link is None or link.cell in self.cell_plane.nr_plans \
                    and link.inside == (True, True):
                continue
            out += [(name, d) for d in DIRECTIONS
                    if d in link.params and link.params[d].rate_mbps is not None]
        return out

    def set_n3_dscp(self, radio_link: str, dscp: int | None) -> None:
        """The UE of ``radio_link``: its uplink IPv4 packets get ``dscp`` entering its cell, as a gNB
        marks N3 per QoS flow (None: left as they are; relay/cell.c)."""
        self.cell_plane.set_n3_dscp(self._link(radio_link), dscp)

    def nr_plan(self, cell: str) -> Any:
        """The NrPlan NR cell ``cell`` runs now, or None (not an NR cell)."""
        return self.cell_plane.nr_plans.get(cell)

    def interrupt_ue(self, radio_link: str, from_monotonic_s: float, until_monotonic_s: float) -> None:
        """A handover's interruption of the UE of ``radio_link`` (an NR cell's UE): not scheduled from
        ``from`` until ``until`` (CLOCK_MONOTONIC s), its buffers wait (relay/nrcell.c)."""
        self.cell_plane.interrupt_ue(self._links[radio_link], from_monotonic_s, until_monotonic_s)

    def move_ue(self, radio_link: str, cell: str) -> None:
        """Move the UE of ``radio_link`` to ``cell`` while the run goes on (its queued packets move
        with it; downlink frames that reach the old cell are forwarded to the new one, as over Xn:
        relay/cell.c, ``xn_forwarded``)."""
        self.cell_plane.move_ue(self._link(radio_link), cell)

    def cell_of(self, radio_link: str) -> str | None:
        """The cell a UE's radio link is in now (None: not a cell's radio link)."""
        return self.cell_plane.cell_of(self._link(radio_link))

    def offloads(self, name: str, uplink: DirectionParams, downlink: DirectionParams,
                 txo: bool) -> tuple[str, ...]:
        """``ethtool -K`` words for both node-side interfaces of emulated link ``name``."""
        link = self._link(name)
        return link.backend.offloads(uplink, downlink, txo)

    def attach(self, name: str, uplink: DirectionParams, downlink: DirectionParams) -> None:
        """Start emulating link ``name`` (its interfaces exist) with these parameters."""
        link = self._link(name)
        link.params = {UPLINK: uplink, DOWNLINK: downlink}
        settings = [self._setting(link, d, link.params[d]) for d in DIRECTIONS]
        link.backend.attach(link.backend_link, *settings)
        self.cell_plane.attached(link)  # a UE joins its cell, a backhaul becomes its cell's

    def remove_link(self, name: str) -> None:
        """Stop emulating link ``name`` and forget it (before its interfaces are deleted)."""
        link = self._links.pop(name, None)
        if link is not None and link.backend_link is not None:
            link.backend.detach(link.backend_link)

    # --- internals --------------------------------------------------------------------------------
    def _link(self, name: str) -> _Link:
        link = self._links.get(name)
        if link is None:
            raise KeyError(f"no link named {name!r}; known: {', '.join(sorted(self._links))}")
        return link

    def _emulated(self, name: str, direction: str) -> _Link:
        check_direction(direction)
        link = self._link(name)
        if not link.emulated:
            raise ValueError(f"link {name!r} was built transparent (a plain veth pair); "
                             "build it with dynamic=True to change it at run time")
        if link.backend_link is None:
            raise ValueError(f"link {name!r} is not built yet")
        return link

    def _setting(self, link: _Link, direction: str, params: DirectionParams, t_s: float = 0.0) -> Setting:
        """``params`` with the delay compensated; warns below the floor, records any shortfall.

        A direction whose output stays inside the cells' relay (a radio uplink into its cell, a
        backhaul downlink, a cell) hands its packets on at their exact departure time: the relay's
        own latency is charged once, to the direction that leaves the relay."""
        calibration = link.backend.calibration()
        inside_out = link.inside[1] if direction == UPLINK else link.inside[0]
        floor = float(calibration.get("floor_ms", 0.0))
        if 0 < params.delay_ms < floor and not inside_out:
            log.warning("link %s %s: delay_ms %.3f is below what this machine can emulate "
                        "(the %s backend's own latency %.3f ms); it will measure about %.3f ms",
                        link.name, direction, params.delay_ms,
                        self.backend_name if link.cell is None else "relay", floor, floor)
        if params.rate_mbps is not None:
            self._queue_modelled.add((link.name, direction))
        hops = link.switch_hops[direction]
        delay_ms, short = compensate(params.delay_ms, hops=hops, hop_ms=self.switch_hop_ms,
                                     own_ms=0.0 if inside_out else float(calibration["offset_ms"]))
        if hops and self.switch_hop_ms > 0 and params.delay_ms > 0:
            # how much of the charged switch latency this delay could not absorb (worst so far)
            worst = self.shortfall_ms.setdefault(link.name, {})
            worst[direction] = round(max(worst.get(direction, 0.0), short), 4)
        return Setting(params, delay_ms, t_s)

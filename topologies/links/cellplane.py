"""CellPlane: the cells of one LinkEngine, a link-engine strategy beside its backend.

Cells (gNBs, :mod:`topologies.links.cells`) always run in a relay, whatever the backend: their UEs
share one capacity, which netem cannot do. With the relay backend they share its process; with
another backend the plane starts a relay for the cells alone, on the first cell. A cell's radio and
backhaul links end inside that relay; every other link stays on the engine's backend.

The engine keeps every link (cells' too) by name, with its parameters, compensation and counters;
the plane holds what is the cells' own: the relay serving them, each cell's link, the ends inside
the relay, which cell a UE is in. The engine hands a link to the plane when its ``cell`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from topologies.errors import RunFailed
from topologies.links.backend import BackendContext, BackendLink, Endpoint, LinkBackend
from topologies.links.backends.relay import RelayBackend
from topologies.links.params import DirectionParams

if TYPE_CHECKING:
    from topologies.nr.config import NrPlan


class CellLink(Protocol):
    """The part of the engine's record of a link the plane reads and sets."""

    name: str
    backend_link: BackendLink | None
    cell: str | None              # a cell's own link, radio link or backhaul: the cell
    inside: tuple[bool, bool]     # (node1 end, node2 end) inside the cells' relay
    ue_mac: str | None            # a UE's radio link: the UE's address
    ue_slice: str | None          # a UE's radio link: the UE's slice (NR cells schedule by it)


class CellHost(Protocol):
    """The part of :class:`topologies.links.engine.LinkEngine` the plane uses."""

    backend: LinkBackend

    def add_link(self, name: str, emulated: bool, switch_hops: Mapping[str, int] | None = None,
                 cell: str | None = None, cell_end: int = 0, ue_mac: str | None = None) -> None: ...
    def attach(self, name: str, uplink: DirectionParams, downlink: DirectionParams) -> None: ...


class CellPlane:
    """The cells of ``engine``, whose records of links by name are ``links``."""

    def __init__(self, engine: CellHost, ctx: BackendContext, links: Mapping[str, CellLink]) -> None:
        self._engine = engine
        self._ctx = ctx
        self._links = links
        self.relay: RelayBackend | None = None  # the relay serving cells (see the module docstring)
        self.cells: dict[str, str] = {}         # cell name -> the link name of its capacity
        self.nr_plans: dict[str, NrPlan] = {}   # cell name -> its NR model's plan (NR cells only)
        self.share_changes: list[dict[str, Any]] = []  # run-time slice share changes, in order

    # --- cells ----------------------------------------------------------------------------------
    def add_cell(self, cell: str, uplink: DirectionParams, downlink: DirectionParams,
                 nr: NrPlan | None = None) -> str:
        """Create cell ``cell`` (its UEs share ``uplink`` / ``downlink``, or with ``nr`` the NR slot
        model's resource blocks: relay/nrcell.c); the name of its link."""
        if cell in self.cells:
            raise ValueError(f"cell {cell!r} exists already in this engine")
        if self.relay is None:
            if isinstance(self._engine.backend, RelayBackend):
                self.relay = self._engine.backend
            else:  # netem cannot share a capacity: cells get a relay of their own
                self.relay = RelayBackend(self._ctx)
                self.relay.start()
        name = f"cell_{cell}"
        self.cells[cell] = name
        self._engine.add_link(name, emulated=True, cell=cell, cell_end=1)
        link = self._links[name]
        link.inside = (True, True)
        link.backend_link = self.make_inside_link(link, None, None, None)
        self._engine.attach(name, uplink, downlink)
        if nr is not None:
            self.relay.nr_configure(link.backend_link, nr.wire_lines())
            self.nr_plans[cell] = nr
        return name

    def move_ue(self, link: CellLink, cell: str) -> None:
        """Move the UE of radio link ``link`` to ``cell`` while the run goes on (its queued packets
        move with it; downlink frames that reach the old cell are forwarded to the new one, as over
        Xn: relay/cell.c, ``xn_forwarded``)."""
        if link.cell is None or link.inside != (False, True):
            raise ValueError(f"link {link.name!r} is not a UE's radio link in a cell")
        if cell not in self.cells:
            raise ValueError(f"cell {cell!r}: allowed {', '.join(sorted(self.cells))}")
        assert self.relay is not None
        self.relay.cell_join(link.backend_link, self._cell_link(cell), str(link.ue_mac))
        link.cell = cell

    def interrupt_ue(self, link: CellLink, from_s: float, until_s: float) -> None:
        """The UE of radio link ``link`` is not scheduled in [from_s, until_s) (CLOCK_MONOTONIC)."""
        if link.cell is None or link.inside != (False, True) or link.cell not in self.nr_plans:
            raise ValueError(f"link {link.name!r} is not a UE's radio link in an NR cell")
        assert self.relay is not None
        self.relay.nr_interrupt(link.backend_link, round(from_s * 1e9), round(until_s * 1e9))

    def set_slice_shares(self, cell: str, plan: NrPlan) -> None:
        """Change the running NR cell ``cell``'s slice shares to ``plan``'s (the same slices; from
        the next slot, buffers and counters kept: relay/nrcell.c). Recorded in ``share_changes``."""
        old = self.nr_plans.get(cell)
        if old is None:
            known = ", ".join(sorted(self.nr_plans)) or "(none)"
            raise ValueError(f"cell {cell!r}: allowed NR cells {known}")
        plan = old.with_shares(plan.slices)
        assert self.relay is not None
        self.relay.nr_configure(self._cell_link(cell), plan.slice_lines())
        self.nr_plans[cell] = plan
        self.share_changes.append({"cell": cell, "monotonic_s": time.monotonic(),
                                   "slices": plan.metadata()["slices"]})

    def set_n3_dscp(self, link: CellLink, dscp: int | None) -> None:
        """The UE of radio link ``link``: its uplink gets ``dscp`` entering its cell (the gNB's N3
        marking; None: left as it is)."""
        if link.cell is None or link.inside != (False, True):
            raise ValueError(f"link {link.name!r} is not a UE's radio link in a cell")
        assert self.relay is not None
        self.relay.n3_dscp(link.backend_link, dscp)

    def cell_of(self, link: CellLink) -> str | None:
        """The cell a UE's radio link is in now (None: not a cell's radio link)."""
        return link.cell

    # --- a cell's links (the engine calls these from add_link, make_intf_pair, attach) ----------
    def link_fields(self, name: str, cell: str | None, cell_end: int, ue_mac: str | None) -> dict[str, Any]:
        """The plane's fields of the engine's record of new link ``name``: who serves it (the
        engine's backend, or for a cell's link the cells' relay), its cell, which ends are inside
        the relay (``cell_end`` 1 = node1, 2 = node2) and a UE's address. Checks them first."""
        if cell is not None and (cell not in self.cells or cell_end not in (1, 2)):
            raise ValueError(f"link {name!r}: cell {cell!r} end {cell_end}; known cells: "
                             f"{', '.join(sorted(self.cells)) or 'none'}, ends 1 or 2")
        if cell is not None and cell_end == 2 and not ue_mac:
            raise ValueError(f"link {name!r}: a UE's radio link needs ue_mac")
        return {"backend": self._engine.backend if cell is None else self.relay, "cell": cell,
                "inside": (cell_end == 1, cell_end == 2), "ue_mac": ue_mac}

    def make_inside_link(self, link: CellLink, end1: Endpoint | None, end2: Endpoint | None,
                         options: Mapping[str, Any] | None) -> BackendLink:
        """A cell's link in the relay: its ends inside the relay get no interface."""
        if options:
            raise ValueError(f"link {link.name!r}: a cell's links take no backend_options")
        assert self.relay is not None
        return self.relay.make_inside_link(
            link.name, None if link.inside[0] else end1, None if link.inside[1] else end2)

    def attached(self, link: CellLink) -> None:
        """After ``link`` is attached: a UE's radio link joins its cell, a backhaul becomes the cell's
        (nothing for any other link)."""
        if link.cell is None or link.inside == (True, True):
            return
        assert self.relay is not None
        cell = self._cell_link(link.cell)
        if link.inside[1]:  # a UE's radio link
            plan = self.nr_plans.get(link.cell)
            if plan is not None:
                self.relay.nr_ue(link.backend_link, plan.slice_index(str(link.ue_slice)))
            self.relay.cell_join(link.backend_link, cell, str(link.ue_mac))
        else:               # the cell's backhaul
            self.relay.cell_backhaul(cell, link.backend_link)

    # --- the cells' own relay (only when it is not the engine's backend) ------------------------
    def stop(self) -> None:
        """Stop the cells' own relay, if any."""
        if self.relay is not None and self.relay is not self._engine.backend:
            self.relay.stop()

    def failed(self) -> RunFailed | None:
        """The cells' own relay if it died, or None."""
        return self.relay.failed() if self.relay not in (None, self._engine.backend) else None

    def data_path_pids(self) -> list[int]:
        """The cells' own relay process, if any."""
        return self.relay.data_path_pids() if self.relay not in (None, self._engine.backend) else []

    def metadata(self) -> dict[str, Any]:
        """Who serves the cells, their links and the relay's calibration (metadata.json ``cells``)."""
        return {"served_by": "relay" if self.cells else None, "links": dict(self.cells),
                "calibration": self.relay.calibration() if self.relay else None,
                "nr": {cell: plan.metadata() for cell, plan in self.nr_plans.items()},
                **({"share_changes": self.share_changes} if self.share_changes else {})}

    def nr_counters(self) -> dict[str, Any]:
        """Each NR cell's model counters now (relay nrstats: per slice and direction packets, HARQ,
        PRBs, the model's delay histogram), plus ``buffered``: packets its buffers hold per
        direction; a cell whose counters cannot be read maps to ``{"unavailable": why}``."""
        out: dict[str, Any] = {}
        for cell in self.nr_plans:
            try:
                stats = self.relay.nr_stats(self._cell_link(cell))  # type: ignore[union-attr]
            except Exception as exc:  # a dead relay at teardown: say so, never raise
                out[cell] = {"unavailable": f"{type(exc).__name__}: {exc}"}
                continue
            stats["buffered"] = {d: sum(s[d]["in"] - s[d]["out"] - s[d]["dropped_harq"]
                                        - s[d]["dropped_buffer"]
                                        for s in stats["slices"]) for d in ("uplink", "downlink")}
            stats["slice_names"] = [name for name, _ in self.nr_plans[cell].slices]
            out[cell] = stats
        return out

    def _cell_link(self, cell: str) -> BackendLink | None:
        return self._links[self.cells[cell]].backend_link

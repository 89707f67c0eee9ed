"""Scenario model v1: a commented TOML file validated into typed, frozen objects.

``load_scenario(path)`` (or ``load_scenario(None)`` for the built-in default) either returns a
complete :class:`Scenario` or raises :class:`~topologies.validate.ConfigError` naming the key
path (or the file), the bad value and what is allowed; nothing is started before that. Settings
that work but oddly (a link down for the whole run, more offered load than a link's rate, a
deadline no packet can meet) are listed in ``Scenario.warnings`` (see
:mod:`topologies.scenario_warnings`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from topologies.backup import LEO_PROTECTION, Backup, Outage, parse_backup, parse_outages
from topologies.config_schema import parse_table
from topologies.links import BACKENDS, DirectionParams
from topologies.mobility import CellSite, MobilityConfig, MobilitySchedule, Route, mobility_schedule
from topologies.nr.config import (
    DEFAULT_SLICE_RAN,
    RADIO_MODELS,
    NrCell,
    NrPlan,
    SliceRan,
    check_shares,
    parse_nr_cell,
    parse_slice_ran,
)
from topologies.switches import DATAPATHS
from topologies.traffic_spec import TrafficSpec, parse_traffic
from topologies.validate import ConfigError, Table, read_toml_file

DEFAULT_SCENARIO = "default_scenario.toml"
UE_KINDS = {"agv": "agv", "camera": "cam", "sensor": "sensor"}  # kind -> node name prefix
# Where the in-orbit compute host sits: on the designated computing satellite reached over ISLs
# ([leo.orbit.compute] sat_index), or on whichever satellite serves the terminal.
COMPUTE_ATTACH = ("computing_satellite", "serving_satellite")
MAX_UES = 1000
# The link engine (relay and netem) takes 32-bit seeds.
MAX_SEED = 2**32 - 1
SEED_WHY = "the link engine's relay and netem take 32-bit seeds"


@dataclass(frozen=True)
class LinkPair:
    """Both directions of one link; ``uplink`` points towards the core/cloud."""

    uplink: DirectionParams = DirectionParams()
    downlink: DirectionParams = DirectionParams()


@dataclass(frozen=True)
class Slice:
    name: str
    dscp: int
    latency_bound_ms: float
    reliability_target_pct: float
    radio: LinkPair               # the fixed radio model's per-slice air interface
    ran: SliceRan = DEFAULT_SLICE_RAN  # the slice's share of every NR cell (topologies/nr)
    # The most the slice's UEs may send together (Mbit/s), policed by an OF1.3 meter at the switch
    # they attach to (the UPF; controllers/policy.py slice_meters); None: no cap.
    max_rate_mbps: float | None = None
    # "steer": the controller moves the slice's cloud traffic over [backup] around each LEO
    # reconfiguration instant and on a LEO fault (topologies/backup.py); "none": it stays on LEO.
    leo_protection: str = "none"


# A slice's max_rate_mbps: 1 kbit/s (a meter's unit) .. 100 Gbit/s; controllers.policy checks the
# same range (MAX_RATE_MBPS_RANGE; topologies may not import controllers).
SLICE_MAX_RATE_MBPS = (0.001, 100_000.0)


@dataclass(frozen=True)
class Cell:
    name: str
    backhaul: LinkPair
    # What the cell's UEs share, per direction (rate_mbps, queue limits; delay/loss apply too):
    # served inside the relay, after each UE's own radio link (topologies/links/cells.py).
    capacity: LinkPair = LinkPair()
    # "nr": the slot-level NR model in the relay (topologies/nr, relay/nrcell.c), whose parameters
    # are ``nr``; "fixed": each slice's typed-in radio table, for calibration and ablation.
    radio_model: str = "fixed"
    nr: NrCell | None = None
    site: CellSite | None = None  # where its antenna is on the floor plan ([mobility])


@dataclass(frozen=True)
class UeGroup:
    kind: str
    count: int
    cell: str
    slice: str
    traffic: TrafficSpec


@dataclass(frozen=True)
class Ue:
    name: str
    kind: str
    cell: str
    slice: str
    traffic: TrafficSpec


@dataclass(frozen=True)
class Core:
    upf: str
    edge: str
    edge_link: LinkPair


@dataclass(frozen=True)
class LeoUplink:
    """The satellite link between the user terminal and the ground station.

    Either fixed (``link``) or, with ``orbit`` (a ``topologies.leo.LeoOrbitConfig``), replayed
    from an orbit-derived schedule that covers terminal -> satellite(s) -> ground station -> PoP
    -> cloud; ``compute_host`` optionally names an in-orbit compute host reached over ISLs.
    """

    terminal: str
    ground_station: str
    link: LinkPair
    orbit: Any = None
    compute_host: str | None = None
    compute_attach: str = "computing_satellite"  # or "serving_satellite"
    outages: tuple[Outage, ...] = ()  # [[leo.outages]]: the satellite link down (orbit model only)


@dataclass(frozen=True)
class Cloud:
    name: str
    terrestrial: LinkPair


@dataclass(frozen=True)
class Mobility:
    """``[mobility]``: how UEs measure and hand over, and the routes they drive."""

    config: MobilityConfig
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class Scenario:
    """A whole factory site. ``source`` says where it was read from."""

    name: str
    seed: int
    link_backend: str
    ovs_datapath: str
    slices: tuple[Slice, ...]
    cells: tuple[Cell, ...]
    ue_groups: tuple[UeGroup, ...]
    core: Core
    leo: LeoUplink
    cloud: Cloud
    source: str = "embedded default"
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    # settings that work but oddly, one line each ("key.path: what happens"); see scenario_warnings
    warnings: tuple[str, ...] = field(default=(), compare=False)
    mobility: Mobility | None = None  # [mobility]: routes on the floor plan, handovers
    backup: Backup | None = None  # [backup]: a second backhaul the controller can steer slices over

    def mobility_schedule(self, duration_s: float) -> MobilitySchedule | None:
        """The run's handovers and measurements (topologies/mobility.py), or None without [mobility]."""
        if self.mobility is None:
            return None
        sites = {c.name: c.site for c in self.cells if c.site is not None}
        carriers = {c.name: c.nr.carrier_ghz for c in self.cells if c.nr is not None}
        start = {u.name: u.cell for u in self.ues}
        return mobility_schedule(self.mobility.config, self.mobility.routes, sites, carriers, start,
                                 duration_s, self.seed)

    @property
    def ues(self) -> tuple[Ue, ...]:
        """UEs expanded from the groups, numbered per kind (agv1, agv2, cam1, ...)."""
        counters: dict[str, int] = {}
        ues = []
        for group in self.ue_groups:
            prefix = UE_KINDS[group.kind]
            for _ in range(group.count):
                counters[prefix] = counters.get(prefix, 0) + 1
                ues.append(Ue(f"{prefix}{counters[prefix]}", group.kind, group.cell, group.slice,
                              group.traffic))
        return tuple(ues)

    def slice(self, name: str) -> Slice:
        return next(s for s in self.slices if s.name == name)

    def cell(self, name: str) -> Cell:
        return next(c for c in self.cells if c.name == name)

    def nr_plan(self, cell_name: str) -> NrPlan | None:
        """What cell ``cell_name``'s NR model runs (its parameters, every slice's share), or None
        for a cell with the fixed radio model."""
        cell = self.cell(cell_name)
        if cell.nr is None:
            return None
        return NrPlan(cell.nr, tuple((s.name, s.ran) for s in self.slices))

    def servers(self) -> tuple[str, ...]:
        return (self.core.edge, self.cloud.name)

    def host_names(self) -> tuple[str, ...]:
        """Every emulated host: UEs, edge and cloud servers, and the in-orbit compute host."""
        extra = (self.leo.compute_host,) if self.leo.compute_host else ()
        return tuple(u.name for u in self.ues) + self.servers() + extra


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read and validate a scenario file; ``None`` means the built-in default."""
    if path is None:
        text = resources.files("topologies").joinpath(DEFAULT_SCENARIO).read_text(encoding="utf-8")
        return parse_scenario(tomllib.loads(text), "embedded default", None)
    path = Path(path)
    raw = read_toml_file(path, "scenario")
    return parse_scenario(raw, str(path), path.resolve().parent)


def parse_scenario(raw: dict, source: str = "<dict>", base_dir: Path | None = None) -> Scenario:
    """Validate a parsed TOML document into a :class:`Scenario`."""
    with Table(raw, "") as root:
        with root.table("site") as site:
            name = site.str("name")
            seed = site.int("seed", 1, min=0, max=MAX_SEED, why=SEED_WHY)
            link_backend = site.str("link_backend", "auto", choices=BACKENDS)
            ovs_datapath = site.str("ovs_datapath", "auto", choices=DATAPATHS)
        slices = tuple(_slice(t) for t in root.tables("slices"))
        cells = tuple(_cell(t) for t in root.tables("cells"))
        with root.table("core") as t:
            core = Core(_node_name(t, "upf", "upf1"), _node_name(t, "edge", "edge1"),
                        _link_pair(t, "edge_link"))
        with root.table("leo") as t:
            leo = _leo(t, base_dir)
        with root.table("cloud") as t:
            cloud = Cloud(_node_name(t, "name", "cloud1"), _link_pair(t, "terrestrial"))
            if leo.orbit is not None and cloud.terrestrial != LinkPair():
                raise ConfigError(t.key("terrestrial"), t.raw["terrestrial"],
                                  "no terrestrial table when [leo.orbit] is set: the orbit model "
                                  "already includes ground station -> PoP -> cloud")
        backup = None
        if root.has("backup"):
            with root.table("backup") as t:
                backup = parse_backup(t, _link_pair(t, "link"))
        mobility_raw = root.get("mobility", None)
        groups_tables = root.tables("ue_groups")
        servers = (core.edge, cloud.name)
        groups = tuple(_ue_group(t, slices, cells, servers) for t in groups_tables)
    _check_unique(root.key("slices"), [s.name for s in slices])
    _check_unique(root.key("cells"), [c.name for c in cells])
    for i, sl in enumerate(slices):  # the controller tells slices apart by DSCP
        if any(other.dscp == sl.dscp for other in slices[:i]):
            raise ConfigError(f"slices[{i}].dscp", sl.dscp, "a DSCP value no other slice uses")
    if not slices:
        raise ConfigError("slices", [], "at least one [[slices]] table")
    if not cells:
        raise ConfigError("cells", [], "at least one [[cells]] table")
    if any(c.nr is not None for c in cells):
        check_shares([(s.name, s.ran) for s in slices])
    if not groups:
        raise ConfigError("ue_groups", [], "at least one [[ue_groups]] table (a run needs a UE)")
    for i, sl in enumerate(slices):
        if sl.leo_protection != "none" and backup is None:
            raise ConfigError(f"slices[{i}].leo_protection", sl.leo_protection,
                              '"none" unless the scenario has a [backup] table (the backhaul to steer over)')
    total = sum(g.count for g in groups)
    if total > MAX_UES:
        raise ConfigError("ue_groups", total, f"at most {MAX_UES} UEs in all")
    scenario = Scenario(name, seed, link_backend, ovs_datapath, slices, cells, groups, core, leo,
                        cloud, source, raw, backup=backup)
    if mobility_raw is not None:
        scenario = replace(scenario, mobility=_mobility(Table(mobility_raw, "mobility"), scenario))
    _check_interface_names(scenario)
    names = ([c.name for c in cells] + [u.name for u in scenario.ues]
             + [core.upf, core.edge, leo.terminal, leo.ground_station, cloud.name]
             + ([leo.compute_host] if leo.compute_host else [])
             + ([backup.switch] if backup else []))
    _check_unique("node names", names)
    from topologies.scenario_warnings import scenario_warnings

    return replace(scenario, warnings=scenario_warnings(scenario))


def _slice(t: Table) -> Slice:
    with t:
        return Slice(
            name=_name(t, "name"),
            dscp=t.int("dscp", min=0, max=63),
            latency_bound_ms=t.number("latency_bound_ms", min=0, min_exclusive=True, max=3_600_000,
                                      why="one hour, the longest run"),
            reliability_target_pct=t.number("reliability_target_pct", 99.9, min=0, max=100),
            radio=_link_pair(t, "radio"),
            ran=parse_slice_ran(t.table("ran")) if t.has("ran") else _absent(t, "ran", DEFAULT_SLICE_RAN),
            max_rate_mbps=t.optional_number("max_rate_mbps", min=SLICE_MAX_RATE_MBPS[0],
                                            max=SLICE_MAX_RATE_MBPS[1]),
            leo_protection=t.str("leo_protection", "none", choices=LEO_PROTECTION),
        )


def _cell(t: Table) -> Cell:
    with t:
        name, backhaul, capacity = _name(t, "name"), _link_pair(t, "backhaul"), _link_pair(t, "capacity")
        model = t.str("radio_model", "fixed", choices=RADIO_MODELS)
        site = _site(t)
        if model != "nr":
            if t.has("nr"):
                raise ConfigError(t.key("nr"), t.get("nr"), 'only with radio_model = "nr"')
            return Cell(name, backhaul, capacity, model, None, site)
        if not (capacity.uplink.is_transparent() and capacity.downlink.is_transparent()):
            raise ConfigError(t.key("capacity"), t.get("capacity"),
                              'no capacity table with radio_model = "nr" (the NR model gives the capacity)')
        nr = parse_nr_cell(t.table("nr") if t.has("nr") else Table({}, t.key("nr")))
        return Cell(name, backhaul, capacity, model, nr, site)


def _is_point_m(value: Any) -> bool:
    """A floor-plan point: [x, y], numbers in metres within +-500."""
    return isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= 500 for v in value)


def _site(t: Table) -> CellSite | None:
    """A cell's place on the floor plan: position_m = [x, y] (height_m, tx_power_dbm optional)."""
    if not t.has("position_m"):
        for key in ("height_m", "tx_power_dbm"):
            if t.has(key):
                raise ConfigError(t.key(key), t.get(key), "only with position_m")
        t.get("position_m", None)
        return None
    pos = t.get("position_m")
    if not _is_point_m(pos):
        raise ConfigError(t.key("position_m"), pos, "[x, y] in metres, each within +-500")
    d = CellSite((0.0, 0.0))
    return CellSite((float(pos[0]), float(pos[1])),
                    t.number("height_m", d.height_m, min=0.5, max=100),
                    t.number("tx_power_dbm", d.tx_power_dbm, min=-30, max=60))


def _mobility(t: Table, scenario: Scenario) -> Mobility:
    ues = [u.name for u in scenario.ues]
    routes: list[Route] = []
    for rt in t.tables("routes"):
        with rt:
            ue = rt.str("ue", choices=ues)
            wps = rt.get("waypoints_m")
            if not (isinstance(wps, list) and len(wps) >= 2 and all(_is_point_m(w) for w in wps)):
                raise ConfigError(rt.key("waypoints_m"), wps,
                                  "two or more [x, y] points in metres, within +-500")
            routes.append(Route(ue, tuple((float(w[0]), float(w[1])) for w in wps),
                                rt.number("speed_mps", 1.5, min=0.01, max=50), rt.bool("loop", True)))
    if not routes:
        raise ConfigError(t.key("routes"), [], "at least one [[mobility.routes]] table")
    _check_unique(t.key("routes[*].ue"), [r.ue for r in routes])
    config = parse_table(MobilityConfig, t)
    for i, cell in enumerate(scenario.cells):
        if cell.nr is None:
            raise ConfigError(f"cells[{i}].radio_model", cell.radio_model,
                              '"nr" for every cell when [mobility] is set (handovers run in the NR model)')
        if cell.site is None:
            raise ConfigError(f"cells[{i}].position_m", None, "[x, y]: [mobility] needs every cell's place")
    return Mobility(config, tuple(routes))


def _absent(t: Table, key: str, default: Any) -> Any:
    t.get(key, None)  # the table knows the key was looked for
    return default


def _ue_group(t: Table, slices: tuple[Slice, ...], cells: tuple[Cell, ...],
              servers: tuple[str, ...]) -> UeGroup:
    with t:
        kind = t.str("kind", choices=UE_KINDS)
        count = t.int("count", min=1, max=MAX_UES, why="one host namespace and flow per UE")
        cell = t.str("cell", choices=[c.name for c in cells])
        slice_name = t.str("slice", choices=[s.name for s in slices])
        with t.table("traffic") as tt:
            traffic = parse_traffic(tt, servers)
        return UeGroup(kind, count, cell, slice_name, traffic)


def _link_pair(t: Table, key: str) -> LinkPair:
    if not t.has(key):
        t.get(key, None)
        return LinkPair()
    with t.table(key) as lt:
        return LinkPair(_direction(lt, "uplink"), _direction(lt, "downlink"))


def _direction(t: Table, key: str) -> DirectionParams:
    if not t.has(key):
        t.get(key, None)
        return DirectionParams()
    with t.table(key) as dt:
        return DirectionParams.from_table(dt)


def _leo(t: Table, base_dir: Path | None) -> LeoUplink:
    terminal = _node_name(t, "terminal", "ut1")
    ground_station = _node_name(t, "ground_station", "gs1")
    if not t.has("orbit"):
        if t.has("compute_host"):
            raise ConfigError(t.key("compute_host"), t.raw["compute_host"],
                              "only with a [leo.orbit] table (the compute host's link comes from orbits)")
        if t.has("outages"):
            raise ConfigError(t.key("outages"), t.raw["outages"],
                              "only with a [leo.orbit] table (outages are applied to its schedule)")
        link = LinkPair(_direction(t, "uplink"), _direction(t, "downlink"))
        return LeoUplink(terminal, ground_station, link)
    for key in ("uplink", "downlink"):
        if t.has(key):
            raise ConfigError(t.key(key), t.raw[key],
                              "no fixed link values with [leo.orbit]: the orbit model sets the link")
    from topologies.leo.config import LeoOrbitConfig  # only needed with an orbit model

    with t.table("orbit") as ot:
        orbit = LeoOrbitConfig.from_table(ot, base_dir)
    compute_host = _node_name(t, "compute_host", "") if t.has("compute_host") else None
    t.get("compute_host", None)
    attach = t.str("compute_attach", "computing_satellite", choices=COMPUTE_ATTACH)
    outages = parse_outages(t.tables("outages", []))
    return LeoUplink(terminal, ground_station, LinkPair(), orbit, compute_host, attach, outages)


def _name(t: Table, key: str) -> str:
    """A required name: it becomes a host, bridge, interface or namespace name (full match)."""
    return t.name(key)


def _node_name(t: Table, key: str, default: str) -> str:
    return t.name(key, default)


# Switch ports live in the root namespace as "<run prefix><switch>-eth<port>"; Linux allows 15
# characters. The run prefix is "fs" + a 2-character tag (experiments/network.py).
IFNAME_MAX = 15
RUN_PREFIX_LEN = 4


def _check_interface_names(scenario: Scenario) -> None:
    ues_per_cell = {c.name: 0 for c in scenario.cells}
    for group in scenario.ue_groups:
        ues_per_cell[group.cell] += group.count
    switches = [(f"cells[{i}].name", c.name, ues_per_cell[c.name] + 1)
                for i, c in enumerate(scenario.cells)]
    extra = int(scenario.backup is not None)  # a backup adds a port to the UPF and the ground station
    switches += [("core.upf", scenario.core.upf, len(scenario.cells) + 2 + extra),
                 ("leo.terminal", scenario.leo.terminal, 3),
                 ("leo.ground_station", scenario.leo.ground_station, 2 + extra)]
    if scenario.backup is not None:
        switches.append(("backup.switch", scenario.backup.switch, 2))
    for path, name, ports in switches:
        longest = RUN_PREFIX_LEN + len(name) + len("-eth") + len(str(ports))
        if longest > IFNAME_MAX:
            allowed = IFNAME_MAX - RUN_PREFIX_LEN - len("-eth") - len(str(ports))
            raise ConfigError(path, name, f"at most {allowed} characters for a switch with {ports} "
                                          f"ports (its interface names must fit Linux's {IFNAME_MAX})")


def _check_unique(path: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(path, name, "unique names (this one appears twice)")
        seen.add(name)

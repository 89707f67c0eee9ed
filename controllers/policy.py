"""Slice policy (written by the runner as JSON) and the flow rules it implies, as pure data.

Nothing here imports os-ken: ``slice_rules`` turns a validated ``SlicePolicy`` into a list of
``FlowRule`` values that ``controllers.apps.slice_switch`` translates to OpenFlow 1.3 flow mods.

Pipeline per switch (OpenFlow 1.3):

- table 0 (classify): IPv4 from a slice host attached at this switch -> set ip_dscp to the slice's
  DSCP, goto table 1 (priority 100); IPv4 to such a host (downlink) -> the same (priority 90, so
  the sender's slice wins between two slice hosts); anything else -> goto table 1 (priority 0).
- table 1 (forward): eth_dst = known MAC -> output port (priority 10); broadcast / multicast ->
  FLOOD (priority 5); table-miss -> drop (priority 0, no packet-in).

A slice with ``max_rate_mbps`` gets an OF1.3 meter (``slice_meters``) on each switch its hosts
attach to (in the factory topology the UPF, where the cells hang): its uplink marking rules in
table 0 pass the packet through the meter first (``Meter`` instruction), whose one drop band holds
the slice's hosts together to the rate. Downlink traffic to the slice's hosts is not metered (the
downlink marking rule has no meter: a cap on what a slice's devices send is the UPF's uplink
policing; a shared meter would couple the two directions).

The policy's JSON shape (``SlicePolicy.to_dict()`` writes it, ``from_dict`` / ``from_json`` read it)::

    {"slices":   {"urllc": {"dscp": 46}, "embb": {"dscp": 34, "max_rate_mbps": 50.0}, ...},
     "hosts":    [{"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"},
                  {"name": "edge1", ..., "slice": null}, ...],
     "switches": [{"name": "s1", "dpid": 1, "access_hosts": ["agv1", "edge1"],
                   "mac_to_port": {"00:00:00:00:00:01": 1, ...}}, ...]}

The runner builds a ``SlicePolicy`` from its objects directly (the constructor validates exactly
as ``from_dict`` does and normalises: MACs to lower case, sequences to tuples)::

    SlicePolicy(slices={"urllc": SliceSpec("urllc", 46)},
                hosts=(HostSpec("agv1", "10.0.0.1", "00:00:00:00:00:01", "urllc"),),
                switches=(SwitchSpec("s1", 1, ("agv1",), {"00:00:00:00:00:01": 1}),))
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies.validate import ConfigError, Table, check_number

# --- OpenFlow constants used by the rules (values from the OpenFlow 1.3.5 spec, ONF TS-023) -------
ETH_TYPE_IPV4 = 0x0800
OFPP_MAX = 0xFFFFFF00  # highest physical port number
MAX_TABLE_ID = 254  # 255 is OFPTT_ALL
MAX_PRIORITY = 0xFFFF
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MULTICAST_MAC_MASKED = ("01:00:00:00:00:00", "01:00:00:00:00:00")  # I/G bit set

# A slice's maximum rate (Mbit/s): 1 kbit/s (an OF1.3 meter's unit with OFPMF_KBPS) .. 100 Gbit/s.
MAX_RATE_MBPS_RANGE = (0.001, 100_000.0)
OFPM_MAX = 0xFFFF0000  # highest meter id (OF1.3: above it are the virtual meters)

# Tables and priorities of this app's pipeline.
TABLE_CLASSIFY = 0
TABLE_FORWARD = 1
PRIO_SLICE_MARK = 100
PRIO_SLICE_MARK_DOWNLINK = 90   # below: between two slice hosts, the sender's slice marks
PRIO_UNICAST = 10
PRIO_FLOOD = 5
PRIO_DEFAULT = 0

# Cookies: the upper 16 bits identify this app (0xFAC5 = "factorysat"), the low bits the rule kind,
# so `dump-flows` is readable and the app deletes exactly its own flows on (re)connect.
COOKIE_APP = 0xFAC5 << 48
COOKIE_APP_MASK = 0xFFFF << 48
COOKIE_SLICE_MARK = COOKIE_APP | 0x1
COOKIE_CLASSIFY_DEFAULT = COOKIE_APP | 0x2
COOKIE_UNICAST = COOKIE_APP | 0x3
COOKIE_FLOOD = COOKIE_APP | 0x4
COOKIE_MISS = COOKIE_APP | 0x5
COOKIE_SLICE_MARK_DOWNLINK = COOKIE_APP | 0x6

# Generation of a controller's rules: bits 32..47 of the cookie. A (re)started controller reads the
# generations of this app's flows on a switch, installs its rules under the next one over them (an
# OF1.3 ADD replaces a flow of the same match and priority in place, so forwarding never stops), then
# deletes what is left of older generations (rules the new policy no longer has).
GENERATION_SHIFT = 32
GENERATION_MASK = 0xFFFF << GENERATION_SHIFT


def with_generation(cookie: int, generation: int) -> int:
    """``cookie`` with its generation bits set to ``generation`` (0..0xFFFF)."""
    if not 0 <= generation <= 0xFFFF:
        raise ValueError(f"generation {generation}: allowed 0..65535")
    return (cookie & ~GENERATION_MASK) | (generation << GENERATION_SHIFT)


def generation_of(cookie: int) -> int:
    return (cookie & GENERATION_MASK) >> GENERATION_SHIFT


def next_generation(seen: Iterable[int]) -> int:
    """The generation after the newest of ``seen`` (1..0xFFFF, never one of ``seen``; 1 when none)."""
    used = set(seen)
    candidate = (max(used, default=0) % 0xFFFF) + 1
    while candidate in used:
        candidate = candidate % 0xFFFF + 1
    return candidate


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# --- flow rules ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetField:
    """Apply-action: set one OXM field (os-ken OFPMatch keyword, e.g. ``ip_dscp``)."""

    field: str
    value: int | str


@dataclass(frozen=True)
class Output:
    """Apply-action: output to a port number."""

    port: int


@dataclass(frozen=True)
class Flood:
    """Apply-action: output to OFPP_FLOOD (all ports but the ingress port)."""


@dataclass(frozen=True)
class GotoTable:
    """Instruction: continue in a later table."""

    table_id: int


@dataclass(frozen=True)
class Meter:
    """Instruction: pass the packet through an OF1.3 meter first (hook for SLA enforcement)."""

    meter_id: int


Action = SetField | Output | Flood | GotoTable | Meter


@dataclass(frozen=True)
class FlowRule:
    """One flow entry. ``match`` uses os-ken ``OFPMatch`` keyword names; a masked field is a
    ``(value, mask)`` tuple. An empty ``actions`` tuple means drop."""

    table_id: int
    priority: int
    match: Mapping[str, Any]
    actions: tuple[Action, ...]
    cookie: int = COOKIE_APP

    def __post_init__(self) -> None:
        if not 0 <= self.table_id <= MAX_TABLE_ID:
            raise ValueError(f"FlowRule.table_id {self.table_id}: allowed 0..{MAX_TABLE_ID}")
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"FlowRule.priority {self.priority}: allowed 0..{MAX_PRIORITY}")
        if not 0 <= self.cookie < 1 << 64:
            raise ValueError(f"FlowRule.cookie {self.cookie:#x}: allowed a 64-bit unsigned value")
        gotos = [a for a in self.actions if isinstance(a, GotoTable)]
        meters = [a for a in self.actions if isinstance(a, Meter)]
        if len(gotos) > 1 or len(meters) > 1:
            raise ValueError("FlowRule: at most one GotoTable and one Meter")
        if gotos and gotos[0].table_id <= self.table_id:
            raise ValueError(f"FlowRule: GotoTable({gotos[0].table_id}) must go to a later table "
                             f"than {self.table_id}")


# --- policy ------------------------------------------------------------------------------------
# The specs are plain values; a ``SlicePolicy`` validates them together (names, ranges, references).
@dataclass(frozen=True)
class SliceSpec:
    """A slice, the DSCP its hosts' IPv4 packets are marked with (0..63) and, optionally, the
    maximum rate its hosts may send at (Mbit/s, ``MAX_RATE_MBPS_RANGE``), enforced by an OF1.3
    meter on the switch they attach to (``slice_meters``); None: no cap."""

    name: str
    dscp: int
    max_rate_mbps: float | None = None


@dataclass(frozen=True)
class HostSpec:
    """A host: unique name, IPv4 address and unicast MAC; ``slice`` None for servers."""

    name: str
    ip: str
    mac: str  # lower case aa:bb:cc:dd:ee:ff once in a SlicePolicy
    slice: str | None  # None for servers (edge, cloud)


@dataclass(frozen=True)
class SwitchSpec:
    """A switch: unique name and dpid (1..2^64-1), the hosts attached to it (their packets are
    marked here) and the output port towards each host MAC. ``flood`` False: broadcast and
    multicast frames stop here (a switch off the forwarding tree, such as the backup backhaul's,
    which would otherwise close a loop)."""

    name: str
    dpid: int
    access_hosts: tuple[str, ...]
    mac_to_port: Mapping[str, int]
    flood: bool = True


@dataclass(frozen=True)
class SlicePolicy:
    """The controller's whole input: slices, hosts and per-switch forwarding tables.

    Construct it directly (``slices`` a mapping name -> ``SliceSpec``, or an iterable of
    ``SliceSpec``; ``hosts`` and ``switches`` iterables of specs) or with ``from_dict`` /
    ``from_json``. Both validate the same way and raise ``ConfigError`` naming the key path in
    the ``to_dict()`` shape (``hosts[1].ip``); ``from_dict(p.to_dict()) == p``.
    """

    slices: Mapping[str, SliceSpec]
    hosts: tuple[HostSpec, ...]
    switches: tuple[SwitchSpec, ...]
    _hosts_by_name: Mapping[str, HostSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        slices, hosts, switches = _parse_policy(_specs_as_dict(self.slices, self.hosts, self.switches))
        object.__setattr__(self, "slices", slices)
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "switches", switches)
        object.__setattr__(self, "_hosts_by_name", {h.name: h for h in self.hosts})

    @classmethod
    def from_json(cls, path: Path | str) -> SlicePolicy:
        """Load and validate a policy file; errors name the file and the key path."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(str(path), None, f"valid JSON ({exc})") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> SlicePolicy:
        """Validate a policy dict (the JSON shape documented in the module docstring)."""
        slices, hosts, switches = _parse_policy(raw)
        return cls(slices=slices, hosts=hosts, switches=switches)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict that ``from_dict`` accepts (for the runner to write)."""
        return _specs_as_dict(self.slices, self.hosts, self.switches)

    def host(self, name: str) -> HostSpec:
        return self._hosts_by_name[name]

    def switch(self, dpid: int) -> SwitchSpec:
        """The switch with this datapath id; ``UnknownDatapathError`` if none."""
        for sw in self.switches:
            if sw.dpid == dpid:
                return sw
        known = ", ".join(f"{s.name}={s.dpid:#x}" for s in self.switches) or "none"
        raise UnknownDatapathError(f"dpid {dpid:#x} is not in the policy's switches (known: {known})")


class UnknownDatapathError(LookupError):
    """A switch connected whose dpid the policy does not list."""


def _parse_policy(raw: Any) -> tuple[dict[str, SliceSpec], tuple[HostSpec, ...], tuple[SwitchSpec, ...]]:
    with Table(raw, "") as top:
        slices = _parse_slices(top.table("slices"))
        hosts = _parse_hosts(top.tables("hosts"), slices)
        switches = _parse_switches(top.tables("switches"), {h.name for h in hosts})
    return slices, hosts, switches


def _specs_as_dict(slices: Any, hosts: Any, switches: Any) -> dict[str, Any]:
    """The ``to_dict()`` shape of constructor arguments, for validation by ``_parse_policy``.

    Values pass through unchanged (a wrong type is reported by the parser with its key path);
    only an element that is not a spec of the right class raises ``TypeError``.
    """
    if isinstance(slices, Mapping):
        slice_items = list(slices.items())
    else:
        slice_items = [(getattr(s, "name", None), s) for s in _iterable("slices", slices)]
    raw_slices: dict[Any, Any] = {}
    for key, spec in slice_items:
        _check_spec(f"slices[{key!r}]", spec, SliceSpec)
        if key != spec.name:
            raise ConfigError(f"slices.{key}.name", spec.name, f"the slice's key {key!r}")
        if key in raw_slices:
            raise ConfigError(f"slices.{key}", key, "a slice name listed once")
        raw_slices[key] = {"dscp": spec.dscp}
        if spec.max_rate_mbps is not None:  # absent when uncapped: older policy files look the same
            raw_slices[key]["max_rate_mbps"] = spec.max_rate_mbps
    raw_hosts = []
    for i, h in enumerate(_iterable("hosts", hosts)):
        _check_spec(f"hosts[{i}]", h, HostSpec)
        raw_hosts.append({"name": h.name, "ip": h.ip, "mac": h.mac, "slice": h.slice})
    raw_switches = []
    for i, sw in enumerate(_iterable("switches", switches)):
        _check_spec(f"switches[{i}]", sw, SwitchSpec)
        access = list(sw.access_hosts) if isinstance(sw.access_hosts, list | tuple) else sw.access_hosts
        ports = dict(sw.mac_to_port) if isinstance(sw.mac_to_port, Mapping) else sw.mac_to_port
        raw_switches.append({"name": sw.name, "dpid": sw.dpid, "access_hosts": access, "mac_to_port": ports})
        if sw.flood is not True:  # absent when true: older policy files look the same
            raw_switches[-1]["flood"] = sw.flood
    return {"slices": raw_slices, "hosts": raw_hosts, "switches": raw_switches}


def _iterable(path: str, value: Any) -> Any:
    if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__iter__"):
        raise TypeError(f"SlicePolicy {path}: expected an iterable of specs, got {value!r}")
    return value


def _check_spec(path: str, value: Any, cls: type) -> None:
    if not isinstance(value, cls):
        raise TypeError(f"SlicePolicy {path}: expected a {cls.__name__}, got {value!r}")


def _parse_slices(t: Table) -> dict[str, SliceSpec]:
    slices: dict[str, SliceSpec] = {}
    for name in list(t.raw):
        if not isinstance(name, str) or not name:
            raise ConfigError(t.key(str(name)), name, "a non-empty slice name")
        with t.table(name) as s:
            dscp = s.int("dscp", min=0, max=63)
            max_rate = s.get("max_rate_mbps", None)
            if max_rate is not None:
                max_rate = check_number(s.key("max_rate_mbps"), max_rate, min=MAX_RATE_MBPS_RANGE[0],
                                        max=MAX_RATE_MBPS_RANGE[1])
            slices[name] = SliceSpec(name, dscp, max_rate)
    if not slices:
        raise ConfigError("slices", {}, "at least one slice")
    return slices


def _parse_hosts(tables: list[Table], slices: Mapping[str, SliceSpec]) -> tuple[HostSpec, ...]:
    hosts: list[HostSpec] = []
    seen: dict[str, dict[str, str]] = {"name": {}, "ip": {}, "mac": {}}
    for t in tables:
        with t:
            name = t.str("name")
            if not name:
                raise ConfigError(t.key("name"), name, "a non-empty host name")
            ip = _ipv4(t.key("ip"), t.get("ip"))
            mac = _mac(t.key("mac"), t.get("mac"), unicast=True)
            slice_name = t.get("slice", None)
            if slice_name is not None and slice_name not in slices:
                raise ConfigError(t.key("slice"), slice_name,
                                  "null or one of " + ", ".join(map(repr, slices)))
        for key, value in (("name", name), ("ip", ip), ("mac", mac)):
            if value in seen[key]:
                raise ConfigError(t.key(key), value, f"a value not already used by {seen[key][value]}")
            seen[key][value] = t.path
        hosts.append(HostSpec(name, ip, mac, slice_name))
    return tuple(hosts)


def _parse_switches(tables: list[Table], host_names: set[str]) -> tuple[SwitchSpec, ...]:
    switches: list[SwitchSpec] = []
    seen: dict[object, str] = {}
    for t in tables:
        with t:
            name = t.str("name")
            dpid = t.int("dpid", min=1, max=(1 << 64) - 1)
            access = t.get("access_hosts", [])
            if not isinstance(access, list) or not all(isinstance(a, str) for a in access):
                raise ConfigError(t.key("access_hosts"), access, "a list of host names")
            for i, host in enumerate(access):
                if host not in host_names:
                    raise ConfigError(f"{t.key('access_hosts')}[{i}]", host, "a name from hosts[]")
            raw_ports = t.get("mac_to_port")
            if not isinstance(raw_ports, Mapping):
                raise ConfigError(t.key("mac_to_port"), raw_ports, 'an object {"<mac>": <port>}')
            ports: dict[str, int] = {}
            for raw_mac, port in raw_ports.items():
                key = f"{t.key('mac_to_port')}[{raw_mac!r}]"
                mac = _mac(key, raw_mac, unicast=True)
                if mac in ports:
                    raise ConfigError(key, raw_mac, "a MAC listed once")
                if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= OFPP_MAX:
                    raise ConfigError(key, port, f"a port number 1..{OFPP_MAX}")
                ports[mac] = port
            flood = t.bool("flood", True)
        for key, value in (("name", name), ("dpid", dpid)):
            if (key, value) in seen:
                raise ConfigError(t.key(key), value, f"a value not already used by {seen[(key, value)]}")
            seen[(key, value)] = t.path
        switches.append(SwitchSpec(name, dpid, tuple(access), ports, flood))
    return tuple(switches)


def _ipv4(path: str, value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ConfigError(path, value, "an IPv4 address like '10.0.0.1'") from None


def _mac(path: str, value: Any, unicast: bool) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value.lower()):
        raise ConfigError(path, value, "a MAC address like '00:00:00:00:00:01'")
    mac = value.lower()
    if unicast and int(mac[:2], 16) & 1:
        raise ConfigError(path, value, "a unicast MAC (lowest bit of the first octet 0)")
    return mac


# --- rules -------------------------------------------------------------------------------------
def forward_rule(mac: str, port: int) -> FlowRule:
    """Table 1: frames for ``mac`` leave on ``port`` (also a path switch's rule: the same match and
    priority, so adding it replaces the old one)."""
    return FlowRule(TABLE_FORWARD, PRIO_UNICAST, {"eth_dst": mac}, (Output(port),), COOKIE_UNICAST)


# --- meters ------------------------------------------------------------------------------------
# Burst of a slice's drop band (OF1.3 ``burst_size``; kilobits with OFPMF_KBPS): the larger of
# METER_BURST_S at the rate and METER_BURST_FRAMES full-size Ethernet frames. OVS meters are token
# buckets of this depth (userspace: dpif-netdev refills the bucket once per batch of up to 32
# received packets, by rate x time since the last batch, and caps it at the depth). Too small a
# bucket loses the tokens of a pause longer than depth/rate and drops the next batch's packets:
# the delivered rate falls below the cap, most for many small packets arriving in batches; a
# 1500 B frame larger than the bucket would never pass. Too large a bucket lets that much pass at
# line rate above the cap after an idle time. 20 ms of the rate covers the scheduling hiccups of a
# userspace switch on a busy host; 10 frames (~121 kbit) keep a low rate from starving whole batches.
# Measured on userspace OVS 3.1 (tests/integration/test_controller_meters.py): see its header.
METER_BURST_S = 0.02
METER_BURST_FRAMES = 10
MAX_FRAME_BYTES = 1518  # Ethernet frame with a VLAN tag and no FCS, as a switch counts it


@dataclass(frozen=True)
class MeterSpec:
    """An OF1.3 meter with one drop band: packets above ``rate_kbps`` (kbit/s, frames as the
    switch counts them) are dropped once a bucket of ``burst_kb`` kilobits is used up."""

    meter_id: int
    rate_kbps: int
    burst_kb: int

    def __post_init__(self) -> None:
        if not 1 <= self.meter_id <= OFPM_MAX:
            raise ValueError(f"MeterSpec.meter_id {self.meter_id}: allowed 1..{OFPM_MAX}")
        for name in ("rate_kbps", "burst_kb"):
            if not 1 <= getattr(self, name) < 1 << 32:
                raise ValueError(f"MeterSpec.{name} {getattr(self, name)}: allowed 1..{(1 << 32) - 1}")


def slice_meter_id(policy: SlicePolicy, slice_name: str) -> int:
    """The meter id of ``slice_name``: 1 + its index among the policy's slice names, sorted (stable
    across restarts of the same policy, and across adding or removing a cap)."""
    return sorted(policy.slices).index(slice_name) + 1


def meter_burst_kb(rate_kbps: int) -> int:
    """The drop band's burst (kilobits) for ``rate_kbps``: see METER_BURST_S and METER_BURST_FRAMES."""
    frames_kb = math.ceil(METER_BURST_FRAMES * MAX_FRAME_BYTES * 8 / 1000)
    return max(math.ceil(rate_kbps * METER_BURST_S), frames_kb)


def slice_meters(policy: SlicePolicy, dpid: int) -> list[MeterSpec]:
    """The meters of switch ``dpid``, by id: one per slice with ``max_rate_mbps`` that has a host
    attached to this switch (``UnknownDatapathError`` if the switch is not in the policy)."""
    sw = policy.switch(dpid)
    here = {policy.host(h).slice for h in sw.access_hosts} - {None}
    meters = []
    for name in sorted(here):
        rate_mbps = policy.slices[name].max_rate_mbps
        if rate_mbps is None:
            continue
        rate_kbps = max(1, round(rate_mbps * 1000))
        meters.append(MeterSpec(slice_meter_id(policy, name), rate_kbps, meter_burst_kb(rate_kbps)))
    return sorted(meters, key=lambda m: m.meter_id)


def slice_rules(policy: SlicePolicy, dpid: int) -> list[FlowRule]:
    """All flow rules for switch ``dpid``: DSCP marking in table 0 (uplink through the slice's
    meter when it has a maximum rate), L2 forwarding in table 1."""
    sw = policy.switch(dpid)
    rules: list[FlowRule] = []
    for host_name in sw.access_hosts:
        host = policy.host(host_name)
        if host.slice is None:
            continue
        dscp = policy.slices[host.slice].dscp
        meter: tuple[Action, ...] = ()
        if policy.slices[host.slice].max_rate_mbps is not None:
            meter = (Meter(slice_meter_id(policy, host.slice)),)
        rules.append(FlowRule(
            TABLE_CLASSIFY, PRIO_SLICE_MARK,
            {"eth_type": ETH_TYPE_IPV4, "ipv4_src": host.ip},
            (*meter, SetField("ip_dscp", dscp), GotoTable(TABLE_FORWARD)),
            COOKIE_SLICE_MARK,
        ))
        rules.append(FlowRule(  # downlink (e.g. a control loop's commands), as a UPF marks a QoS flow
            TABLE_CLASSIFY, PRIO_SLICE_MARK_DOWNLINK,
            {"eth_type": ETH_TYPE_IPV4, "ipv4_dst": host.ip},
            (SetField("ip_dscp", dscp), GotoTable(TABLE_FORWARD)),
            COOKIE_SLICE_MARK_DOWNLINK,
        ))
    rules.append(FlowRule(TABLE_CLASSIFY, PRIO_DEFAULT, {}, (GotoTable(TABLE_FORWARD),),
                          COOKIE_CLASSIFY_DEFAULT))
    for mac, port in sorted(sw.mac_to_port.items()):
        rules.append(forward_rule(mac, port))
    if sw.flood:  # otherwise broadcasts and multicasts meet the table-miss drop
        for dst in (BROADCAST_MAC, MULTICAST_MAC_MASKED):
            rules.append(FlowRule(TABLE_FORWARD, PRIO_FLOOD, {"eth_dst": dst}, (Flood(),), COOKIE_FLOOD))
    rules.append(FlowRule(TABLE_FORWARD, PRIO_DEFAULT, {}, (), COOKIE_MISS))
    return rules

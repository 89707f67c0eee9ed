"""Settings that work, but oddly: one line each, stored in ``Scenario.warnings``.

Settings that cannot work are errors (``ConfigError``, raised while parsing); these are the ones a
run carries out faithfully although the result is probably not what was meant:

* a fixed link direction that drops every packet for the whole run (``up = false`` or
  ``loss_pct = 100``);
* more load offered to a link direction than its ``rate_mbps`` (its queue fills and drops);
* a fixed one-way delay on a UE's path that already exceeds its slice's ``latency_bound_ms`` (no
  packet can be on time);
* UEs on a slice whose radio is not set (a transparent, 0 ms air interface), in a cell with the
  fixed radio model;
* more uplink load offered to an NR cell than its average capacity (TS 38.306 formula).

Each line starts with the key path it is about, as errors do. ``scenario`` arguments are
:class:`topologies.scenario.Scenario` objects (not imported: scenario.py imports this module);
``LinkPair`` and ``UeGroup`` likewise.
"""

from __future__ import annotations

from typing import Any

from topologies.links import DirectionParams

Scenario = LinkPair = UeGroup = Any

WIRE_OVERHEAD_BYTES = 8 + 20 + 14  # UDP + IPv4 + Ethernet headers per packet


def scenario_warnings(scenario: Scenario) -> tuple[str, ...]:
    """Every warning for ``scenario`` (empty for the built-in default)."""
    out: list[str] = []
    for path, pair in fixed_links(scenario):
        for direction in ("uplink", "downlink"):
            p: DirectionParams = getattr(pair, direction)
            if not p.up:
                out.append(f"{path}.{direction}.up: false for the whole run: this direction drops "
                           "every packet")
            elif p.loss_pct >= 100 and p.loss_burst is None:
                out.append(f"{path}.{direction}.loss_pct: 100 for the whole run: this direction "
                           "drops every packet")
    out += _radio_warnings(scenario)
    out += _load_warnings(scenario)
    out += _deadline_warnings(scenario)
    return tuple(out)


def fixed_links(scenario: Scenario) -> list[tuple[str, LinkPair]]:
    """(key path, link) of every link whose values are fixed for the whole run."""
    links = [(f"slices[{i}].radio", s.radio) for i, s in enumerate(scenario.slices)]
    links += [(f"cells[{i}].{key}", getattr(c, key)) for i, c in enumerate(scenario.cells)
              for key in ("capacity", "backhaul")]
    links.append(("core.edge_link", scenario.core.edge_link))
    if scenario.leo.orbit is None:
        links.append(("leo", scenario.leo.link))
        links.append(("cloud.terrestrial", scenario.cloud.terrestrial))
    return links


def uplink_path(scenario: Scenario, group: UeGroup) -> list[tuple[str, DirectionParams]]:
    """(key path, direction) of every fixed link direction a group's packets cross, in order.

    With ``[leo.orbit]`` the LEO hop is schedule-driven and not listed.
    """
    si = next(i for i, s in enumerate(scenario.slices) if s.name == group.slice)
    ci = next(i for i, c in enumerate(scenario.cells) if c.name == group.cell)
    radio = [] if scenario.cells[ci].nr is not None else [  # an NR cell's delay is its model's
        (f"slices[{si}].radio.uplink", scenario.slices[si].radio.uplink),
        (f"cells[{ci}].capacity.uplink", scenario.cells[ci].capacity.uplink)]  # shared by its UEs
    hops = [*radio, (f"cells[{ci}].backhaul.uplink", scenario.cells[ci].backhaul.uplink)]
    if group.traffic.destination == scenario.core.edge:
        hops.append(("core.edge_link.uplink", scenario.core.edge_link.uplink))
    elif scenario.leo.orbit is None:
        hops.append(("leo.uplink", scenario.leo.link.uplink))
        hops.append(("cloud.terrestrial.uplink", scenario.cloud.terrestrial.uplink))
    return hops


def wire_mbps(group: UeGroup) -> float:
    """What one UE of ``group`` offers on the wire (payload + UDP/IP/Ethernet headers), Mbit/s."""
    t = group.traffic
    return (t.payload_bytes + WIRE_OVERHEAD_BYTES) * 8 / (t.interval_ms * 1000)


def _radio_warnings(scenario: Scenario) -> list[str]:
    used = {g.slice for g in scenario.ue_groups
            if next(c for c in scenario.cells if c.name == g.cell).nr is None}
    return [f"slices[{i}].radio: not set although UEs use slice {s.name!r}: their air interface "
            "is transparent (0 ms, no loss, no rate limit)"
            for i, s in enumerate(scenario.slices)
            if s.name in used and s.radio.uplink.is_transparent() and s.radio.downlink.is_transparent()]


def _load_warnings(scenario: Scenario) -> list[str]:
    """Offered load above a fixed rate: per UE on its radio, summed on the shared links beyond."""
    offered: dict[str, float] = {}  # rate key -> offered Mbit/s
    rates: dict[str, float] = {}
    for group in scenario.ue_groups:
        for path, p in uplink_path(scenario, group):
            if p.rate_mbps is None:
                continue
            key = f"{path}.rate_mbps"
            if path.startswith("slices["):  # every UE has its own radio link
                offered[key] = max(offered.get(key, 0.0), wire_mbps(group))
            else:
                offered[key] = offered.get(key, 0.0) + wire_mbps(group) * group.count
            rates[key] = p.rate_mbps
    for ci, cell in enumerate(scenario.cells):  # an NR cell's average uplink capacity
        if cell.nr is not None:
            key = f"cells[{ci}].nr (uplink capacity)"
            offered[key] = sum(wire_mbps(g) * g.count for g in scenario.ue_groups if g.cell == cell.name)
            rates[key] = cell.nr.capacity_mbps("uplink")
    orbit = scenario.leo.orbit
    if orbit is not None:  # the LEO uplink's rate varies around its median
        key = "leo.orbit.rates.uplink_median_mbps"
        offered[key] = sum(wire_mbps(g) * g.count for g in scenario.ue_groups
                           if g.traffic.destination == scenario.cloud.name)
        rates[key] = orbit.rates.uplink_median_mbps
    return [f"{key}: {rates[key]:g} Mbit/s but the UEs offer {load:.3g} Mbit/s on the wire (payload + "
            f"{WIRE_OVERHEAD_BYTES} B headers): its queue fills and drops packets"
            for key, load in offered.items() if load > rates[key]]


def _deadline_warnings(scenario: Scenario) -> list[str]:
    out = []
    for i, group in enumerate(scenario.ue_groups):
        fixed_ms = sum(p.delay_ms for _, p in uplink_path(scenario, group))
        bound = scenario.slice(group.slice).latency_bound_ms
        if fixed_ms >= bound:
            out.append(f"ue_groups[{i}]: the fixed one-way delay to {group.traffic.destination} is "
                       f"{fixed_ms:g} ms, not below slice {group.slice!r} latency_bound_ms {bound:g}: "
                       "no packet can be on time")
    return out

"""Loss accounting shared by the experiment kinds: which counter explains each lost packet.

A kind describes its traffic as :class:`Stream` s (one sender towards one receiving socket, with
the ``(link, direction)`` hops its packets cross) and gets, per group of streams (a slice, a flow,
an offload target) and in total:

``lost_pkts``               scheduled - received (what ``loss_pct`` counts: send errors and
                            packets still in flight when the receivers stopped included)
``modelled_loss_pkts``      drops the scenario asked for: random / Gilbert-Elliott loss and link
                            down (relay ``dropped_loss`` + ``dropped_down``), queue overflow on a
                            direction with a rate (the bottleneck model; relay ``dropped_queue``);
                            netem ``dropped`` (its loss and queue limit together); frames a cell had
                            no path for at that instant (relay ``dropped_unwired``: a UE taken out
                            of its cell, an address no UE of any cell has, a cell whose backhaul is
                            not wired yet at bring-up)
``emulator_loss_pkts``      drops the model did not ask for: sender errors (``sendto`` failed), relay
                            ``dropped_error``, ``dropped_full`` (the host's receive backlog stayed
                            full through every retry) and ``dropped_queue`` where no rate is set (its
                            memory limit), receive-socket drops (buffer overflow), packets sent that never
                            reached the first emulated link (lost in the sender's host) and, in the
                            total only, drops counted on switch ports (``ovs-ofctl dump-ports``)
                            and at the userspace switch's receive sockets (``ss -0 -m``: the
                            daemon did not read a port in time; its own counters miss these)
``in_flight_at_stop_pkts``  packets the relay still held when the receivers had stopped (the drain
                            rule counts them as lost)
``unattributed_loss_pkts``  lost - modelled - emulator - in flight: lost packets no counter explains
                            (e.g. dropped inside OVS after reading). Negative when counters saw
                            more drops than the group lost (other packets on the same links:
                            ARP/IPv6, probes)
``shared_link_drops_pkts``  drops on links this group shares with other groups: not attributed to
                            it (per-link counters cannot say whose packet it was), possibly part of
                            its unattributed loss

Attribution rule: a link direction's counters belong to a group only if every stream crossing it
is in that group. One UE per radio link makes the radio hop attributable per flow; a backhaul or
the LEO link is attributable to a slice only when no other slice (or probe) crosses it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Hop = tuple[str, str]  # (link name, "uplink" | "downlink")

LOSS_KEYS = ("lost_pkts", "modelled_loss_pkts", "emulator_loss_pkts", "in_flight_at_stop_pkts",
             "unattributed_loss_pkts", "shared_link_drops_pkts")


@dataclass(frozen=True)
class Stream:
    """One sender's packets towards one receiving socket and what became of them."""

    group: str
    path: tuple[Hop, ...]   # emulated and plain links crossed, in order
    receiver: str           # the receiving socket (e.g. its host name)
    scheduled: int
    sent: int
    send_errors: int
    received: int


def topology_links(topo: Any) -> list[tuple[str, str, str]]:
    """``(node1, node2, link_name)`` of every link of a Mininet ``Topo`` built with link names.

    A node with a data path of its own (a cell: node info ``cell_link``) appears as a link from the
    node to itself, which :func:`path_hops` puts on every path through the node."""
    links = [(n1, n2, info.get("link_name", f"{n1}-{n2}")) for n1, n2, info in topo.links(withInfo=True)]
    return links + [(n, n, topo.nodeInfo(n)["cell_link"]) for n in topo.nodes()
                    if topo.nodeInfo(n).get("cell_link")]


def session_links(session: Any) -> list[tuple[str, str, str]]:
    """The links of a run's topology (the built one, else the scenario's, declared again)."""
    topo = getattr(session.network, "topo", None)
    if topo is None:
        from topologies.factory import FactoryTopo  # imports Mininet's Topo: only when needed

        topo = FactoryTopo(scenario=session.scenario)
    return topology_links(topo)


def path_hops(links: Iterable[tuple[str, str, str]], source: str, target: str) -> tuple[Hop, ...]:
    """The ``(link, direction)`` hops from node ``source`` to ``target`` (node1 -> node2 = uplink).

    A node's own link (``(n, n, name)``, a cell) is crossed in the direction of the hop that enters
    the node."""
    adjacent: dict[str, list[tuple[str, Hop]]] = {}
    own: dict[str, str] = {}
    for n1, n2, name in links:
        if n1 == n2:
            own[n1] = name
            continue
        adjacent.setdefault(n1, []).append((n2, (name, "uplink")))
        adjacent.setdefault(n2, []).append((n1, (name, "downlink")))
    previous: dict[str, tuple[str, Hop] | None] = {source: None}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for peer, hop in adjacent.get(node, []):
            if peer not in previous:
                previous[peer] = (node, hop)
                queue.append(peer)
    if target not in previous:
        raise ValueError(f"no path from {source!r} to {target!r} in the topology")
    hops: list[Hop] = []
    node = target
    while (step := previous[node]) is not None:
        if node in own and node != target:
            hops.append((own[node], step[1][1]))  # entered in the entering hop's direction
        node, hop = step
        hops.append(hop)
    return tuple(reversed(hops))


def split_drops(counters: Mapping[str, Any]) -> tuple[int, int]:
    """``(modelled, emulator)`` drops of one link direction's counters (relay or netem keys)."""
    queue = int(counters.get("dropped_queue", 0))
    queue_modelled = bool(counters.get("queue_modelled", False))
    modelled = (int(counters.get("dropped_loss", 0)) + int(counters.get("dropped_down", 0))
                + int(counters.get("dropped", 0)) + int(counters.get("dropped_unwired", 0))
                + (queue if queue_modelled else 0))
    emulator = (int(counters.get("dropped_error", 0)) + int(counters.get("dropped_mem", 0))
                + int(counters.get("dropped_full", 0))
                + (0 if queue_modelled else queue))
    return modelled, emulator


def _hop_counters(link_counters: Mapping[str, Any]) -> dict[Hop, Mapping[str, Any]]:
    links = link_counters.get("links", {}) if link_counters else {}
    return {(link, direction): c for link, per_dir in links.items() for direction, c in per_dir.items()}


def account(streams: list[Stream], link_counters: Mapping[str, Any] | None,
            receiver_drops: Mapping[str, int | None] | None = None,
            switch_port_drops: int = 0, switch_socket_drops: Mapping[str, int] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Per group (and ``"total"``): the loss split of the module docstring.

    ``link_counters``: :meth:`topologies.links.engine.LinkEngine.counters` (None: no counters, all
    link loss unattributed); ``receiver_drops``: kernel drops per receiving socket;
    ``switch_port_drops``: drops the switches counted on their ports during the traffic;
    ``switch_socket_drops``: per port, drops at the userspace switch's receive sockets (both
    emulator loss in the total only: a port's drops cannot be told apart by flow).
    """
    hops = _hop_counters(link_counters or {})
    receiver_drops = receiver_drops or {}
    groups = sorted({s.group for s in streams})
    out = {g: _account_group([s for s in streams if s.group == g], streams, hops, receiver_drops)
           for g in groups}
    total = _account_group(streams, streams, hops, receiver_drops)
    sockets = dict(switch_socket_drops or {})
    total["emulator_loss_pkts"] += switch_port_drops + sum(sockets.values())
    total["unattributed_loss_pkts"] -= switch_port_drops + sum(sockets.values())
    total["emulator_detail"]["switch_port_drops"] = switch_port_drops
    total["emulator_detail"]["switch_socket_drops"] = sum(sockets.values())
    total["emulator_detail"]["switch_socket_drops_by_port"] = sockets
    total["counters_available"] = bool(hops)
    out["total"] = total
    return out


def _account_group(mine: list[Stream], everyone: list[Stream], hops: Mapping[Hop, Mapping[str, Any]],
                   receiver_drops: Mapping[str, int | None]) -> dict[str, Any]:
    ids = {id(s) for s in mine}
    crossing: dict[Hop, list[Stream]] = {}
    for stream in everyone:
        for hop in dict.fromkeys(stream.path):
            crossing.setdefault(hop, []).append(stream)
    modelled = emulator = held = shared = host = 0
    for hop in dict.fromkeys(h for s in mine for h in s.path):
        counters = hops.get(hop)
        if counters is None:  # a plain veth pair, or no counters
            continue
        m, e = split_drops(counters)
        if not all(id(s) in ids for s in crossing[hop]):
            shared += m + e
            continue
        modelled += m
        emulator += e
        held += max(0, int(counters.get("held", 0)))
        # the first emulated hop of every stream crossing it: packets sent that it never received
        # were lost in the senders' host
        if "rx" in counters and all(s.path[0] == hop for s in crossing[hop]):
            host += max(0, sum(s.sent for s in crossing[hop]) - int(counters["rx"]))
    receivers = {s.receiver for s in mine}
    socket = sum(int(receiver_drops.get(r) or 0) for r in receivers
                 if all(id(s) in ids for s in everyone if s.receiver == r))
    send_errors = sum(s.send_errors for s in mine)
    lost = sum(s.scheduled - s.received for s in mine)
    emulator += send_errors + socket + host
    return {"scheduled_pkts": sum(s.scheduled for s in mine), "sent_pkts": sum(s.sent for s in mine),
            "received_pkts": sum(s.received for s in mine), "lost_pkts": lost,
            "modelled_loss_pkts": modelled, "emulator_loss_pkts": emulator,
            "in_flight_at_stop_pkts": held,
            "unattributed_loss_pkts": lost - modelled - emulator - held,
            "shared_link_drops_pkts": shared,
            "emulator_detail": {"send_errors": send_errors, "receive_socket_drops": socket,
                                "lost_in_sender_host": host,
                                "link_drops": emulator - send_errors - socket - host}}


def check_link_counters(streams: list[Stream], link_counters: Mapping[str, Any] | None) -> list[str]:
    """Counter checks that hold exactly: a link direction transmitted at least the packets
    received that crossed it; the relay holds no negative number of packets; every link's
    counters were readable."""
    problems = [f"link {name}: counters unavailable ({why})"
                for name, why in sorted((link_counters or {}).get("unavailable", {}).items())]
    hops = _hop_counters(link_counters or {})
    through: dict[Hop, int] = {}
    for stream in streams:
        for hop in dict.fromkeys(stream.path):
            through[hop] = through.get(hop, 0) + stream.received
    for hop, counters in sorted(hops.items()):
        if "tx" in counters and int(counters["tx"]) < through.get(hop, 0):
            problems.append(f"link {hop[0]} {hop[1]}: transmitted {counters['tx']} packets but "
                            f"{through[hop]} received packets crossed it")
        if int(counters.get("held", 0)) < 0:
            problems.append(f"link {hop[0]} {hop[1]}: counters do not add up (rx {counters.get('rx')} "
                            f"< tx + drops; held {counters['held']})")
    return problems


def reconciliation(problems: list[str], checks: Mapping[str, Any]) -> dict[str, Any]:
    """The ``reconciliation`` block of summary.json."""
    return {"ok": not problems, "problems": list(problems), "checks": dict(checks)}


def loss_table(title: str, label: str, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Terminal lines of lost packets by cause: a header, then one row per ``(name, loss split)``."""
    widths = (7, 8, 8, 9, 9, 7)
    heads = ("lost", "modelled", "emulator", "in flight", "unattrib.", "shared")
    pad = len(title) + 1
    lines = [f"{title} {label:<8} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))]
    for name, split in rows:
        lines.append(f"{'':<{pad}}{name:<8} "
                     + " ".join(f"{split[k]:>{w}d}" for k, w in zip(LOSS_KEYS, widths, strict=True)))
    return lines


def reconciliation_line(summary: Mapping[str, Any]) -> str | None:
    """The printed verdict of a summary's ``reconciliation`` block (None without one)."""
    rec = summary.get("reconciliation")
    if rec is None:
        return None
    return "counts reconcile" if rec["ok"] else "COUNTS DO NOT RECONCILE: " + "; ".join(rec["problems"])


def switch_port_drop_delta(ovs_counters: Mapping[str, Any] | None) -> int:
    """Drops and errors the switches counted on their ports between ``before`` and ``after``
    (``{"before"|"after": {bridge: {port: counters}}}``); the bridge's own LOCAL port is left out
    (it is down: floods to it are dropped, and no emulated host is behind it)."""
    if not ovs_counters:
        return 0
    before, total = ovs_counters.get("before", {}), 0
    for bridge, ports in ovs_counters.get("after", {}).items():
        for port, counters in ports.items():
            if port == "LOCAL":
                continue
            old = before.get(bridge, {}).get(port, {})
            total += sum(max(0, v - old.get(k, 0)) for k, v in counters.items())
    return total


def switch_socket_drop_delta(ovs_counters: Mapping[str, Any] | None) -> dict[str, int]:
    """Per switch port, packets dropped at the userspace ``ovs-vswitchd``'s receive socket between
    ``before`` and ``after`` (``ovs_counters["socket_drops"]``, see
    :func:`topologies.switches.ovs_socket_drops`); ports with none are left out."""
    sockets = (ovs_counters or {}).get("socket_drops") or {}
    before = sockets.get("before", {})
    delta = {port: n - before.get(port, 0) for port, n in sockets.get("after", {}).items()}
    return {port: n for port, n in sorted(delta.items()) if n > 0}

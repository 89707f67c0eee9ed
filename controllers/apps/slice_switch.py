"""OpenFlow 1.3 app: proactive L2 forwarding plus per-slice DSCP marking from a policy file.

Registry name ``slice_switch`` (``controllers.apps.APPS``); the default app. Configuration (set by
``controllers.launcher``, or by hand when running the app another way):

- ``FACTORYSAT_CTL_POLICY``: path of the policy JSON (``controllers.policy.SlicePolicy``).
- ``FACTORYSAT_CTL_STATUS``: path of the status JSON this app writes atomically:
  ``{"ready_dpids": [int, ...], "pid": int, "errors": {"<dpid>": "message", ...}}``.
  A dpid is ready once its flows are installed and a barrier reply confirmed them; it leaves the
  list when the switch disconnects. ``errors`` lists switches that rejected a flow or are unknown.

Restart safety: the bridges run in fail-mode secure, so a switch keeps its rules while the
controller is away. On every switch (re)connect the app first reads the generations of the flows
carrying its cookie (a flow stats request), installs ``rules_for(datapath)`` (by default
``slice_rules(policy, dpid)``) under the next generation over them (an OF1.3 ADD replaces a flow
of the same match and priority in place: forwarding never stops), deletes the older generations'
leftovers, then sends a barrier (``controllers.policy.next_generation``). No packet-in is used for
forwarding. Meters (``meters_for``: a slice's maximum rate) go before the rules: when the switch
needs any, the app first asks which meter ids exist (meter config stats) and then MODIFYs those in
place and ADDs the others (OVS refuses an ADD of an existing id, and a DELETE would remove the flows
using the meter: either would disturb traffic across a controller restart). Other apps extend
``SliceSwitch`` by subclassing it (see its class docstring), as Ryu's
``SimpleMonitor13`` extends ``SimpleSwitch13``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllers.apps import ENV_POLICY, ENV_STATUS, PATH_SWITCH_FILE_NAME
from controllers.policy import (
    COOKIE_APP,
    COOKIE_APP_MASK,
    GENERATION_MASK,
    GENERATION_SHIFT,
    Flood,
    FlowRule,
    GotoTable,
    Meter,
    MeterSpec,
    Output,
    SetField,
    SlicePolicy,
    UnknownDatapathError,
    forward_rule,
    generation_of,
    next_generation,
    slice_meters,
    slice_rules,
    with_generation,
)
from controllers.sdn import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    app_manager,
    hub,
    ofp_event,
    ofproto_v1_3,
    set_ev_cls,
)


def build_flow_mod(datapath: Any, rule: FlowRule, generation: int = 0) -> Any:
    """Translate a ``FlowRule`` into an ``OFPFlowMod`` (OFPFC_ADD) for ``datapath``, its cookie
    carrying ``generation``.

    Instructions are emitted in the OF1.3 execution order: meter, apply-actions, goto-table.
    """
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    actions = []
    for action in rule.actions:
        if isinstance(action, SetField):
            actions.append(parser.OFPActionSetField(**{action.field: action.value}))
        elif isinstance(action, Output):
            actions.append(parser.OFPActionOutput(action.port))
        elif isinstance(action, Flood):
            actions.append(parser.OFPActionOutput(ofp.OFPP_FLOOD))
    inst = [parser.OFPInstructionMeter(a.meter_id) for a in rule.actions if isinstance(a, Meter)]
    if actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    inst += [parser.OFPInstructionGotoTable(a.table_id) for a in rule.actions if isinstance(a, GotoTable)]
    return parser.OFPFlowMod(
        datapath=datapath, cookie=with_generation(rule.cookie, generation), table_id=rule.table_id,
        command=ofp.OFPFC_ADD,
        priority=rule.priority, match=parser.OFPMatch(**dict(rule.match)), instructions=inst,
    )


def build_meter_mod(datapath: Any, meter: MeterSpec, modify: bool = False) -> Any:
    """An ``OFPMeterMod`` adding (or, with ``modify``, changing in place) ``meter``: one drop band,
    rate in kbit/s, burst in kilobits, statistics on (OFPMF_KBPS | OFPMF_BURST | OFPMF_STATS)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPMeterMod(
        datapath, command=ofp.OFPMC_MODIFY if modify else ofp.OFPMC_ADD,
        flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS, meter_id=meter.meter_id,
        bands=[parser.OFPMeterBandDrop(rate=meter.rate_kbps, burst_size=meter.burst_kb)],
    )


def build_delete_own_flows(datapath: Any, cookie: int = COOKIE_APP,
                           cookie_mask: int = COOKIE_APP_MASK) -> Any:
    """An ``OFPFlowMod`` deleting, in every table, the flows whose cookie matches under the mask."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath=datapath, cookie=cookie, cookie_mask=cookie_mask, table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(),
    )


def write_status_atomic(path: Path, status: dict[str, Any]) -> None:
    """Write ``status`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
    os.replace(tmp, path)


PATH_SWITCH_POLL_S = 0.01  # how often the path-switch file is read (the switch's lag is this + a flow mod)


class SliceSwitch(app_manager.OSKenApp):
    """Installs the slice policy on each switch and reports readiness in the status file.

    Extension points — a subclass overrides these (calling ``super()``) instead of adding event
    handlers that repeat this class's work; each is called in the app's event thread:

    ``rules_for(datapath) -> list[FlowRule]``
        The flow rules ``install_policy`` installs on ``datapath``; by default
        ``slice_rules(self.policy, datapath.id)``. Add rules with
        ``return super().rules_for(datapath) + [FlowRule(...)]``; give them a cookie under
        ``COOKIE_APP`` so a reconnect reinstalls them with the others (and deletes them when the
        policy no longer has them).
    ``meters_for(datapath) -> list[MeterSpec]``
        The meters ``install_policy`` adds (or modifies, if the id exists) before the rules; by
        default ``slice_meters(self.policy, datapath.id)`` (ids 1..number of slices).
    ``prepare_datapath(datapath)``
        Called after this app's meters, before any rule is sent: send other meter or group mods
        here that the rules refer to (use meter ids the policy's slices do not). Default: nothing.
    ``add_flow(datapath, rule)``
        The one flow-install helper: sends ``rule`` as an OFPFC_ADD flow mod under the switch's
        current generation. Use it for flows added later too.
    ``on_datapath_ready(datapath)``
        Called once the barrier after the rules is answered without a rejected flow (the dpid is
        then in the status file's ``ready_dpids``). Default: nothing.
    ``on_datapath_down(datapath)``
        Called when a ready or connecting switch disconnects (not for a connection a newer one
        of the same dpid has replaced). Default: nothing.

    ``self.policy`` (``SlicePolicy``), ``self.status_path`` and ``self.logger`` are set before a
    subclass's ``__init__`` continues after ``super().__init__``. Example:
    ``controllers.apps.slice_monitor.SliceMonitor``. Such a subclass *replaces* this app: list it
    alone (``controllers.apps.resolve_apps`` rejects listing both).
    """

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy_path = Path(_required_env(ENV_POLICY))
        self.status_path = Path(_required_env(ENV_STATUS))
        self.policy = SlicePolicy.from_json(self.policy_path)
        self.ready_dpids: set[int] = set()
        self.errors: dict[int, str] = {}
        self.pending_barrier: dict[int, int] = {}  # dpid -> xid of the barrier awaited
        self.connected: dict[int, Any] = {}  # dpid -> the datapath of its current connection
        self.generation: dict[int, int] = {}  # dpid -> generation of the rules installed on it
        self.pending_resync: dict[int, tuple[int, set[int]]] = {}  # dpid -> (xid, generations seen)
        self.resync_xids: set[tuple[int, int]] = set()  # (dpid, xid) of resync flow stats requests
        # dpid -> (xid, stale generations, meter ids seen) while the meter config reply is awaited
        self.pending_meters: dict[int, tuple[int, set[int], set[int]]] = {}
        self.resyncs: list[dict[str, Any]] = []  # per (re)connect: dpid, generation, stale ones deleted
        self.path_switch_path = self.status_path.with_name(PATH_SWITCH_FILE_NAME)
        self.path_switches: list[dict[str, Any]] = []  # what was applied, for the status file
        self._path_switch_offset = 0
        self.logger.info("policy %s: %d slices, %d hosts, %d switches", self.policy_path,
                         len(self.policy.slices), len(self.policy.hosts), len(self.policy.switches))
        self._write_status()

    # --- extension points (see the class docstring) ----------------------------------------
    def rules_for(self, datapath: Any) -> list[FlowRule]:
        """The flow rules to install on ``datapath``; ``UnknownDatapathError`` if not in the policy."""
        return slice_rules(self.policy, datapath.id)

    def meters_for(self, datapath: Any) -> list[MeterSpec]:
        """The meters to set on ``datapath`` before its rules; ``UnknownDatapathError`` if not in
        the policy."""
        return slice_meters(self.policy, datapath.id)

    def prepare_datapath(self, datapath: Any) -> None:
        """Send messages the rules depend on (meters, groups) before the rules. Default: none."""

    def add_flow(self, datapath: Any, rule: FlowRule) -> None:
        """Send one flow rule to ``datapath`` (OFPFC_ADD) under its current generation."""
        datapath.send_msg(build_flow_mod(datapath, rule, self.generation.get(datapath.id, 0)))

    def on_datapath_ready(self, datapath: Any) -> None:
        """``datapath``'s rules are confirmed by a barrier. Default: nothing."""

    def on_datapath_down(self, datapath: Any) -> None:
        """``datapath`` disconnected. Default: nothing."""

    # --- path switches (a 5G core telling the UPF where a UE is after a handover) -------------
    def start(self) -> None:
        """os-ken's start hook: the event loop, plus the path-switch watcher if the runner created
        its file before starting the controller (a run with handovers; otherwise no polling)."""
        super().start()
        if self.path_switch_path.exists():
            self.threads.append(hub.spawn(self._path_switch_loop))

    def _path_switch_loop(self) -> None:
        # os-ken's native hub swallows a thread's exceptions: log them and keep watching.
        while self.is_active:
            hub.sleep(PATH_SWITCH_POLL_S)
            try:
                self.apply_path_switches()
            except Exception:
                self.logger.exception("path switch failed")

    def apply_path_switches(self) -> None:
        """Apply every complete line the runner appended to the path-switch file since the last
        call: the UE's forwarding rule at that switch moves to the new port (``forward_rule``)."""
        if not self.path_switch_path.exists():
            return
        with self.path_switch_path.open("rb") as f:
            f.seek(self._path_switch_offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        if not complete:
            return
        self._path_switch_offset += len(complete)
        for line in complete.splitlines():
            record: dict[str, Any] = {"seq": None, "applied_ns": None, "error": None}
            try:
                req = json.loads(line)
                record["seq"] = req["seq"]
                datapath = self.connected.get(int(req["dpid"]))
                if datapath is None:
                    record["error"] = f"dpid {int(req['dpid']):#x} is not connected"
                else:
                    self.add_flow(datapath, forward_rule(str(req["mac"]), int(req["port"])))
                    record["applied_ns"] = time.time_ns()
            except (ValueError, KeyError, TypeError) as exc:
                record["error"] = f"bad request {line[:80]!r}: {exc}"
            self.path_switches.append(record)
            self.logger.info("path switch %s", record)
        self._write_status()

    # --- flow installation -----------------------------------------------------------------
    def request_resync(self, datapath: Any) -> None:
        """Ask ``datapath`` for this app's flows (their cookies' generations); the reply installs
        the policy (``resync_reply_handler``)."""
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        request = parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                             COOKIE_APP, COOKIE_APP_MASK, parser.OFPMatch())
        datapath.send_msg(request)  # sets request.xid
        self.pending_resync[datapath.id] = (request.xid, set())
        self.resync_xids.add((datapath.id, request.xid))

    def is_resync_reply(self, msg: Any) -> bool:
        """``msg`` answers this app's resync request (a subclass polling flow stats skips it)."""
        return (msg.datapath.id, msg.xid) in self.resync_xids

    def request_meters(self, datapath: Any, stale: set[int]) -> None:
        """The flows are read: if the switch needs meters, ask which meter ids exist (the reply
        installs the policy, ``meter_config_reply_handler``); otherwise install it now."""
        try:
            needed = self.meters_for(datapath)
        except UnknownDatapathError:
            needed = []  # install_policy reports it
        if not needed:
            self.install_policy(datapath, stale)
            return
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        request = parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)
        datapath.send_msg(request)  # sets request.xid
        self.pending_meters[datapath.id] = (request.xid, stale, set())

    def install_policy(self, datapath: Any, stale: set[int] | frozenset[int] = frozenset(),
                       existing_meters: set[int] | frozenset[int] = frozenset()) -> None:
        """Set ``meters_for(datapath)`` (MODIFY the ids in ``existing_meters``, the switch's meters,
        ADD the others), then install ``rules_for(datapath)`` under the generation after ``stale``
        (the generations of this app's flows found on the switch), delete the stale generations'
        leftovers, and ask for a barrier to confirm them (``on_datapath_ready`` follows its reply)."""
        dpid = datapath.id
        try:
            meters = self.meters_for(datapath)
            rules = self.rules_for(datapath)
        except UnknownDatapathError as exc:
            self.logger.error("%s", exc)
            self.errors[dpid] = str(exc)
            self._write_status()
            return
        generation = next_generation(stale)
        self.generation[dpid] = generation
        for meter in meters:
            datapath.send_msg(build_meter_mod(datapath, meter, modify=meter.meter_id in existing_meters))
        self.prepare_datapath(datapath)
        for rule in rules:
            self.add_flow(datapath, rule)
        for old in sorted(stale):
            datapath.send_msg(build_delete_own_flows(datapath, COOKIE_APP | old << GENERATION_SHIFT,
                                                     COOKIE_APP_MASK | GENERATION_MASK))
        self.resyncs.append({"dpid": dpid, "generation": generation, "stale_deleted": sorted(stale),
                             "meters": [m.meter_id for m in meters],
                             "meters_modified": sorted(m.meter_id for m in meters
                                                       if m.meter_id in existing_meters),
                             "t_unix_s": time.time()})
        self._write_status()
        barrier = datapath.ofproto_parser.OFPBarrierRequest(datapath)
        datapath.send_msg(barrier)  # sets barrier.xid
        self.pending_barrier[dpid] = barrier.xid
        self.logger.info("dpid %#x: sent %d flows (generation %d, stale %s), awaiting barrier xid %d", dpid,
                         len(rules), generation, sorted(stale) or "none", barrier.xid)

    # --- events ----------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features_handler(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        self.connected[datapath.id] = datapath
        self.ready_dpids.discard(datapath.id)
        self.errors.pop(datapath.id, None)
        self.request_resync(datapath)
        self._write_status()

    def _awaited_reply(self, pending: dict[int, Any], msg: Any, values: Callable[[Any], int]) -> Any:
        """One part of a multipart reply awaited in ``pending`` (dpid -> (xid, ..., set collected)):
        adds ``values(entry)`` of each body entry to the set; returns the pending entry once its last
        part came (removed from ``pending``), else None (another request's, a stale connection's, or
        more parts follow)."""
        datapath = msg.datapath
        entry = pending.get(datapath.id)
        if entry is None or entry[0] != msg.xid or self.connected.get(datapath.id) is not datapath:
            return None
        entry[-1].update(values(stat) for stat in msg.body)
        if msg.flags & datapath.ofproto.OFPMPF_REPLY_MORE:
            return None  # more parts of this reply follow
        del pending[datapath.id]
        return entry

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def resync_reply_handler(self, ev: Any) -> None:
        entry = self._awaited_reply(self.pending_resync, ev.msg, lambda stat: generation_of(stat.cookie))
        if entry is not None:
            self.request_meters(ev.msg.datapath, entry[1])

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def meter_config_reply_handler(self, ev: Any) -> None:
        entry = self._awaited_reply(self.pending_meters, ev.msg, lambda stat: stat.meter_id)
        if entry is not None:
            self.install_policy(ev.msg.datapath, entry[1], entry[2])

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def barrier_reply_handler(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        dpid, xid = datapath.id, ev.msg.xid
        if self.pending_barrier.get(dpid) != xid or self.connected.get(dpid) is not datapath:
            return
        del self.pending_barrier[dpid]
        if dpid in self.errors:
            self.logger.error("dpid %#x: flows rejected, not ready: %s", dpid, self.errors[dpid])
            self._write_status()
            return
        self.ready_dpids.add(dpid)
        self.logger.info("dpid %#x: ready", dpid)
        self._write_status()
        self.on_datapath_ready(datapath)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        msg = ev.msg
        text = f"OFPErrorMsg type={msg.type} code={msg.code} xid={msg.xid}"
        self.logger.error("dpid %s: %s", msg.datapath.id, text)
        if msg.datapath.id is not None:
            self.errors.setdefault(msg.datapath.id, text)
            self._write_status()

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def state_change_handler(self, ev: Any) -> None:
        datapath = ev.datapath
        dpid = datapath.id
        if dpid is None or self.connected.get(dpid) is not datapath:
            return  # never got its features, or an older connection a reconnect has replaced
        self.logger.info("dpid %#x: disconnected", dpid)
        del self.connected[dpid]
        self.ready_dpids.discard(dpid)
        self.pending_barrier.pop(dpid, None)
        self.pending_resync.pop(dpid, None)
        self.pending_meters.pop(dpid, None)
        self.resync_xids = {k for k in self.resync_xids if k[0] != dpid}
        self._write_status()
        self.on_datapath_down(datapath)

    def _write_status(self) -> None:
        write_status_atomic(self.status_path, {
            "ready_dpids": sorted(self.ready_dpids),
            "pid": os.getpid(),
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "path_switches": self.path_switches,
            "resyncs": self.resyncs,
        })


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (controllers.launcher sets it)")
    return value

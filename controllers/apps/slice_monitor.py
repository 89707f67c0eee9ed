"""OpenFlow 1.3 app: the slice switch plus periodic port and flow statistics (like Ryu's
``simple_monitor_13``, which subclasses ``simple_switch_13``).

Registry name ``slice_monitor``. It *replaces* ``slice_switch`` (it is a ``SliceSwitch`` and
installs the same flows): list it alone, ``--app slice_monitor``.

Every ``FACTORYSAT_CTL_STATS_INTERVAL_S`` seconds (default 1; allowed 0.05..3600) it sends a flow
statistics request (all tables) and a port statistics request (all ports) to each ready switch and
appends each complete reply (multipart parts joined) as one JSON line to ``controller_stats.jsonl``
in the status file's folder, one ``write`` on an ``O_APPEND`` descriptor per line, so a reader
never sees half a line and a restarted controller appends after the old lines. Lines::

    {"kind": "port_stats", "t_unix_s": 1.7e9, "pid": 123, "dpid": 1, "xid": 7,
     "ports": [{"port_no": 1, "rx_packets": 0, "tx_packets": 0, "rx_bytes": 0, "tx_bytes": 0,
                "rx_dropped": 0, "tx_dropped": 0, "rx_errors": 0, "tx_errors": 0,
                "duration_s": 2.5}, ...]}
    {"kind": "flow_stats", ..., "flows": [{"table_id": 0, "priority": 100, "cookie": 0xfac5...,
                "match": {"eth_type": 2048, "ipv4_src": "10.0.0.1"}, "packet_count": 0,
                "byte_count": 0, "duration_s": 2.5}, ...]}

``t_unix_s`` is when the last part of the reply arrived (CLOCK_REALTIME); a masked match field is
a ``[value, mask]`` list. It uses the ``on_datapath_ready`` / ``on_datapath_down`` extension
points of ``SliceSwitch`` and adds only the two stats-reply handlers.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from controllers.apps import ENV_STATS_INTERVAL_S, STATS_FILE_NAME
from controllers.apps.slice_switch import SliceSwitch
from controllers.sdn import MAIN_DISPATCHER, hub, ofp_event, set_ev_cls
from topologies.validate import ConfigError

DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 3600.0

_PORT_FIELDS = ("port_no", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped",
                "tx_dropped", "rx_errors", "tx_errors")


def stats_interval_from_env(environ: Any = os.environ) -> float:
    """The polling period from ``FACTORYSAT_CTL_STATS_INTERVAL_S`` (default 1 s); ``ConfigError``
    naming the variable if it is not a number in ``MIN_INTERVAL_S``..``MAX_INTERVAL_S``."""
    raw = environ.get(ENV_STATS_INTERVAL_S)
    if raw is None or raw == "":
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:  # also false for NaN
        raise ConfigError(ENV_STATS_INTERVAL_S, raw, f"seconds, {MIN_INTERVAL_S}..{MAX_INTERVAL_S}")
    return value


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line with a single ``write`` on an ``O_APPEND`` descriptor."""
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(f"{path}: short write ({written} of {len(data)} bytes)")


def _duration_s(stat: Any) -> float:
    return stat.duration_sec + stat.duration_nsec / 1e9


def port_stats_entries(body: list[Any]) -> list[dict[str, Any]]:
    """JSON-ready entries of an ``OFPPortStatsReply`` body (``OFPPortStats`` values)."""
    return [{**{f: getattr(s, f) for f in _PORT_FIELDS}, "duration_s": _duration_s(s)} for s in body]


def flow_stats_entries(body: list[Any]) -> list[dict[str, Any]]:
    """JSON-ready entries of an ``OFPFlowStatsReply`` body (``OFPFlowStats`` values)."""
    return [{"table_id": s.table_id, "priority": s.priority, "cookie": s.cookie,
             "match": dict(s.match.items()), "packet_count": s.packet_count,
             "byte_count": s.byte_count, "duration_s": _duration_s(s)} for s in body]


class SliceMonitor(SliceSwitch):
    """``SliceSwitch`` plus port and flow statistics of every ready switch, as JSON lines.

    Extends ``SliceSwitch`` through ``on_datapath_ready`` (start polling the switch, with one
    request at once) and ``on_datapath_down`` (stop). ``request_stats(datapath)`` sends one round
    of requests; the reply handlers join multipart replies and call ``append_json_line``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats_interval_s = stats_interval_from_env()
        self.stats_path = self.status_path.with_name(STATS_FILE_NAME)
        self.monitored: dict[int, Any] = {}  # dpid -> datapath; read by the polling thread
        self._monitored_lock = threading.Lock()
        self.partial_replies: dict[tuple[int, int], list[Any]] = {}  # (dpid, xid) -> parts so far
        self.logger.info("statistics every %.3g s to %s", self.stats_interval_s, self.stats_path)

    def start(self) -> None:
        """os-ken's start hook: the event loop, plus the polling thread."""
        super().start()
        self.threads.append(hub.spawn(self._poll_loop))

    # --- SliceSwitch extension points ------------------------------------------------------
    def on_datapath_ready(self, datapath: Any) -> None:
        super().on_datapath_ready(datapath)
        with self._monitored_lock:
            self.monitored[datapath.id] = datapath
        self.request_stats(datapath)

    def on_datapath_down(self, datapath: Any) -> None:
        super().on_datapath_down(datapath)
        with self._monitored_lock:
            if self.monitored.get(datapath.id) is datapath:
                del self.monitored[datapath.id]
        for key in [k for k in self.partial_replies if k[0] == datapath.id]:
            del self.partial_replies[key]

    # --- polling ---------------------------------------------------------------------------
    def request_stats(self, datapath: Any) -> None:
        """Send a flow stats request (all tables, all flows) and a port stats request (all ports)."""
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        datapath.send_msg(parser.OFPFlowStatsRequest(datapath))
        datapath.send_msg(parser.OFPPortStatsRequest(datapath, 0, ofp.OFPP_ANY))

    def _poll_loop(self) -> None:
        # os-ken's native hub swallows a thread's exceptions: log them and keep polling.
        next_t = time.monotonic() + self.stats_interval_s
        while self.is_active:
            hub.sleep(max(0.0, next_t - time.monotonic()))
            next_t = max(next_t + self.stats_interval_s, time.monotonic())
            with self._monitored_lock:
                datapaths = list(self.monitored.values())
            for datapath in datapaths:
                try:
                    self.request_stats(datapath)
                except Exception:
                    self.logger.exception("dpid %#x: statistics request failed", datapath.id)

    # --- replies ---------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    def port_stats_reply_handler(self, ev: Any) -> None:
        self._collect(ev.msg, "port_stats", "ports", port_stats_entries)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats_reply_handler(self, ev: Any) -> None:
        if self.is_resync_reply(ev.msg):
            return  # the switch app's own resync request, not a statistics round
        self._collect(ev.msg, "flow_stats", "flows", flow_stats_entries)

    def _collect(self, msg: Any, kind: str, key: str, entries: Any) -> None:
        dpid = msg.datapath.id
        parts = self.partial_replies.setdefault((dpid, msg.xid), [])
        parts.extend(msg.body)
        if msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            return  # more parts of this reply follow
        del self.partial_replies[(dpid, msg.xid)]
        record = {"kind": kind, "t_unix_s": time.time(), "pid": os.getpid(), "dpid": dpid,
                  "xid": msg.xid, key: entries(parts)}
        try:
            append_json_line(self.stats_path, record)
        except OSError as exc:
            self.logger.error("dpid %#x: cannot append statistics: %s", dpid, exc)

"""A capture (pcap) -> the traffic generator's tidy packet records, and the check of one against the other.

:func:`read_pcap` reads a pcap file with scapy's ``RawPcapReader`` and parses the Ethernet (or Linux
cooked, or raw IP) / IPv4 / UDP headers itself (``struct``: a few microseconds a packet). Every UDP
packet whose payload holds the project's 16-byte packet header (``!IIQ``: flow, seq, send_ns; see
topologies/links/relay/traffic_engine.c) becomes one row. :func:`cross_check` compares those rows
with the receiver's raw records (experiments/kinds/slices/packetstream.py) packet by packet.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.agents.traffic import RECORD
from experiments.framework.results import write_json
from experiments.framework.stats import percentile

HEADER = struct.Struct("!IIQ")  # flow_id, seq, send_ns at the start of every UDP payload
COLUMNS = ("flow_id", "seq", "send_ns", "wire_ns", "bytes", "dscp", "src", "dst", "dport")
DTYPES = {"flow_id": "uint32", "seq": "uint32", "send_ns": "uint64", "wire_ns": "int64",
          "bytes": "uint32", "dscp": "uint8", "src": "object", "dst": "object", "dport": "uint16"}
# Measured on this project's VM (Debian 12, 2 cores; README "Packet capture"): recv_ns - wire_ns was
# 0 ns for every one of 43,000 packets (Python agents and C engine; one skb->tstamp read twice). The
# tolerance only has to flag stamps taken apart (a second path, a stall between two stamps): 50 us.
DEFAULT_TOLERANCE_MS = 0.05
RECEIVER_PORT = 5001  # experiments/kinds/slices/traffic.py's (a unit test keeps them equal)
# a receiver's raw record (RECORD, little-endian), as experiments/kinds/slices/packetstream.py reads it
RECORD_DTYPE = np.dtype([("flow_id", "<u4"), ("seq", "<u4"), ("send_ns", "<u8"), ("recv_ns", "<u8"),
                         ("bytes", "<u4"), ("tos", "u1"), ("_pad", "V3")])
assert RECORD_DTYPE.itemsize == RECORD.size
RECORD_FIELDS = ("flow_id", "seq", "send_ns", "recv_ns", "bytes", "tos")
_ETHERTYPE_IPV4 = 0x0800
_VLAN = (0x8100, 0x88A8)
_UDP = struct.Struct("!HHH")


def _ip_offset(linktype: int, data: bytes) -> int | None:
    """Where the IPv4 header starts in a frame of ``linktype``; None: not IPv4."""
    if linktype == 1:  # Ethernet (veths)
        ethertype, at = int.from_bytes(data[12:14], "big"), 14
        while ethertype in _VLAN and len(data) >= at + 4:
            ethertype, at = int.from_bytes(data[at + 2:at + 4], "big"), at + 4
        return at if ethertype == _ETHERTYPE_IPV4 else None
    if linktype == 113:  # Linux cooked (SLL): protocol at 14
        return 16 if int.from_bytes(data[14:16], "big") == _ETHERTYPE_IPV4 else None
    if linktype == 276:  # Linux cooked v2 (SLL2): protocol at 0
        return 20 if int.from_bytes(data[0:2], "big") == _ETHERTYPE_IPV4 else None
    if linktype in (12, 14, 101, 228):  # raw IP / raw IPv4
        return 0
    raise ValueError(f"pcap link type {linktype}; allowed: 1 (Ethernet), 113/276 (Linux cooked), "
                     "12/14/101/228 (raw IP)")


def read_pcap(path: Path) -> pd.DataFrame:
    """One row per UDP/IPv4 packet that carries the project's header (columns :data:`COLUMNS`).

    ``wire_ns`` is the capture timestamp (ns; a microsecond pcap is scaled), ``bytes`` the UDP
    payload length (from the UDP header, so a short snaplen does not shorten it), ``dscp`` the IP
    TOS byte >> 2. What was left out is counted in ``frame.attrs["skipped"]`` (not IPv4, not UDP, a
    non-first fragment, payload shorter than the header or cut by the snaplen).
    """
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    cols: dict[str, list] = {name: [] for name in COLUMNS}
    skipped = {"not_ipv4": 0, "not_udp": 0, "fragment": 0, "short": 0}
    names: dict[bytes, str] = {}
    try:
        reader = RawPcapReader(str(path))
    except Scapy_Exception as exc:
        raise ValueError(f"{path}: not a readable pcap file ({exc})") from None
    with reader:
        if isinstance(reader, RawPcapNgReader):
            raise ValueError(f"{path}: pcapng; allowed: pcap (tcpdump -w writes pcap)")
        linktype, scale = reader.linktype, 1 if reader.nano else 1000
        for data, meta in reader:
            at = _ip_offset(linktype, data)
            if at is None or len(data) < at + 20 or data[at] >> 4 != 4:
                skipped["not_ipv4"] += 1
                continue
            if data[at + 9] != 17:
                skipped["not_udp"] += 1
                continue
            if int.from_bytes(data[at + 6:at + 8], "big") & 0x1FFF:
                skipped["fragment"] += 1
                continue
            udp = at + (data[at] & 0x0F) * 4
            if len(data) < udp + 8 + HEADER.size:
                skipped["short"] += 1
                continue
            _sport, dport, length = _UDP.unpack_from(data, udp)
            if length < 8 + HEADER.size:
                skipped["short"] += 1
                continue
            flow_id, seq, send_ns = HEADER.unpack_from(data, udp + 8)
            src, dst = data[at + 12:at + 16], data[at + 16:at + 20]
            for raw in (src, dst):
                if raw not in names:
                    names[raw] = socket.inet_ntoa(raw)
            cols["flow_id"].append(flow_id)
            cols["seq"].append(seq)
            cols["send_ns"].append(send_ns)
            cols["wire_ns"].append(meta.sec * 1_000_000_000 + meta.usec * scale)
            cols["bytes"].append(length - 8)
            cols["dscp"].append(data[at + 1] >> 2)
            cols["src"].append(names[src])
            cols["dst"].append(names[dst])
            cols["dport"].append(dport)
    frame = pd.DataFrame({name: np.array(cols[name], dtype=DTYPES[name]) for name in COLUMNS})
    frame.attrs["skipped"] = skipped
    return frame


def _diff_ms(values: np.ndarray) -> dict[str, float | None]:
    """recv_ns - wire_ns percentiles and the largest magnitude, in ms."""
    ms = values / 1e6
    return {"p50": percentile(ms, 50, 6), "p99": percentile(ms, 99, 6),
            "max_abs": round(float(np.abs(ms).max()), 6) if ms.size else None}


def _compare(records: pd.DataFrame, wire: pd.DataFrame) -> dict[str, Any]:
    """Counts and per-packet differences of one flow (or of all flows together)."""
    keys = ["flow_id", "seq"]
    rec = records.drop_duplicates(keys)
    wir = wire.drop_duplicates(keys)
    both = rec.merge(wir, on=keys, how="inner", suffixes=("_rec", "_wire"))
    in_wire = rec[keys].merge(wir[keys], on=keys, how="left", indicator=True)["_merge"]
    in_rec = wir[keys].merge(rec[keys], on=keys, how="left", indicator=True)["_merge"]
    diff = both["recv_ns"].to_numpy(dtype=np.int64) - both["wire_ns"].to_numpy(dtype=np.int64)
    dscp_rec = both["tos"].to_numpy(dtype=np.uint8) >> 2
    return {"records": len(records), "wire": len(wire), "matched": len(both),
            "missing_on_wire": int((in_wire == "left_only").sum()),
            "extra_on_wire": int((in_rec == "left_only").sum()),
            "duplicates_records": len(records) - len(rec), "duplicates_wire": len(wire) - len(wir),
            "dscp_mismatches": int((dscp_rec != both["dscp"].to_numpy(dtype=np.uint8)).sum()),
            "send_ns_mismatches": int((both["send_ns_rec"].to_numpy(dtype=np.uint64)
                                       != both["send_ns_wire"].to_numpy(dtype=np.uint64)).sum()),
            "bytes_mismatches": int((both["bytes_rec"].to_numpy(dtype=np.int64)
                                     != both["bytes_wire"].to_numpy(dtype=np.int64)).sum()),
            "recv_minus_wire_ms": _diff_ms(diff)}


def cross_check(records: pd.DataFrame, wire: pd.DataFrame, tolerance_ms: float = DEFAULT_TOLERANCE_MS,
                kernel_dropped: int | None = None) -> dict[str, Any]:
    """The receiver's records against the capture of its interface, per flow and in total.

    ``records``: the receiver's rows (flow_id, seq, send_ns, recv_ns, bytes, tos) for the packets
    that crossed the captured interface; ``wire``: :func:`read_pcap` of that capture, restricted to
    the packets addressed to the receiver. Packets are matched by (flow_id, seq). Reported: packets
    in the records, on the wire, matched, missing on the wire, extra on the wire, duplicates, DSCP
    mismatches (records' ``tos >> 2`` vs the wire's ``dscp``), send_ns and payload-length mismatches
    (the same payload, so both must be 0) and ``recv_ns - wire_ns`` (p50, p99, max |.|, ms).

    Both timestamps are the kernel's, of the same packet: the receiver's ``recv_ns`` is its
    SO_TIMESTAMPNS stamp, the capture's the stamp the packet tap (AF_PACKET, ``tcpdump``) reads
    at the interface. On Linux both read the one ``skb->tstamp`` set when the frame enters the
    receive path (``netif_rx`` of the veth, while any socket wants timestamps), so they agree to
    well under a millisecond (measured: exactly; :data:`DEFAULT_TOLERANCE_MS`). A larger gap means
    the two do not see the same packets (another interface, a second path) or a stamp taken later.

    ``passed``: equal counts, every packet matched, no DSCP/send_ns/length mismatch, max |diff| <=
    ``tolerance_ms`` and no packet dropped by the kernel before the capture read it
    (``kernel_dropped``, tcpdump's count: then the capture misses packets, which ``problems`` says).
    """
    total = _compare(records, wire)
    by_rec, by_wire = dict(iter(records.groupby("flow_id"))), dict(iter(wire.groupby("flow_id")))
    flows = {str(int(f)): _compare(by_rec.get(f, records.iloc[:0]), by_wire.get(f, wire.iloc[:0]))
             for f in sorted(set(by_rec) | set(by_wire))}
    problems = []
    if total["records"] != total["wire"]:
        problems.append(f"{total['records']} packets in the records, {total['wire']} on the wire")
    for key in ("missing_on_wire", "extra_on_wire", "dscp_mismatches", "send_ns_mismatches",
                "bytes_mismatches"):
        if total[key]:
            problems.append(f"{key.replace('_', ' ')}: {total[key]}")
    worst = total["recv_minus_wire_ms"]["max_abs"]
    if worst is not None and worst > tolerance_ms:
        problems.append(f"recv_ns - wire_ns up to {worst} ms; tolerance {tolerance_ms} ms")
    if kernel_dropped:
        problems.append(f"the kernel dropped {kernel_dropped} packets before the capture read them")
    return {"passed": not problems, "problems": problems, "tolerance_ms": tolerance_ms,
            "kernel_dropped": kernel_dropped, "total": total, "flows": flows}


def read_receiver_records(path: Path) -> pd.DataFrame:
    """A receiver's raw file (``raw/recv-<host>.bin``) as rows (a trailing partial record left out)."""
    data = path.read_bytes()
    array = np.frombuffer(data[:len(data) - len(data) % RECORD.size], dtype=RECORD_DTYPE)
    return pd.DataFrame({name: array[name] for name in RECORD_FIELDS})


def cross_check_run(run_dir: Path, tolerance_ms: float = DEFAULT_TOLERANCE_MS,
                    port: int = RECEIVER_PORT) -> dict[str, Any]:
    """Cross-check every captured interface of a run whose host received flows; write and return
    ``<run>/pcap/cross_check.json``.

    The records are the host's receiver file ``raw/recv-<host>.bin`` (the slices kind's traffic; a
    trailing partial record is left out); the wire is the capture's packets to the host's address
    and the receivers' ``port``. Interfaces of hosts that received no flows are listed in
    ``skipped``, as are hosts with more than one interface (their records cover all of them).
    """
    pcap_dir = Path(run_dir) / "pcap"
    capture = json.loads((pcap_dir / "capture.json").read_text())
    checked: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for iface, info in capture["interfaces"].items():
        records_path = Path(run_dir) / "raw" / f"recv-{info['host']}.bin"
        if not records_path.exists():
            skipped[iface] = f"{info['host']} received no flows (no raw/{records_path.name})"
            continue
        if info["host_interfaces"] != 1:
            skipped[iface] = f"{info['host']} has {info['host_interfaces']} interfaces"
            continue
        wire = read_pcap(Path(run_dir) / info["file"])
        wire = wire[(wire["dst"] == info["ip"]) & (wire["dport"] == port)]
        result = cross_check(read_receiver_records(records_path), wire, tolerance_ms,
                             info.get("packets_dropped_by_kernel"))
        result["problems"] += info.get("problems", [])  # the capture's own (e.g. no counts printed)
        result["passed"] = result["passed"] and not info.get("problems")
        checked[iface] = result
    out = {"passed": all(r["passed"] for r in checked.values()) if checked else None,  # None: none checked
           "tolerance_ms": tolerance_ms, "port": port, "interfaces": checked, "skipped": skipped}
    write_json(pcap_dir / "cross_check.json", out)
    return out

"""Packet capture on request (experiments/framework/pcap.py, pcapread.py): the --pcap option, reading
a pcap into the traffic generator's records, and the records-versus-wire cross-check."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

from experiments.framework.pcap import (
    PcapOptionError,
    PcapRequest,
    buffer_kib,
    host_interfaces,
    parse_pcap_option,
    parse_stats,
    tcpdump_argv,
)
from experiments.framework.pcapread import DEFAULT_TOLERANCE_MS, cross_check, cross_check_run, read_pcap
from topologies.errors import UserError

T0 = 1_764_660_000_123_456_789  # a CLOCK_REALTIME instant in ns


# --- the option -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    (None, None),
    ("all", PcapRequest()),
    ("edge1-eth0", PcapRequest(("edge1-eth0",))),
    ("edge1-eth0, cloud1-eth0,edge1-eth0", PcapRequest(("edge1-eth0", "cloud1-eth0"))),
    ("a.b_c-15chars-xx", None),
])
def test_parse_good(text: str | None, want: PcapRequest | None) -> None:
    if text == "a.b_c-15chars-xx":  # 16 characters: one too many
        with pytest.raises(PcapOptionError):
            parse_pcap_option(text)
        assert parse_pcap_option(text[:15]) == PcapRequest((text[:15],))
        return
    assert parse_pcap_option(text) == want


@pytest.mark.parametrize("text", ["", "edge1-eth0,", "edge1 eth0", "a/b", "eth0:1", "all,edge1-eth0",
                                  "..", "x" * 16, "é-eth0"])
def test_parse_bad_names_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(PcapOptionError) as info:
        parse_pcap_option(text)
    message = str(info.value)
    assert message.startswith("--pcap") and "allowed: 'all'" in message and "15 characters" in message
    assert isinstance(info.value, UserError)  # the CLI's one-line exit 2


def test_resolve_against_the_topology() -> None:
    from topologies.factory import FactoryTopo
    from topologies.scenario import load_scenario

    available = host_interfaces(FactoryTopo(scenario=load_scenario(None)))
    assert available["edge1-eth0"] == "edge1"
    assert not any(name.startswith("fs") for name in available)  # switch ports are not host interfaces
    assert PcapRequest().resolve(available) == dict(sorted(available.items()))
    assert PcapRequest(("edge1-eth0",)).resolve(available) == {"edge1-eth0": "edge1"}
    with pytest.raises(PcapOptionError, match=r"^--pcap: no host interface edge9-eth0 .*allowed: 'all'"):
        PcapRequest(("edge1-eth0", "edge9-eth0")).resolve(available)


def test_tcpdump_command_and_its_counts() -> None:
    argv = tcpdump_argv("edge1-eth0", Path("/r/pcap/edge1-eth0.pcap"))
    assert argv[:3] == ["tcpdump", "-i", "edge1-eth0"] and argv[-1] == "udp"
    assert {"-U", "--time-stamp-precision=nano"} <= set(argv)
    assert argv[argv.index("-s") + 1] == "128" and argv[argv.index("-w") + 1] == "/r/pcap/edge1-eth0.pcap"
    text = ("tcpdump: listening on edge1-eth0, link-type EN10MB (Ethernet), snapshot length 128 bytes\n"
            "300 packets captured\n302 packets received by filter\n2 packets dropped by kernel\n")
    assert parse_stats(text) == {"packets_captured": 300, "packets_received_by_filter": 302,
                                 "packets_dropped_by_kernel": 2}
    assert parse_stats("1 packet captured\n") == {"packets_captured": 1}
    assert (buffer_kib(1), buffer_kib(32), buffer_kib(130)) == (4096, 2048, 512)  # "all": bounded memory


# --- reading a capture ---------------------------------------------------------------------------
PACKETS = [  # flow, seq, send_ns, wire_ns, payload bytes, tos, src, dst, dport
    (1, 0, T0, T0 + 1_000_123, 100, 0xB8, "10.77.0.1", "10.77.0.9", 5001),
    (1, 1, T0 + 10_000_000, T0 + 11_000_001, 100, 0xB8, "10.77.0.1", "10.77.0.9", 5001),
    (7, 42, T0 + 5, T0 + 999_999_999, 1200, 0x88, "10.77.0.2", "10.77.0.9", 5001),
    (4_000_000_000, 2**32 - 1, 2**63 + 1, T0 + 2_000_000_000, 16, 0x28, "10.77.1.3", "10.77.0.9", 6000),
]


def _write(path: Path, packets: list[tuple], extra: list[tuple[bytes, int]] = ()) -> None:
    """A nanosecond pcap of hand-made Ether/IP/UDP frames (snaplen 128, as the capture writes)."""
    with PcapWriter(str(path), nano=True, linktype=1, snaplen=128) as out:
        out.write_header(None)
        for flow, seq, send_ns, wire_ns, size, tos, src, dst, dport in packets:
            frame = bytes(Ether() / IP(src=src, dst=dst, tos=tos) / UDP(sport=40000, dport=dport)
                          / Raw(struct.pack("!IIQ", flow, seq, send_ns) + b"\0" * (size - 16)))
            out.write_packet(frame[:128], sec=wire_ns // 10**9, usec=wire_ns % 10**9, wirelen=len(frame))
        for frame, wire_ns in extra:
            out.write_packet(frame, sec=wire_ns // 10**9, usec=wire_ns % 10**9)


def test_read_pcap_exact_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    short = bytes(Ether() / IP(dst="10.77.0.9") / UDP(dport=5001) / Raw(b"tiny"))
    tcp = bytes(Ether() / IP(dst="10.77.0.9", proto=6) / Raw(b"\0" * 40))
    arp = bytes(Ether(type=0x0806) / Raw(b"\0" * 28))
    _write(path, PACKETS, [(short, T0), (tcp, T0), (arp, T0)])
    frame = read_pcap(path)
    want = pd.DataFrame(PACKETS, columns=["flow_id", "seq", "send_ns", "wire_ns", "bytes", "tos", "src",
                                          "dst", "dport"])
    assert list(frame.columns) == ["flow_id", "seq", "send_ns", "wire_ns", "bytes", "dscp", "src", "dst",
                                   "dport"]
    assert frame["flow_id"].tolist() == want["flow_id"].tolist()
    assert frame["seq"].tolist() == want["seq"].tolist()
    assert frame["send_ns"].tolist() == [int(v) for v in want["send_ns"]]  # all 64 bits
    assert frame["wire_ns"].tolist() == want["wire_ns"].tolist()  # to the nanosecond
    assert frame["bytes"].tolist() == [100, 100, 1200, 16]  # the UDP length, not the cut frame
    assert frame["dscp"].tolist() == [46, 46, 34, 10]
    assert frame["src"].tolist() == want["src"].tolist() and frame["dst"].tolist() == want["dst"].tolist()
    assert frame["dport"].tolist() == want["dport"].tolist()
    assert str(frame["wire_ns"].dtype) == "int64" and str(frame["send_ns"].dtype) == "uint64"
    assert frame.attrs["skipped"] == {"not_ipv4": 1, "not_udp": 1, "fragment": 0, "short": 1}


def test_read_pcap_microsecond_file_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "us.pcap"
    with PcapWriter(str(path), linktype=1) as out:
        out.write_header(None)
        frame = bytes(Ether() / IP(tos=4) / UDP(dport=5001) / Raw(struct.pack("!IIQ", 3, 9, 11)))
        out.write_packet(frame, sec=1_700_000_000, usec=250_001)
    row = read_pcap(path).iloc[0]
    assert row["wire_ns"] == 1_700_000_000_250_001_000 and row["dscp"] == 1 and row["seq"] == 9
    (tmp_path / "empty.pcap").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable pcap"):
        read_pcap(tmp_path / "empty.pcap")
    assert read_pcap(_empty_pcap(tmp_path)).empty


def _empty_pcap(tmp_path: Path) -> Path:
    path = tmp_path / "none.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 128, 1))
    return path


# --- the cross-check -------------------------------------------------------------------------
def _records(n: int = 200, tos: int = 0xB8) -> pd.DataFrame:
    seq = np.arange(n, dtype=np.uint32)
    send = T0 + seq.astype(np.uint64) * 1_000_000
    return pd.DataFrame({"flow_id": np.where(seq % 2 == 0, 1, 2).astype(np.uint32), "seq": seq,
                         "send_ns": send, "recv_ns": send + 2_000_000, "bytes": np.full(n, 100, np.uint32),
                         "tos": np.full(n, tos, np.uint8)})


def _wire(records: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"flow_id": records["flow_id"], "seq": records["seq"], "send_ns": records["send_ns"],
                         "wire_ns": records["recv_ns"].astype(np.int64), "bytes": records["bytes"],
                         "dscp": records["tos"].to_numpy() >> 2, "src": "10.77.0.1",
                         "dst": "10.77.0.9", "dport": np.uint16(5001)})


def test_all_match_passes() -> None:
    records = _records()
    result = cross_check(records, _wire(records))
    assert result["passed"] and result["problems"] == []
    total = result["total"]
    assert (total["records"], total["wire"], total["matched"]) == (200, 200, 200)
    assert total["missing_on_wire"] == total["extra_on_wire"] == total["dscp_mismatches"] == 0
    assert total["recv_minus_wire_ms"] == {"p50": 0.0, "p99": 0.0, "max_abs": 0.0}
    assert set(result["flows"]) == {"1", "2"} and result["flows"]["2"]["matched"] == 100
    json.dumps(result)  # stored as JSON


def test_one_missing_on_the_wire() -> None:
    records = _records()
    result = cross_check(records, _wire(records).drop(index=5))
    assert not result["passed"]
    assert result["total"]["missing_on_wire"] == 1 and result["total"]["wire"] == 199
    assert result["flows"]["2"]["missing_on_wire"] == 1 and result["flows"]["1"]["missing_on_wire"] == 0
    assert any("missing on wire: 1" in p for p in result["problems"])
    extra = cross_check(records.drop(index=8), _wire(records))
    assert extra["total"]["extra_on_wire"] == 1 and not extra["passed"]


def test_one_dscp_wrong() -> None:
    records = _records()
    wire = _wire(records)
    wire.loc[3, "dscp"] = 0
    result = cross_check(records, wire)
    assert not result["passed"]
    assert result["total"]["dscp_mismatches"] == 1 and result["flows"]["2"]["dscp_mismatches"] == 1
    assert result["total"]["missing_on_wire"] == 0


def test_one_timestamp_beyond_tolerance() -> None:
    records = _records()
    wire = _wire(records)
    wire.loc[7, "wire_ns"] -= int(DEFAULT_TOLERANCE_MS * 1e6) + 1000  # recv - wire = tolerance + 1 us
    result = cross_check(records, wire)
    assert not result["passed"]
    diff = result["total"]["recv_minus_wire_ms"]
    assert diff["max_abs"] == pytest.approx(DEFAULT_TOLERANCE_MS + 0.001) and diff["p50"] == 0.0
    assert cross_check(records, wire, tolerance_ms=1.0)["passed"]  # within a looser tolerance


def test_kernel_drops_are_reported() -> None:
    records = _records()
    result = cross_check(records, _wire(records), kernel_dropped=3)
    assert not result["passed"] and result["kernel_dropped"] == 3
    assert any("dropped 3" in p for p in result["problems"])


def test_the_slices_kind_formats() -> None:
    """The reader's copies of the receivers' port and record layout are the slices kind's."""
    from experiments.framework import pcapread
    from experiments.kinds.slices import packetstream, traffic

    assert pcapread.RECEIVER_PORT == traffic.RECEIVER_PORT
    assert pcapread.RECORD_DTYPE == packetstream.RECORD_DTYPE


def test_cross_check_run_reads_the_run_folder(tmp_path: Path) -> None:
    from experiments.agents.traffic import RECORD
    from experiments.framework.pcapread import RECEIVER_PORT

    (tmp_path / "raw").mkdir()
    (tmp_path / "pcap").mkdir()
    mine = [p for p in PACKETS if p[8] == RECEIVER_PORT]  # the last one is to another port
    (tmp_path / "raw" / "recv-edge1.bin").write_bytes(b"".join(
        RECORD.pack(f, s, send, wire, size, tos) for f, s, send, wire, size, tos, *_ in mine))
    _write(tmp_path / "pcap" / "edge1-eth0.pcap", PACKETS)
    _write(tmp_path / "pcap" / "agv1-eth0.pcap", PACKETS[:1])
    entry = {"ip": "10.77.0.9", "host_interfaces": 1, "packets_dropped_by_kernel": 0, "problems": []}
    (tmp_path / "pcap" / "capture.json").write_text(json.dumps({"interfaces": {
        "edge1-eth0": {**entry, "host": "edge1", "file": "pcap/edge1-eth0.pcap"},
        "agv1-eth0": {**entry, "host": "agv1", "file": "pcap/agv1-eth0.pcap"}}}))
    out = cross_check_run(tmp_path)
    assert out["passed"] is True and list(out["interfaces"]) == ["edge1-eth0"]
    assert "agv1" in out["skipped"]["agv1-eth0"]
    assert out["interfaces"]["edge1-eth0"]["total"]["matched"] == 3
    assert json.loads((tmp_path / "pcap" / "cross_check.json").read_text())["passed"] is True


# --- the capture's life cycle, with a stand-in tcpdump (no root, no namespaces) ------------------
FAKE_TCPDUMP = r'''#!{python}
import os, signal, sys, time
iface, out = sys.argv[sys.argv.index("-i") + 1], sys.argv[sys.argv.index("-w") + 1]
mode = os.environ.get("FAKE_TCPDUMP", "ok")
if mode == "nodev":
    sys.stderr.write(f"tcpdump: {{iface}}: No such device exists\n")
    sys.exit(1)
def stop(*_):
    sys.stderr.write("5 packets captured\n5 packets received by filter\n"
                     f"{{1 if mode == 'drops' else 0}} packets dropped by kernel\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(out, "wb").close()
sys.stderr.write(f"tcpdump: listening on {{iface}}, link-type EN10MB (Ethernet), snapshot length 128 bytes\n")
sys.stderr.flush()
while True:
    time.sleep(0.05)
'''


class _Host:
    """A stand-in Mininet host: runs commands in this namespace."""

    name = "edge1"

    def intfNames(self) -> list[str]:  # noqa: N802 (Mininet's name)
        return ["lo", "edge1-eth0"]

    def intf(self, name: str):
        from types import SimpleNamespace
        return SimpleNamespace(IP=lambda: "10.77.0.9")

    def popen(self, argv: list[str], **kwargs):
        import subprocess
        return subprocess.Popen(argv, **kwargs)


class _Manifest:
    def __init__(self) -> None:
        self.processes: list[tuple[str, int]] = []

    def add_process(self, name: str, pid: int) -> None:
        self.processes.append((name, pid))


@pytest.fixture
def fake_tcpdump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os
    import sys
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "tcpdump"
    script.write_text(FAKE_TCPDUMP.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "run"


@pytest.mark.parametrize("mode", ["ok", "drops"])
def test_capture_starts_records_stops_and_counts(fake_tcpdump: Path, monkeypatch: pytest.MonkeyPatch,
                                                 mode: str) -> None:
    from experiments.framework.pcap import PcapCapture

    monkeypatch.setenv("FAKE_TCPDUMP", mode)
    manifest = _Manifest()
    capture = PcapCapture({"edge1-eth0": _Host()}, fake_tcpdump / "pcap", manifest, fake_tcpdump / "logs")
    capture.start(timeout_s=20)
    assert [name for name, _ in manifest.processes] == ["pcap:edge1-eth0"]
    assert (fake_tcpdump / "pcap" / "edge1-eth0.pcap").exists()
    result = capture.stop()
    assert capture.stop() is result  # idempotent
    entry = result["interfaces"]["edge1-eth0"]
    assert entry["pid"] == manifest.processes[0][1] and entry["exit_code"] == 0 and entry["cpu_s"] >= 0
    assert (entry["host"], entry["ip"], entry["host_interfaces"]) == ("edge1", "10.77.0.9", 1)
    assert entry["packets_captured"] == 5 and entry["packets_dropped_by_kernel"] == (mode == "drops")
    assert result["complete"] is (mode == "ok") and result["packets_dropped_by_kernel"] == (mode == "drops")
    assert json.loads((fake_tcpdump / "pcap" / "capture.json").read_text()) == json.loads(json.dumps(result))
    assert "listening on edge1-eth0" in (fake_tcpdump / "logs" / "tcpdump-edge1-eth0.txt").read_text()


def test_capture_that_cannot_start_names_the_interface(fake_tcpdump: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.framework.pcap import PcapCapture

    monkeypatch.setenv("FAKE_TCPDUMP", "nodev")
    capture = PcapCapture({"edge1-eth0": _Host()}, fake_tcpdump / "pcap", _Manifest(), fake_tcpdump / "logs")
    with pytest.raises(RuntimeError, match=r"capture on edge1-eth0 exited with 1: .*No such device.*see "):
        capture.start(timeout_s=20)
    capture.stop()
    with pytest.raises(RuntimeError, match="has no interface edge1-eth9"):
        PcapCapture({"edge1-eth9": _Host()}, fake_tcpdump / "p", _Manifest(), fake_tcpdump / "l").start()


def test_run_cli_rejects_a_bad_pcap_value(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from experiments.__main__ import main

    if os.geteuid() != 0:
        pytest.skip("`run` checks for root first")
    assert main(["run", "--pcap", "edge1 eth0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("factorysat run: --pcap 'edge1 eth0': bad interface name")

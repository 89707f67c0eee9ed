"""Packet capture on request (experiments/framework/pcap.py) on two Mininet hosts: tcpdump in the
receiver's namespace sees exactly the packets the traffic agent received, with the same DSCP mark
and the same kernel timestamps. Needs root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from linkbed import two_hosts  # same folder: on sys.path under pytest

from experiments.framework.pcap import PcapCapture, require_tcpdump
from experiments.framework.pcapread import (
    DEFAULT_TOLERANCE_MS,
    RECEIVER_PORT,
    cross_check,
    read_pcap,
    read_receiver_records,
)
from topologies.links import DirectionParams
from topologies.manifest import Manifest

pytestmark = pytest.mark.root

DSCP_EF = 46
# Marks the sender's packets in its own namespace (gone with the host, deleted before that anyway).
MARK = ("table ip fs_pcap_test {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
        f"    udp dport {RECEIVER_PORT} ip dscp set {DSCP_EF}\n  }}\n}}\n")


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def _agent(host, manifest: Manifest, label: str, args: list[str], log: Path) -> subprocess.Popen:
    """The Python traffic agent in ``host``'s namespace, recorded in ``manifest``."""
    with open(log, "w") as out:
        proc = host.popen([sys.executable, "-m", "experiments.agents.traffic", *args], stdout=out,
                          stderr=subprocess.STDOUT)
    manifest.add_process(label, proc.pid)
    return proc


def test_capture_matches_the_receivers_records(tmp_path: Path) -> None:
    require_tcpdump()
    manifest = Manifest.create("p" + os.urandom(3).hex())
    out = tmp_path / "recv-h2.bin"
    procs: list[subprocess.Popen] = []
    try:
        with two_hosts(DirectionParams(delay_ms=1), None) as (_net, _engine, h1, h2, _tag):
            marked = h1.popen(["nft", "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
            assert marked.communicate(MARK, timeout=20)[0] == "" and marked.returncode == 0
            capture = PcapCapture({"h2-eth0": h2}, tmp_path / "pcap", manifest, tmp_path / "logs")
            try:
                capture.start()
                procs.append(_agent(h2, manifest, "recv", ["recv", "--port", str(RECEIVER_PORT), "--out",
                                                           str(out)], tmp_path / "recv.txt"))
                deadline = time.monotonic() + 30
                while not Path(f"{out}.ready").exists():
                    assert procs[0].poll() is None and time.monotonic() < deadline, "receiver not ready"
                    time.sleep(0.02)
                start_ns = time.time_ns() + 300_000_000
                for flow, size, interval_ms in ((1, 100, 5.0), (2, 1200, 10.0)):  # 300 + 150 packets
                    procs.append(_agent(h1, manifest, f"send{flow}", [
                        "send", "--dest", h2.IP(), "--port", str(RECEIVER_PORT), "--flow-id", str(flow),
                        "--payload-bytes", str(size), "--interval-ms", str(interval_ms),
                        "--start-ns", str(start_ns), "--duration-s", "1.5",
                        "--summary", str(tmp_path / f"send{flow}.json")], tmp_path / f"send{flow}.txt"))
                for proc in procs[1:]:
                    assert proc.wait(timeout=30) == 0
                time.sleep(0.2)  # the last packets cross the 1 ms link
                procs[0].terminate()
                assert procs[0].wait(timeout=20) == 0
            finally:
                result = capture.stop()
                h1.cmd("nft delete table ip fs_pcap_test")
                h2_ip = h2.IP()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not manifest.remove_all()

    entry = result["interfaces"]["h2-eth0"]
    assert result["complete"], entry["problems"]
    assert entry["packets_dropped_by_kernel"] == 0 and entry["exit_code"] == 0
    assert json.loads((tmp_path / "pcap" / "capture.json").read_text())["complete"]
    records = read_receiver_records(out)
    sent = sum(json.loads((tmp_path / f"send{f}.json").read_text())["packets_sent"] for f in (1, 2))
    assert len(records) == sent == 450
    wire = read_pcap(tmp_path / "pcap" / "h2-eth0.pcap")
    wire = wire[(wire["dst"] == h2_ip) & (wire["dport"] == RECEIVER_PORT)]
    check = cross_check(records, wire, kernel_dropped=entry["packets_dropped_by_kernel"])
    print("recv_ns - wire_ns (ms):", check["total"]["recv_minus_wire_ms"])  # pytest -s shows it
    assert check["passed"], check["problems"]
    total = check["total"]
    assert total["records"] == total["wire"] == total["matched"] == 450
    assert set(wire["dscp"]) == {DSCP_EF} and set(records["tos"].to_numpy() >> 2) == {DSCP_EF}
    assert total["recv_minus_wire_ms"]["max_abs"] <= DEFAULT_TOLERANCE_MS

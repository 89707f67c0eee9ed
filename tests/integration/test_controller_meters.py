"""A slice's maximum rate on the wire: slice_switch's OF1.3 meter on a real userspace OVS bridge.

One bridge, three hosts: ``cap`` in slice embb (max_rate_mbps = CAP_MBPS), ``free`` in slice urllc
(no cap) and the receiver ``srv`` (no slice). Each sender sends UDP at SEND_MBPS (three times the
cap) to ``srv``; tcpdump in ``srv``'s namespace records what the switch delivered, scapy reads it
back. The delivered rate counts whole Ethernet frames (as the meter does: OVS counts the frame
without FCS, which is tcpdump's wire length).

Measured on the development VM (OVS 3.1.0 userspace datapath, 2 vCPUs; sender paced in 1 ms
batches; cap 2 Mbit/s; delivered rate over 3.4 s after the first 0.5 s), the chosen burst
(max(20 ms of the rate, 10 x 1518 B) = 122 kbit):

- 1200 B frames at 6 Mbit/s: 2.0018, 2.0015 Mbit/s (+0.1 %); 2/3 of the frames dropped by the band.
- 64-100 B frames at 6 Mbit/s (about 7,300 frames/s): 2.0005, 1.9993 Mbit/s (< 0.1 %). Userspace
  OVS 3.1 meters small packets accurately here once the bucket holds a few frames.

The same streams with other bursts (set by ``ovs-ofctl mod-meter``; one run each, Mbit/s):

    burst kbit      1     2      6      12     24     60     122    500
    1200 B frames   0     0      0      1.900  1.996  1.999  2.002  1.999
    64-100 B        0     1.380  1.995  1.996  1.978  1.890  1.999  1.997

A bucket smaller than a frame never passes it (1200 B = 9.6 kbit); one frame's worth (12 kbit)
loses 5 % of the rate for large frames; 2 kbit loses 31 % of small frames' rate (the tokens of each
gap between the userspace datapath's receive batches overflow the bucket). The 1.89 at 60 kbit
shows the run-to-run spread of the small-frame case (one run), hence its wider tolerance.

Needs root and the OVS daemons (started by bootstrap.sh). Every bridge, link and process is
recorded in a Manifest before (or, for pids, right after) it is created and removed by name/pid.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_controller_ovs import (  # same folder
    _assert_all_removed,
    _build_net,
    _check_environment,
    _stop_net,
)

from controllers.launcher import ControllerProcess, tcp_listening
from controllers.policy import COOKIE_SLICE_MARK, SlicePolicy, slice_meters, with_generation
from topologies.manifest import Manifest

pytestmark = pytest.mark.root

UDP_PORT = 40047
CAP_MBPS = 2.0
SEND_MBPS = 6.0  # three times the cap
SEND_S = 4.0
SKIP_S = 0.5  # the start of a stream (the meter's bucket starts full) is left out of the rate
# Relative error of the delivered rate against the cap that the test accepts. Measured (module
# docstring): within 0.1 % for both at the chosen burst, but one small-frame run at another burst
# was 5.5 % low; the margins are for a loaded CI host.
LARGE_TOLERANCE = 0.05
SMALL_TOLERANCE = 0.15
# Sends frames of the given sizes (cycled) at a rate in Mbit/s of frames for a time, paced per
# millisecond; prints the frames and bytes sent. Frame = UDP payload + 42 B (Ethernet, IPv4, UDP).
SENDER = textwrap.dedent("""
    import json, socket, sys, time
    dst, port, mbps, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    sizes = [int(x) for x in sys.argv[5].split(",")]
    payloads = [bytes(max(0, n - 42)) for n in sizes]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    frames = sent_bytes = 0
    budget = 0.0  # bits we may still send
    t0 = last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        budget += (now - last) * mbps * 1e6
        last = now
        while budget > 0:
            i = frames % len(sizes)
            try:
                s.sendto(payloads[i], (dst, port))
            except BlockingIOError:
                break
            frames += 1
            sent_bytes += sizes[i]
            budget -= sizes[i] * 8
        time.sleep(0.001)
    print(json.dumps({"frames": frames, "bytes": sent_bytes, "seconds": time.monotonic() - t0}))
""")


def _meter_stats(bridge: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "meter-stats", bridge], check=True,
                          capture_output=True, text=True).stdout


def _band_drops(stats: str, meter_id: int) -> tuple[int, int]:
    """(packets into the meter, packets its band dropped) from ``ovs-ofctl meter-stats``."""
    for line in stats.splitlines():
        if line.strip().startswith(f"meter:{meter_id} "):
            fields = dict(part.split(":", 1) for part in line.split() if ":" in part)
            band = stats.split(line, 1)[1].split("0: packet_count:", 1)[1].split()[0]
            return int(fields["packet_in_count"]), int(band)
    raise AssertionError(f"no meter {meter_id} in:\n{stats}")


def _stream(manifest: Manifest, tmp: Path, label: str, src: Any, dst: Any, sizes: list[int],
            mbps: float = SEND_MBPS) -> dict[str, Any]:
    """Send a stream from ``src`` to ``dst`` while tcpdump captures on ``dst``; the frames that
    arrived from ``src``: count, delivered rate over the steady window, DSCPs seen, and the sender's
    own count."""
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap

    pcap = tmp / f"{label}.pcap"
    with open(tmp / f"{label}.tcpdump.txt", "w") as out:
        dump = dst.popen(["tcpdump", "-i", dst.defaultIntf().name, "-w", str(pcap), "-s", "96", "-B", "8192",
                          "-U", "-n", "--time-stamp-precision", "nano", "udp", "and", "dst", "port",
                          str(UDP_PORT)], stdout=out, stderr=subprocess.STDOUT)
    manifest.add_process(f"tcpdump:{label}", dump.pid)
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in (tmp / f"{label}.tcpdump.txt").read_text():
            assert dump.poll() is None and time.monotonic() < deadline, "tcpdump did not start"
            time.sleep(0.05)
        sender = src.popen([sys.executable, "-c", SENDER, dst.IP(), str(UDP_PORT), str(mbps), str(SEND_S),
                            ",".join(map(str, sizes))], stdout=subprocess.PIPE, text=True)
        manifest.add_process(f"sender:{label}", sender.pid)
        out_text, _ = sender.communicate(timeout=SEND_S + 20)
        assert sender.returncode == 0
        sent = json.loads(out_text)
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGTERM)
        dump.wait(10)
    packets = [p for p in rdpcap(str(pcap)) if IP in p and p[IP].src == src.IP()]
    assert packets, f"{label}: nothing arrived"
    t0 = float(packets[0].time)
    lo, hi = t0 + SKIP_S, t0 + sent["seconds"] - 0.1
    steady = [p for p in packets if lo <= float(p.time) <= hi]
    delivered_mbps = sum(p.wirelen for p in steady) * 8 / (hi - lo) / 1e6
    return {"label": label, "sent": sent, "sent_mbps": sent["bytes"] * 8 / sent["seconds"] / 1e6,
            "frames": len(packets), "delivered_mbps": delivered_mbps,
            "dscp": sorted({p[IP].tos >> 2 for p in packets})}


def test_slice_max_rate_is_metered_on_userspace_ovs(tmp_path: Path) -> None:
    _check_environment()
    tag = secrets.token_hex(2)
    sw_name, dpid = f"fs{tag}r1", 0xFB000000 + int(tag, 16)
    # (name, ip, mac, slice, switch port)
    hosts = [(f"fs{tag}p1", "10.0.0.1", "02:fa:c5:00:01:01", "embb", 1),
             (f"fs{tag}f1", "10.0.0.2", "02:fa:c5:00:01:02", "urllc", 2),
             (f"fs{tag}v1", "10.0.0.3", "02:fa:c5:00:01:03", None, 3)]
    policy = {
        "slices": {"urllc": {"dscp": 46}, "embb": {"dscp": 34, "max_rate_mbps": CAP_MBPS}},
        "hosts": [{"name": n, "ip": ip, "mac": mac, "slice": sl} for n, ip, mac, sl, _ in hosts],
        "switches": [{"name": sw_name, "dpid": dpid, "access_hosts": [h[0] for h in hosts],
                      "mac_to_port": {mac: port for _, _, mac, _, port in hosts}}],
    }
    (meter,) = slice_meters(SlicePolicy.from_dict(policy), dpid)
    assert meter.meter_id == 1  # embb: first of the sorted slice names
    policy_path, status_path = tmp_path / "policy.json", tmp_path / "status.json"
    log_path = tmp_path / "controller.log"
    policy_path.write_text(json.dumps(policy))

    manifest = Manifest.create(f"fs{tag}")
    ctl, ctl2 = ControllerProcess(), ControllerProcess()
    net = None
    results: dict[str, dict[str, Any]] = {}
    try:
        ctl.start(policy_path, status_path, log_path)
        assert ctl.pid is not None
        manifest.add_process("controller", ctl.pid)
        net = _build_net(manifest, tag, [(sw_name, dpid)], hosts, ctl.port)
        ctl.wait_ready([dpid], timeout_s=15)
        cap, free, srv = (net.get(h[0]) for h in hosts)
        for src in (cap, free):
            out = src.cmd(f"ping -c 2 -i 0.2 -W 1 {srv.IP()}")  # also fills the ARP caches
            assert " 2 received" in out, out

        meters = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", sw_name], check=True,
                                capture_output=True, text=True).stdout
        band = f"type=drop rate={meter.rate_kbps} burst_size={meter.burst_kb}"
        assert f"meter=1 kbps burst stats bands=\n{band}" in meters, meters
        flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw_name], check=True,
                               capture_output=True, text=True).stdout
        marks = [f for f in flows.splitlines() if f"cookie={with_generation(COOKIE_SLICE_MARK, 1):#x}" in f]
        assert {ip: "actions=meter:1," in f for f in marks for ip in ("10.0.0.1", "10.0.0.2")
                if f"nw_src={ip} " in f} == {"10.0.0.1": True, "10.0.0.2": False}, flows

        before = _band_drops(_meter_stats(sw_name), 1)
        results["large"] = _stream(manifest, tmp_path, "large", cap, srv, [1200])
        large_stats = _band_drops(_meter_stats(sw_name), 1)
        results["small"] = _stream(manifest, tmp_path, "small", cap, srv, list(range(64, 101, 4)))
        results["free"] = _stream(manifest, tmp_path, "free", free, srv, [1200])
        after = _band_drops(_meter_stats(sw_name), 1)
        (tmp_path / "results.json").write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))

        # The meter saw the capped slice's packets and its band dropped the excess (2/3 of them).
        assert large_stats[0] - before[0] >= results["large"]["sent"]["frames"]
        assert large_stats[1] - before[1] > results["large"]["sent"]["frames"] // 2
        assert after[1] - large_stats[1] > results["small"]["sent"]["frames"] // 2
        for case in ("large", "small"):
            r = results[case]
            assert r["sent_mbps"] > 2.5 * CAP_MBPS, r  # the sender did overdrive the cap
            assert r["dscp"] == [34], r
        assert abs(results["large"]["delivered_mbps"] / CAP_MBPS - 1) <= LARGE_TOLERANCE, results["large"]
        assert abs(results["small"]["delivered_mbps"] / CAP_MBPS - 1) <= SMALL_TOLERANCE, results["small"]
        free_r = results["free"]
        assert free_r["dscp"] == [46] and free_r["delivered_mbps"] >= 0.9 * free_r["sent_mbps"], free_r

        # Restart: the meter exists, so the new controller MODIFYs it (no ADD error, no DELETE that
        # would take the marking flows with it) and the switch becomes ready under generation 2.
        ctl.stop()
        ctl2.start(policy_path, status_path, log_path, port=ctl.port)
        manifest.add_process("controller2", ctl2.pid)
        ctl2.wait_ready([dpid], timeout_s=20)
        status = json.loads(status_path.read_text())
        assert status["errors"] == {}
        assert status["resyncs"][-1]["generation"] == 2 and status["resyncs"][-1]["meters_modified"] == [1]
        # OVS resets a meter's counters on MODIFY (measured), so check the setting, the new
        # generation's marking flow through it, and that it still holds the slice to the cap.
        assert meters == subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", sw_name], check=True,
                                        capture_output=True, text=True).stdout
        flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw_name], check=True,
                               capture_output=True, text=True).stdout
        marks = [f for f in flows.splitlines() if f"cookie={with_generation(COOKIE_SLICE_MARK, 2):#x}" in f]
        assert {ip: "actions=meter:1," in f for f in marks for ip in ("10.0.0.1", "10.0.0.2")
                if f"nw_src={ip} " in f} == {"10.0.0.1": True, "10.0.0.2": False}, flows
        results["restarted"] = _stream(manifest, tmp_path, "restarted", cap, srv, [1200])
        assert abs(results["restarted"]["delivered_mbps"] / CAP_MBPS - 1) <= LARGE_TOLERANCE, results
        assert _band_drops(_meter_stats(sw_name), 1)[1] > 0
    finally:
        _stop_net(net)
        ctl.stop()
        ctl2.stop()
        failures = manifest.remove_all()
    _assert_all_removed(failures, (ctl, ctl2), {sw_name}, hosts)
    assert not tcp_listening(ctl.port)
    assert os.geteuid() == 0

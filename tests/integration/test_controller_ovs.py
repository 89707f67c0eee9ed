"""The slice controller on a real userspace OVS bridge: forwarding, DSCP marking, clean stop; and
the ``slice_monitor`` app (chosen by name) writing port and flow statistics.

Needs root and the OVS daemons (started by bootstrap.sh). Every bridge, link and process is
recorded in a Manifest before (or, for pids, right after) it is created and removed by name/pid.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from controllers.apps import ENV_STATS_INTERVAL_S, STATS_FILE_NAME
from controllers.launcher import ControllerProcess, tcp_listening
from controllers.policy import (
    COOKIE_APP,
    COOKIE_SLICE_MARK,
    GENERATION_SHIFT,
    SlicePolicy,
    generation_of,
    slice_rules,
    with_generation,
)
from topologies.manifest import Manifest, proc_start_time

pytestmark = pytest.mark.root

UDP_PORT = 40046
# Receives N datagrams and prints, per datagram, the sender and the TOS byte the kernel delivered
# (IP_RECVTOS ancillary data), so the check sees the packet as it arrived, after the switch.
RECEIVER = textwrap.dedent("""
    import json, socket, sys
    n, port = int(sys.argv[1]), int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    s.bind(("0.0.0.0", port)); s.settimeout(10)
    print("READY", flush=True)
    for _ in range(n):
        data, anc, _flags, addr = s.recvmsg(2048, socket.CMSG_SPACE(1))
        tos = [c[2][0] for c in anc if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
        print(json.dumps({"src": addr[0], "tos": tos[0] if tos else None, "data": data.decode()}), flush=True)
""")
SENDER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(sys.argv[3])):
        s.sendto(sys.argv[4].encode(), (sys.argv[1], int(sys.argv[2])))
""")


def _check_environment() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        from mininet.net import Mininet  # noqa: F401
    except ImportError:
        pytest.fail("mininet is not importable in this venv (run make test / bootstrap.sh)")
    from topologies.switches import ovs_running

    if not ovs_running():
        pytest.fail("OVS daemons are not running: run ./bootstrap.sh")


STREAM = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n, gap = int(sys.argv[3]), float(sys.argv[4])
    t0 = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i * gap - time.monotonic()))
        s.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2])))
""")


def _generation(flow: str) -> int:
    cookie = int(flow.split("cookie=")[1].split(",")[0], 16)
    return generation_of(cookie)


def _no_cookie(flow: str) -> str:
    return ",".join(part for part in flow.split(",") if not part.strip().startswith("cookie="))


def _bridges() -> set[str]:
    out = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def _assert_all_removed(failures: list, controllers: tuple[ControllerProcess, ...], bridges: set[str],
                        hosts: list[tuple[Any, ...]]) -> None:
    """After a test's teardown: the manifest removed everything it recorded, every controller is gone
    and reaped, no bridge and no host interface of the test is left."""
    assert failures == []
    for c in controllers:
        assert not c.running()
        assert proc_start_time(c.pid) is None  # reaped: the pid no longer exists
    assert not bridges & _bridges()
    for name, *_ in hosts:
        assert not Path(f"/sys/class/net/{name}-eth0").exists()


def _own_flows(bridge: str) -> list[str]:
    """This app's flows on ``bridge`` without counters, sorted."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge],
                         check=True, capture_output=True, text=True).stdout
    return sorted(line.strip() for line in out.splitlines() if f"cookie={COOKIE_APP >> 48:#x}" in line)


def _send(host, dst_ip: str, count: int) -> None:
    proc = host.popen([sys.executable, "-c", SENDER, dst_ip, str(UDP_PORT), str(count), host.name])
    assert proc.wait(10) == 0


def _build_net(manifest: Manifest, tag: str, switches: list[tuple[str, int]],
               hosts: list[tuple[str, str, str, str | None, int]], ctl_port: int) -> Any:
    """Start a Mininet net: userspace OVS bridges ``switches`` (name, dpid), ``hosts`` (name, ip,
    mac, slice, port) all on the first bridge, a remote controller on ``ctl_port``. Every bridge,
    link and shell is recorded in ``manifest`` before (pids: right after) it is created."""
    from mininet.link import TCLink
    from mininet.net import Mininet
    from mininet.node import OVSSwitch, RemoteController

    net = Mininet(topo=None, build=False, controller=None, switch=OVSSwitch, link=TCLink,
                  autoSetMacs=False, waitConnected=False)
    switch_opts = {"cls": OVSSwitch, "datapath": "user", "protocols": "OpenFlow13"}
    nodes = []
    for name, dpid in switches:
        manifest.add("ovs_bridge", name)
        nodes.append(net.addSwitch(name, dpid=f"{dpid:016x}", **switch_opts))
        manifest.add_process(f"shell:{name}", nodes[-1].pid)
    sw_name = switches[0][0]
    for name, ip, mac, _slice, port in hosts:
        manifest.add("link", f"{sw_name}-eth{port}")
        manifest.add("link", f"{name}-eth0")
        host = net.addHost(name, ip=f"{ip}/24", mac=mac)
        manifest.add_process(name, host.pid)
        net.addLink(host, nodes[0], port2=port, txo=False)  # TX checksum off for the userspace datapath
    c0 = net.addController(f"fs{tag}c0", controller=RemoteController, ip="127.0.0.1", port=ctl_port)
    manifest.add_process(f"shell:{c0.name}", c0.pid)
    net.start()
    return net


def _stop_net(net: Any) -> None:
    if net is not None:
        net.stop()
        for controller in net.controllers:
            controller.terminate()  # RemoteController.stop() leaves Mininet's helper shell running


def test_slice_switch_on_userspace_ovs(tmp_path: Path) -> None:
    _check_environment()

    tag = secrets.token_hex(2)
    sw_name, stray_name = f"fs{tag}s1", f"fs{tag}s2"
    dpid, stray_dpid = 0xFC000000 + int(tag, 16), 0xFD000000 + int(tag, 16)
    # (name, ip, mac, slice, switch port)
    hosts = [(f"fs{tag}a1", "10.0.0.1", "02:fa:c5:00:00:01", "urllc", 1),
             (f"fs{tag}c1", "10.0.0.2", "02:fa:c5:00:00:02", "embb", 2),
             (f"fs{tag}e1", "10.0.0.3", "02:fa:c5:00:00:03", None, 3)]
    policy = {
        "slices": {"urllc": {"dscp": 46}, "embb": {"dscp": 34}, "mmtc": {"dscp": 10}},
        "hosts": [{"name": n, "ip": ip, "mac": mac, "slice": sl} for n, ip, mac, sl, _ in hosts],
        "switches": [{"name": sw_name, "dpid": dpid, "access_hosts": [h[0] for h in hosts],
                      "mac_to_port": {mac: port for _, _, mac, _, port in hosts}}],
    }
    policy_path, status_path = tmp_path / "policy.json", tmp_path / "status.json"
    log_path = tmp_path / "controller.log"
    policy_path.write_text(json.dumps(policy))

    manifest = Manifest.create(f"fs{tag}")
    ctl, ctl2 = ControllerProcess(), ControllerProcess()
    net = None
    try:
        ctl.start(policy_path, status_path, log_path)
        assert ctl.pid is not None
        manifest.add_process("controller", ctl.pid)
        # The stray switch is not in the policy.
        net = _build_net(manifest, tag, [(sw_name, dpid), (stray_name, stray_dpid)], hosts, ctl.port)

        ctl.wait_ready([dpid], timeout_s=15)
        with pytest.raises(RuntimeError, match=f"{stray_dpid:#x}"):
            ctl.wait_ready([stray_dpid], timeout_s=15)

        agv, cam, edge = (net.get(h[0]) for h in hosts)
        # Forwarding: ARP floods, unicast follows mac_to_port.
        for src, dst in ((agv, edge), (cam, agv), (edge, cam)):
            out = src.cmd(f"ping -c 3 -i 0.2 -W 1 {dst.IP()}")
            assert " 3 received" in out, out

        # Marking: each host sends with TOS 0; the receiver sees the slice's DSCP (TOS = DSCP << 2).
        count = 3
        receiver = edge.popen([sys.executable, "-c", RECEIVER, str(2 * count), str(UDP_PORT)], text=True)
        assert receiver.stdout.readline().strip() == "READY"
        for src in (agv, cam):
            _send(src, edge.IP(), count)
        got = [json.loads(line) for line in receiver.stdout]
        assert receiver.wait(10) == 0, receiver.stderr.read()
        assert sorted((g["data"], g["src"], g["tos"]) for g in got) == sorted(
            [(agv.name, agv.IP(), 46 << 2)] * count + [(cam.name, cam.IP(), 34 << 2)] * count)

        # The server has no slice: its packets to a slice host take that host's slice (downlink
        # marking, priority below the sender's mark: cam -> agv keeps eMBB's 34), to others TOS 0.
        receiver = agv.popen([sys.executable, "-c", RECEIVER, str(2 * count), str(UDP_PORT)], text=True)
        assert receiver.stdout.readline().strip() == "READY"
        _send(edge, agv.IP(), count)
        _send(cam, agv.IP(), count)
        got = [json.loads(line) for line in receiver.stdout]
        assert receiver.wait(10) == 0
        assert sorted((g["src"], g["tos"]) for g in got) == sorted(
            [(edge.IP(), 46 << 2)] * count + [(cam.IP(), 34 << 2)] * count)

        flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw_name],
                               check=True, capture_output=True, text=True).stdout
        marks = [f for f in flows.splitlines() if f"cookie={with_generation(COOKIE_SLICE_MARK, 1):#x}" in f]
        assert len(marks) == 2, flows
        assert all("n_packets=0," not in f for f in marks), flows
        before = _own_flows(sw_name)
        assert len(before) == len(slice_rules(SlicePolicy.from_dict(policy), dpid)), before

        # Restart on the same port while a stream flows: fail-mode secure keeps the rules while no
        # controller runs; the new one installs its rules over them under generation 2 (no gap),
        # deletes generation 1's leftovers (a stale rule planted here) and loses no packet.
        assert {_generation(line) for line in before} == {1}
        stale = f"cookie={COOKIE_APP | 1 << GENERATION_SHIFT | 0xF0:#x},table=1,priority=1,dl_type=0x88b5"
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", sw_name, f"{stale},actions=drop"],
                       check=True)
        stream = 600  # 6 s at 100 packets/s, across the restart
        receiver = edge.popen([sys.executable, "-c", RECEIVER, str(stream), str(UDP_PORT)], text=True)
        assert receiver.stdout.readline().strip() == "READY"
        sender = agv.popen([sys.executable, "-c", STREAM, edge.IP(), str(UDP_PORT), str(stream), "0.01"])
        time.sleep(0.5)
        ctl.stop()
        time.sleep(1.0)  # no controller at all for a second
        ctl2.start(policy_path, status_path, log_path, port=ctl.port)
        manifest.add_process("controller2", ctl2.pid)
        ctl2.wait_ready([dpid], timeout_s=20)
        assert sender.wait(20) == 0
        got = [json.loads(line) for line in receiver.stdout]
        assert receiver.wait(15) == 0, receiver.stderr.read()
        assert len(got) == stream and {g["tos"] for g in got} == {46 << 2}
        after = _own_flows(sw_name)
        assert {_generation(line) for line in after} == {2}
        assert [_no_cookie(line) for line in after] == [_no_cookie(line) for line in before]
        assert "0x88b5" not in "".join(after)
        status = json.loads(status_path.read_text())
        assert status["resyncs"][-1]["generation"] == 2 and status["resyncs"][-1]["stale_deleted"] == [1]
        assert " 3 received" in agv.cmd(f"ping -c 3 -i 0.2 -W 1 {cam.IP()}")
    finally:
        _stop_net(net)
        ctl.stop()
        ctl2.stop()
        failures = manifest.remove_all()
    _assert_all_removed(failures, (ctl, ctl2), {sw_name, stray_name}, hosts)
    assert not tcp_listening(ctl.port)
    assert not any(Path(f"/sys/class/net/{sw_name}-eth{h[4]}").exists() for h in hosts)


def _stats_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the stats file, each of which must be one whole JSON object."""
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a partial line"
    return [json.loads(line) for line in text.splitlines()]


def test_slice_monitor_writes_stats_on_userspace_ovs(tmp_path: Path) -> None:
    """``--app slice_monitor`` alone: forwards and marks like slice_switch, and appends port and
    flow statistics of the ready switch every interval."""
    _check_environment()
    tag = secrets.token_hex(2)
    sw_name, dpid = f"fs{tag}m1", 0xFE000000 + int(tag, 16)
    hosts = [(f"fs{tag}a1", "10.0.0.1", "02:fa:c5:00:00:01", "urllc", 1),
             (f"fs{tag}e1", "10.0.0.3", "02:fa:c5:00:00:03", None, 2)]
    policy = {
        "slices": {"urllc": {"dscp": 46}},
        "hosts": [{"name": n, "ip": ip, "mac": mac, "slice": sl} for n, ip, mac, sl, _ in hosts],
        "switches": [{"name": sw_name, "dpid": dpid, "access_hosts": [h[0] for h in hosts],
                      "mac_to_port": {mac: port for _, _, mac, _, port in hosts}}],
    }
    policy_path, status_path = tmp_path / "policy.json", tmp_path / "status.json"
    stats_path = tmp_path / STATS_FILE_NAME
    policy_path.write_text(json.dumps(policy))
    interval_s = 0.2

    manifest = Manifest.create(f"fs{tag}")
    ctl = ControllerProcess()
    net = None
    try:
        ctl.start(policy_path, status_path, tmp_path / "controller.log", apps=["slice_monitor"],
                  app_env={ENV_STATS_INTERVAL_S: str(interval_s)})
        assert ctl.pid is not None
        manifest.add_process("controller", ctl.pid)
        assert ctl.apps == ["controllers.apps.slice_monitor"]
        net = _build_net(manifest, tag, [(sw_name, dpid)], hosts, ctl.port)
        ctl.wait_ready([dpid], timeout_s=15)
        agv, edge = (net.get(h[0]) for h in hosts)
        out = agv.cmd(f"ping -c 3 -i 0.2 -W 1 {edge.IP()}")
        assert " 3 received" in out, out

        # Wait until a flow-stats line shows the pings on the marking flow and a port-stats line
        # shows them on both host ports.
        def seen(lines: list[dict[str, Any]]) -> bool:
            flows = [f for line in lines if line["kind"] == "flow_stats" for f in line["flows"]
                     if with_generation(f["cookie"], 0) == COOKIE_SLICE_MARK]
            ports = [{p["port_no"]: p["rx_packets"] for p in line["ports"]}
                     for line in lines if line["kind"] == "port_stats"]
            return (any(f["packet_count"] >= 3 for f in flows)
                    and any(rx.get(1, 0) >= 3 and rx.get(2, 0) >= 3 for rx in ports))

        deadline = time.monotonic() + 15
        while not seen(_stats_lines(stats_path)):
            assert time.monotonic() < deadline, f"no matching stats after 15 s: {_stats_lines(stats_path)}"
            time.sleep(0.1)
        first = _stats_lines(stats_path)
        time.sleep(10 * interval_s)
        lines = _stats_lines(stats_path)
        assert lines[:len(first)] == first  # appended, never rewritten
        assert {(line["pid"], line["dpid"]) for line in lines} == {(ctl.pid, dpid)}
        new = [line for line in lines[len(first):] if line["kind"] == "port_stats"]
        assert len(new) >= 3, new  # about one every interval_s (loose: the machine is shared)
        times = [line["t_unix_s"] for line in lines if line["kind"] == "port_stats"]
        assert times == sorted(times)
        last_flows = [line for line in lines if line["kind"] == "flow_stats"][-1]["flows"]
        (mark,) = [f for f in last_flows if f["cookie"] == with_generation(COOKIE_SLICE_MARK, 1)]
        assert mark["match"] == {"eth_type": 0x0800, "ipv4_src": hosts[0][1]} and mark["packet_count"] >= 3
        assert {f["cookie"] for line in lines if line["kind"] == "flow_stats" for f in line["flows"]} \
            == {with_generation(r.cookie, 1) for r in slice_rules(SlicePolicy.from_dict(policy), dpid)}
    finally:
        _stop_net(net)
        ctl.stop()
        failures = manifest.remove_all()
    _assert_all_removed(failures, (ctl,), {sw_name}, hosts)

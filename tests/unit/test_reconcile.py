"""Loss split and count reconciliation on synthetic records and counters with known answers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from experiments.agents.traffic import HEADER, RECORD
from experiments.framework.accounting import (
    Stream,
    account,
    check_link_counters,
    path_hops,
    split_drops,
    topology_links,
)
from experiments.framework.kind import Kind
from experiments.kinds.slices import counts
from experiments.kinds.slices.traffic import FlowPlan, flows_table
from topologies.errors import RunFailed
from topologies.factory import FactoryTopo
from topologies.links import DirectionParams, LinkEngine
from topologies.links.backend import BackendLink, Endpoint, LinkBackend
from topologies.links.backends import REGISTRY
from topologies.manifest import Manifest
from topologies.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]


def _relay(rx: int, tx: int, loss: int = 0, queue: int = 0, down: int = 0, error: int = 0,
           queue_modelled: bool = False) -> dict:
    held = rx - tx - loss - queue - down - error
    return {"rx": rx, "tx": tx, "dropped_loss": loss, "dropped_queue": queue, "dropped_down": down,
            "dropped_error": error, "queue_modelled": queue_modelled, "held": held}


def test_drops_split_into_modelled_and_emulator() -> None:
    assert split_drops(_relay(100, 80, loss=5, down=3, queue=7, error=2, queue_modelled=True)) == (15, 2)
    assert split_drops(_relay(100, 80, loss=5, down=3, queue=7, error=2)) == (8, 9)  # no rate: memory
    assert split_drops({"tx": 10, "dropped": 4}) == (4, 0)  # netem: loss and queue limit together
    # a cell with no path for a frame at that instant (a UE out of every cell, bring-up): modelled
    assert split_drops({**_relay(10, 7, error=1), "dropped_unwired": 2}) == (2, 1)


def test_paths_follow_the_factory_topology() -> None:
    links = topology_links(FactoryTopo(scenario=load_scenario(None)))
    # the cell's own link (its shared capacity) sits between the radio link and the backhaul
    assert path_hops(links, "agv1", "edge1") == (("radio_agv1", "uplink"), ("cell_gnb1", "uplink"),
                                                 ("bh_gnb1", "uplink"), ("edge", "uplink"))
    down = path_hops(links, "cloud1", "sensor1")
    assert down[0] == ("terrestrial", "downlink")
    assert down[-3:] == (("bh_gnb2", "downlink"), ("cell_gnb2", "downlink"), ("radio_sensor1", "downlink"))
    with pytest.raises(ValueError, match="no path"):
        path_hops(links, "agv1", "nowhere")


def _streams() -> list[Stream]:
    a = (("radio_a", "uplink"), ("bh", "uplink"))
    b = (("radio_b", "uplink"), ("bh", "uplink"))
    return [Stream("urllc", a, "edge", scheduled=100, sent=98, send_errors=2, received=80),
            Stream("embb", b, "edge2", scheduled=50, sent=50, send_errors=0, received=45)]


def _counters() -> dict:
    # radio_a: 97 of the 98 sent arrive (1 lost in agv's host); 10 random-loss, 2 relay errors;
    # bh (shared): 3 drops; 1 packet of urllc still held in radio_a.
    return {"links": {"radio_a": {"uplink": _relay(97, 84, loss=10, error=2)},
                      "radio_b": {"uplink": _relay(50, 48, down=2)},
                      "bh": {"uplink": _relay(132, 125, loss=3, queue_modelled=True) | {"held": 4}}},
            "totals": {}, "unavailable": {}}


def test_loss_is_split_by_cause_per_group_and_in_total() -> None:
    loss = account(_streams(), _counters(), {"edge": 3, "edge2": 0})
    u = loss["urllc"]
    assert u["lost_pkts"] == 20
    assert u["modelled_loss_pkts"] == 10
    # 2 send errors + 2 relay errors + 3 socket drops + 1 lost before the radio link
    assert u["emulator_loss_pkts"] == 8 and u["emulator_detail"]["lost_in_sender_host"] == 1
    assert u["in_flight_at_stop_pkts"] == 1
    assert u["shared_link_drops_pkts"] == 3  # the backhaul drop is not attributed to one slice
    assert u["unattributed_loss_pkts"] == 20 - 10 - 8 - 1
    e = loss["embb"]
    assert e["lost_pkts"] == 5 and e["modelled_loss_pkts"] == 2 and e["unattributed_loss_pkts"] == 3
    t = loss["total"]
    assert t["modelled_loss_pkts"] == 10 + 2 + 3 and t["in_flight_at_stop_pkts"] == 1 + 4
    assert t["unattributed_loss_pkts"] == t["lost_pkts"] - 15 - t["emulator_loss_pkts"] - 5
    assert t["shared_link_drops_pkts"] == 0 and t["counters_available"]


def test_without_counters_all_link_loss_is_unattributed() -> None:
    t = account(_streams(), None)["total"]
    assert t["modelled_loss_pkts"] == 0 and t["unattributed_loss_pkts"] == 25 - 2
    assert not t["counters_available"]


def test_link_counter_checks() -> None:
    assert check_link_counters(_streams(), _counters()) == []
    bad = _counters()
    bad["links"]["radio_a"]["uplink"] = _relay(97, 70, loss=10)  # 70 sent on, 80 received
    bad["unavailable"] = {"radio_c": "RuntimeError: relay gone"}
    problems = check_link_counters(_streams(), bad)
    assert any("radio_c" in p and "unavailable" in p for p in problems)
    assert any("radio_a uplink: transmitted 70" in p for p in problems)
    bad["links"]["radio_a"]["uplink"] = _relay(50, 80, loss=10)
    assert any("do not add up" in p for p in check_link_counters(_streams(), bad))


class CountingBackend(LinkBackend):
    """Relay-like counters; link "dead" cannot be read."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def make_intf_pair(self, name, end1, end2, options) -> BackendLink:
        return BackendLink(name, end1, end2)
    def attach(self, link, uplink, downlink) -> None: ...
    def set(self, link, direction, setting) -> None: ...
    def schedule(self, link, direction, rows, t0_monotonic_s) -> None: ...
    def detach(self, link) -> None: ...

    def stats(self, link: BackendLink) -> dict:
        if link.name == "dead":
            raise RuntimeError("relay exited")
        return {"uplink": {"rx": 10, "tx": 6, "dropped_loss": 1, "dropped_queue": 1, "late_max_ns": 5},
                "downlink": {"rx": 3, "tx": 3, "dropped_loss": 0, "late_max_ns": 9}}


def test_engine_counters_cover_every_link_and_survive_a_dead_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("topologies.manifest.STATE_ROOT", tmp_path / "state")
    monkeypatch.setitem(REGISTRY, "counting", CountingBackend)
    engine = LinkEngine("counting", "trec", Manifest.create("trec"), tmp_path, calibrate=False)
    engine.start()
    host, switch = SimpleNamespace(pid=1, inNamespace=True), SimpleNamespace(pid=2, inNamespace=False)
    for name, up in (("radio", DirectionParams(rate_mbps=10)), ("dead", DirectionParams())):
        engine.add_link(name, emulated=True)
        engine.make_intf_pair(name, Endpoint(host, f"{name}-a"), Endpoint(switch, f"{name}-b"))
        engine.attach(name, up, DirectionParams())
    engine.add_link("plain", emulated=False)
    got = engine.metadata()["link_counters"]
    assert set(got["links"]) == {"radio"} and "relay exited" in got["unavailable"]["dead"]
    up = got["links"]["radio"]["uplink"]
    assert up["queue_modelled"] and not got["links"]["radio"]["downlink"]["queue_modelled"]
    assert up["held"] == 10 - 6 - 2 and split_drops(up) == (2, 0)
    assert got["totals"]["uplink"]["rx"] == 10 and got["totals"]["downlink"]["late_max_ns"] == 9


# --- reconciliation of the slices kind's raw records ------------------------------------------------

PLANS = [FlowPlan(1, "agv1", "agv", "urllc", "edge1", 100, 10.0, 10.0, 46),
         FlowPlan(2, "sensor1", "sensor", "mmtc", "cloud1", 200, 50.0, 100.0, 10)]
DURATION_S = 0.1  # agv1: 10 packets, sensor1: 2 packets


def _run(tmp_path: Path, sends: dict[str, dict] | None = None, rows: dict[str, list] | None = None,
         done: dict[str, int | None] | None = None) -> tuple[list[str], dict]:
    sends = sends if sends is not None else {
        "agv1": {"packets_scheduled": 10, "packets_sent": 10, "send_errors": 0},
        "sensor1": {"packets_scheduled": 2, "packets_sent": 1, "send_errors": 1}}
    rows = rows if rows is not None else {"edge1": [(1, k) for k in range(9)], "cloud1": [(2, 0)]}
    for ue, s in sends.items():
        (tmp_path / f"send-{ue}.json").write_text(json.dumps(s))
    for dest, keys in rows.items():
        path = tmp_path / f"recv-{dest}.bin"
        path.write_bytes(b"".join(RECORD.pack(f, s, 0, 1000, 100, 0) for f, s in keys))
        n = (done or {}).get(dest, len(keys))
        if n is not None:
            Path(f"{path}.done").write_text(json.dumps({"packets_received": n, "socket_drops": 0}))
    flows = flows_table(PLANS, tmp_path)
    packets = counts.count_packets(tmp_path, flows)
    return counts.reconcile_flows(packets, flows, DURATION_S, counts.read_receivers(tmp_path))


def test_planned_packets_matches_the_sender_loop() -> None:
    assert counts.planned_packets(0.1, 10.0) == 10 and counts.planned_packets(0.1, 30.0) == 4
    assert counts.planned_packets(1.0, 0.3) == 3334


def test_complete_counts_reconcile(tmp_path: Path) -> None:
    problems, checks = _run(tmp_path)
    assert problems == []
    assert checks == {"planned_pkts": 12, "scheduled_pkts": 12, "sent_pkts": 11, "send_errors": 1,
                      "received_pkts": 10, "duplicate_pkts": 0, "phantom_pkts": 0, "lost_pkts": 2}


def test_duplicates_fail(tmp_path: Path) -> None:
    problems, checks = _run(tmp_path, rows={"edge1": [(1, 0), (1, 0), (1, 1)], "cloud1": []})
    assert checks["duplicate_pkts"] == 1 and checks["received_pkts"] == 2
    assert any("duplicate" in p for p in problems)


@pytest.mark.parametrize("bad", [(9, 0), (1, 10), (2, 1)], ids=["unknown flow", "unscheduled seq",
                                                                  "wrong receiver"])
def test_phantom_packets_fail(tmp_path: Path, bad: tuple[int, int]) -> None:
    problems, checks = _run(tmp_path, rows={"edge1": [(1, 0), bad], "cloud1": []})
    assert checks["phantom_pkts"] == 1 and any("phantom" in p for p in problems)


def test_missing_sends_fail(tmp_path: Path) -> None:
    sends = {"agv1": {"packets_scheduled": 10, "packets_sent": 8, "send_errors": 0},  # 2 unexplained
             "sensor1": {"packets_scheduled": 1, "packets_sent": 1, "send_errors": 0}}  # plan says 2
    problems, _ = _run(tmp_path, sends=sends, rows={"edge1": [], "cloud1": []})
    assert any("sender agv1: sent 8 + errors 0 != scheduled 10" in p for p in problems)
    assert any("sender sensor1: scheduled 1 packets, plan says 2" in p for p in problems)


def test_missing_sender_summary_fails(tmp_path: Path) -> None:
    problems, _ = _run(tmp_path, sends={"agv1": {"packets_scheduled": 10, "packets_sent": 10,
                                                 "send_errors": 0}}, rows={"edge1": [], "cloud1": []})
    assert any("sender sensor1: no summary" in p for p in problems)


def test_received_more_than_sent_fails(tmp_path: Path) -> None:
    sends = {"agv1": {"packets_scheduled": 10, "packets_sent": 2, "send_errors": 8},
             "sensor1": {"packets_scheduled": 2, "packets_sent": 2, "send_errors": 0}}
    problems, _ = _run(tmp_path, sends=sends, rows={"edge1": [(1, k) for k in range(3)], "cloud1": []})
    assert any("received 3 > sent 2" in p for p in problems)


def test_incomplete_receiver_files_fail(tmp_path: Path) -> None:
    problems, _ = _run(tmp_path, done={"edge1": 12, "cloud1": None})
    assert any("receiver on edge1: record file has" in p for p in problems)
    assert any("receiver on cloud1: no .done" in p for p in problems)
    (tmp_path / "recv-edge1.bin").write_bytes(b"\0" * (RECORD.size + 3))  # truncated record
    assert counts.read_receivers(tmp_path)["edge1"]["bytes"] == RECORD.size + 3
    # the whole record is read, the partial one left out (and reported, above)
    assert counts.count_packets(tmp_path, flows_table(PLANS, tmp_path)).phantoms == 1  # flow 0: unknown


def test_kind_default_reconciles_and_require_raises() -> None:
    class Failing(Kind):
        name = "failing"

        def run_traffic(self, session, params):  # pragma: no cover - not called
            pass

        def collect(self, session, params):  # pragma: no cover - not called
            return {}

        def summarise(self, tables, session, params):  # pragma: no cover - not called
            return {}

        def draw_figures(self, run_dir):  # pragma: no cover - not called
            return []

    kind = Failing()
    assert Kind.reconcile(kind, {}, None, None) == []
    kind.require_reconciled({}, None, None)  # nothing wrong: no exception
    kind.reconcile = lambda *a: ["3 duplicate packets"]  # type: ignore[method-assign]
    with pytest.raises(RunFailed, match="counts do not reconcile: 3 duplicate packets"):
        kind.require_reconciled({}, None, None)


# --- the agents themselves (no root: loopback) -------------------------------------------------------

def _agent(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.agents.traffic", *args], cwd=REPO)


def test_receiver_drains_and_records_its_counts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "recv-x.bin"
    proc = _agent("recv", "--port", str(port), "--out", str(out))
    deadline = time.monotonic() + 10
    while not Path(f"{out}.ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)  # packets pile up in the socket: only the drain reads them
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for seq in range(200):
            sender.sendto(HEADER.pack(7, seq, time.time_ns()) + bytes(50), ("127.0.0.1", port))
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=10) == 0
    done = json.loads(Path(f"{out}.done").read_text())
    assert done["packets_received"] == 200 and done["socket_drops"] == 0
    assert done["drained_at_stop"] > 0
    assert out.stat().st_size == 200 * RECORD.size
    assert done["udp_snmp_delta"]["RcvbufErrors"] == 0


def test_sender_schedules_the_planned_packets(tmp_path: Path) -> None:
    summary = tmp_path / "send.json"
    proc = _agent("send", "--dest", "127.0.0.1", "--port", "9", "--flow-id", "1", "--payload-bytes",
                  "64", "--interval-ms", "3.0", "--start-ns", str(time.time_ns()), "--duration-s",
                  "0.1", "--summary", str(summary))
    assert proc.wait(timeout=10) == 0
    s = json.loads(summary.read_text())
    assert s["packets_scheduled"] == counts.planned_packets(0.1, 3.0)
    assert s["packets_sent"] + s["send_errors"] == s["packets_scheduled"]
    assert sum(s["send_errors_by_errno"].values()) == s["send_errors"]
    assert isinstance(pd.Series(s["send_errors_by_errno"], dtype="int64"), pd.Series)


def test_switch_port_drops_parsed_and_counted_without_the_local_port(monkeypatch) -> None:
    from experiments.framework.accounting import switch_port_drop_delta
    from experiments.kinds.slices import traffic

    out = ("OFPST_PORT reply (OF1.3) (xid=0x2): 2 ports\n"
           "  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0\n"
           "           tx pkts=0, bytes=0, drop=19, errs=0, coll=0\n           duration=3.1s\n"
           "  port  2: rx pkts=120, bytes=12000, drop=3, errs=?, frame=?, over=?, crc=?\n"
           "           tx pkts=100, bytes=10000, drop=2, errs=1, coll=?\n           duration=3.1s\n")
    monkeypatch.setattr(traffic.subprocess, "run",
                        lambda argv, **kw: SimpleNamespace(returncode=0, stdout=out))
    after = traffic.ovs_port_counters(["br0"])
    assert after == {"br0": {"LOCAL": {"rx_dropped": 0, "rx_errors": 0, "tx_dropped": 19, "tx_errors": 0},
                             "2": {"rx_dropped": 3, "rx_errors": 0, "tx_dropped": 2, "tx_errors": 1}}}
    before = {"br0": {"2": {"rx_dropped": 1, "rx_errors": 0, "tx_dropped": 0, "tx_errors": 0}}}
    assert switch_port_drop_delta({"before": before, "after": after}) == 2 + 2 + 1
    t = account(_streams(), _counters(), switch_port_drops=5)["total"]
    assert t["emulator_detail"]["switch_port_drops"] == 5
    plain = account(_streams(), _counters())["total"]
    assert t["unattributed_loss_pkts"] == plain["unattributed_loss_pkts"] - 5


def test_userspace_switch_socket_drops_parsed_and_counted() -> None:
    from experiments.framework.accounting import switch_socket_drop_delta
    from topologies.switches import parse_socket_drops

    ss = ('p_raw 0 0 *:upf-eth1 * users:(("ovs-vswitchd",pid=7,fd=40)) '
          'skmem:(r0,rb212992,t0,tb212992,f0,w0,o176,bl0,d94)\n'
          'p_raw 0 0 *:upf-eth2 * users:(("ovs-vswitchd",pid=7,fd=41)) skmem:(r0,rb212992,t0,d3)\n'
          'p_raw 0 0 *:other-eth0 * users:(("ovs-vswitchd",pid=7,fd=42)) skmem:(r0,d50)\n'
          'p_raw 0 0 *:upf-eth2 * users:(("tcpdump",pid=9,fd=3)) skmem:(r0,d77)\n'
          'p_raw 0 0 [0]:* * users:(("ovs-vswitchd",pid=7,fd=44)) skmem:(r0,d8)\n')
    after = parse_socket_drops(ss, {"upf-eth1", "upf-eth2"})
    assert after == {"upf-eth1": 94, "upf-eth2": 3}  # other bridges' ports and other programs left out
    delta = switch_socket_drop_delta({"socket_drops": {"before": {"upf-eth1": 4, "upf-eth2": 3},
                                                       "after": after}})
    assert delta == {"upf-eth1": 90}
    assert switch_socket_drop_delta({"before": {}, "after": {}}) == {}  # a file from before this change
    t = account(_streams(), _counters(), switch_socket_drops=delta)["total"]
    plain = account(_streams(), _counters())["total"]
    assert t["emulator_detail"]["switch_socket_drops_by_port"] == {"upf-eth1": 90}
    assert t["emulator_loss_pkts"] == plain["emulator_loss_pkts"] + 90
    assert t["unattributed_loss_pkts"] == plain["unattributed_loss_pkts"] - 90

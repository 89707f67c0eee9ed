"""FactoryTopo: node names, link parameters, and the `mn --custom` entry point."""

from __future__ import annotations

import copy
import runpy
from collections import defaultdict
from pathlib import Path

from topologies.factory import FactoryTopo, host_ip, host_mac, orbit_start_links
from topologies.scenario import load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]


def _graph(topo: FactoryTopo) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in topo.links():
        graph[a].add(b)
        graph[b].add(a)
    return graph


def test_nodes_follow_naming_convention() -> None:
    topo = FactoryTopo(scenario=load_scenario(None), switch_prefix="fsab")
    assert set(topo.switches()) == {"fsabupf1", "fsabgnb1", "fsabgnb2", "fsabut1", "fsabgs1"}
    hosts = set(topo.hosts())
    assert {"agv1", "agv4", "cam2", "sensor4", "edge1", "cloud1"} <= hosts
    # Every root-namespace interface name (switch ports) fits the kernel's 15 characters.
    for a, b, info in topo.links(withInfo=True):
        for node, port in ((a, info["port1"]), (b, info["port2"])):
            assert len(f"{node}-eth{port}") <= 15


def test_graph_is_a_tree_with_expected_paths() -> None:
    scenario = load_scenario(None)
    topo = FactoryTopo(scenario=scenario, switch_prefix="fs")
    graph = _graph(topo)
    nodes = set(topo.nodes())
    assert len(list(topo.links())) == len(nodes) - 1  # a tree: no loops for flooding
    for ue in scenario.ues:
        assert graph[ue.name] == {f"fs{ue.cell}"}
    assert graph["fsut1"] == {"fsupf1", "fsgs1", "sat1"}  # sat1: in-orbit compute host
    assert graph["cloud1"] == {"fsgs1"}
    assert graph["edge1"] == {"fsupf1"}


def test_link_parameters_are_per_direction() -> None:
    scenario = load_scenario(None)
    start = orbit_start_links(scenario)
    topo = FactoryTopo(scenario=scenario, initial=start)
    infos = {info["link_name"]: (a, b, info) for a, b, info in topo.links(withInfo=True)}
    a, b, leo = infos["leo"]
    assert (a, b) == ("fsut1", "fsgs1") and leo["dynamic"] is True
    assert leo["uplink"] == start["leo"].uplink and leo["downlink"] == start["leo"].downlink
    assert leo["uplink"].delay_ms != leo["downlink"].delay_ms  # orbit model: uplink and downlink differ
    assert infos["orbit_compute"][:2] == ("fsut1", "sat1") and infos["orbit_compute"][2]["dynamic"]
    a, b, radio = infos["radio_agv1"]
    # NR cells (the default): the air interface is the cell's model, the radio link transparent
    assert a == "agv1" and radio["uplink"].is_transparent() and radio["downlink"].is_transparent()
    gnb1 = topo.nodeInfo("fsgnb1")
    assert gnb1["nr_plan"] == scenario.nr_plan("gnb1") and gnb1["nr_plan"].slice_index("urllc") == 0
    # a cell with the fixed radio model: each slice's typed-in radio table
    raw = copy.deepcopy(scenario.raw)
    del raw["mobility"]  # handovers need NR cells
    for cell in raw["cells"]:
        del cell["nr"]
        cell["radio_model"] = "fixed"
    fixed = parse_scenario(raw)
    topo = FactoryTopo(scenario=fixed, initial=orbit_start_links(fixed))
    infos = {info["link_name"]: (a, b, info) for a, b, info in topo.links(withInfo=True)}
    assert infos["radio_agv1"][2]["uplink"] == fixed.slice("urllc").radio.uplink
    assert infos["radio_sensor1"][2]["uplink"].delay_ms == 8.0
    assert topo.nodeInfo("fsgnb1")["nr_plan"] is None


def test_addresses_are_unique_and_well_formed() -> None:
    ips = {host_ip(i) for i in range(1000)}
    macs = {host_mac(i) for i in range(1000)}
    assert len(ips) == len(macs) == 1000
    assert host_ip(0) == "10.77.0.1/16" and host_ip(250) == "10.77.1.1/16"
    assert host_mac(0) == "02:00:00:00:00:01"


def test_mn_custom_entry_point_declares_tclink_params() -> None:
    module = runpy.run_path(str(REPO / "topologies" / "factory.py"))
    topo = module["topos"]["factory"]()
    params = {frozenset((a, b)): info for a, b, info in topo.links(withInfo=True)}
    leo = params[frozenset(("fsut1", "fsgs1"))]
    start = orbit_start_links(load_scenario(None))["leo"]
    assert leo["params1"]["delay"] == f"{start.uplink.delay_ms}ms"
    assert leo["params1"]["bw"] == start.uplink.rate_mbps and leo["params1"]["txo"] is False
    assert leo["params2"]["bw"] == start.downlink.rate_mbps
    compute = params[frozenset(("fsut1", "sat1"))]
    assert compute["params1"]["delay"].endswith("ms") and compute["params2"]["bw"] > 0

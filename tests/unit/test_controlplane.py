"""The run's northbound control (experiments/framework/controlplane.py) over a fake engine holding
the default scenario's NR plans: what the API sees and changes, and that a refused change or flow
changes nothing."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controllers.admission import FlowRequest
from experiments.framework.controlplane import CREDENTIALS_FILE, RunControlPlane, RunSliceControl, slice_hops
from topologies.scenario import load_scenario
from topologies.validate import ConfigError

SCENARIO = load_scenario()  # gnb1: agv1, agv2, cam1, cam2; gnb2: agv3, agv4, sensors; 65.8 Mbit/s uplink


class FakeEngine:
    def __init__(self) -> None:
        self.plans = {c: SCENARIO.nr_plan(c) for c in ("gnb1", "gnb2")}
        self.applied: list[str] = []

    queue_configs: dict = {}

    def nr_plan(self, cell: str) -> Any:
        return self.plans.get(cell)

    def counters(self) -> dict:
        return {"links": {}, "nr_cells": {}}

    def set_slice_shares(self, cell: str, plan: Any) -> None:
        self.plans[cell] = plan
        self.applied.append(cell)


class FakeNetwork:
    def __init__(self) -> None:
        self.engine, self.topo = FakeEngine(), None


def test_slice_hops_follow_each_ues_traffic_both_ways() -> None:
    from experiments.framework.accounting import topology_links
    from topologies.factory import FactoryTopo

    hops = slice_hops(SCENARIO, topology_links(FactoryTopo(scenario=SCENARIO)))
    assert ("bh_gnb1", "uplink") in hops["urllc"] and ("bh_gnb1", "downlink") in hops["urllc"]
    assert ("leo", "uplink") in hops["mmtc"]            # sensors report to the cloud over LEO
    assert ("leo", "uplink") not in hops["urllc"]       # AGVs talk to the edge server


def flow(name: str, ue: str = "cam1", slice_name: str = "embb", rate: float = 10.0, **kw: Any) -> FlowRequest:
    return FlowRequest(name=name, ue=ue, slice=slice_name, direction="uplink", rate_mbps=rate,
                       packet_bytes=1200, latency_bound_ms=kw.get("bound"))


def test_slices_show_the_shares_the_cells_run_and_the_sla_state() -> None:
    control = RunSliceControl(SCENARIO, FakeEngine(), lambda: {"urllc": {"state": "ok", "since_s": 3.0}})
    slices = control.slices()
    assert slices["urllc"]["ran"] == {"dedicated_pct": 10.0, "min_pct": 10.0, "max_pct": 100.0,
                                      "priority": 10}
    assert slices["urllc"]["sla"]["state"] == "ok" and slices["embb"]["sla"] == {"state": "not monitored"}
    assert slices["urllc"]["dscp"] == 46 and slices["urllc"]["latency_bound_ms"] == 10.0


def test_a_ran_change_goes_to_every_nr_cell_and_a_refused_one_changes_nothing() -> None:
    engine = FakeEngine()
    control = RunSliceControl(SCENARIO, engine)
    answer = control.set_ran("embb", {"min_pct": 30})
    assert answer["ran"]["min_pct"] == 30 and answer["cells"] == ["gnb1", "gnb2"]
    assert engine.applied == ["gnb1", "gnb2"]
    assert dict(engine.plans["gnb2"].slices)["embb"].min_pct == 30
    with pytest.raises(ConfigError):
        control.set_ran("embb", {"min_pct": 95})  # minimum shares would sum over 100 %
    with pytest.raises(KeyError):
        control.set_ran("video", {"min_pct": 5})
    assert engine.applied == ["gnb1", "gnb2"] and len(control.changes) == 1


def test_admission_counts_the_slices_share_of_the_ues_cell() -> None:
    control = RunSliceControl(SCENARIO, FakeEngine())
    # eMBB's guaranteed uplink in gnb1: 40 % of 65.8 Mbit/s = 26.3 Mbit/s
    assert control.admit_flow(flow("a", rate=20.0)).admitted
    refused = control.admit_flow(flow("b", ue="cam2", rate=10.0))
    assert not refused.admitted and "26.3" in refused.reason
    assert control.admit_flow(flow("c", ue="cam2", rate=6.0)).admitted
    assert not control.admit_flow(flow("d", ue="sensor1", slice_name="mmtc", rate=0.1)).admitted  # no minimum
    with pytest.raises(ValueError, match="ue 'robot9'"):
        control.admit_flow(flow("e", ue="robot9"))
    assert [f["name"] for f in control.flows()] == ["a", "c"]
    control.remove_flow("a")
    assert control.admit_flow(flow("b", ue="cam2", rate=10.0)).admitted
    with pytest.raises(KeyError):
        control.remove_flow("zz")


def test_the_control_plane_serves_the_api_and_records_it(tmp_path: Path) -> None:
    plane, metadata = RunControlPlane(northbound=True, monitor=False), {}  # the API implies the monitor
    plane.start(SCENARIO, FakeNetwork(), tmp_path, metadata)
    try:
        creds = json.loads((tmp_path / CREDENTIALS_FILE).read_text())
        assert (tmp_path / CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
        assert creds["url"].startswith("http://127.0.0.1:")
        request = urllib.request.Request(creds["url"] + "/v1/slices",
                                         headers={"Authorization": f"Bearer {creds['token']}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert set(json.load(response)["slices"]) == {"urllc", "embb", "mmtc"}
        with urllib.request.urlopen(request, timeout=5) as response:  # the monitor's state is served
            # before the monitor's second round there is no state; after it, no traffic flows here
            assert json.load(response)["slices"]["urllc"]["sla"]["state"] in ("not monitored", "no_traffic")
    finally:
        plane.stop(metadata, tmp_path, 0)
    assert metadata["northbound"]["requests"][0]["status"] == 200
    assert metadata["northbound"]["ran_changes"] == [] and metadata["northbound"]["admitted_flows"] == []
    assert metadata["sla_monitor"]["errors"] == 0 and (tmp_path / "sla_timeline.parquet").exists()
    off: dict = {}
    RunControlPlane(False, False).start(SCENARIO, FakeNetwork(), tmp_path / "x", off)
    assert off == {}

"""The run's own fidelity estimate: sender lateness from records, relay lateness histograms,
per-path upper bounds and the held verdict, on synthetic inputs with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from experiments.framework import fidelity
from topologies.links.relayctl import LATE_EDGES_NS, late_bucket, late_quantile_ms

MS = 1_000_000


def test_late_histogram_buckets_and_quantiles() -> None:
    assert late_bucket(0) == 0 and late_bucket(10_000) == 0 and late_bucket(10_001) == 1
    assert late_bucket(100_000_001) == len(LATE_EDGES_NS)
    hist = [0] * (len(LATE_EDGES_NS) + 1)
    hist[0], hist[5], hist[-1] = 989, 10, 1  # 98.9 % <= 10 us, 1 % in (0.2, 0.5] ms, 1 beyond 100 ms
    assert late_quantile_ms(hist, 0.5) == pytest.approx(0.01)
    assert late_quantile_ms(hist, 0.99) == pytest.approx(0.5)
    assert late_quantile_ms(hist, 0.9995) == math.inf
    assert late_quantile_ms([0] * len(hist), 0.99) is None


def test_send_lateness_from_sequence_numbers() -> None:
    start = 1_000 * MS
    packets = pd.DataFrame({"flow_id": [1, 1, 2], "seq": [0, 3, 2],
                            "send_ns": [start + 10_000, start + 30 * MS + 2 * MS, start + 2 * 2_500_000]})
    late = fidelity.send_lateness_ms(packets, {1: 10.0, 2: 2.5}, start)
    assert late.tolist() == pytest.approx([0.01, 2.0, 0.0])


def _counters(radio_hist: list[int], bh_hist: list[int]) -> dict:
    radio = {"uplink": {"late_hist": radio_hist}, "downlink": {"late_hist": radio_hist}}
    return {"links": {"radio_agv1": radio, "bh_gnb1": {"uplink": {"late_hist": bh_hist}},
                      "edge_lan": {"uplink": {"rx": 3}}}}


def test_relay_lateness_by_link_kind_and_path_bound() -> None:
    n = len(LATE_EDGES_NS) + 1
    radio = [1000] + [0] * (n - 1)        # every departure <= 10 us
    bh = [980, 0, 10, 10] + [0] * (n - 4)  # 1 % in (20, 50] us, 1 % in (50, 100] us
    counters = _counters(radio, bh)
    relay = fidelity.relay_lateness(counters)
    assert set(relay) == {"radio", "bh"} and relay["radio"]["departures"] == 2000
    assert relay["bh"]["p99"] == pytest.approx(0.05) and relay["bh"]["p999"] == pytest.approx(0.1)
    path = (("radio_agv1", "uplink"), ("bh_gnb1", "uplink"), ("edge_lan", "uplink"))
    send_late = 0.02  # the senders' lateness quantile (ms)
    # 0.02 (sender) + 0.01 (radio) + 0.1 (bh) + 0 (plain link) + 2 switches x 0.03
    got = fidelity.path_estimate(send_late, [path], counters, 0.03, 0.999)
    assert got == pytest.approx(0.19)
    assert fidelity.path_estimate(None, [path], counters, 0.03, 0.99) is None
    # a cell joins the radio link and the backhaul inside the relay: one switch (the UPF) left
    in_cell = (path[0], ("cell_gnb1", "uplink"), *path[1:])
    assert fidelity.ovs_switches(in_cell) == 1 and fidelity.ovs_switches(path) == 2
    assert fidelity.path_estimate(send_late, [in_cell], counters, 0.03, 0.999) == pytest.approx(0.16)


def test_held_and_its_causes() -> None:
    stalls = {"stalls": 2, "stall_total_ms": 3.0, "packets_flagged_pct": 0.1}
    ok = fidelity.assess({"urllc": {"p99": 0.05, "p999": 0.2}}, {"urllc": 10.0}, {"p99": 0.0, "p999": 0.0},
                         {}, {"p99": 0.0, "p999": 0.0}, 0, stalls)
    assert ok["held"] and ok["causes"] == [] and ok["held_limit_ms"] == pytest.approx(0.5)
    assert "-> held" in fidelity.line(ok)
    # a 2 ms bound: the limit is 5 % of it (0.1 ms); emulator drops break it as well
    bad = fidelity.assess({"urllc": {"p99": 0.05, "p999": 0.2}, "mmtc": {"p99": None, "p999": None}},
                          {"urllc": 2.0, "mmtc": 100.0}, {"p99": 0.15, "p999": 0.15},
                          {"radio": {"departures": 9, "p99": 0.01, "p999": 0.02}},
                          {"p99": 0.03, "p999": 0.05}, 4, stalls, ovs_source="under the run's load")
    assert not bad["held"] and bad["held_limit_ms"] == pytest.approx(0.1)
    assert "p99.9 0.2 ms > 0.1 ms" in bad["causes"][0] and "sender lateness" in bad["causes"][0]
    assert bad["causes"][1].startswith("4 packets dropped by the emulator")
    assert bad["ovs_hop_ms_p999"] == 0.05
    assert "OVS switch hops (under the run's load)" in bad["estimate_covers"]
    assert "NOT held" in fidelity.line(bad)


def test_nothing_received_is_not_held_and_does_not_crash() -> None:
    empty = fidelity.assess({"urllc": {"p99": None, "p999": None}}, {"urllc": 10.0},
                            {"p99": None, "p999": None}, {}, {"p99": 0.0, "p999": 0.0}, 1000, {})
    assert not empty["held"] and empty["error_ms_p999_est"] is None
    assert empty["causes"][0] == "no packet to estimate the error from"


def test_ovs_extra_from_the_load_probe_else_the_idle_calibration() -> None:
    idle = {"switch_hop_ms_p50": 0.1, "switch_hop_ms_mean": 0.12, "switch_hop_ms_p99": 0.3}
    extra, source = fidelity.ovs_extra_ms(idle, None)
    assert extra == {"p99": pytest.approx(0.18), "p999": pytest.approx(0.18)} and source == "idle calibration"
    load = {"probes": 4000, "switch_hop_ms_p50": 0.15, "switch_hop_ms_p99": 1.1,
            "switch_hop_ms_p999": 4.1}
    extra, source = fidelity.ovs_extra_ms(idle, load)  # beyond the compensated hop (the idle p50)
    assert extra == {"p99": pytest.approx(1.0), "p999": pytest.approx(4.0)}
    assert source == "under the run's load"
    nothing = {"probes": 0, "switch_hop_ms_p50": None, "switch_hop_ms_p99": None, "switch_hop_ms_p999": None}
    assert fidelity.ovs_extra_ms(idle, nothing)[1] == "idle calibration"

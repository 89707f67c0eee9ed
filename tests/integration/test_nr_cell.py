"""NR cells in the relay (relay/nrcell.c) on real interfaces: what the emulator adds to the model's
delay, a slice with dedicated PRBs that keeps its delay while another saturates the cell, a UE moved
between NR cells, and the Python relay's refusal. Needs root.

The bed (linkbed.cell_bed): ue1, ue2 on NR cell gnb1 (profile srsran: DDSU at mu 1, 51 PRBs,
12.3 Mbit/s uplink), gnb2 beside it, both backhauls 0.2 ms to a bridging ``upf`` and ``srv``.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from linkbed import TIMING_SLACK, cell_bed, probe, tol  # same folder: on sys.path under pytest

from topologies.nr.config import NrPlan, SliceRan, parse_nr_cell
from topologies.validate import Table

pytestmark = pytest.mark.root
BACKHAUL_MS = 0.2


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def plan(urllc: SliceRan) -> NrPlan:
    cell = parse_nr_cell(Table({"profile": "srsran"}, "nr"))
    return NrPlan(cell, (("urllc", urllc), ("embb", SliceRan(priority=5))))


def owd_ms(rows: np.ndarray) -> np.ndarray:
    return (rows[:, 2] - rows[:, 1]) / 1e6


def model_quantile_ms(stats: dict, slice_index: int, direction: str, q: float) -> float:
    """A quantile of the model's own delays (the relay's histogram, 50 us bins: bin centres)."""
    hist = stats["slices"][slice_index][direction]["delay_hist"]
    bins = np.repeat([b for b, _ in hist], [n for _, n in hist])
    return float(np.quantile((bins + 0.5) * stats["hist_bin_ns"] / 1e6, q))


def test_the_emulator_adds_little_to_the_models_delay() -> None:
    nr = (plan(SliceRan()), {"ue1": "urllc"})
    with cell_bed("c", nr=nr) as (engine, ue1, srv, _):
        up = probe(ue1, srv, 50, 300)        # 20 ms apart: every packet finds an idle UE
        down = probe(srv, ue1, 50, 300, port=5002)
        stats = engine.counters()["nr_cells"]["gnb1"]
    assert len(up) == 300 and len(down) == 300 or stats["slices"][0]["uplink"]["dropped_harq"] > 0
    for rows, direction in ((up, "uplink"), (down, "downlink")):
        measured = owd_ms(rows)
        for q in (0.25, 0.5, 0.75):  # within the first transmissions (a tenth need HARQ: a gap above)
            extra = np.quantile(measured, q) - BACKHAUL_MS - model_quantile_ms(stats, 0, direction, q)
            # what the emulator adds: veths, the relay's wake-up, the bridge; the histogram's bin
            assert -0.06 <= extra <= tol(0.5), (direction, q, extra)
    # the model's delays are the srsran profile's: uplink via SR and grant, downlink a few slots
    assert 4.5 <= model_quantile_ms(stats, 0, "uplink", 0.5) <= 8.5
    assert 2.5 <= model_quantile_ms(stats, 0, "downlink", 0.5) <= 4.5


def test_dedicated_prbs_keep_a_slices_delay_while_another_saturates_the_cell() -> None:
    urllc = SliceRan(dedicated_pct=20, min_pct=20, priority=1)  # the flood's slice has priority 5
    nr = (plan(urllc), {"ue1": "urllc", "ue2": "embb"})
    with cell_bed("c", nr=nr, ues=("ue1", "ue2")) as (engine, ue1, srv, hosts):
        # 93 packets/s: their phases sweep the 2 ms TDD period (a multiple of it would fix the
        # scheduling-request wait of every packet to one value, different from run to run)
        alone = owd_ms(probe(ue1, srv, 93, 300))
        loaded: list[np.ndarray] = []
        # ue2 offers 2000 x 1400 B/s = 22 Mbit/s to a 12.3 Mbit/s uplink for 4 s
        flood_done = threading.Event()

        def measure() -> None:
            loaded.append(owd_ms(probe(ue1, srv, 93, 300, port=5003)))

        flood = probe(hosts["ue2"], srv, 2000, 8000, size=1400, port=5002, fast=True, during=measure)
        flood_done.set()
        stats = engine.counters()["nr_cells"]["gnb1"]
    embb = stats["slices"][1]["uplink"]
    assert embb["prb"] > 0 and owd_ms(flood)[-100:].mean() > 100  # the flood queued in its buffer
    (with_flood,) = loaded
    assert len(with_flood) == 300  # nothing lost
    assert np.quantile(with_flood, 0.95) <= np.quantile(alone, 0.95) + tol(1.0) * TIMING_SLACK


def test_a_ue_moved_between_nr_cells_keeps_sending_in_order() -> None:
    nr = (plan(SliceRan()), {"ue1": "urllc"})
    with cell_bed("c", nr=nr) as (engine, ue1, srv, _):
        moved = lambda: (threading.Event().wait(1.0), engine.move_ue("radio_ue1", "gnb2"))  # noqa: E731
        up = probe(ue1, srv, 200, 600, during=moved)
        counters = engine.counters()
    assert engine is not None
    gnb2 = counters["nr_cells"]["gnb2"]["slices"][0]["uplink"]
    assert len(up) >= 598 and np.all(np.diff(up[:, 0]) > 0)  # in order; at most HARQ's losses
    assert gnb2["out"] >= 200  # served by the new cell's scheduler after the move


def test_a_handover_interruption_delays_the_ues_packets_and_loses_none() -> None:
    nr = (plan(SliceRan()), {"ue1": "urllc"})
    with cell_bed("c", nr=nr) as (engine, ue1, srv, _):
        def handover() -> None:
            threading.Event().wait(1.0)
            now = time.monotonic()
            engine.interrupt_ue("radio_ue1", now, now + 0.1)  # 100 ms, in the relay's data path
            engine.move_ue("radio_ue1", "gnb2")

        up = probe(ue1, srv, 200, 600, during=handover)
        stats = engine.counters()["nr_cells"]
    delay = owd_ms(up)
    assert len(up) >= 598 and np.all(np.diff(up[:, 0]) > 0)  # in order; at most HARQ's losses
    # the packets sent during the interruption waited for its end: the longest wait is ~100 ms
    assert 90 <= delay.max() <= tol(130), delay.max()
    assert 15 <= int(np.sum(delay > 20)) <= 25  # 20 packets in 100 ms at 200 pps
    assert stats["gnb2"]["slices"][0]["uplink"]["out"] >= 300 and stats["gnb2"]["slices"][0]["srs"] >= 1


def test_the_python_relay_refuses_the_nr_model_with_the_way_out() -> None:
    with pytest.raises(RuntimeError, match="C relay only.*radio_model = \"fixed\""), \
            cell_bed("python", nr=(plan(SliceRan()), {"ue1": "urllc"})):
        pass

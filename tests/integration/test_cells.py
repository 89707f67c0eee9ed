"""Cells inside the relay on real interfaces (relay/cell.c and pyrelay.py): a UE's packets cross its
radio link, its cell and the cell's backhaul; a UE moved between cells mid-run keeps sending and
receiving. Needs root.

The bed: ue1 on cell gnb1, cells gnb1 and gnb2 with backhauls to a host ``upf`` that bridges them
(a Linux bridge in its own namespace, learning addresses as a UPF's path switch would), and a server
``srv`` behind it. Timings are the benchmark's; here: counts, paths and order.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from linkbed import cell_bed, probe  # same folder: on sys.path under pytest

from topologies.links import LinkEngine

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def _tx(engine: LinkEngine, link: str, direction: str) -> int:
    return engine.stats(link)[direction]["tx"]


@pytest.mark.parametrize("relay_impl", ["c", "python"])
def test_a_ue_moved_between_cells_mid_run_keeps_sending_and_receiving(relay_impl: str) -> None:
    with cell_bed(relay_impl) as (engine, ue1, srv, _hosts):
        assert engine.cell_of("radio_ue1") == "gnb1"
        # uplink, moved to gnb2 half-way: every packet arrives, in order, through both backhauls
        moved = lambda: (time.sleep(1.0), engine.move_ue("radio_ue1", "gnb2"))  # noqa: E731
        up = probe(ue1, srv, 500, 1000, during=moved)
        bh1, bh2 = _tx(engine, "bh_gnb1", "uplink"), _tx(engine, "bh_gnb2", "uplink")
        assert engine.cell_of("radio_ue1") == "gnb2"
        assert len(up) >= 990, len(up)  # the move itself loses nothing; the slack is other traffic
        assert np.all(np.diff(up[:, 0]) > 0)  # in order
        assert bh1 >= 200 and bh2 >= 200, (bh1, bh2)
        assert _tx(engine, "cell_gnb2", "uplink") >= 200
        # downlink: the UPF learnt ue1 behind gnb2 from its uplink packets
        down = probe(srv, ue1, 500, 300, port=5002)
        assert len(down) == 300
        assert _tx(engine, "bh_gnb2", "downlink") >= 300
        # moved back with no uplink since: the UPF still sends down gnb2, which forwards to gnb1
        # over "Xn" as a source gNB does during a handover
        engine.move_ue("radio_ue1", "gnb1")
        back = probe(srv, ue1, 500, 300, port=5003)
        assert len(back) == 300
        assert engine.stats("cell_gnb2")["downlink"]["xn_forwarded"] >= 300
        # no relay fault on any link (sends the host refused for lack of room through every retry,
        # during a host stall, are dropped_full: the host's, not a fault; every probe above arrived)
        counters = engine.counters()
        errors = {f"{link}/{d}": c["dropped_error"] for link, per in counters["links"].items()
                  for d, c in per.items() if c.get("dropped_error", 0)}
        assert not errors, errors
        assert all("dropped_full" in c for per in counters["links"].values() for c in per.values())


def test_moves_are_checked() -> None:
    with cell_bed("c") as (engine, _ue1, _srv, _hosts):
        with pytest.raises(ValueError, match="gnb1, gnb2"):
            engine.move_ue("radio_ue1", "gnb9")
        with pytest.raises(ValueError, match="not a UE's radio link"):
            engine.move_ue("bh_gnb1", "gnb2")

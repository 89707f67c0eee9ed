"""The C traffic engine on two Mininet hosts: sockets opened in each host's namespace, packets on
their absolute schedule, the same raw records and summaries as the Python agents. Needs root."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from linkbed import two_hosts  # same folder: on sys.path under pytest

from experiments.kinds.slices.counts import planned_packets
from experiments.kinds.slices.engine import TrafficEngine, engine_binary
from experiments.kinds.slices.packetstream import RECORD_DTYPE
from topologies.links import DirectionParams
from topologies.manifest import Manifest

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def test_engine_sends_on_schedule_and_writes_the_agents_files(tmp_path: Path) -> None:
    binary = engine_binary()
    assert binary is not None, "no C compiler: the engine cannot be built here"
    manifest = Manifest.create("e" + os.urandom(3).hex())
    try:
        with two_hosts(DirectionParams(delay_ms=2), None) as (_, _e, h1, h2, _t):
            engine = TrafficEngine(binary, manifest, tmp_path / "engine.txt")
            assert engine.realtime
            out = tmp_path / "recv-h2.bin"
            engine.add_receiver("h2", h2.pid, 5001, out)
            start_ns = time.time_ns() + 300_000_000
            engine.add_sender(1, h1.pid, h2.IP(), 5001, 100, 10.0, start_ns, 1.0, tmp_path / "send-a.json")
            engine.add_sender(2, h1.pid, h2.IP(), 5001, 1200, 1.2, start_ns, 1.0, tmp_path / "send-b.json")
            engine.go()
            engine.wait_senders(timeout_s=10)
            time.sleep(0.2)  # the drain time of a run: the last packets cross the 2 ms link
            engine.stop()
            assert engine.proc.returncode == 0
    finally:
        assert not manifest.remove_all()
    a, b = (json.loads((tmp_path / f"send-{n}.json").read_text()) for n in "ab")
    assert a["packets_scheduled"] == planned_packets(1.0, 10.0) == 100
    assert b["packets_scheduled"] == planned_packets(1.0, 1.2) == 834
    assert a["packets_sent"] + a["send_errors"] == 100 and b["packets_sent"] + b["send_errors"] == 834
    assert a["engine"] == "c" and a["interval_ns"] == 10_000_000 and a["start_ns"] == start_ns
    records = np.frombuffer(out.read_bytes(), dtype=RECORD_DTYPE)
    done = json.loads(Path(f"{out}.done").read_text())
    assert done["packets_received"] == len(records) == a["packets_sent"] + b["packets_sent"]
    assert done["socket_drops"] == 0 and "InDatagrams" in done["udp_snmp_delta"]
    for flow, interval_ns, size in ((1, 10_000_000, 100), (2, 1_200_000, 1200)):
        mine = records[records["flow_id"] == flow]
        assert np.array_equal(np.sort(mine["seq"]), np.arange(len(mine)))  # every packet, once
        assert set(mine["bytes"]) == {size}
        scheduled = start_ns + mine["seq"].astype(np.int64) * interval_ns
        late_ms = (mine["send_ns"].astype(np.int64) - scheduled) / 1e6
        assert late_ms.min() >= 0  # never early
        owd_ms = (mine["recv_ns"].astype(np.int64) - mine["send_ns"].astype(np.int64)) / 1e6
        assert abs(np.median(owd_ms) - 2) < 0.5  # crossed the 2 ms link: sockets in the right hosts

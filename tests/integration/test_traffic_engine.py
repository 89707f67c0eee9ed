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


def _agent(host, args: list[str], log: Path):
    """A Python traffic agent in ``host`` (the engine's fallback)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    return host.popen([sys.executable, "-m", "experiments.agents.traffic", *args], cwd=str(repo),
                      env=dict(os.environ, PYTHONPATH=str(repo)), stdout=open(log, "w"),
                      stderr=subprocess.STDOUT)


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_video_pattern_and_control_loop_replies(tmp_path: Path, implementation: str) -> None:
    """A video flow (pattern file) h1 -> h2 and a control loop: commands h2 -> h1, each answered
    at once by h1's receiver with a status of the same seq (engine ``sendp`` / ``reply``, agent
    ``--pattern`` / ``--reply``)."""
    import signal

    from experiments.kinds.slices import models

    pattern = models.video(frame_rate_fps=20.0, gop_frames=4, i_frame_bytes=4000, p_frame_bytes=1500,
                           payload_bytes=1000, frame_spread_ms=5.0)
    pattern_file = pattern.write(tmp_path / "pattern-1.txt")
    manifest = Manifest.create("e" + os.urandom(3).hex())
    try:
        with two_hosts(DirectionParams(delay_ms=2), DirectionParams(delay_ms=3)) as (_, _e, h1, h2, _t):
            start_ns = time.time_ns() + 1_500_000_000
            reply = (3, 2, h2.IP(), 5001, 80, tmp_path / "send-status.json")
            if implementation == "c":
                binary = engine_binary()
                assert binary is not None
                engine = TrafficEngine(binary, manifest, tmp_path / "engine.txt")
                engine.add_receiver("h1", h1.pid, 5001, tmp_path / "recv-h1.bin")
                engine.add_receiver("h2", h2.pid, 5001, tmp_path / "recv-h2.bin")
                engine.add_reply("h1", *reply)
                engine.add_pattern_sender(1, h1.pid, h2.IP(), 5001, pattern_file, start_ns, 1.0,
                                          tmp_path / "send-video.json")
                engine.add_sender(3, h2.pid, h1.IP(), 5001, 120, 10.0, start_ns, 1.0,
                                  tmp_path / "send-cmd.json")
                engine.go()
                engine.wait_senders(timeout_s=10)
                time.sleep(0.2)
                engine.stop()
            else:
                spec = ",".join(str(x) for x in reply)
                receivers = [_agent(h1, ["recv", "--port", "5001", "--out", str(tmp_path / "recv-h1.bin"),
                                         "--reply", spec], tmp_path / "recv-h1.txt"),
                             _agent(h2, ["recv", "--port", "5001", "--out", str(tmp_path / "recv-h2.bin")],
                                    tmp_path / "recv-h2.txt")]
                for proc in receivers:
                    manifest.add_process(f"recv{proc.pid}", proc.pid)
                deadline = time.monotonic() + 30
                while not all(Path(f"{tmp_path}/recv-{h}.bin.ready").exists() for h in ("h1", "h2")):
                    assert time.monotonic() < deadline, "receivers did not start"
                    time.sleep(0.02)
                common = ["--port", "5001", "--start-ns", str(start_ns), "--duration-s", "1.0"]
                senders = [_agent(h1, ["send", "--dest", h2.IP(), "--flow-id", "1", "--payload-bytes", "1000",
                                       "--interval-ms", "1.0", "--summary", str(tmp_path / "send-video.json"),
                                       "--pattern", str(pattern_file), *common], tmp_path / "send-video.txt"),
                           _agent(h2, ["send", "--dest", h1.IP(), "--flow-id", "3", "--payload-bytes", "120",
                                       "--interval-ms", "10.0", "--summary", str(tmp_path / "send-cmd.json"),
                                       *common], tmp_path / "send-cmd.txt")]
                for proc in senders:
                    assert proc.wait(30) == 0
                time.sleep(0.2)
                for proc in receivers:
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(30) == 0
    finally:
        assert not manifest.remove_all()
    video = json.loads((tmp_path / "send-video.json").read_text())
    assert video["packets_scheduled"] == pattern.packets_scheduled(1_000_000_000)
    at_h2 = np.frombuffer((tmp_path / "recv-h2.bin").read_bytes(), dtype=RECORD_DTYPE)
    mine = at_h2[at_h2["flow_id"] == 1]
    assert np.array_equal(np.sort(mine["seq"]), np.arange(video["packets_sent"]))
    seq = mine["seq"].astype(np.int64)
    assert np.array_equal(mine["bytes"], pattern.sizes_bytes[seq % pattern.n])  # the GoP's sizes
    late_ms = (mine["send_ns"].astype(np.int64) - (start_ns + pattern.send_offset_ns(seq))) / 1e6
    assert late_ms.min() >= 0 and np.median(late_ms) < 1.0  # on the pattern's schedule
    # every command that reached h1 was answered with the same seq, ~2 ms later at h2
    at_h1 = np.frombuffer((tmp_path / "recv-h1.bin").read_bytes(), dtype=RECORD_DTYPE)
    commands = at_h1[at_h1["flow_id"] == 3]
    status = at_h2[at_h2["flow_id"] == 2]
    summary = json.loads((tmp_path / "send-status.json").read_text())
    assert len(commands) == 100 and summary["replies_to"] == 3
    assert summary["packets_scheduled"] == summary["packets_sent"] == len(status) == 100
    assert np.array_equal(np.sort(status["seq"]), np.sort(commands["seq"]))
    by_seq = dict(zip(commands["seq"].tolist(), commands["recv_ns"].tolist(), strict=True))
    answer_ms = np.array([(int(s) - by_seq[int(q)]) / 1e6 for q, s in zip(status["seq"], status["send_ns"],
                                                                            strict=True)])
    assert answer_ms.min() >= 0 and np.median(answer_ms) < (1.0 if implementation == "c" else 5.0)
    scheduled = start_ns + status["seq"].astype(np.int64) * 10_000_000
    cycle_ms = (status["recv_ns"].astype(np.int64) - scheduled) / 1e6
    assert abs(np.median(cycle_ms) - 5.0) < 1.0  # 3 ms down + 2 ms up

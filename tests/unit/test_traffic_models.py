"""Traffic models: schedules (GoP sizes, frame bursts, loop timing), plans and scenario keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from experiments.agents.traffic import read_pattern
from experiments.kinds.slices import models
from experiments.kinds.slices.counts import planned_flow_packets
from experiments.kinds.slices.traffic import flow_pattern, plan_flows, summary_name
from topologies.scenario import load_scenario
from topologies.validate import ConfigError

FACTORY = Path(__file__).resolve().parents[2] / "experiments" / "factory" / "scenario.toml"


def test_video_gop_sizes_and_bursts() -> None:
    p = models.video(frame_rate_fps=25.0, gop_frames=5, i_frame_bytes=5000, p_frame_bytes=1000,
                     payload_bytes=1200, frame_spread_ms=8.0)
    # I frame: 5 packets (4 x 1200 + 200); P frames: 1 packet of 1000 B each
    assert p.n == 5 + 4 and p.messages_per_period == 5
    assert p.sizes_bytes.tolist() == [1200, 1200, 1200, 1200, 200, 1000, 1000, 1000, 1000]
    assert p.sizes_bytes[p.message == 0].sum() == 5000 and p.sizes_bytes[p.message == 3].sum() == 1000
    assert p.period_ns == 200_000_000  # 5 frames at 40 ms
    # the I frame's packets spread evenly over 8 ms: 1.6 ms apart; frame f starts at f * 40 ms
    assert p.offsets_ns[:5].tolist() == [0, 1_600_000, 3_200_000, 4_800_000, 6_400_000]
    assert p.offsets_ns[5:].tolist() == [40_000_000, 80_000_000, 120_000_000, 160_000_000]
    # second GoP: same layout one period later; messages count on
    assert p.send_offset_ns(np.array([9, 10, 14])).tolist() == [200_000_000, 201_600_000, 240_000_000]
    assert p.message_of(np.array([4, 5, 9, 14])).tolist() == [0, 1, 5, 6]
    assert p.message_start_ns(np.array([0, 1, 5, 6])).tolist() == [0, 40_000_000, 200_000_000, 240_000_000]
    assert p.packets_in_message(7).tolist() == [5, 1, 1, 1, 1, 5, 1]


def test_pattern_packets_scheduled_matches_the_sender_rule() -> None:
    p = models.video(30.0, 30, 120_000, 30_000, 1200, 10.0)
    for duration_ns in (1, 33_000_000, 1_000_000_000, 2_500_000_000):
        brute = 0
        while p.send_offset_ns(np.array([brute]))[0] < duration_ns:
            brute += 1
        assert p.packets_scheduled(duration_ns) == brute
    assert models.periodic(10.0, 100).packets_scheduled(1_000_000_000) == 100


def test_pattern_file_round_trip(tmp_path: Path) -> None:
    p = models.video(10.0, 3, 3000, 1500, 1400, 5.0)
    period, entries = read_pattern(str(p.write(tmp_path / "pattern.txt")))  # the Python sender's reader
    assert period == p.period_ns
    assert entries == list(zip(p.offsets_ns.tolist(), p.sizes_bytes.tolist(), strict=True))


def test_phase_is_seeded_and_inside_the_period() -> None:
    a = [models.phase_ns(1, f, 10.0) for f in range(1, 50)]
    assert a == [models.phase_ns(1, f, 10.0) for f in range(1, 50)]
    assert a != [models.phase_ns(2, f, 10.0) for f in range(1, 50)]
    assert all(0 <= x < 10_000_000 for x in a) and len(set(a)) > 40


def test_factory_plan_control_loops_cameras_sensors() -> None:
    scenario = load_scenario(FACTORY)
    flows = plan_flows(scenario)
    loops = [f for f in flows if f.model in ("command", "status")]
    assert len(loops) == 8  # 4 AGVs x (command, status)
    for command, status in zip(loops[::2], loops[1::2], strict=True):
        assert (command.model, status.model) == ("command", "status")
        assert (command.sender, command.destination, command.direction) == ("edge1", command.ue, "downlink")
        assert (status.sender, status.destination, status.reply_to) == (status.ue, "edge1", command.flow_id)
        assert command.payload_bytes == 120 and status.payload_bytes == 80
        assert status.message_bound_ms == 10.0 and status.survival_time_ms == 10.0  # one interval
        assert 0 <= command.start_offset_s < 0.010 and command.start_offset_s == status.start_offset_s
        assert status.target_pct == 99.9999  # the URLLC slice's target
        assert summary_name(command) == f"send-{command.ue}-command.json"
        assert flow_pattern(status) is None and planned_flow_packets(status, 60.0) is None
    videos = [f for f in flows if f.model == "video"]
    assert [v.frame_rate_fps for v in videos] == [30.0, 30.0, 15.0]
    assert videos[0].message_bound_ms == pytest.approx(1000 / 30) and videos[2].message_bound_ms == 50.0
    assert videos[0].survival_time_ms == pytest.approx(1000 / 30)
    sensors = [f for f in flows if f.kind == "sensor"]
    assert all(s.survival_time_ms == 100.0 and s.start_offset_s == 0.0 for s in sensors)
    assert [f.flow_id for f in flows] == list(range(1, len(flows) + 1))


def _factory_with(tmp_path: Path, group: int, **traffic: object) -> Path:
    """The factory scenario with group ``group``'s traffic table changed."""
    text = FACTORY.read_text()
    table = {**tomllib.loads(text)["ue_groups"][group]["traffic"], **traffic}
    old = [line for line in text.splitlines() if line.startswith("traffic = {")][group]
    new = "traffic = { " + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in table.items()) + " }"
    path = tmp_path / "scenario.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("group, change, key", [
    (0, {"interval_ms": 0.0}, "ue_groups[0].traffic.interval_ms"),
    (0, {"command_bytes": 20}, "ue_groups[0].traffic.command_bytes"),
    (0, {"cycle_bound_ms": -1.0}, "ue_groups[0].traffic.cycle_bound_ms"),
    (2, {"gop_frames": 0}, "ue_groups[2].traffic.gop_frames"),
    (2, {"i_frame_bytes": 100}, "ue_groups[2].traffic.i_frame_bytes"),
    (2, {"frame_spread_ms": 40.0}, "ue_groups[2].traffic.frame_spread_ms"),
    (4, {"survival_time_ms": -5.0}, "ue_groups[4].traffic.survival_time_ms"),
    (4, {"availability_target_pct": 100.0}, "ue_groups[4].traffic.availability_target_pct"),
    (4, {"pattern": "bursty"}, "ue_groups[4].traffic.pattern"),
])
def test_bad_traffic_keys_are_named(tmp_path: Path, group: int, change: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario(_factory_with(tmp_path, group, **change))
    assert info.value.path == key

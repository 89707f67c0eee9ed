"""A UE group's traffic table (``[[ue_groups]] traffic``) validated into a :class:`TrafficSpec`.

The patterns and their keys are in README "Factory traffic models"; defaults with their sources in
:mod:`topologies.traffic_defaults`; the schedules they become in experiments/kinds/slices/models.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topologies.traffic_defaults import DEFAULT_VIDEO
from topologies.validate import ConfigError, Table

TRAFFIC_PATTERNS = ("periodic", "constant_rate", "control_loop", "video")


@dataclass(frozen=True)
class VideoSpec:
    """``video``: frames at ``frame_rate_fps`` in groups of pictures (an I frame, then P frames),
    each frame a burst of packets spread over ``frame_spread_ms``; a frame is on time when its
    last packet arrives within ``frame_deadline_ms`` of the frame's start."""

    frame_rate_fps: float
    gop_frames: int
    i_frame_bytes: int
    p_frame_bytes: int
    frame_deadline_ms: float
    frame_spread_ms: float

    @property
    def frame_interval_ms(self) -> float:
        return 1000.0 / self.frame_rate_fps

    @property
    def mean_rate_mbps(self) -> float:
        gop_bytes = self.i_frame_bytes + (self.gop_frames - 1) * self.p_frame_bytes
        return gop_bytes * 8 * self.frame_rate_fps / self.gop_frames / 1e6


@dataclass(frozen=True)
class TrafficSpec:
    """What one UE sends: ``periodic`` (payload every interval), ``constant_rate``, ``control_loop``
    (a downlink command every interval answered by an uplink status of ``payload_bytes``) or
    ``video`` (frames in groups of pictures, ``video``). ``interval_ms`` is the uplink's mean packet
    interval; TS 22.104 service parameters: ``survival_time_ms`` (None: one transfer interval) and
    ``availability_target_pct`` (None: the slice's ``reliability_target_pct``)."""

    pattern: str
    payload_bytes: int
    destination: str
    interval_ms: float
    survival_time_ms: float | None = None
    availability_target_pct: float | None = None
    command_bytes: int = 0            # control_loop: the downlink command's size
    cycle_bound_ms: float | None = None  # control_loop: command sent -> status received (None: interval)
    video: VideoSpec | None = None

    @property
    def rate_mbps(self) -> float:
        return self.payload_bytes * 8 / (self.interval_ms * 1000)

    @property
    def transfer_interval_ms(self) -> float:
        """The interval between the application's messages (a video's frames)."""
        return self.video.frame_interval_ms if self.video is not None else self.interval_ms


def parse_traffic(tt: Table, servers: tuple[str, ...]) -> TrafficSpec:
    """One ``traffic`` table (its keys checked, each error naming the key and what is allowed)."""
    pattern = tt.str("pattern", choices=TRAFFIC_PATTERNS)
    payload = tt.int("payload_bytes", min=32, max=1400,
                     why="the sender's 16 B header fits; one datagram within a 1500 B MTU")
    destination = tt.str("destination", choices=servers)
    extra: dict[str, Any] = {}
    if pattern in ("periodic", "control_loop"):
        interval_ms = tt.number("interval_ms", min=0.1, max=60_000,
                                why="10 kpackets/s per UE at most; at least one a minute")
    elif pattern == "constant_rate":
        rate = tt.number("rate_mbps", min=0.001, max=1000,
                         why="1 Gbit/s per UE, about what userspace OVS forwards")
        interval_ms = payload * 8 / (rate * 1000)
    else:
        video = _video(tt, payload)
        extra["video"] = video
        interval_ms = payload * 8 / (video.mean_rate_mbps * 1000)
    if pattern == "control_loop":
        extra["command_bytes"] = tt.int("command_bytes", payload, min=32, max=1400,
                                        why="the 16 B header fits; one datagram within a 1500 B MTU")
        extra["cycle_bound_ms"] = tt.optional_number("cycle_bound_ms", min=0.01, max=60_000)
    extra["survival_time_ms"] = tt.optional_number("survival_time_ms", min=0, max=3_600_000)
    extra["availability_target_pct"] = tt.optional_number("availability_target_pct", min=0,
                                                          max=100, min_exclusive=True)
    if extra["availability_target_pct"] == 100:
        raise ConfigError(tt.key("availability_target_pct"), 100.0,
                          "a number below 100 (no finite run can show 100 %)")
    return TrafficSpec(pattern, payload, destination, interval_ms, **extra)


def _video(t: Table, payload_bytes: int) -> VideoSpec:
    """``pattern = "video"`` keys (defaults: DEFAULT_VIDEO in topologies/traffic_defaults.py)."""
    d = DEFAULT_VIDEO
    fps = t.number("frame_rate_fps", d.frame_rate_fps, min=0.1, max=240)
    frame_ms = 1000.0 / fps
    gop = t.int("gop_frames", d.gop_frames, min=1, max=1000)
    i_bytes = t.int("i_frame_bytes", d.i_frame_bytes, min=payload_bytes, max=10_000_000,
                    why="at least one packet's payload")
    p_bytes = t.int("p_frame_bytes", d.p_frame_bytes, min=payload_bytes, max=10_000_000,
                    why="at least one packet's payload")
    deadline = t.number("frame_deadline_ms", frame_ms, min=0.01, max=60_000)
    spread = t.number("frame_spread_ms", min(d.frame_spread_ms, frame_ms), min=0, max=frame_ms,
                      why="a frame's packets leave before the next frame starts")
    if max(i_bytes, p_bytes) / payload_bytes * fps > 200_000:
        raise ConfigError(t.key("frame_rate_fps"), fps, "fewer than 200,000 packets/s per camera "
                          "(frame size / payload_bytes x frame rate)")
    return VideoSpec(fps, gop, i_bytes, p_bytes, deadline, spread)

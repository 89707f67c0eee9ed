"""Defaults of the factory traffic models, each with its source (scenario ``[[ue_groups]] traffic``).

The use cases are 3GPP TS 22.104's (cyber-physical control in vertical domains), §5 and Annex A:
mobile robots (AGV control loops, video-operated remote control), machine vision / quality
inspection, process monitoring (industrial wireless sensors). Where the specification gives a
range, the value chosen is named as a choice of this project.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoDefaults:
    frame_rate_fps: float
    gop_frames: int
    i_frame_bytes: int
    p_frame_bytes: int
    frame_spread_ms: float


DEFAULT_VIDEO = VideoDefaults(
    # TS 22.104 mobile robots, video-operated remote control: transfer interval 10-100 ms; 30 frames/s
    # (33 ms) is inside that range and the common industrial camera rate (a choice).
    frame_rate_fps=30.0,
    # One I frame per second (a GoP of 30 at 30 fps): a common H.264/H.265 encoder setting (a choice).
    gop_frames=30,
    # TS 22.104 video-operated remote control: messages of 15-250 kB. An I frame of 120 kB and P frames
    # of 30 kB (an I/P ratio of 4, typical of H.264 at moderate motion; a choice) are inside that range
    # and average 8.8 Mbit/s, close to TS 22.104's "video from mobile robots: uplink > 10 Mbit/s".
    i_frame_bytes=120_000,
    p_frame_bytes=30_000,
    # The camera hands a frame's packets to the network over 10 ms (the encoder's output pacing; an
    # assumption of this project: back to back would be 0, evenly over the frame interval 33 ms).
    frame_spread_ms=10.0,
)

# TS 22.104 (mobile robots, Table 5.2-1 / DESIGN.md): survival time = one transfer interval. The
# models use it as every flow's default (override per flow with traffic.survival_time_ms).
SURVIVAL_TRANSFER_INTERVALS = 1.0

# TS 22.104 mobile robots: machine control every 1-10 ms, end-to-end latency below the transfer
# interval; so a control_loop's cycle bound (command sent -> status received) defaults to its interval.
CYCLE_BOUND_TRANSFER_INTERVALS = 1.0

"""Traffic models -> packet schedules: when each packet of a flow leaves, its size, its message.

A flow's schedule is periodic: a :class:`Pattern` of packets (offset in the period, size, message
in the period) repeated every ``period_ns`` from the flow's start. A periodic flow is a pattern of
one packet; a ``video`` flow's pattern is one group of pictures (an I frame, then P frames), each
frame a burst of packets spread over ``frame_spread_ms``. The traffic engine and the Python sender
send exactly this schedule (packet ``seq`` at ``start + (seq // n) * period + offset[seq % n]``);
the analysis uses the same functions for each packet's scheduled send time and message.

Messages (what TS 22.104 counts): a packet for periodic flows, a frame for video, a cycle
(command sent -> status received) for control loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Pattern:
    """``n`` packets per ``period_ns``: offsets (ns, non-decreasing), sizes (bytes) and the message
    each belongs to (0 .. messages_per_period - 1)."""

    period_ns: int
    offsets_ns: np.ndarray
    sizes_bytes: np.ndarray
    message: np.ndarray
    messages_per_period: int

    @property
    def n(self) -> int:
        return int(self.offsets_ns.size)

    def send_offset_ns(self, seq: np.ndarray) -> np.ndarray:
        """Scheduled send time of packets ``seq`` after the flow's start (ns)."""
        seq = np.asarray(seq, dtype=np.int64)
        return (seq // self.n) * self.period_ns + self.offsets_ns[seq % self.n]

    def message_of(self, seq: np.ndarray) -> np.ndarray:
        """The message (frame, for video) each packet belongs to."""
        seq = np.asarray(seq, dtype=np.int64)
        return (seq // self.n) * self.messages_per_period + self.message[seq % self.n]

    def packets_in_message(self, messages: int) -> np.ndarray:
        """How many packets each of the first ``messages`` messages holds."""
        per = np.bincount(self.message, minlength=self.messages_per_period).astype(np.int64)
        return np.resize(per, messages)

    @cached_property
    def _first_offset_ns(self) -> np.ndarray:
        """Each message's first packet's offset in the period (computed once: a hot path uses it)."""
        _, first = np.unique(self.message, return_index=True)  # offsets are non-decreasing
        return self.offsets_ns[first]

    def message_start_ns(self, message: np.ndarray) -> np.ndarray:
        """When each message's first packet is scheduled, after the flow's start (ns)."""
        message = np.asarray(message, dtype=np.int64)
        per = self.messages_per_period
        return (message // per) * self.period_ns + self._first_offset_ns[message % per]

    def packets_scheduled(self, duration_ns: int) -> int:
        """Packets whose scheduled send time is before ``duration_ns`` (what the senders send)."""
        if duration_ns <= 0:
            return 0
        full = duration_ns // self.period_ns
        rest = duration_ns - full * self.period_ns
        return int(full * self.n + np.count_nonzero(self.offsets_ns < rest))

    def write(self, path: Path) -> Path:
        """The engine's pattern file: ``period_ns n`` then ``offset_ns bytes`` per packet (text)."""
        lines = [f"{self.period_ns} {self.n}"] + [f"{int(o)} {int(b)}" for o, b in
                                                  zip(self.offsets_ns, self.sizes_bytes, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        return path


def periodic(interval_ms: float, payload_bytes: int) -> Pattern:
    """One packet every ``interval_ms``."""
    return Pattern(int(interval_ms * 1e6), np.zeros(1, dtype=np.int64),
                   np.array([payload_bytes], dtype=np.int64), np.zeros(1, dtype=np.int64), 1)


def video(frame_rate_fps: float, gop_frames: int, i_frame_bytes: int, p_frame_bytes: int,
          payload_bytes: int, frame_spread_ms: float) -> Pattern:
    """One group of pictures: frame ``f`` starts at ``f / fps``, is ``i_frame_bytes`` (f = 0) or
    ``p_frame_bytes``, cut into packets of ``payload_bytes`` (the last one shorter, at least the
    16 B header) spread evenly over ``frame_spread_ms``."""
    frame_ns = 1e9 / frame_rate_fps
    offsets, sizes, message = [], [], []
    for f in range(gop_frames):
        size = i_frame_bytes if f == 0 else p_frame_bytes
        count = -(-size // payload_bytes)
        gap_ns = frame_spread_ms * 1e6 / count
        for k in range(count):
            offsets.append(round(f * frame_ns + k * gap_ns))
            sizes.append(max(16, min(payload_bytes, size - k * payload_bytes)))
            message.append(f)
    return Pattern(round(gop_frames * frame_ns), np.array(offsets, dtype=np.int64),
                   np.array(sizes, dtype=np.int64), np.array(message, dtype=np.int64), gop_frames)


def phase_ns(seed: int, flow_id: int, period_ms: float) -> int:
    """A seeded start phase in [0, period): devices whose clocks are not aligned (control loops,
    cameras). The same scenario seed gives the same phases."""
    rng = np.random.default_rng([seed, flow_id, 22104])
    return int(rng.integers(0, max(1, int(period_ms * 1e6))))

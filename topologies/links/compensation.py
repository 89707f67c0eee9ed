"""Delay compensation: the one place where the emulator's own latency is taken off a configured delay.

A direction of an emulated link is crossed by more than its data path: the backend's own per-hop
latency (the relay's calibration, ``LinkBackend.calibration()["offset_ms"]``; 0 for netem) and, when
the direction enters a switch, that switch's datapath latency (measured by
:func:`topologies.links.ovs_calibrate.measure_switch_hop_ms`). The link engine asks
:func:`compensate` for the delay the data path must add, so the one-way delay measured end to end
matches what the scenario says, and records the part it could not take off (the shortfall).
"""

from __future__ import annotations


def compensate(delay_ms: float, hops: int = 0, hop_ms: float = 0.0,
               own_ms: float = 0.0) -> tuple[float, float]:
    """(delay to configure, shortfall_ms) for a direction whose path adds ``own_ms + hops * hop_ms``.

    ``hops`` switches of ``hop_ms`` each are crossed; ``own_ms`` is the backend's own measured
    latency (a calibration mean: may be slightly negative, then it adds delay). The configured delay
    is ``delay_ms - own_ms - hops * hop_ms`` but never below 0, and a zero delay stays 0; the
    shortfall is the part of that overhead that could not be taken off (> 0: ``delay_ms`` is below
    what this machine can emulate; the path will measure about the overhead). Both are rounded to
    1 ns so that floating-point residue never reads as a shortfall.
    """
    if delay_ms < 0 or hop_ms < 0:
        raise ValueError(f"delay_ms and hop_ms must be >= 0; got delay_ms={delay_ms}, hop_ms={hop_ms}")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError(f"hops must be an int >= 0; got {hops!r}")
    overhead_ms = own_ms + hops * hop_ms
    configured = round(max(0.0, delay_ms - overhead_ms), 6) if delay_ms > 0 else 0.0
    shortfall = round(max(0.0, overhead_ms - delay_ms), 6)
    return configured, shortfall

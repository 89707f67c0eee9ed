"""The one vocabulary for the two directions of a link, from the scenario to the relay's wire format.

``uplink`` is node1 -> node2 of ``addLink`` and ``downlink`` node2 -> node1; the factory topology
always adds a link with node1 on the UE / lower side, so uplink points towards the core, the cloud
or the satellite (and, on the UPF -> edge server link, towards the server).
"""

from __future__ import annotations

UPLINK = "uplink"      # node1 -> node2
DOWNLINK = "downlink"  # node2 -> node1
DIRECTIONS = (UPLINK, DOWNLINK)


def check_direction(direction: str) -> str:
    """``direction`` if it is ``uplink`` or ``downlink``; ValueError naming the allowed values."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: got {direction!r}; allowed: " + ", ".join(map(repr, DIRECTIONS)))
    return direction

"""The link engine: per-direction delay, jitter, loss (random or Gilbert-Elliott), rate, queue limit
and up/down on Mininet links, changeable live and by schedule, on any kernel.

Directions: ``uplink`` = node1 -> node2 of ``addLink``, ``downlink`` = node2 -> node1.
Backends (strategies behind :class:`~topologies.links.backend.LinkBackend`, named only in
:data:`~topologies.links.backends.REGISTRY`): ``relay`` (one userspace AF_PACKET relay process in
its own netns serving every link; a C data path compiled at set-up, pure-Python fallback) and
``netem`` (``tc qdisc replace/change``). Delivery semantics are in :mod:`topologies.links.params`:
order is always preserved, a packet leaves at
``max(arrival + [serialisation] + delay + jitter, previous departure)``; jitter never reorders.

Modules: ``engine`` (LinkEngine: links by name, compensation, schedules' validation), ``backend``
(the protocol), ``backends/`` (the registry, ``relay``, ``netem``), ``mnlink`` (the Mininet link
class), ``direction`` (uplink / downlink), ``compensation`` (the emulator's own latency taken off
delays), ``params``; low-level ``relayproc`` / ``pyrelay`` / ``relay/relay.c`` (the relay
process; ``relayctl`` and ``relay/control.c`` its control protocol, Python and C) and ``netem`` (tc
commands); ``calibrate`` / ``ovs_calibrate`` / ``udpprobe``
(measurements); ``commands`` (running tools).

Typical use::

    engine = LinkEngine(select_backend("auto"), tag, manifest, log_dir)
    engine.start()
    net.addLink(h1, h2, cls=engine.link_class, link_name="h1h2",
                uplink=DirectionParams(delay_ms=10), downlink=DirectionParams(delay_ms=5, loss_pct=1))
    ...
    engine.set_params("h1h2", "uplink", DirectionParams(delay_ms=20))
    engine.stats("h1h2")["downlink"]["tx"]
    engine.stop()
"""

from topologies.links.backend import LinkBackend
from topologies.links.backends import BACKENDS, REGISTRY, available_backends, select_backend
from topologies.links.direction import DIRECTIONS, DOWNLINK, UPLINK, check_direction
from topologies.links.engine import LinkEngine
from topologies.links.netem import netem_argv, netem_available
from topologies.links.params import (
    JITTER_DISTRIBUTIONS,
    DirectionParams,
    GilbertElliott,
    ScheduleRow,
    check_schedule,
)

__all__ = [
    "BACKENDS",
    "DIRECTIONS",
    "DOWNLINK",
    "JITTER_DISTRIBUTIONS",
    "REGISTRY",
    "UPLINK",
    "DirectionParams",
    "GilbertElliott",
    "LinkBackend",
    "LinkEngine",
    "ScheduleRow",
    "available_backends",
    "check_direction",
    "check_schedule",
    "netem_argv",
    "netem_available",
    "select_backend",
]

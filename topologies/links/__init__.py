"""The link engine: per-direction delay, jitter, loss (random or Gilbert-Elliott), rate, queue limit
and up/down on Mininet links, changeable live and by schedule, on any kernel.

Backends: ``relay`` (one userspace AF_PACKET relay process in its own netns serving every link; a C
data path compiled at set-up, pure-Python fallback) and ``netem`` (``tc qdisc replace/change``).
Delivery semantics are in :mod:`topologies.links.params`: order is always preserved, a packet leaves
at ``max(arrival + [serialisation] + delay + jitter, previous departure)``; jitter never reorders.

Typical use::

    engine = LinkEngine(select_backend("auto"), tag, manifest, log_dir)
    engine.start()
    net.addLink(h1, h2, cls=engine.link_class, link_name="h1h2",
                ab=DirectionParams(delay_ms=10), ba=DirectionParams(delay_ms=5, loss_pct=1))
    ...
    engine.set_params("h1h2", "ab", DirectionParams(delay_ms=20))
    engine.stop()
"""

from topologies.links.engine import BACKENDS, LinkEngine, select_backend
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
    "JITTER_DISTRIBUTIONS",
    "DirectionParams",
    "GilbertElliott",
    "LinkEngine",
    "ScheduleRow",
    "check_schedule",
    "netem_argv",
    "netem_available",
    "select_backend",
]

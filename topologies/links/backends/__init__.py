"""The link backends, by name: the one place a backend is named.

``REGISTRY`` maps each ``link_backend`` value to its :class:`~topologies.links.backend.LinkBackend`
class; ``BACKENDS`` (``auto`` first) is what the scenario, the CLI options and the benchmarks offer.
Adding a backend: one module in this folder plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from topologies.links.backend import LinkBackend
from topologies.links.backends.netem import NetemBackend
from topologies.links.backends.relay import RelayBackend

REGISTRY: dict[str, type[LinkBackend]] = {
    "relay": RelayBackend,
    "netem": NetemBackend,
}
BACKENDS = ("auto", *REGISTRY)


def available_backends() -> list[str]:
    """Registered backends that can run on this machine, in registry order."""
    return [name for name, cls in REGISTRY.items() if cls.unavailable_reason() is None]


def select_backend(requested: str) -> str:
    """Resolve ``auto`` or a backend name to the backend to use on this machine.

    ``auto`` picks the available backend with the highest ``auto_priority`` (netem where the kernel
    has it, else the relay). A named backend that cannot run here is a ValueError saying why.
    """
    if requested != "auto" and requested not in REGISTRY:
        raise ValueError(f"link_backend: got {requested!r}; allowed: "
                         + ", ".join(map(repr, ("auto", *REGISTRY))))
    if requested == "auto":
        ranked = [(REGISTRY[n].auto_priority, n) for n in available_backends()
                  if REGISTRY[n].auto_priority is not None]
        if not ranked:
            raise ValueError("link_backend: 'auto': no link backend can run on this machine")
        return max(ranked)[1]
    reason = REGISTRY[requested].unavailable_reason()
    if reason is not None:
        others = [repr(n) for n in available_backends() if n != requested] + ["'auto'"]
        raise ValueError(f"link_backend: {requested!r} was requested but {reason}; "
                         f"use {' or '.join(others)}")
    return requested


def metadata_keys() -> tuple[str, ...]:
    """Every registered backend's own metadata keys (a run's ``link_engine`` block has them all)."""
    return tuple(k for cls in REGISTRY.values() for k in cls.metadata_keys)

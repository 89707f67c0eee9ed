"""The link-backend protocol: what the link engine asks of a data path.

A backend is a strategy class registered in :mod:`topologies.links.backends` (``REGISTRY``). The
engine (:class:`topologies.links.engine.LinkEngine`) keeps what every backend shares — the links by
name, direction names, schedule validation, delay compensation (:mod:`topologies.links.compensation`)
and floor warnings — and calls its backend for everything that touches packets, in this order::

    scenario check                 Backend.check(params) -> problems  per link setting, before
                                   anything starts (check_settings); backends also require() it
    engine.start()                 backend.start()                   once, before any link
    net.addLink(..., cls=engine.link_class, uplink=..., downlink=...)   per link:
      Mininet's Link constructor   backend.make_intf_pair(name, end1, end2, options) -> link
      node-side interfaces exist   backend.offloads(uplink, downlink, txo)   (ethtool -K words)
                                   backend.attach(link, uplink, downlink)
    engine.set_params(...)         backend.set(link, direction, setting)
    engine.set_schedule(...)       backend.schedule(link, direction, rows, t0_monotonic_s)
    engine.stats(name)             backend.stats(link)
    link.delete()                  backend.detach(link)   (before Mininet deletes the interfaces)
    engine.metadata()              backend.calibration(), backend.metadata()
    engine.stop()                  backend.stop()

Directions (:mod:`topologies.links.direction`): ``uplink`` = node1 -> node2 of ``addLink`` and
``downlink`` = node2 -> node1 (the factory topology always puts the UE / lower side first).
Every value a backend receives is already compensated: a :class:`Setting` carries the parameters
as configured and the delay the backend's data path must add.

Links whose both directions are transparent (and not ``dynamic``) never reach a backend: they are
plain veth pairs made by Mininet.

To add a backend: one module in ``topologies/links/backends/`` with a :class:`LinkBackend` subclass,
plus one line in ``REGISTRY``.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from topologies.errors import RunFailed
from topologies.links.params import DirectionParams
from topologies.manifest import Manifest
from topologies.validate import ConfigError

log = logging.getLogger(__name__)


def describe_exit(code: int | None) -> str:
    """``exited with code 3`` / ``killed by SIGKILL`` for a Popen return code."""
    if code is None:
        return "is running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(frozen=True)
class Endpoint:
    """One end of a link: the node-side interface Mininet asked for.

    ``node`` is the Mininet node (backends use its ``pid`` and ``inNamespace``: switches live in
    the root namespace); ``intf`` and ``mac`` are the interface name and MAC address it must get.
    """

    node: Any
    intf: str
    mac: str | None = None

    @property
    def in_namespace(self) -> bool:
        """False for a node in the root network namespace (a switch)."""
        return bool(getattr(self.node, "inNamespace", True))

    @property
    def netns_pid(self) -> int | None:
        """Pid whose network namespace holds the interface; None for the root namespace."""
        return self.node.pid if self.in_namespace else None


@dataclass(frozen=True)
class Setting:
    """What a backend emulates on one direction from ``t_s`` on.

    ``params``: the direction's parameters as configured (default queue sizes are derived from
    these); ``delay_ms``: the delay the backend's data path must add — ``params.delay_ms`` less the
    overheads the engine compensates (:func:`topologies.links.compensation.compensate`); ``t_s``:
    for schedule rows, the time after the schedule's ``t0`` at which the row takes effect.
    """

    params: DirectionParams
    delay_ms: float
    t_s: float = 0.0


@dataclass(frozen=True)
class BackendContext:
    """What a backend gets from its engine: the run's tag (a prefix for every name it creates),
    the run manifest (record every namespace, interface and process before creating it), a log
    folder, the random seed and whether to calibrate its own latency at start."""

    tag: str
    manifest: Manifest
    log_dir: Path
    seed: int | None = None
    calibrate: bool = True


@dataclass
class BackendLink:
    """A backend's record of one link (subclass it for more state); ``name`` is the engine's."""

    name: str
    end1: Endpoint | None  # None: inside a relay (a cell's port, relay backend only)
    end2: Endpoint | None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """What a backend cannot do with one parameter (``fatal``), or does differently (a warning).

    ``field``: the DirectionParams field; ``message``: one line, naming the backend and, for a
    fatal problem, what to use instead (it becomes the "allowed" part of a ConfigError).
    """

    field: str
    message: str
    fatal: bool = True


def veth_offloads(uplink: DirectionParams, downlink: DirectionParams, txo: bool) -> tuple[str, ...]:
    """``ethtool -K`` words for both node-side ends of a veth pair that the kernel forwards.

    TX checksum offload off unless ``txo`` (the userspace OVS datapath needs it off, DESIGN.md);
    GSO/TSO off on a lossy link, so single packets and not 64 KB super-frames are dropped.
    """
    words: tuple[str, ...] = ("tx", "off") if not txo else ()
    if any(p.loss_pct > 0 or p.loss_burst is not None for p in (uplink, downlink)):
        words += ("tso", "off", "gso", "off")
    return words


class LinkBackend(abc.ABC):
    """One data path for emulated links (see the module docstring for when each method is called).

    Class attributes: ``name`` (its registry key and ``link_backend`` value); ``auto_priority``
    (``auto`` picks the available backend with the highest; None: never picked by ``auto``);
    ``owns_qdisc`` (True when the backend installs root qdiscs on the node-side interfaces, which
    switches must then leave alone); ``metadata_keys`` (the keys :meth:`metadata` returns: the
    engine's metadata carries the keys of every registered backend, None for other backends').
    """

    name: ClassVar[str]
    auto_priority: ClassVar[int | None] = None
    owns_qdisc: ClassVar[bool] = False
    metadata_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run on this machine (e.g. a missing kernel module), or None."""
        return None

    @classmethod
    def check(cls, params: DirectionParams) -> list[Problem]:
        """What this backend cannot do with ``params`` (fatal) or does differently (warnings).

        Pure (nothing is run): the scenario check calls it for every link setting before a run
        starts (:func:`check_settings`), and the backend itself before applying a setting."""
        return []

    def require(self, params: DirectionParams, where: str) -> None:
        """Raise the ConfigError of the first fatal :meth:`check` problem (``where``: the link and
        direction, for the message)."""
        for problem in self.check(params):
            if problem.fatal:
                raise ConfigError(f"{where}.{problem.field}", getattr(params, problem.field),
                                  problem.message)

    def __init__(self, ctx: BackendContext, **options: Any) -> None:
        """Nothing may be created here (only in :meth:`start`); unknown ``options`` are a TypeError."""
        if options:
            raise TypeError(f"link backend {self.name!r} takes no option(s) {', '.join(sorted(options))}")
        self.ctx = ctx

    # --- life cycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None:
        """Create what every link shares (namespaces, processes), calibrate if ``ctx.calibrate``."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Remove everything :meth:`start` and the links created and drop it from the manifest;
        idempotent, also after a failed start."""

    def calibration(self) -> dict[str, Any]:
        """The backend's own latency: ``offset_ms`` (subtracted from every delay), ``floor_ms``
        (the smallest delay it can emulate; smaller ones warn), ``measured`` and how it was measured."""
        return {"offset_ms": 0.0, "floor_ms": 0.0, "measured": False}

    def failed(self) -> RunFailed | None:
        """A process or thread this backend keeps for the whole run that has died, as a RunFailed
        naming it and its log; None while everything runs. The runner polls it during a run."""
        return None

    def data_path_pids(self) -> list[int]:
        """Processes that carry packets (for CPU accounting); [] when the kernel does it."""
        return []

    # --- one link -------------------------------------------------------------------------------
    @abc.abstractmethod
    def make_intf_pair(self, name: str, end1: Endpoint, end2: Endpoint,
                       options: Mapping[str, Any]) -> BackendLink:
        """Create the link's interfaces (called from Mininet's Link constructor, in place of its
        veth pair): ``end1.intf`` in ``end1.node`` and ``end2.intf`` in ``end2.node``, with their
        MACs, and whatever the data path needs between them. ``options`` are the link's
        ``backend_options`` from ``addLink``. Returns the record passed to every later call."""

    def offloads(self, uplink: DirectionParams, downlink: DirectionParams, txo: bool) -> tuple[str, ...]:
        """``ethtool -K`` words the link class applies to both node-side interfaces before attach
        (default: those of a plain veth pair, :func:`veth_offloads`)."""
        return veth_offloads(uplink, downlink, txo)

    @abc.abstractmethod
    def attach(self, link: BackendLink, uplink: Setting, downlink: Setting) -> None:
        """Start emulating the link with these settings (its interfaces exist)."""

    @abc.abstractmethod
    def set(self, link: BackendLink, direction: str, setting: Setting) -> None:
        """Apply ``setting`` to one direction now, hitlessly (nothing queued lost, order kept);
        replaces any schedule running on that direction."""

    @abc.abstractmethod
    def schedule(self, link: BackendLink, direction: str, rows: Sequence[Setting],
                 t0_monotonic_s: float) -> None:
        """Replay ``rows`` (validated, ``t_s`` non-decreasing) on one direction, row ``i`` taking
        effect at ``t0_monotonic_s + rows[i].t_s`` on CLOCK_MONOTONIC; replaces any running schedule."""

    @abc.abstractmethod
    def stats(self, link: BackendLink) -> dict[str, dict[str, Any]]:
        """Counters per direction: ``{"uplink": {...}, "downlink": {...}}``."""

    @abc.abstractmethod
    def detach(self, link: BackendLink) -> None:
        """Stop emulating the link (it is being deleted; its node-side interfaces still exist)."""

    def metadata(self) -> dict[str, Any]:
        """The backend's own keys for a run's metadata (exactly ``metadata_keys``)."""
        return {}


def check_settings(backend: type[LinkBackend], settings: Iterable[tuple[str, DirectionParams]]) -> list[str]:
    """Check every ``(key path, params)`` against ``backend`` before anything is started.

    Raises the ConfigError of the first fatal problem (``path.field: got X; allowed: ...``);
    returns the warnings (``path.field: message``, each once) for the runner to print and store.
    """
    warnings: list[str] = []
    for path, params in settings:
        for problem in backend.check(params):
            if problem.fatal:
                raise ConfigError(f"{path}.{problem.field}", getattr(params, problem.field),
                                  problem.message)
            text = f"{path}.{problem.field}: {problem.message}"
            if text not in warnings:
                warnings.append(text)
    return warnings


def direction_params_in(obj: Any, path: str = "") -> list[tuple[str, DirectionParams]]:
    """Every DirectionParams inside a config object (dataclasses, tuples, lists, dicts), each with
    its key path (``cells[0].backhaul.uplink``). A field named ``link`` adds nothing to the path
    (the scenario writes ``[leo] link`` as ``leo.uplink`` / ``leo.downlink``)."""
    if isinstance(obj, DirectionParams):
        return [(path, obj)]
    out: list[tuple[str, DirectionParams]] = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            sub = path if f.name == "link" else f"{path}.{f.name}" if path else f.name
            out += direction_params_in(getattr(obj, f.name), sub)
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            out += direction_params_in(item, f"{path}[{i}]")
    elif isinstance(obj, Mapping):
        for key, item in obj.items():
            out += direction_params_in(item, f"{path}.{key}" if path else str(key))
    return out

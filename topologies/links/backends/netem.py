"""The netem backend: the kernel's netem qdisc on each node-side interface's egress.

A link is one veth pair (made the way Mininet makes it); the uplink is shaped by netem on
``end1.intf`` (node1's egress), the downlink on ``end2.intf``. netem is installed with
``tc qdisc replace`` and changed with ``tc qdisc change`` (never delete + add: queued packets stay).
Schedules go through one long-lived ``tc -batch`` per network namespace
(:class:`topologies.links.netem.TcBatch`), written at each row's time by one thread per direction.
Needs a kernel with sch_netem.

Same meaning as the relay (topologies/links/params.py), with these differences, which
:meth:`NetemBackend.check` reports: no byte queue limit (fatal); netem's own ``limit`` counts its
delay line too, so it is the bottleneck queue's packet limit plus the full-size frames in flight
(:func:`topologies.links.netem.netem_limit_pkts`): the same queue once a link has been busy for
longer than its delay, a longer one early in a burst; jitter is added before serialisation; the
pareto and normal tables stop at 4 sigma. Seeding: with ``ctx.seed``, every qdisc change carries a
seed derived from it (netem re-seeds at each change) where iproute2 and the kernel support it
(>= 6.6); otherwise metadata ``netem_seeding`` says "netem not seeded: <why>" and start() warns.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topologies.errors import RunFailed
from topologies.links.backend import (
    BackendContext,
    BackendLink,
    Endpoint,
    LinkBackend,
    Problem,
    Setting,
)
from topologies.links.commands import run_cmd
from topologies.links.direction import DIRECTIONS, DOWNLINK, UPLINK
from topologies.links.netem import (
    NETEM_MAX_TIME_NS,
    NETEM_TABLE_MIN_NS,
    NETEM_TABLE_SIGMAS,
    PARETO_JITTER_SCALE,
    TcBatch,
    netem_argv,
    netem_available,
    netem_batch_line,
    netem_seed,
    netem_seed_unsupported_reason,
    netem_stats,
    schedule_summary,
)
from topologies.links.params import DirectionParams

log = logging.getLogger(__name__)


@dataclass
class NetemLink(BackendLink):
    """A netem link: the uplink leaves through ``end1.intf``, the downlink through ``end2.intf``."""

    def egress(self, direction: str) -> tuple[str, int | None]:
        """(interface, pid of its network namespace or None) that shapes ``direction``."""
        end = self.end1 if direction == UPLINK else self.end2
        return end.intf, end.netns_pid


def netem_params(setting: Setting) -> DirectionParams:
    """The parameters netem gets: as configured, with the compensated delay."""
    p = setting.params
    return p if setting.delay_ms == p.delay_ms else dataclasses.replace(p, delay_ms=setting.delay_ms)


class NetemBackend(LinkBackend):
    """Links shaped by netem root qdiscs on both node-side interfaces (see the module docstring)."""

    auto_priority = 20          # preferred where the kernel has netem
    owns_qdisc = True           # switches must leave these ports' root qdiscs alone (switches.py)
    metadata_keys = ("netem_schedule", "netem_seeding")

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        # one long-lived `tc -batch` per network namespace (None = root namespace)
        self._batches: dict[int | None, TcBatch] = {}
        self._late_ms: dict[tuple[str, str], list[float]] = {}  # write time - row time, per direction
        self._threads: dict[tuple[str, str], tuple[threading.Thread, threading.Event, TcBatch]] = {}
        self._replay_errors: dict[tuple[str, str], str] = {}  # replayers that stopped early, why
        self._changes: dict[tuple[str, str], int] = {}  # qdisc changes so far per direction (seeds)
        self._seeding = "netem not seeded: the backend was not started"
        self._seeded = False

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if netem_available() else "this kernel has no sch_netem (tc qdisc netem fails)"

    @classmethod
    def check(cls, params: DirectionParams) -> list[Problem]:
        """netem has no byte limit (fatal); its limit, jitter order and pareto table differ (warnings)."""
        out = []
        if params.queue_limit_bytes is not None:
            out.append(Problem("queue_limit_bytes", "unset: backend netem cannot limit a queue in bytes "
                               "(its limit counts packets); use queue_limit_pkts, or link_backend = 'relay'"))
        if params.rate_mbps is not None and params.delay_ms + params.jitter_ms > 0:
            out.append(Problem("queue_limit_pkts", "backend netem: its limit also counts its delay line "
                               "(sized for a busy link of full-size frames), so the queue in front of the "
                               "rate is longer during the first delay_ms of a burst and shorter for small "
                               "frames; link_backend = 'relay' bounds the queue exactly", fatal=False))
        if params.rate_mbps is not None and params.jitter_ms > 0:
            out.append(Problem("jitter_ms", "backend netem adds jitter before serialisation, the relay "
                               "after: packets closer together than the jitter leave a serialisation time "
                               "apart on netem, back to back on the relay", fatal=False))
        if params.delay_ms * 1e6 > NETEM_MAX_TIME_NS:
            out.append(Problem("delay_ms", f"<= {NETEM_MAX_TIME_NS / 1e6:g} with backend netem (tc's "
                               "limit: 2^32 ticks of 1/15.625 us); use link_backend = 'relay'"))
        table_min_ms = NETEM_TABLE_MIN_NS / 1e6
        if params.jitter_distribution != "uniform" and 0 < params.jitter_ms < table_min_ms:
            out.append(Problem("jitter_ms", f"backend netem: a {params.jitter_distribution} table needs "
                               f"jitter >= {table_min_ms:g} ms; smaller jitter is uniform", fatal=False))
        elif (params.jitter_distribution != "uniform" and params.jitter_ms >= table_min_ms
              and params.delay_ms < table_min_ms):
            out.append(Problem("delay_ms", f"backend netem: a {params.jitter_distribution} table needs "
                               f"delay >= {table_min_ms:g} ms; it is raised to that", fatal=False))
        if params.jitter_ms > 0 and params.jitter_distribution == "pareto":
            out.append(Problem("jitter_distribution", "backend netem: its pareto table is cut at "
                               f"{NETEM_TABLE_SIGMAS * PARETO_JITTER_SCALE:.2f} x jitter_ms (about 1 % of "
                               "samples), the relay's tail is not", fatal=False))
        return out

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Nothing to create (each link's qdiscs are installed when it is attached); find out
        whether netem can be seeded here, and warn once if ``ctx.seed`` cannot reach it."""
        reason = "no seed given" if self.ctx.seed is None else netem_seed_unsupported_reason()
        self._seeded = reason is None
        self._seeding = ("seeded from site.seed, per qdisc change" if reason is None
                         else f"netem not seeded: {reason}")
        if reason is not None and self.ctx.seed is not None:
            log.warning("%s; loss and jitter on netem links differ from run to run", self._seeding)

    def stop(self) -> None:
        for key in list(self._threads):
            self._cancel(key)
        for ns_pid, batch in list(self._batches.items()):
            batch.close()
            self.ctx.manifest.discard("process", self._batch_name(ns_pid))
            del self._batches[ns_pid]

    def failed(self) -> RunFailed | None:
        for ns_pid, batch in list(self._batches.items()):
            if not batch.alive():
                name = self._batch_name(ns_pid)
                log_path = self.ctx.log_dir / f"{name}.log"
                return RunFailed(f"{name} (pid {batch.pid}, tc -batch replaying link schedules) exited "
                                 f"mid-run; see {log_path}", component=name, log_path=str(log_path))
        for (link, direction), why in list(self._replay_errors.items()):
            return RunFailed(f"schedule replayer of link {link} {direction} stopped: {why}",
                             component=f"schedule {link} {direction}")
        return None

    def metadata(self) -> dict[str, Any]:
        # schedule rows sent/applied/failed through the tc batch processes, and their timing
        return {"netem_schedule": schedule_summary(
            [c for b in self._batches.values() for c in b.snapshot().values()],
            [x for v in list(self._late_ms.values()) for x in v]),
            "netem_seeding": self._seeding}

    # --- one link -------------------------------------------------------------------------------
    def make_intf_pair(self, name: str, end1: Endpoint, end2: Endpoint,
                       options: Mapping[str, Any]) -> NetemLink:
        """One veth pair, made as Mininet makes it (``ip link add`` run in node1's shell)."""
        from mininet.util import makeIntfPair

        if options:
            raise ValueError(f"link {name!r}: the netem backend takes no backend_options; "
                             f"got {', '.join(sorted(options))}")
        makeIntfPair(end1.intf, end2.intf, end1.mac, end2.mac, end1.node, end2.node, deleteIntfs=False)
        return NetemLink(name, end1, end2)

    def attach(self, link: NetemLink, uplink: Setting, downlink: Setting) -> None:
        for direction, setting in ((UPLINK, uplink), (DOWNLINK, downlink)):
            self.require(setting.params, f"link {link.name} {direction}")
        for direction, setting in ((UPLINK, uplink), (DOWNLINK, downlink)):
            dev, pid = link.egress(direction)
            run_cmd(netem_argv(dev, netem_params(setting), "replace", netns_pid=pid,
                               seed=self._seed((link.name, direction))))

    def set(self, link: NetemLink, direction: str, setting: Setting) -> None:
        self.require(setting.params, f"link {link.name} {direction}")
        self._cancel((link.name, direction))
        dev, pid = link.egress(direction)
        run_cmd(netem_argv(dev, netem_params(setting), "change", netns_pid=pid,
                           seed=self._seed((link.name, direction))))

    def schedule(self, link: NetemLink, direction: str, rows: Sequence[Setting],
                 t0_monotonic_s: float) -> None:
        key = (link.name, direction)
        for r in rows:
            self.require(r.params, f"link {link.name} {direction} (schedule row at {r.t_s} s)")
        self._cancel(key)
        dev, pid = link.egress(direction)
        lines = [netem_batch_line(dev, netem_params(r), seed=self._seed(key)) for r in rows]
        batch = self._batch(pid)
        stop = threading.Event()
        thread = threading.Thread(target=self._replay, daemon=True,
                                  args=(key, dev, list(rows), lines, batch, t0_monotonic_s, stop))
        self._threads[key] = (thread, stop, batch)
        thread.start()

    def stats(self, link: NetemLink) -> dict[str, dict[str, Any]]:
        counters = {k: c for b in self._batches.values() for k, c in b.snapshot().items()}
        out = {}
        for direction in DIRECTIONS:
            key = (link.name, direction)
            out[direction] = {**netem_stats(*link.egress(direction)),
                              "schedule": schedule_summary([counters[key]] if key in counters else [],
                                                           list(self._late_ms.get(key, [])))}
        return out

    def detach(self, link: NetemLink) -> None:
        for direction in DIRECTIONS:
            self._cancel((link.name, direction))

    # --- schedules ------------------------------------------------------------------------------
    def _seed(self, key: tuple[str, str]) -> int | None:
        """netem's seed for the next change of one direction (netem re-seeds at every change, so
        each gets its own, derived from the run's seed); None when netem is not seeded."""
        if not self._seeded or self.ctx.seed is None:
            return None
        n = self._changes[key] = self._changes.get(key, -1) + 1
        return netem_seed(self.ctx.seed, *key, n)

    def _cancel(self, key: tuple[str, str]) -> None:
        entry = self._threads.pop(key, None)
        if entry:
            thread, stop, batch = entry
            stop.set()
            thread.join(timeout=2)
            batch.drain(timeout_s=2.0)  # what was written must reach the kernel before a later change

    def _batch_name(self, ns_pid: int | None) -> str:
        return f"tc-batch-{self.ctx.tag}-{'root' if ns_pid is None else ns_pid}"

    def _batch(self, ns_pid: int | None) -> TcBatch:
        """The tc batch process of one network namespace, started (and recorded) on first use."""
        batch, name = self._batches.get(ns_pid), self._batch_name(ns_pid)
        counters = {}
        if batch is not None and not batch.alive():
            log.error("tc batch %s (pid %d) had exited; starting a new one", name, batch.pid)
            batch.close()
            self.ctx.manifest.discard("process", name)
            counters, batch = batch.counters, None
        if batch is None:
            batch = TcBatch(ns_pid, self.ctx.log_dir / f"{name}.log")
            self.ctx.manifest.add_process(name, batch.pid)
            batch.counters.update(counters)  # keep what the exited one counted
            self._batches[ns_pid] = batch
        return batch

    def _replay(self, key: tuple[str, str], dev: str, rows: list[Setting], lines: list[str],
                batch: TcBatch, t0: float, stop: threading.Event) -> None:
        """Write each precomputed line to tc at its row's time; errors are reported by the batch.

        A replayer that cannot go on records why in ``_replay_errors`` (see :meth:`failed`)."""
        late = self._late_ms.setdefault(key, [])
        try:
            for row, line in zip(rows, lines, strict=True):
                due = t0 + row.t_s
                wait = due - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                try:
                    t_write = batch.send(key, f"schedule row at {row.t_s:.3f} s", line, dev)
                except OSError as exc:
                    log.error("link %s %s: schedule row at %.3f s not sent, tc batch (pid %d) is gone: %s",
                              *key, row.t_s, batch.pid, exc)
                    self._replay_errors[key] = (f"row at {row.t_s:.3f} s not sent, tc batch "
                                                f"(pid {batch.pid}) is gone: {exc}")
                    return
                late.append((t_write - due) * 1000)
        except Exception as exc:  # a replayer must never end silently
            self._replay_errors[key] = repr(exc)
            raise

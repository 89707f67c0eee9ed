"""LinkEngine: owns the relay namespace and process (or drives netem) for every link of a run."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies.links.netem import TcBatch, netem_argv, netem_available, netem_batch_line, schedule_summary
from topologies.links.params import DirectionParams, ScheduleRow, check_schedule
from topologies.links.relayproc import REPO_ROOT, RelayProcess, compiler_version, wire_params
from topologies.manifest import Manifest

log = logging.getLogger(__name__)
BACKENDS = ("auto", "relay", "netem")
DIRECTIONS = ("ab", "ba")


def select_backend(requested: str) -> str:
    """Resolve ``auto``/``relay``/``netem`` to the backend to use on this machine."""
    if requested not in BACKENDS:
        raise ValueError(f"link_backend: got {requested!r}; allowed: " + ", ".join(map(repr, BACKENDS)))
    if requested == "auto":
        return "netem" if netem_available() else "relay"
    if requested == "netem" and not netem_available():
        raise ValueError("link_backend: 'netem' was requested but this kernel has no sch_netem "
                         "(tc qdisc netem fails); use 'relay' or 'auto'")
    return requested


@dataclass
class _LinkState:
    name: str
    link: Any                                   # the Mininet link object
    relayed: bool
    link_id: int | None = None                  # relay link id
    params: dict[str, DirectionParams] = field(default_factory=dict)
    devs: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # netem: dir -> (dev, pid)
    threads: dict[str, tuple[threading.Thread, threading.Event]] = field(default_factory=dict)
    hop_ms: dict[str, float] = field(default_factory=dict)  # switch latency charged to a direction


class LinkEngine:
    """Per-direction link emulation for one run (see the package docstring for semantics)."""

    CALIBRATION_PROBES = 300
    CALIBRATION_DELAY_MS = 2.0

    def __init__(self, backend: str, tag: str, manifest: Manifest, log_dir: Path,
                 seed: int | None = None, calibrate: bool = True, relay_impl: str | None = None) -> None:
        self.backend = select_backend(backend)
        self.tag = tag
        self.manifest = manifest
        self.log_dir = Path(log_dir)
        self.seed = seed
        self.netns = f"fs{tag}rly"
        self.relay: RelayProcess | None = None
        self.calibration: dict[str, Any] = {"offset_ms": 0.0, "floor_ms": 0.0, "measured": False}
        self._calibrate = calibrate
        # "c" (default; falls back to python without a compiler) or "python"; env overrides for CI
        self.relay_impl = relay_impl or os.environ.get("FACTORYSAT_RELAY_IMPL", "c")
        if self.relay_impl not in ("c", "python"):
            raise ValueError(f"relay_impl: got {self.relay_impl!r}; allowed: 'c', 'python'")
        self._links: dict[str, _LinkState] = {}
        # netem schedules: one long-lived `tc -batch` per network namespace (None = root namespace)
        self._batches: dict[int | None, TcBatch] = {}
        self._late_ms: dict[tuple[str, str], list[float]] = {}  # write time - row time, per direction
        # One-way latency of one switch on this machine (measured by the runner, see
        # ovs_calibrate). A direction that enters a switch has it subtracted from its delay, so
        # the end-to-end delay of a path matches the sum of the configured link delays.
        self.switch_hop_ms = 0.0
        self.shortfall_ms: dict[str, dict[str, float]] = {}  # link -> direction -> worst uncompensated
        self._next_id = 1
        self._lock = threading.Lock()
        self._started = False
        from topologies.links.mnlink import make_link_class
        self._link_class = make_link_class(self)

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Create the relay namespace and start the one relay process (relay backend)."""
        if self._started:
            return
        self._started = True
        if self.backend != "relay":
            return
        self.manifest.add("netns", self.netns)
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.relay = RelayProcess(self.netns, self.log_dir / f"relay-{self.tag}.log",
                                  prefer_c=self.relay_impl == "c")
        self.manifest.add_process(f"relay-{self.tag}", self.relay.pid)
        if self.seed is not None:
            self.relay.command(f"seed {self.seed}")
        if self._calibrate:
            self._run_calibration()

    def stop(self) -> None:
        """Stop schedules, the relay process (by pid) and delete the relay namespace. Idempotent."""
        for state in list(self._links.values()):
            for direction in DIRECTIONS:
                self._cancel_thread(state, direction)
        for ns_pid, batch in list(self._batches.items()):
            batch.close()
            self.manifest.discard("process", self._batch_name(ns_pid))
            del self._batches[ns_pid]
        if self.relay is not None:
            self.relay.stop()
            self.manifest.discard("process", f"relay-{self.tag}")
            self.relay = None
        if any(e["kind"] == "netns" and e["name"] == self.netns for e in self.manifest.entries):
            subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
            self.manifest.discard("netns", self.netns)
            for state in self._links.values():
                for entry in getattr(state.link, "_root_links", []):
                    self.manifest.discard("link", entry)
        self._started = False

    @property
    def link_class(self) -> type:
        """A Mininet Link subclass bound to this engine (see mnlink.make_link_class)."""
        return self._link_class

    # --- live control ----------------------------------------------------------------------
    def set_params(self, link_name: str, direction: str, params: DirectionParams) -> None:
        """Change one direction now; hitless (nothing queued is lost, order kept). Cancels a schedule."""
        state = self._state(link_name, direction)
        if not isinstance(params, DirectionParams):
            raise TypeError("params must be a DirectionParams")
        self._cancel_thread(state, direction)
        self._warn_floor(link_name, direction, params.delay_ms)
        self._note_compensation(state, direction, params.delay_ms)
        state.params[direction] = params
        if state.relayed:
            d = DIRECTIONS.index(direction)
            self.relay.command(f"set {state.link_id} {d} "
                               f"{wire_params(params, self._offset(state, direction))}")
        else:
            self._netem_apply(state, direction, params, "change")

    def set_schedule(self, link_name: str, direction: str, rows: Sequence[ScheduleRow],
                     t0_monotonic_s: float) -> None:
        """Replay ``rows`` (t_s relative to ``t0_monotonic_s`` on CLOCK_MONOTONIC) on one direction."""
        rows = list(rows)
        check_schedule(rows)
        state = self._state(link_name, direction)
        self._cancel_thread(state, direction)
        base = state.params[direction]
        full = [base.with_row(r) for r in rows]
        for p in full:
            self._warn_floor(link_name, direction, p.delay_ms)
            self._note_compensation(state, direction, p.delay_ms)
        if state.relayed:
            d = DIRECTIONS.index(direction)
            offset = self._offset(state, direction)
            lines = [f"{round((t0_monotonic_s + r.t_s) * 1e9)} {wire_params(p, offset)}"
                     for r, p in zip(rows, full, strict=True)]
            self.relay.command(f"sched {state.link_id} {d} {len(lines)}", lines)
            state.params[direction] = full[-1]
            return
        dev, pid = state.devs[direction]
        lines = [netem_batch_line(dev, self._netem_params(state, direction, p)) for p in full]
        batch = self._batch(pid)
        stop = threading.Event()
        thread = threading.Thread(target=self._netem_schedule, daemon=True,
                                  args=(state, direction, rows, full, lines, batch, t0_monotonic_s, stop))
        state.threads[direction] = (thread, stop)
        thread.start()

    def stats(self, link_name: str) -> dict:
        """Per-direction counters: rx, tx, dropped_loss, dropped_queue, dropped_down (+ more)."""
        state = self._state(link_name, "ab")
        if state.relayed:
            return self.relay.stats(state.link_id)
        counters = {k: c for b in self._batches.values() for k, c in b.snapshot().items()}
        return {d: {**self._netem_stats(*state.devs[d]),
                    "schedule": schedule_summary([counters[k]] if (k := (link_name, d)) in counters else [],
                                                 list(self._late_ms.get(k, [])))}
                for d in DIRECTIONS if d in state.devs}

    def metadata(self) -> dict:
        """Backend, relay implementation, calibration and versions, for a run's metadata.json."""
        ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()
        return {
            "backend": self.backend,
            "relay_implementation": self.relay.implementation if self.relay else None,
            "calibration": dict(self.calibration),
            "seed": self.seed,
            "links": len(self._links),
            "switch_hop_ms_compensated": self.switch_hop_ms,
            # link -> direction -> worst part of the charged switch latency a delay could not absorb
            "switch_hop_shortfall_ms": {k: dict(v) for k, v in self.shortfall_ms.items() if any(v.values())},
            # netem schedules: rows sent/applied/failed through the tc batch processes, and timing
            "netem_schedule": schedule_summary(
                [c for b in self._batches.values() for c in b.snapshot().values()],
                [x for v in list(self._late_ms.values()) for x in v]) if self.backend == "netem" else None,
            "versions": {"kernel": platform.release(), "compiler": compiler_version(),
                         "iproute2": ip_version, "python": sys.version.split()[0]},
        }

    # --- internals used by the Mininet link class --------------------------------------------
    def _register(self, name: str, link: Any, relayed: bool) -> _LinkState:
        with self._lock:
            if name in self._links:
                raise ValueError(f"link_name {name!r} is already used in this engine")
            state = _LinkState(name=name, link=link, relayed=relayed)
            if relayed:
                if self.relay is None:
                    raise RuntimeError("LinkEngine.start() must be called before building relay links")
                state.link_id = self._next_id
                self._next_id += 1
            self._links[name] = state
            return state

    def _attach_relay(self, state: _LinkState, end_a: str, end_b: str, ab: DirectionParams,
                      ba: DirectionParams) -> None:
        self.relay.command(f"add {state.link_id} {end_a} {end_b}")
        state.params = {"ab": ab, "ba": ba}
        for d, p in enumerate((ab, ba)):
            self._warn_floor(state.name, DIRECTIONS[d], p.delay_ms)
            self._note_compensation(state, DIRECTIONS[d], p.delay_ms)
            self.relay.command(f"set {state.link_id} {d} "
                               f"{wire_params(p, self._offset(state, DIRECTIONS[d]))}")

    def _attach_netem(self, state: _LinkState, devs: dict[str, tuple[str, int | None]],
                      ab: DirectionParams, ba: DirectionParams) -> None:
        state.devs = devs
        state.params = {"ab": ab, "ba": ba}
        for direction, p in (("ab", ab), ("ba", ba)):
            self._note_compensation(state, direction, p.delay_ms)
            self._netem_apply(state, direction, p, "replace")

    def _detach(self, name: str) -> None:
        state = self._links.pop(name, None)
        if state is None:
            return
        for direction in DIRECTIONS:
            self._cancel_thread(state, direction)
        if state.relayed and self.relay is not None and self.relay.alive():
            self.relay.command(f"del {state.link_id}")

    def _state(self, link_name: str, direction: str) -> _LinkState:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: got {direction!r}; allowed: 'ab', 'ba'")
        state = self._links.get(link_name)
        if state is None:
            raise KeyError(f"no link named {link_name!r}; known: {', '.join(sorted(self._links))}")
        if not state.relayed and not state.devs:
            raise ValueError(f"link {link_name!r} was built transparent (a plain veth pair) on the relay "
                             "backend; build it with dynamic=True to change it at run time")
        return state

    def _offset(self, state: _LinkState | None = None, direction: str | None = None) -> float:
        """Delay to subtract: the relay's own latency plus the switch hop charged to ``direction``."""
        hop = state.hop_ms.get(direction, 0.0) if state is not None and direction else 0.0
        return float(self.calibration["offset_ms"]) + hop

    def _note_compensation(self, state: _LinkState, direction: str, delay_ms: float) -> None:
        """Record how much of the charged switch latency a delay could not absorb."""
        hop = state.hop_ms.get(direction, 0.0)
        if hop <= 0 or delay_ms <= 0:
            return
        short = max(0.0, hop + float(self.calibration["offset_ms"]) - delay_ms)
        worst = self.shortfall_ms.setdefault(state.name, {})
        worst[direction] = round(max(worst.get(direction, 0.0), short), 4)

    def _warn_floor(self, name: str, direction: str, delay_ms: float) -> None:
        floor = float(self.calibration.get("floor_ms", 0.0))
        if 0 < delay_ms < floor:
            log.warning("link %s %s: delay_ms %.3f is below what this machine can emulate "
                        "(relay per-hop latency %.3f ms); it will measure about %.3f ms",
                        name, direction, delay_ms, floor, floor)

    def _cancel_thread(self, state: _LinkState, direction: str) -> None:
        entry = state.threads.pop(direction, None)
        if entry:
            entry[1].set()
            entry[0].join(timeout=2)
            batch = self._batches.get(state.devs[direction][1]) if state.devs else None
            if batch is not None:  # what was written must reach the kernel before a later change
                batch.drain(timeout_s=2.0)

    # --- netem ---------------------------------------------------------------------------------
    @staticmethod
    def _netem_params(state: _LinkState, direction: str, p: DirectionParams) -> DirectionParams:
        """``p`` with the switch hop charged to ``direction`` taken off its delay."""
        hop = state.hop_ms.get(direction, 0.0)
        if hop and p.delay_ms > 0:
            p = dataclasses.replace(p, delay_ms=max(0.0, p.delay_ms - hop))
        return p

    def _netem_apply(self, state: _LinkState, direction: str, p: DirectionParams, verb: str) -> None:
        dev, pid = state.devs[direction]
        _run(netem_argv(dev, self._netem_params(state, direction, p), verb, netns_pid=pid))

    def _batch_name(self, ns_pid: int | None) -> str:
        return f"tc-batch-{self.tag}-{'root' if ns_pid is None else ns_pid}"

    def _batch(self, ns_pid: int | None) -> TcBatch:
        """The tc batch process of one network namespace, started (and recorded) on first use."""
        batch, name = self._batches.get(ns_pid), self._batch_name(ns_pid)
        counters = {}
        if batch is not None and not batch.alive():
            log.error("tc batch %s (pid %d) had exited; starting a new one", name, batch.pid)
            batch.close()
            self.manifest.discard("process", name)
            counters, batch = batch.counters, None
        if batch is None:
            batch = TcBatch(ns_pid, self.log_dir / f"{name}.log")
            self.manifest.add_process(name, batch.pid)
            batch.counters.update(counters)  # keep what the exited one counted
            self._batches[ns_pid] = batch
        return batch

    def _netem_schedule(self, state: _LinkState, direction: str, rows: list[ScheduleRow],
                        full: list[DirectionParams], lines: list[str], batch: TcBatch, t0: float,
                        stop: threading.Event) -> None:
        """Write each precomputed line to tc at its row's time; errors are reported by the batch."""
        key, dev = (state.name, direction), state.devs[direction][0]
        late = self._late_ms.setdefault(key, [])
        for row, p, line in zip(rows, full, lines, strict=True):
            due = t0 + row.t_s
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            try:
                t_write = batch.send(key, f"schedule row at {row.t_s:.3f} s", line, dev)
            except OSError as exc:
                log.error("link %s %s: schedule row at %.3f s not sent, tc batch (pid %d) is gone: %s",
                          state.name, direction, row.t_s, batch.pid, exc)
                return
            late.append((t_write - due) * 1000)
            state.params[direction] = p

    @staticmethod
    def _netem_stats(dev: str, pid: int | None) -> dict:
        argv = ["tc", "-s", "-j", "qdisc", "show", "dev", dev]
        if pid is not None:
            argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        q = next((q for q in json.loads(out or "[]") if q.get("kind") == "netem"), {})
        return {"tx": q.get("packets", 0), "dropped": q.get("drops", 0), "tx_bytes": q.get("bytes", 0)}

    # --- calibration ---------------------------------------------------------------------------
    def _run_calibration(self) -> None:
        """Measure the relay's per-hop latency through a scratch link inside the relay netns."""
        ns, cal_id = self.netns, 0
        _run(["ip", "-n", ns, "-batch", "-"], stdin=(
            "link add fscal0a type veth peer name fscal0r\nlink add fscal1b type veth peer name fscal1r\n"
            "link set fscal0a up\nlink set fscal1b up\n"))
        try:
            self.relay.command(f"add {cal_id} fscal0r fscal1r")
            result: dict[str, Any] = {}
            for key, delay in (("zero", 0.0), ("timed", self.CALIBRATION_DELAY_MS)):
                self.relay.command(f"set {cal_id} 0 {wire_params(DirectionParams(delay_ms=delay))}")
                out = _run(["ip", "netns", "exec", ns, sys.executable, "-m", "topologies.links.calibrate",
                            "fscal0a", "fscal1b", str(self.CALIBRATION_PROBES), "0.001"], cwd=REPO_ROOT)
                samples = [x - delay for x in json.loads(out)]
                if len(samples) < self.CALIBRATION_PROBES // 2:
                    raise RuntimeError(f"calibration lost probes ({len(samples)} received)")
                result[key] = samples
            self.relay.command(f"del {cal_id}")
        finally:
            subprocess.run(["ip", "-n", ns, "link", "delete", "fscal0a"], capture_output=True)
            subprocess.run(["ip", "-n", ns, "link", "delete", "fscal1b"], capture_output=True)
        zero, timed = sorted(result["zero"]), sorted(result["timed"])
        self.calibration = {
            "measured": True,
            "method": f"{self.CALIBRATION_PROBES} raw frames at 1 kHz through a scratch relay link "
                      "(sender CLOCK_REALTIME to receiver kernel timestamp), at 0 and "
                      f"{self.CALIBRATION_DELAY_MS} ms configured",
            "offset_ms": round(statistics.mean(timed), 4),       # subtracted from every delay
            "floor_ms": round(zero[len(zero) // 2], 4),            # median latency at 0 ms configured
            "zero_delay_p99_ms": round(zero[int(len(zero) * 0.99)], 4),
            "timed_err_p50_ms": round(timed[len(timed) // 2], 4),
            "timed_err_p99_ms": round(timed[int(len(timed) * 0.99)], 4),
        }
        log.info("relay calibration: %s", self.calibration)


def _run(argv: list[str], stdin: str | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout

"""Calibration of the Open vSwitch datapath's own per-hop latency on this machine.

The relay's own latency is folded into every relayed link by the link engine; what is left of the
emulator's overhead is the switches: with the userspace datapath every packet crosses
``ovs-vswitchd`` (DESIGN.md: ~0.25 ms RTT per switch). :func:`measure_switch_hop_ms` measures that
one-way cost on a scratch bridge; the link engine charges it to every link direction that enters a
switch and takes it off the configured delay (:func:`topologies.links.compensation.compensate`), so
the one-way delay measured end to end matches what the scenario says.

Method: two scratch namespaces A and B are joined twice — through a scratch OVS bridge (one veth
pair per namespace, fail-mode standalone, one NORMAL flow, no controller) and by one direct veth
pair (the reference). The project's UDP probe (:mod:`topologies.links.udpprobe`, its C twin when a
compiler exists) sends paced packets at ~1 kHz from A to B over each path in turn; the one-way delay
is the sender's CLOCK_REALTIME to the receiver's kernel timestamp. The switch hop is the bridge
path minus the direct path: p50 - p50, mean - mean, and (stated as such) p99 of the bridge path
minus p50 of the direct path.

A run keeps the scratch bridge (:class:`SwitchHopMeter`) and probes its bridge path again at
200 Hz while its traffic flows: the same daemon (with the userspace datapath, the same polling
thread) under the run's load, which the run's fidelity estimate uses instead of the idle figure.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topologies.links.commands import run_cmd
from topologies.links.udpprobe import owd_ms, probe_argv
from topologies.manifest import Manifest
from topologies.paths import REPO_ROOT
from topologies.runobjects import OVS_TIMEOUT_S, ovs_tag_opts
from topologies.switches import select_datapath

PROBE_INTERVAL_S = 0.001      # ~1 kHz, the rate the relay calibration uses too
WARMUP_PACKETS = 20           # first packets per path carry ARP-free but upcall/cache warm-up costs
LOAD_PROBE_HZ = 200           # during a run: a probe every 5 ms (negligible load next to the run's)
PROBE_SIZE_B = 100
RECV_GRACE_S = 0.02           # after the last send: >> any one-way delay measured here (< 1 ms)
MAX_IFNAME = 15               # IFNAMSIZ - 1
_PORTS = {"bridge": 47201, "direct": 47202}
# Addresses live only inside the two scratch namespaces (never routed anywhere else).
_ADDR = {"bridge": ("10.255.0.1", "10.255.0.2"), "direct": ("10.255.1.1", "10.255.1.2")}


def object_names(tag: str) -> dict[str, str]:
    """Names of the scratch objects for run ``tag`` (all carry ``fs<tag>hop``)."""
    base = f"fs{tag}hop"
    names = {
        "ns_a": f"{base}A", "ns_b": f"{base}B", "bridge": f"{base}br",
        "br_a_root": f"{base}1r", "br_a_host": f"{base}1h",     # pair A <-> bridge
        "br_b_root": f"{base}2r", "br_b_host": f"{base}2h",     # pair B <-> bridge
        "direct_a": f"{base}da", "direct_b": f"{base}db",       # reference pair A <-> B
    }
    too_long = [n for k, n in names.items() if not k.startswith("ns_") and len(n) > MAX_IFNAME]
    if too_long or not tag.isalnum():
        raise ValueError(f"tag {tag!r} must be alphanumeric and short enough that interface names "
                         f"stay <= {MAX_IFNAME} characters (at most {MAX_IFNAME - len('fshop1r')})")
    return names


def summarize(bridge_ms: np.ndarray, direct_ms: np.ndarray) -> dict[str, float]:
    """Switch-hop statistics from one-way delays over the bridge path and over the direct path."""
    b, d = np.asarray(bridge_ms, dtype=float), np.asarray(direct_ms, dtype=float)
    if b.size == 0 or d.size == 0:
        raise ValueError("summarize needs samples on both paths")
    b50, d50 = float(np.percentile(b, 50)), float(np.percentile(d, 50))
    return {
        "switch_hop_ms_p50": round(b50 - d50, 4),
        "switch_hop_ms_mean": round(float(b.mean() - d.mean()), 4),
        "switch_hop_ms_p99": round(float(np.percentile(b, 99)) - d50, 4),  # bridge p99 - direct p50
        "direct_ms_p50": round(d50, 4),
        "direct_ms_p99": round(float(np.percentile(d, 99)), 4),
        "bridge_ms_p50": round(b50, 4),
        "bridge_ms_p99": round(float(np.percentile(b, 99)), 4),
    }


def hop_to_compensate_ms(stats: Mapping[str, Any]) -> float:
    """The per-switch latency the link engine takes off: the measured p50, but never below 0 (0
    without a calibration).

    A switch cannot make a path faster; a negative p50 (bridge path below the direct path) is
    measurement noise, seen in slow emulated guests. The raw figure stays in the run's metadata.
    """
    return max(0.0, float(stats.get("switch_hop_ms_p50") or 0.0))


def measure_switch_hop_ms(datapath: str, tag: str, manifest: Manifest, log_dir: Path,
                          probes: int = 300) -> dict[str, Any]:
    """Measure the one-way latency one OVS bridge adds on this machine (see the module docstring).

    ``datapath``: ``user`` (netdev), ``kernel`` (system) or ``auto``. Every namespace, bridge and
    root-namespace link is recorded in ``manifest`` before it is created, and everything is removed
    (and its entry dropped) before returning, also on error or Ctrl-C. Probe stderr goes to
    ``log_dir/ovs_calibrate-<tag>.log`` (removed when empty). Returns the statistics of
    :func:`summarize` plus ``datapath``, ``probes``, ``received`` (per path), ``probe_tool``
    (``c`` or ``python``), ``run_time_s`` and ``method``.
    """
    meter = SwitchHopMeter(datapath, tag, manifest, log_dir)
    try:
        return meter.calibrate(probes)
    finally:
        meter.close()


class SwitchHopMeter:
    """The calibration's scratch bridge, kept for a run: :meth:`calibrate` at start-up (idle), then
    :meth:`start_under_load` / :meth:`stop_under_load` probe the same bridge path while the run's
    traffic flows. The scratch bridge lives in the same ``ovs-vswitchd`` as the run's bridges (and,
    with the userspace datapath, is polled by the same thread), so its hop under the run's load is
    the run's. :meth:`close` removes everything (also recorded in the manifest for ``clean``)."""

    def __init__(self, datapath: str, tag: str, manifest: Manifest, log_dir: Path) -> None:
        self.datapath = select_datapath(datapath)
        self.tag, self.manifest = tag, manifest
        self.names = object_names(tag)
        self.log_dir = Path(log_dir)
        self.created: list[tuple[str, str]] = []      # (kind, name) in creation order
        self.idle: dict[str, Any] | None = None
        self._load: tuple[_Probe, float] | None = None  # the probe running under load, its wait

    def calibrate(self, probes: int = 300) -> dict[str, Any]:
        """Build the scratch objects (once) and measure both paths, idle: see measure_switch_hop_ms."""
        t0 = time.monotonic()
        if probes < 10:
            raise ValueError(f"probes must be >= 10; got {probes}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.created:
            _build(self.datapath, self.names, self.manifest, self.created)
        samples = {path: _probe_path(path, self.names, self.log_dir, self.tag, probes, self.manifest)
                   for path in _PORTS}
        for path, values in samples.items():
            if values.size < probes // 2:
                raise RuntimeError(f"OVS calibration: only {values.size} of {probes} probes arrived "
                                   f"over the {path} path")
        result: dict[str, Any] = {"datapath": self.datapath, "probes": probes}
        result.update(summarize(samples["bridge"], samples["direct"]))
        result["received"] = {path: int(v.size) for path, v in samples.items()}
        result["probe_tool"] = "python" if probe_argv(fast=True)[0] == sys.executable else "c"
        result["method"] = (
            f"{probes} UDP probes ({PROBE_SIZE_B} B, after {WARMUP_PACKETS} warm-up) at "
            f"{1 / PROBE_INTERVAL_S:.0f} Hz between two scratch namespaces, through one "
            f"{'netdev' if self.datapath == 'user' else 'system'} OVS bridge (NORMAL flow) and over a "
            "direct veth pair, one path after the other; one-way delay = sender CLOCK_REALTIME to "
            "receiver kernel timestamp; switch_hop = bridge minus direct (p50 - p50, mean - mean; "
            "switch_hop_ms_p99 = bridge p99 - direct p50)")
        result["run_time_s"] = round(time.monotonic() - t0, 3)
        self.idle = result
        return result

    def start_under_load(self, duration_s: float) -> None:
        """Probe the bridge path at LOAD_PROBE_HZ for ``duration_s`` (after :meth:`calibrate`)."""
        if self.idle is None:
            raise RuntimeError("calibrate() first: the load probe needs the scratch bridge and the "
                               "idle direct path")
        count = WARMUP_PACKETS + max(1, int(duration_s * LOAD_PROBE_HZ))
        probe = _start_probe("bridge", self.names, self.log_dir, self.tag, count, 1 / LOAD_PROBE_HZ,
                             self.manifest)
        self._load = (probe, count / LOAD_PROBE_HZ + 10)

    def stop_under_load(self) -> dict[str, Any] | None:
        """The switch hop under the run's load (None if no load probe ran): ``switch_hop_ms_p50|p99|
        p999`` = bridge path quantile minus the idle direct path's p50, ``probes`` received."""
        if self._load is None or self.idle is None:
            return None
        probe, wait_s = self._load
        self._load = None
        bridge = _finish_probe(probe, self.manifest, wait_s)
        if bridge.size == 0:
            return {"probes": 0, "switch_hop_ms_p50": None, "switch_hop_ms_p99": None,
                    "switch_hop_ms_p999": None}
        direct = float(self.idle["direct_ms_p50"])
        return {"probes": int(bridge.size), "rate_hz": LOAD_PROBE_HZ,
                **{f"switch_hop_ms_{k}": round(float(np.percentile(bridge, q)) - direct, 4)
                   for k, q in (("p50", 50), ("p99", 99), ("p999", 99.9))}}

    def close(self) -> None:
        """Stop a load probe still running and remove every scratch object. Idempotent."""
        if self._load is not None:
            probe, self._load = self._load[0], None
            _finish_probe(probe, self.manifest, 0.0)
        problems = _teardown(self.manifest, self.created)
        self.created = []
        if problems:
            raise RuntimeError("OVS calibration could not remove: " + "; ".join(problems))


# --- set-up and tear-down ----------------------------------------------------------------------
def _build(datapath: str, n: dict[str, str], manifest: Manifest, created: list[tuple[str, str]]) -> None:
    for ns in (n["ns_a"], n["ns_b"]):
        _record(manifest, created, "netns", ns)
        run_cmd(["ip", "netns", "add", ns])
        run_cmd(["ip", "-n", ns, "link", "set", "dev", "lo", "alias", manifest.alias])  # this run's
    pairs = [(n["br_a_root"], n["br_a_host"]), (n["br_b_root"], n["br_b_host"]),
             (n["direct_a"], n["direct_b"])]
    macs = {name: _mac(i) for i, name in enumerate(x for pair in pairs for x in pair)}
    for pair in pairs:                       # created in the root namespace: recorded as links
        for name in pair:
            _record(manifest, created, "link", name)
    # each link is tagged as this run's (its alias) in the same ip batch that creates it
    run_cmd(["ip", "-batch", "-"], stdin="".join(
        f"link add {a} address {macs[a]} type veth peer name {b} address {macs[b]}\n"
        f"link set dev {a} alias {manifest.alias}\nlink set dev {b} alias {manifest.alias}\n"
        for a, b in pairs))
    # TX checksum offload off on every end: required by the userspace datapath (DESIGN.md); the
    # direct pair gets the same so both paths differ only by the bridge.
    for name in macs:
        run_cmd(["ethtool", "-K", name, "tx", "off"])
    run_cmd(["ip", "-batch", "-"], stdin=(
        f"link set {n['br_a_host']} netns {n['ns_a']}\nlink set {n['direct_a']} netns {n['ns_a']}\n"
        f"link set {n['br_b_host']} netns {n['ns_b']}\nlink set {n['direct_b']} netns {n['ns_b']}\n"
        f"link set {n['br_a_root']} up\nlink set {n['br_b_root']} up\n"))
    for ns, side, peer in ((n["ns_a"], 0, 1), (n["ns_b"], 1, 0)):
        lines = ["link set lo up"]
        for path, (here, there) in (("bridge", (n["br_a_host"], n["br_b_host"])),
                                    ("direct", (n["direct_a"], n["direct_b"]))):
            dev, other = (here, there) if side == 0 else (there, here)
            lines += [f"addr add {_ADDR[path][side]}/24 dev {dev}", f"link set {dev} up",
                      f"neigh replace {_ADDR[path][peer]} lladdr {macs[other]} dev {dev} nud permanent"]
        run_cmd(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")
    _record(manifest, created, "ovs_bridge", n["bridge"])
    run_cmd(["ovs-vsctl", f"--timeout={OVS_TIMEOUT_S}", "add-br", n["bridge"],
          "--", "set", "bridge", n["bridge"], f"datapath_type={'netdev' if datapath == 'user' else 'system'}",
          "fail-mode=standalone", ovs_tag_opts(manifest.run_id),   # tagged in the add-br transaction
          "--", "add-port", n["bridge"], n["br_a_root"], "--", "add-port", n["bridge"], n["br_b_root"]])
    run_cmd(["ovs-ofctl", f"--timeout={OVS_TIMEOUT_S}", "del-flows", n["bridge"]])
    run_cmd(["ovs-ofctl", f"--timeout={OVS_TIMEOUT_S}", "add-flow", n["bridge"], "priority=0,actions=NORMAL"])


def _teardown(manifest: Manifest, created: list[tuple[str, str]]) -> list[str]:
    """Remove what ``created`` lists (bridge, then namespaces, then links); drop the entries."""
    order = {"process": 0, "ovs_bridge": 1, "netns": 2, "link": 3}
    problems = []
    for kind, name in sorted(created, key=lambda c: order[c[0]]):
        problem = manifest.remove(kind, name)  # only if it carries this run's tag; keeps going
        if problem:
            problems.append(problem)
    return problems


def _record(manifest: Manifest, created: list[tuple[str, str]], kind: str, name: str) -> None:
    if any(e["kind"] == kind and e["name"] == name for e in manifest.entries):
        raise RuntimeError(f"{kind} {name} is already in the run manifest: calibration already running?")
    manifest.add(kind, name)
    created.append((kind, name))


def _mac(index: int) -> str:
    """A locally administered unicast MAC, random per run (scratch links only)."""
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4)) + f":{index:02x}"


# --- probing -----------------------------------------------------------------------------------
@dataclass
class _Probe:
    """A running probe pair over one path (receiver in B, sender in A) and where its rows go."""

    procs: list[tuple[str, subprocess.Popen]]
    out: Path
    errlog_path: Path
    errlog: Any
    send: subprocess.Popen | None = None


def _start_probe(path: str, n: dict[str, str], log_dir: Path, tag: str, count: int, interval_s: float,
                 manifest: Manifest) -> _Probe:
    """Start a receiver, then a sender of ``count`` probes every ``interval_s`` over ``path``."""
    tool = probe_argv(fast=True)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = log_dir / f"ovscal-{tag}-{path}-{secrets.token_hex(3)}.npy"
    ready = Path(str(out) + ".ready")
    port, dst = _PORTS[path], _ADDR[path][1]
    errlog_path = log_dir / f"ovs_calibrate-{tag}.log"
    probe = _Probe([], out, errlog_path, errlog_path.open("ab"))
    try:
        # Stopped by SIGTERM once the sender is done (or after 1 s of silence / 5 s before the first).
        recv = _spawn(manifest, probe.procs, f"ovscal-recv-{tag}-{path}",
                      ["ip", "netns", "exec", n["ns_b"], *tool, "recv", str(port), "1", str(out), "5"],
                      env, probe.errlog)
        deadline = time.monotonic() + 5
        while not ready.exists():
            if time.monotonic() > deadline or recv.poll() is not None:
                raise RuntimeError(f"OVS calibration: probe receiver did not start (see {errlog_path.name})")
            time.sleep(0.002)
        probe.send = _spawn(manifest, probe.procs, f"ovscal-send-{tag}-{path}",
                            ["ip", "netns", "exec", n["ns_a"], *tool, "send", dst, str(port),
                             str(1 / interval_s), str(count), str(PROBE_SIZE_B)], env, probe.errlog)
    except BaseException:
        _finish_probe(probe, manifest, 0.0)
        raise
    return probe


def _finish_probe(probe: _Probe, manifest: Manifest, wait_s: float) -> np.ndarray:
    """Wait up to ``wait_s`` for the sender, stop the receiver; one-way delays (ms) of the probes
    after the warm-up. Every probe process is gone and unrecorded on return, also on error."""
    rows = np.zeros((0, 3), dtype=np.int64)
    try:
        if probe.send is not None:
            try:
                probe.send.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass  # stopped early (a run cut short): what arrived so far counts
            time.sleep(RECV_GRACE_S)
            recv = probe.procs[0][1]
            recv.terminate()                     # the receiver saves what it got on SIGTERM
            recv.wait(timeout=10)
            rows = np.load(probe.out)
    finally:
        for name, proc in probe.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            manifest.discard("process", name)
        probe.errlog.close()
        if probe.errlog_path.stat().st_size == 0:
            probe.errlog_path.unlink()
        probe.out.unlink(missing_ok=True)
        Path(str(probe.out) + ".ready").unlink(missing_ok=True)
    rows = rows[rows[:, 0] >= WARMUP_PACKETS] if rows.size else rows.reshape(0, 3)
    return owd_ms(rows)


def _probe_path(path: str, n: dict[str, str], log_dir: Path, tag: str, probes: int,
                manifest: Manifest) -> np.ndarray:
    """One-way delays (ms) of ``probes`` UDP probes A -> B over ``path`` (warm-up dropped)."""
    count = probes + WARMUP_PACKETS
    probe = _start_probe(path, n, log_dir, tag, count, PROBE_INTERVAL_S, manifest)
    return _finish_probe(probe, manifest, count * PROBE_INTERVAL_S + 10)


def _spawn(manifest: Manifest, procs: list, name: str, argv: list[str], env: dict, errlog: Any
           ) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, stdout=subprocess.DEVNULL, stderr=errlog)
    procs.append((name, proc))
    manifest.add_process(name, proc.pid)     # `ip netns exec` execs the probe: same pid
    return proc

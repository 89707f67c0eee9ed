"""Packet capture on request (``factorysat run --pcap IFACE,...|all``): one ``tcpdump`` per interface.

Each capture runs inside the namespace of the host that owns the interface (Mininet's ``popen``),
UDP only, the first ``SNAPLEN`` bytes of each frame (our headers and the 16-byte packet header
``!IIQ``: flow, seq, send_ns), nanosecond timestamps, packet-buffered, into
``<run>/pcap/<iface>.pcap``. Every tcpdump is recorded in the run's manifest the moment it exists
and watched by the run's watchdog; :meth:`PcapCapture.stop` sends SIGTERM (tcpdump flushes its file
and prints the kernel's counts) and stores those counts per interface in ``pcap/capture.json``.
Reading a capture back and comparing it with the receivers' records: :mod:`pcapread`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.framework import watchdog
from experiments.framework.cpuuse import process_ticks
from experiments.framework.pcapread import (
    DEFAULT_TOLERANCE_MS,
    cross_check,
    cross_check_run,
    read_pcap,
)
from experiments.framework.results import write_json
from topologies.errors import UserError

__all__ = ["CAPTURE_FILE", "DEFAULT_TOLERANCE_MS", "PcapCapture", "PcapOptionError", "PcapRequest",
           "RunCapture", "cross_check", "cross_check_run", "host_interfaces", "parse_pcap_option",
           "plan_captures", "read_pcap"]

log = logging.getLogger(__name__)

OPTION = "--pcap"
ALLOWED = ("'all' (every interface of every host), or interface names as Mininet names them, comma "
           "separated (e.g. edge1-eth0,cloud1-eth0: letters, digits, '.', '_', '-', at most 15 "
           "characters each)")
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # Linux: IFNAMSIZ - 1 characters, no '/', ':' or blanks
SNAPLEN = 128  # Ethernet 14 + IPv4 20..60 + UDP 8 + header 16 fit
BUFFER_KIB = 4096  # kernel capture buffer of one interface (tcpdump -B) ...
BUFFERS_KIB = 65536  # ... and of all together, at least MIN_BUFFER_KIB each ("all" on a big factory)
MIN_BUFFER_KIB = 512
CAPTURE_FILE = "capture.json"  # in <run>/pcap/: per interface the kernel's counts
READY_TIMEOUT_S = 30.0  # a failure detector, not a timing claim
STOP_TIMEOUT_S = 10.0
_STATS = {"packets_captured": re.compile(r"(\d+) packets? captured"),
          "packets_received_by_filter": re.compile(r"(\d+) packets? received by filter"),
          "packets_dropped_by_kernel": re.compile(r"(\d+) packets? dropped by kernel"),
          "packets_dropped_by_interface": re.compile(r"(\d+) packets? dropped by interface")}


class PcapOptionError(UserError):
    """A bad ``--pcap`` value, or tcpdump missing: found before anything is started (exit 2)."""


@dataclass(frozen=True)
class PcapRequest:
    """What ``--pcap`` asked for: named interfaces, or (empty ``interfaces``) every host interface."""

    interfaces: tuple[str, ...] = ()

    @property
    def all(self) -> bool:
        return not self.interfaces

    def resolve(self, available: Mapping[str, str]) -> dict[str, str]:
        """``iface -> host`` to capture, from ``available`` (every host interface of the run)."""
        if self.all:
            return dict(sorted(available.items()))
        unknown = [name for name in self.interfaces if name not in available]
        if unknown:
            names = sorted(available)
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            raise PcapOptionError(f"{OPTION}: no host interface {', '.join(unknown)} in this scenario; "
                                  f"allowed: 'all' or some of: {shown}")
        return {name: available[name] for name in self.interfaces}


def parse_pcap_option(text: str | None) -> PcapRequest | None:
    """``--pcap`` -> a request (None: no capture); PcapOptionError names the option and its forms."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if items == ["all"]:
        return PcapRequest()
    if "all" in items:
        raise PcapOptionError(f"{OPTION} {text!r}: 'all' cannot be combined with names; allowed: {ALLOWED}")
    bad = [item for item in items if not IFNAME.fullmatch(item) or item in (".", "..")]
    if bad:
        raise PcapOptionError(f"{OPTION} {text!r}: bad interface name "
                              f"{', '.join(repr(b) for b in bad)}; allowed: {ALLOWED}")
    return PcapRequest(tuple(dict.fromkeys(items)))  # in order, each once


def host_interfaces(topo: Any) -> dict[str, str]:
    """``iface -> host`` for every host end of a declared Mininet ``Topo`` (``<node>-eth<port>``,
    the names Mininet gives them; switch ports are left out)."""
    out = {}
    for node1, node2, info in topo.links(withInfo=True):
        for node, port in ((node1, info["port1"]), (node2, info["port2"])):
            if not topo.isSwitch(node):
                out[f"{node}-eth{port}"] = node
    return out


def require_tcpdump() -> str:
    """The tcpdump binary's path, or PcapOptionError saying how to install it."""
    path = shutil.which("tcpdump")
    if path is None:
        raise PcapOptionError(f"{OPTION} needs tcpdump, which is not installed; run ./bootstrap.sh "
                              "(or apt-get install tcpdump)")
    return path


def plan_captures(request: PcapRequest | None, scenario: Any) -> dict[str, str]:
    """``iface -> host`` for a run of ``scenario`` (checked against its topology: nothing is
    created); empty without a request."""
    if request is None:
        return {}
    from topologies.factory import FactoryTopo

    require_tcpdump()
    return request.resolve(host_interfaces(FactoryTopo(scenario=scenario)))


def buffer_kib(captures: int) -> int:
    """Kernel buffer per capture when ``captures`` run at once."""
    return max(MIN_BUFFER_KIB, min(BUFFER_KIB, BUFFERS_KIB // max(1, captures)))


def tcpdump_argv(iface: str, out: Path, buffer: int = BUFFER_KIB) -> list[str]:
    """One capture: UDP only, SNAPLEN bytes, ns stamps, packet-buffered, no promiscuous mode,
    delivered at once (no TPACKET_V3 block left unread at stop), ``buffer`` KiB of kernel buffer,
    and root kept for writing ``out``."""
    return ["tcpdump", "-i", iface, "-n", "-p", "-U", "--immediate-mode", "-s", str(SNAPLEN),
            "-B", str(buffer), "--time-stamp-precision=nano", "-Z", "root", "-w", str(out), "udp"]


def parse_stats(text: str) -> dict[str, int]:
    """The counts tcpdump prints at exit (those it printed)."""
    out = {}
    for key, pattern in _STATS.items():
        found = pattern.findall(text)
        if found:
            out[key] = int(found[-1])
    return out


class _Tcpdump:
    """One tcpdump process; its stderr is read by a thread into its log (a pipe, not a file: an
    AppArmor profile may close inherited files it does not allow)."""

    def __init__(self, iface: str, host: Any, pcap: Path, log_path: Path, buffer: int) -> None:
        self.iface, self.host, self.pcap, self.log_path = iface, host, pcap, log_path
        self.proc = host.popen(tcpdump_argv(iface, pcap, buffer), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.listening = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"tcpdump {iface}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log_path, "w") as log:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                self.lines.append(line)
                if "listening on" in line:
                    self.listening.set()

    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout_s: float) -> None:
        self._reader.join(timeout_s)


class PcapCapture:
    """tcpdump on each interface of ``targets`` (``iface -> Mininet host`` owning it)."""

    def __init__(self, targets: Mapping[str, Any], out_dir: Path, manifest: Any, log_dir: Path) -> None:
        self.targets = dict(targets)
        self.out_dir = out_dir
        self.manifest = manifest
        self.log_dir = log_dir
        self.dumps: dict[str, _Tcpdump] = {}
        self.result: dict[str, Any] | None = None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start every capture, record and watch each; return once each is listening (RuntimeError
        naming the interface and its log if one exits or is not listening in time)."""
        require_tcpdump()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        dog = watchdog.active()
        for iface, host in self.targets.items():
            if iface not in host.intfNames():
                raise RuntimeError(f"{OPTION}: host {host.name} has no interface {iface} "
                                   f"(it has {', '.join(host.intfNames())})")
            dump = _Tcpdump(iface, host, self.out_dir / f"{iface}.pcap",
                            self.log_dir / f"tcpdump-{iface}.txt", buffer_kib(len(self.targets)))
            self.dumps[iface] = dump
            self.manifest.add_process(f"pcap:{iface}", dump.proc.pid)
            if dog is not None:
                dog.watch_process(f"packet capture on {iface}", dump.proc, dump.log_path)
        deadline = time.monotonic() + timeout_s
        for iface, dump in self.dumps.items():
            while not dump.listening.wait(0.02):
                if dump.proc.poll() is not None or time.monotonic() > deadline:
                    dump.join(1.0)
                    why = (f"exited with {dump.proc.returncode}" if dump.proc.returncode is not None
                           else f"not listening after {timeout_s:g} s")
                    last = dump.text().strip().splitlines()[-1:] or ["(no output)"]
                    raise RuntimeError(f"packet capture on {iface} {why}: {last[0]}; see {dump.log_path}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """SIGTERM every capture, wait, write ``capture.json``; return it (idempotent). Never
        raises for a capture that misbehaved: that is in its entry's ``problems``."""
        if self.result is not None:
            return self.result
        dog = watchdog.active()
        died, cpu_s = {}, {}
        tick = os.sysconf("SC_CLK_TCK")
        for iface, dump in self.dumps.items():
            ticks = process_ticks(dump.proc.pid) if dump.proc.poll() is None else None
            cpu_s[iface] = round(sum(ticks) / tick, 2) if ticks else None  # what capturing cost
            failure = dog.unwatch(dump.proc) if dog is not None else None
            if failure is not None or dump.proc.poll() is not None:
                died[iface] = f"exited early ({failure or dump.proc.returncode}): capture incomplete"
            else:
                dump.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        entries = {}
        for iface, dump in self.dumps.items():
            problems = [died[iface]] if iface in died else []
            try:
                code = dump.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                dump.proc.kill()
                code = dump.proc.wait()
                problems.append(f"did not stop within {timeout_s:g} s; killed: its file may be cut short")
            dump.join(2.0)
            stats = parse_stats(dump.text())
            if code not in (0, -signal.SIGTERM):
                problems.append(f"tcpdump exited with {code}; see {dump.log_path}")
            if "packets_captured" not in stats:
                problems.append("tcpdump printed no counts: capture unverified")
            if stats.get("packets_dropped_by_kernel"):
                problems.append(f"{stats['packets_dropped_by_kernel']} packets dropped by the kernel "
                                "before tcpdump read them: the capture misses them")
            unread = (stats.get("packets_received_by_filter", 0) - stats.get("packets_dropped_by_kernel", 0)
                      - stats.get("packets_captured", 0))  # Linux: received counts the drops too
            if unread > 0:
                problems.append(f"{unread} packets reached the capture but were not written (unread at stop)")
            host = self.targets[iface]
            entries[iface] = {"host": host.name, "ip": host.intf(iface).IP(),
                              "host_interfaces": len([n for n in host.intfNames() if n != "lo"]),
                              "file": f"{self.out_dir.name}/{dump.pcap.name}", "log": str(dump.log_path),
                              "pid": dump.proc.pid, "exit_code": code, "cpu_s": cpu_s[iface], **stats,
                              "problems": problems}
        self.result = {"snaplen": SNAPLEN, "filter": "udp", "timestamps": "ns (host clock, kernel)",
                       "argv": tcpdump_argv("IFACE", Path("IFACE.pcap"), buffer_kib(len(self.dumps))),
                       "interfaces": entries,
                       "packets_dropped_by_kernel": sum(e.get("packets_dropped_by_kernel", 0)
                                                        for e in entries.values()),
                       "complete": not any(e["problems"] for e in entries.values())}
        if self.dumps:
            write_json(self.out_dir / CAPTURE_FILE, self.result)
        return self.result


class RunCapture:
    """A run's ``--pcap``: planned with the session (bad names fail before anything exists), started
    once the network is up and watched, stopped at teardown (after the receivers, so all traffic
    is in), cross-checked once the run's tables are written. Records what it did in metadata."""

    def __init__(self, request: PcapRequest | None, scenario: Any) -> None:
        self.targets = plan_captures(request, scenario)  # iface -> host name; {} without --pcap
        self.capture: PcapCapture | None = None

    def start(self, network: Any, run_dir: Path, metadata: dict[str, Any]) -> None:
        if not self.targets:
            return
        metadata["pcap"] = {"interfaces": list(self.targets), "files": "pcap/<interface>.pcap",
                            "counts": f"pcap/{CAPTURE_FILE}", "snaplen": SNAPLEN, "filter": "udp"}
        self.capture = PcapCapture({iface: network.host(host) for iface, host in self.targets.items()},
                                   run_dir / "pcap", network.manifest, run_dir / "logs")
        self.capture.start()

    def stop(self, metadata: dict[str, Any]) -> None:
        """Stop every capture and keep the kernel's counts; never raises (teardown goes on)."""
        capture, self.capture = self.capture, None
        if capture is None:
            return
        try:
            result = capture.stop()
            metadata["pcap"].update(complete=result["complete"],
                                    packets_dropped_by_kernel=result["packets_dropped_by_kernel"],
                                    problems=[f"{i}: {p}" for i, e in result["interfaces"].items()
                                              for p in e["problems"]])
        except Exception as exc:
            metadata["pcap"].update(complete=False, problems=[f"stopping the captures: {exc}"])
            log.warning("could not stop the packet captures cleanly: %s", exc)

    def check(self, run_dir: Path, metadata: dict[str, Any]) -> bool:
        """Write ``pcap/cross_check.json`` (a failed check is a warning on stderr, and in metadata);
        True if metadata changed."""
        if not self.targets or not (run_dir / "pcap" / CAPTURE_FILE).exists():
            return False
        result = cross_check_run(run_dir)
        metadata["pcap"]["cross_check"] = {"passed": result["passed"], "skipped": sorted(result["skipped"]),
                                           **{i: r["passed"] for i, r in result["interfaces"].items()}}
        for iface, r in result["interfaces"].items():
            if not r["passed"]:
                print(f"factorysat: warning: capture of {iface} disagrees with the receiver's records: "
                      f"{'; '.join(r['problems'])} (pcap/cross_check.json)", file=sys.stderr, flush=True)
        return True

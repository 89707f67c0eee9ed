"""The netem backend's command generation (pure functions) and the netem availability probe."""

from __future__ import annotations

import functools
import math
import os
import secrets
import subprocess
from pathlib import Path

from topologies.links.params import FRAME_BYTES, DirectionParams

# netem reorders packets when the delay drops unless a rate is set (with a rate, each packet's
# time_to_send is computed from the previous packet's: net/sched/sch_netem.c, netem_enqueue()).
# "Unlimited" is therefore sent as this rate, far above what a veth pair carries here.
UNLIMITED_RATE_BPS = 100_000_000_000
NETEM_DEFAULT_LIMIT_PKTS = 1000  # netem's own default limit (tc-netem(8))


def netem_limit_pkts(p: DirectionParams) -> int:
    """netem's ``limit`` counts every packet it holds (in delay and in rate queue): size it to the
    packets in flight over delay + 4 jitter at the rate plus the rate queue, in full-size frames."""
    if p.queue_limit_pkts is not None and p.queue_limit_bytes is None and p.rate_mbps is not None:
        queue_pkts = p.queue_limit_pkts
    else:
        qb = p.effective_queue_limit_bytes()
        queue_pkts = 0 if qb is None else math.ceil(qb / FRAME_BYTES)
    # Unlimited: the real bound is what a sender can push through a veth; assume 10 Gbit/s.
    rate_bps = 10e9 if p.rate_mbps is None else p.rate_mbps * 1e6
    flight = rate_bps / 8 * (p.delay_ms + 4 * p.jitter_ms) / 1000 / FRAME_BYTES
    return max(NETEM_DEFAULT_LIMIT_PKTS, math.ceil(flight) + queue_pkts)


def netem_args(p: DirectionParams) -> list[str]:
    """The netem option words for ``p`` (after ``... root netem``)."""
    args = ["limit", str(netem_limit_pkts(p)),
            "delay", f"{round(p.delay_ms * 1000)}us"]
    if p.jitter_ms > 0:
        args.append(f"{round(p.jitter_ms * 1000)}us")
        if p.jitter_distribution != "uniform":  # netem's default jitter is uniform
            args += ["distribution", p.jitter_distribution]
    if not p.up:
        args += ["loss", "random", "100%"]
    elif p.loss_burst is not None:
        g = p.loss_burst
        # tc-netem(8): loss gemodel PERCENT [R [1-H [1-K]]]: p, r, loss in bad, loss in good
        args += ["loss", "gemodel", _pct(g.p_good_to_bad_pct), _pct(g.p_bad_to_good_pct),
                 _pct(g.loss_bad_pct), _pct(g.loss_good_pct)]
    elif p.loss_pct > 0:
        args += ["loss", "random", _pct(p.loss_pct)]
    rate_bps = UNLIMITED_RATE_BPS if p.rate_mbps is None else round(p.rate_mbps * 1e6)
    args += ["rate", f"{rate_bps}bit"]
    return args


def netem_argv(dev: str, p: DirectionParams, verb: str = "replace",
               netns_pid: int | None = None) -> list[str]:
    """argv that installs (``replace``) or updates in place (``change``) netem on ``dev``'s egress.

    Never delete + add: ``change`` keeps queued packets. With ``netns_pid`` the command runs in that
    process's network namespace (via nsenter).
    """
    if verb not in ("replace", "change"):
        raise ValueError(f"netem verb {verb!r}; allowed: 'replace', 'change'")
    argv = ["tc", "qdisc", verb, "dev", dev, "root", "netem", *netem_args(p)]
    if netns_pid is not None:
        argv = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", *argv]
    return argv


def _pct(value: float) -> str:
    return f"{value:.6g}%"


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: probed once, in a scratch netns that is then deleted."""
    if Path("/sys/module/sch_netem").exists():
        return True
    if os.geteuid() != 0:
        return False
    ns = f"fsnp{os.getpid()}{secrets.token_hex(3)}"
    created = subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode == 0
    if not created:
        return False
    try:
        result = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                                 "netem", "delay", "1ms"], capture_output=True, text=True)
        return result.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

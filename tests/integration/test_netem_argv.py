"""This machine's own tc parses every netem command line the netem backend builds.

tc parses its arguments before it asks the kernel for the qdisc, so the check runs everywhere:
where sch_netem is missing the only acceptable complaint is the kernel's "qdisc kind is unknown",
never a parse error ("Illegal ...", "What is ..."). (iproute2 6.1 has no ``ns`` time unit, which
only the VM test used to find.)
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from topologies.links.netem import (
    NETEM_MAX_TIME_NS,
    netem_args,
    netem_seed,
    netem_seed_unsupported_reason,
)
from topologies.links.params import DirectionParams, GilbertElliott

SAMPLES = {
    "delay only": DirectionParams(delay_ms=10),
    "sub-microsecond delay": DirectionParams(delay_ms=0.7768),
    "uniform jitter": DirectionParams(delay_ms=5, jitter_ms=0.5, jitter_distribution="uniform"),
    "normal jitter": DirectionParams(delay_ms=0.8, jitter_ms=0.1),
    "pareto jitter, no delay": DirectionParams(jitter_ms=2, jitter_distribution="pareto"),
    "random loss": DirectionParams(delay_ms=1, loss_pct=0.001),
    "burst loss": DirectionParams(loss_burst=GilbertElliott(1, 30, 80, 0)),
    "down": DirectionParams(up=False),
    "rate and queue": DirectionParams(delay_ms=20, rate_mbps=15.5, queue_limit_pkts=40),
    "largest values": DirectionParams(delay_ms=NETEM_MAX_TIME_NS / 1e6, jitter_ms=2147,
                                      rate_mbps=100_000),
    "sub-microsecond normal jitter": DirectionParams(delay_ms=1, jitter_ms=0.0005),
}
PARSE_ERRORS = ("Illegal", "What is", "Usage", "illegal", "Error: argument")


@pytest.fixture(scope="module")
def scratch_netns():
    name = f"fsna{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], timeout=10)


@pytest.mark.root
@pytest.mark.parametrize("label", list(SAMPLES))
def test_tc_parses_every_netem_command_line(scratch_netns: str, label: str) -> None:
    seed = None if netem_seed_unsupported_reason() else netem_seed(1, label)
    args = netem_args(SAMPLES[label], seed)
    out = subprocess.run(["ip", "netns", "exec", scratch_netns, "tc", "qdisc", "replace", "dev", "lo",
                          "root", "netem", *args], capture_output=True, text=True, timeout=10)
    complaint = (out.stderr + out.stdout).strip()
    assert not any(word in complaint for word in PARSE_ERRORS), f"tc netem {' '.join(args)}: {complaint}"
    assert out.returncode == 0 or "qdisc kind is unknown" in complaint, complaint

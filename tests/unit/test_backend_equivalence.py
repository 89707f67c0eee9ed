"""Both link backends mean the same thing for every parameter, or the backend check says which one
cannot: bounds with their reasons, the shared encodings (rate, probabilities, times), the queue in
front of the rate, jitter distributions, order, seeding, and the scenario-wide check."""

from __future__ import annotations

import logging
import math
import tomllib
from pathlib import Path

import pytest

import topologies.links.backends.netem as netem_backend
from topologies.links import DirectionParams, GilbertElliott, ScheduleRow
from topologies.links.backend import BackendContext, Endpoint, Setting, check_settings, direction_params_in
from topologies.links.backends.netem import NetemBackend, NetemLink
from topologies.links.backends.relay import RelayBackend
from topologies.links.netem import (
    NETEM_TABLE_SIGMAS,
    PARETO_JITTER_SCALE,
    netem_args,
    netem_limit_pkts,
    netem_seed,
    seed_unsupported,
    tc_time,
)
from topologies.links.params import (
    PROB_MIN_PCT,
    PROB_STEPS,
    QUEUE_MAX_BYTES,
    RATE_MAX_MBPS,
    RATE_MIN_MBPS,
    prob_steps,
    rate_bytes_per_s,
)
from topologies.links.pyrelay import Direction, Params
from topologies.links.relayctl import parse_params
from topologies.links.relayproc import wire_params
from topologies.manifest import Manifest
from topologies.scenario import LinkPair, load_scenario
from topologies.validate import ConfigError, Table

UINT32_MAX = 0xFFFF_FFFF
HOST = type("Node", (), {"pid": 4242, "inNamespace": True})()


def parse(text: str) -> DirectionParams:
    return DirectionParams.from_table(Table(tomllib.loads(text), "links.x.uplink"))


def word_after(args: list[str], key: str, n: int = 1) -> list[str]:
    i = args.index(key)
    return args[i + 1:i + 1 + n]


def tc_time_ns(word: str) -> int:
    """What iproute2's get_time64 makes of our time words: strtod(...us) * 1000, truncated."""
    assert word.endswith("us")
    return int(float(word[:-2]) * 1000)


def tc_percent_steps(word: str) -> int:
    """iproute2 q_netem.c get_percent: rint(strtod(word) / 100 * UINT32_MAX)."""
    assert word.endswith("%")
    return round(float(word[:-1]) / 100. * UINT32_MAX)


def wire(p: DirectionParams) -> list[float]:
    """The relay's wire form, read back by the relay's own parser (rejects anything out of range)."""
    return parse_params(wire_params(p).encode().split())


# --- bounds: every field finite, bounded above and below, with the reason in the error ------------------
@pytest.mark.parametrize("text, key, why", [
    ("delay_ms = 3600001", "delay_ms", "an hour"),
    ("delay_ms = nan", "delay_ms", "finite"),
    ("jitter_ms = 2148", "jitter_ms", "netem's jitter is a 32-bit count of ns"),
    ("jitter_ms = inf", "jitter_ms", "finite"),
    ("rate_mbps = 0.0009", "rate_mbps", "whole bytes/s"),
    ("rate_mbps = 100001", "rate_mbps", "'unlimited'"),
    ("rate_mbps = 10\nqueue_limit_pkts = 1000001", "queue_limit_pkts", "delay line"),
    (f"rate_mbps = 10\nqueue_limit_bytes = {QUEUE_MAX_BYTES + 1}", "queue_limit_bytes", "512 MiB"),
    ("loss_pct = 1e-9", "loss_pct", "steps of 1/2^32"),
    ("loss_pct = 100.5", "loss_pct", "steps of 1/2^32"),
    ("[loss_burst]\np_good_to_bad_pct = 1e-9\np_bad_to_good_pct = 5", "loss_burst.p_good_to_bad_pct",
     "steps of 1/2^32"),
    ("[loss_burst]\np_good_to_bad_pct = 1\np_bad_to_good_pct = 5\nloss_good_pct = 1e-12",
     "loss_burst.loss_good_pct", "steps of 1/2^32"),
])
def test_each_bound_names_the_key_and_its_reason(text: str, key: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == f"links.x.uplink.{key}"
    assert why in err.value.allowed


def test_schedule_rows_share_the_bounds() -> None:
    for kwargs, key in ((dict(jitter_ms=2148), "jitter_ms"), (dict(rate_mbps=0.0001), "rate_mbps"),
                        (dict(loss_pct=1e-10), "loss_pct"), (dict(delay_ms=math.inf), "delay_ms")):
        row = dict(t_s=0, delay_ms=1, jitter_ms=0, loss_pct=0, rate_mbps=None, up=True) | kwargs
        with pytest.raises(ConfigError, match=key):
            ScheduleRow(**row)


def test_smallest_values_are_accepted() -> None:
    DirectionParams(rate_mbps=RATE_MIN_MBPS, loss_pct=PROB_MIN_PCT, jitter_ms=2147)
    ScheduleRow(0, 3_600_000, 2147, PROB_MIN_PCT, RATE_MAX_MBPS, True)


# --- queue limits: only in front of a rate, the same on both backends ----------------------------------
@pytest.mark.parametrize("key", ["queue_limit_pkts", "queue_limit_bytes"])
def test_a_queue_limit_without_a_rate_is_an_error(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(f"{key} = 100")
    assert err.value.path == f"links.x.uplink.{key}" and "rate_mbps" in err.value.allowed
    base = DirectionParams(rate_mbps=10, **{key: 100})
    with pytest.raises(ConfigError, match=key):  # a schedule row that drops the rate, too
        base.with_row(ScheduleRow(1, 5, 0, 0, None, True))


@pytest.mark.parametrize("delay_ms, qlim", [(0, 5), (10, 20), (40, 8)])
def test_full_size_frames_see_the_same_bottleneck_queue_on_both(delay_ms: float, qlim: int) -> None:
    """Full-size frames at twice the rate for 400 frame times: the relay's twin (pyrelay) and a model
    of sch_netem.c's enqueue with the limit we give netem. Without delay: the same packets at the
    same times. With a delay, netem's limit also holds its delay line (sized for a busy link), so
    during the first delay of a burst its queue is longer (the netem check warns); once busy,
    both accept one frame per frame time."""
    p = DirectionParams(delay_ms=delay_ms, rate_mbps=10, queue_limit_pkts=qlim)
    relay = Direction(None, None)
    relay.sched = [(0.0, Params(wire(p)))]
    gap_s, frame, n = 1514 * 8 / 20e6, b"x" * 1514, 800
    accepted_relay = []
    for i in range(n):
        before = len(relay.fifo)
        relay.enqueue(frame, i * gap_s)  # nothing is flushed: the FIFO keeps every accepted packet
        accepted_relay.append(len(relay.fifo) > before)
    relay_deps = [dep for dep, _ in relay.fifo]
    netem = _netem_model([i * gap_s for i in range(n)], 1514, p)
    netem_deps = [d for d in netem if d is not None]
    assert relay.c["dropped_queue"] > 0  # the queue did overflow
    if delay_ms == 0:
        assert relay_deps == pytest.approx(netem_deps, abs=1e-9)
        return
    flight = math.ceil(1.25e6 * delay_ms / 1000 / 1514)
    assert 0 <= len(netem_deps) - len(relay_deps) <= flight + 1
    late = slice(n // 2, n)  # long after the first delay: one frame per frame time on both
    assert abs(sum(accepted_relay[late]) - sum(d is not None for d in netem[late])) <= 1


def _netem_model(arrivals_s: list[float], size: int, p: DirectionParams) -> list[float | None]:
    """netem_enqueue() with a rate (net/sched/sch_netem.c): drop when qlen >= limit; otherwise
    time_to_send = max(now + delay, last.time_to_send) + len / rate; a packet leaves at its time."""
    limit, rate = netem_limit_pkts(p), rate_bytes_per_s(p.rate_mbps)
    held: list[float] = []
    out: list[float | None] = []
    for now in arrivals_s:
        held = [t for t in held if t > now]
        if len(held) >= limit:
            out.append(None)
            continue
        delay, ref = p.delay_ms / 1000, now
        if held:
            delay, ref = max(0.0, delay - (held[-1] - now)), held[-1]
        held.append(ref + delay + size / rate)
        out.append(held[-1])
    return out


def test_queue_words_on_both_backends() -> None:
    p = DirectionParams(rate_mbps=10, queue_limit_pkts=7)
    assert wire(p)[10:12] == [7, 0] and word_after(netem_args(p), "limit") == ["7"]
    default = DirectionParams(delay_ms=50, rate_mbps=100)  # BDP default, in packets on both
    assert wire(default)[10:12] == [826, 0]
    assert int(word_after(netem_args(default), "limit")[0]) == 826 + math.ceil(12.5e6 * 0.05 / 1514)
    assert wire(DirectionParams(rate_mbps=10, queue_limit_bytes=9000))[10:12] == [0, 9000]


# --- rate, probabilities and times: one encoding for both --------------------------------------------
@pytest.mark.parametrize("rate_mbps", [RATE_MIN_MBPS, 0.0011, 0.0123457, 1, 12.3456789, 999.9999,
                                       RATE_MAX_MBPS])
def test_rate_is_the_same_whole_bytes_per_second_and_never_zero(rate_mbps: float) -> None:
    p = DirectionParams(rate_mbps=rate_mbps)
    netem_bps = int(word_after(netem_args(p), "rate")[0].removesuffix("bit"))
    relay_bps = wire(p)[9]
    assert netem_bps == relay_bps == 8 * rate_bytes_per_s(rate_mbps) > 0
    assert netem_bps // 8 * 8 == netem_bps  # iproute2 get_rate64 divides by 8: nothing truncated
    assert abs(netem_bps - rate_mbps * 1e6) <= 4


@pytest.mark.parametrize("pct", [PROB_MIN_PCT, 1e-6, 0.1, 1, 12.345678901, 33.3, 99.99999, 100])
def test_probabilities_are_the_same_steps_on_both(pct: float) -> None:
    args = netem_args(DirectionParams(loss_pct=pct))
    assert tc_percent_steps(word_after(args, "loss", 2)[1]) == prob_steps(pct) >= 1
    assert round(wire(DirectionParams(loss_pct=pct))[3] * PROB_STEPS) == prob_steps(pct)
    g = GilbertElliott(pct, 100 - pct if pct < 100 else 1, max(pct / 2, PROB_MIN_PCT), pct)
    ge = word_after(netem_args(DirectionParams(loss_burst=g)), "loss", 5)
    w = wire(DirectionParams(loss_burst=g))
    # tc order: p, r, 1-h (loss in bad), 1-k (loss in good); wire order: p, r, loss good, loss bad
    assert [tc_percent_steps(x) for x in ge[1:]] == [round(v * PROB_STEPS) for v in (w[5], w[6], w[8], w[7])]


def test_times_are_the_same_nanoseconds() -> None:
    p = DirectionParams(delay_ms=12.3456789, jitter_ms=0.0004567, jitter_distribution="uniform")
    delay, jitter = word_after(netem_args(p), "delay", 2)
    assert [tc_time_ns(delay), tc_time_ns(jitter)] == wire(p)[:2] == [12_345_679, 457]
    # tc refuses a distribution table with a delay below 1 us: 1 us instead
    args = netem_args(DirectionParams(jitter_ms=1))
    assert word_after(args, "delay", 4) == ["1.0001us", "1000.0001us", "distribution", "normal"]
    for ns in (1, 999, 776_800, 12_345_679, 2_147_483_647, 3_600_000_000_000):  # every ns survives
        assert tc_time_ns(tc_time(ns)) == ns


def test_pareto_jitter_is_scaled_to_the_relays_standard_deviation() -> None:
    """netem's table is (u^-1/3 - 1.5) * 4/3 * sigma (iproute2 netem/pareto.c); the relay's is
    (u^-1/3 - 1.5) * jitter / sqrt(0.75): netem gets sigma = jitter * sqrt(3)/2."""
    assert 4 / 3 * PARETO_JITTER_SCALE == pytest.approx(1 / math.sqrt(0.75))
    p = DirectionParams(delay_ms=5, jitter_ms=2, jitter_distribution="pareto")
    assert tc_time_ns(word_after(netem_args(p), "delay", 2)[1]) == round(2e6 * math.sqrt(3) / 2)
    assert wire(p)[1:3] == [2_000_000, 2]
    assert NETEM_TABLE_SIGMAS * PARETO_JITTER_SCALE == pytest.approx(3.46, abs=0.01)


def test_order_is_kept_on_both_when_jitter_exceeds_the_spacing() -> None:
    p = DirectionParams(delay_ms=10, jitter_ms=5, jitter_distribution="uniform")
    assert "rate" in netem_args(p)  # netem keeps order only with a rate (sch_netem.c netem_enqueue)
    relay = Direction(None, None)
    relay.sched = [(0.0, Params(wire(p)))]
    for i in range(500):
        relay.enqueue(b"y" * 100, i * 1e-4)  # 0.1 ms apart, jitter 5 ms
    deps = [dep for dep, _ in relay.fifo]
    assert deps == sorted(deps) and len(deps) == 500


# --- what only one backend cannot do -------------------------------------------------------------------
def test_netem_cannot_limit_bytes_and_says_what_to_use() -> None:
    p = DirectionParams(rate_mbps=10, queue_limit_bytes=30000)
    assert RelayBackend.check(p) == []
    with pytest.raises(ConfigError) as err:
        check_settings(NetemBackend, [("cells[0].backhaul.uplink", p)])
    assert err.value.path == "cells[0].backhaul.uplink.queue_limit_bytes"
    assert "backend netem cannot" in err.value.allowed and "link_backend = 'relay'" in err.value.allowed
    assert check_settings(RelayBackend, [("cells[0].backhaul.uplink", p)]) == []


def test_netem_warns_where_it_works_differently() -> None:
    p = DirectionParams(delay_ms=5, jitter_ms=1, jitter_distribution="pareto", rate_mbps=10,
                        queue_limit_pkts=20)
    assert {(x.field, x.fatal) for x in NetemBackend.check(p)} == {
        ("queue_limit_pkts", False), ("jitter_ms", False), ("jitter_distribution", False)}
    assert NetemBackend.check(DirectionParams(delay_ms=5, jitter_ms=1, loss_pct=1)) == []
    warnings = check_settings(NetemBackend, [("a.uplink", p), ("a.uplink", p)])
    assert len(warnings) == 3 and all(w.startswith("a.uplink.") for w in warnings)  # each once
    assert sum("backend netem" in w for w in warnings) == 3  # the runner prints and stores them


def test_the_scenario_walk_finds_every_link_setting_with_its_key_path() -> None:
    scenario = load_scenario(None)
    found = dict(direction_params_in(scenario))
    assert "slices[0].radio.uplink" in found and "cells[1].backhaul.downlink" in found
    assert "core.edge_link.uplink" in found
    assert all(isinstance(v, DirectionParams) for v in found.values())
    initial = {"leo": LinkPair(DirectionParams(delay_ms=20, rate_mbps=15, queue_limit_bytes=9000))}
    paths = dict(direction_params_in(initial, "leo schedule"))
    assert set(paths) == {"leo schedule.leo.uplink", "leo schedule.leo.downlink"}
    with pytest.raises(ConfigError, match=r"leo schedule\.leo\.uplink\.queue_limit_bytes"):
        check_settings(NetemBackend, direction_params_in(scenario) + list(paths.items()))


# --- seeding ------------------------------------------------------------------------------------------
def test_netem_seed_support_needs_iproute2_and_kernel_6_6() -> None:
    old_tc = "Usage: ... netem [ limit PACKETS ]\n [ loss gemodel PERCENT [R [1-H [1-K]]]\n"
    new_tc = old_tc + "                 [ seed SEED ]\n"
    assert "iproute2" in seed_unsupported(old_tc, "6.18.44")
    assert "kernel 6.1.0-28-amd64 ignores" in seed_unsupported(new_tc, "6.1.0-28-amd64")
    assert seed_unsupported(new_tc, "6.6.0") is None and seed_unsupported(new_tc, "7.0") is None
    assert netem_seed(7, "l1", "uplink", 0) == netem_seed(7, "l1", "uplink", 0) < 2**64
    assert len({netem_seed(7, "l1", d, n) for d in ("uplink", "downlink") for n in range(3)}) == 6
    assert netem_seed(8, "l1", "uplink", 0) != netem_seed(7, "l1", "uplink", 0)


def _netem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str | None) -> tuple[NetemBackend, list]:
    monkeypatch.setattr("topologies.manifest.STATE_ROOT", tmp_path / "state")
    monkeypatch.setattr(netem_backend, "netem_seed_unsupported_reason", lambda: reason)
    ran: list[list[str]] = []
    monkeypatch.setattr(netem_backend, "run_cmd", lambda argv, stdin=None, cwd=None: ran.append(argv))
    backend = NetemBackend(BackendContext("tunit", Manifest.create("tunit"), tmp_path, seed=42))
    backend.start()
    return backend, ran


def test_netem_is_seeded_per_change_where_supported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, ran = _netem(tmp_path, monkeypatch, None)
    link = NetemLink("l1", Endpoint(HOST, "h1-eth0"), Endpoint(HOST, "h2-eth0"))
    backend.attach(link, Setting(DirectionParams(loss_pct=1), 0.0), Setting(DirectionParams(loss_pct=2), 0.0))
    backend.set(link, "uplink", Setting(DirectionParams(loss_pct=3), 0.0))
    seeds = [int(word_after(argv, "seed")[0]) for argv in ran]
    assert seeds == [netem_seed(42, "l1", "uplink", 0), netem_seed(42, "l1", "downlink", 0),
                     netem_seed(42, "l1", "uplink", 1)]
    assert backend.metadata()["netem_seeding"].startswith("seeded from site.seed")
    backend.stop()


def test_netem_not_seeded_is_recorded_and_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        backend, ran = _netem(tmp_path, monkeypatch, "this iproute2 has no netem 'seed' option")
    assert backend.metadata()["netem_seeding"] == "netem not seeded: this iproute2 has no netem 'seed' option"
    assert any("netem not seeded" in r.getMessage() for r in caplog.records)
    link = NetemLink("l1", Endpoint(HOST, "h1-eth0"), Endpoint(HOST, "h2-eth0"))
    backend.attach(link, Setting(DirectionParams(loss_pct=1), 0.0), Setting(DirectionParams(), 0.0))
    assert all("seed" not in argv for argv in ran)
    with pytest.raises(ConfigError, match=r"link l1 uplink\.queue_limit_bytes"):  # checked before tc runs
        backend.set(link, "uplink", Setting(DirectionParams(rate_mbps=1, queue_limit_bytes=5000), 0.0))
    assert len(ran) == 2
    backend.stop()


def test_netem_time_limits_of_tc_are_checked_before_anything_starts() -> None:
    from topologies.links.netem import NETEM_MAX_TIME_NS

    too_long = DirectionParams(delay_ms=NETEM_MAX_TIME_NS / 1e6 + 1)
    assert [(x.field, x.fatal) for x in NetemBackend.check(too_long)] == [("delay_ms", True)]
    assert RelayBackend.check(too_long) == []  # the relay holds packets up to an hour
    with pytest.raises(ConfigError, match=r"l\.uplink\.delay_ms: .*link_backend = 'relay'"):
        check_settings(NetemBackend, [("l.uplink", too_long)])
    tiny = DirectionParams(delay_ms=1, jitter_ms=0.0005)  # normal table below 1 us: uniform instead
    assert [(x.field, x.fatal) for x in NetemBackend.check(tiny)] == [("jitter_ms", False)]
    assert "distribution" not in netem_args(tiny)
    no_delay = DirectionParams(jitter_ms=1)  # a table needs delay >= 1 us: raised, and said
    assert [(x.field, x.fatal) for x in NetemBackend.check(no_delay)] == [("delay_ms", False)]
    assert word_after(netem_args(no_delay), "delay", 1) == [tc_time(1000)]

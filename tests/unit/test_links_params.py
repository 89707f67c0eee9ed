"""DirectionParams / GilbertElliott / ScheduleRow validation and TOML parsing; netem argv; wire form."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import pytest

from topologies.links import (
    DirectionParams,
    GilbertElliott,
    ScheduleRow,
    check_schedule,
    netem_argv,
)
from topologies.links.netem import (
    UNLIMITED_RATE_BPS,
    BatchCounters,
    TcBatch,
    netem_batch_line,
    netem_limit_pkts,
    schedule_summary,
)
from topologies.links.relayproc import wire_params
from topologies.validate import ConfigError, Table


def parse(text: str) -> DirectionParams:
    return DirectionParams.from_table(Table(tomllib.loads(text), "links.sat.ab"))


def test_defaults_are_transparent() -> None:
    assert DirectionParams().is_transparent()
    assert parse("").is_transparent()
    assert not DirectionParams(delay_ms=1).is_transparent()
    assert not DirectionParams(up=False).is_transparent()
    assert not DirectionParams(rate_mbps=10).is_transparent()


def test_from_table_reads_every_key() -> None:
    p = parse("""
        delay_ms = 12.5
        jitter_ms = 2
        jitter_distribution = "pareto"
        loss_pct = 1.5
        rate_mbps = 100
        queue_limit_pkts = 50
        queue_limit_bytes = 100000
        up = false
        [loss_burst]
        p_good_to_bad_pct = 1
        p_bad_to_good_pct = 30
        loss_bad_pct = 80
    """)
    assert p == DirectionParams(12.5, 2.0, "pareto", 1.5, GilbertElliott(1.0, 30.0, 0.0, 80.0),
                                100.0, 50, 100000, False)


@pytest.mark.parametrize("text, key", [
    ("delay_ms = -1", "links.sat.ab.delay_ms"),
    ("delay_ms = 'ten'", "links.sat.ab.delay_ms"),
    ("loss_pct = 101", "links.sat.ab.loss_pct"),
    ("jitter_distribution = 'gauss'", "links.sat.ab.jitter_distribution"),
    ("rate_mbps = 0", "links.sat.ab.rate_mbps"),
    ("queue_limit_pkts = 0", "links.sat.ab.queue_limit_pkts"),
    ("queue_limit_bytes = 1.5", "links.sat.ab.queue_limit_bytes"),
    ("up = 1", "links.sat.ab.up"),
    ("delay = 10", "links.sat.ab.delay"),
    ("[loss_burst]\np_good_to_bad_pct = 1", "links.sat.ab.loss_burst.p_bad_to_good_pct"),
    ("[loss_burst]\np_good_to_bad_pct = 0\np_bad_to_good_pct = 0",
     "links.sat.ab.loss_burst.p_bad_to_good_pct"),
    ("[loss_burst]\np_good_to_bad_pct = 1\np_bad_to_good_pct = 5\nloss_bad_pct = 120",
     "links.sat.ab.loss_burst.loss_bad_pct"),
])
def test_from_table_rejects_bad_values_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == key


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError):
        DirectionParams(delay_ms=-0.1)
    with pytest.raises(ConfigError):
        DirectionParams(jitter_distribution="cauchy")
    with pytest.raises(ConfigError):
        GilbertElliott(-1, 10)


@pytest.mark.parametrize("build, path, allowed", [
    (lambda: DirectionParams(loss_pct=101), "loss_pct", "a number >= 0 and <= 100"),
    (lambda: DirectionParams(queue_limit_pkts=0), "queue_limit_pkts", "a whole number >= 1 and <= 1000000"),
    (lambda: DirectionParams(loss_burst={}), "loss_burst", "a GilbertElliott or None"),
    (lambda: DirectionParams(up=1), "up", "true or false"),
    (lambda: GilbertElliott(-1, 10), "p_good_to_bad_pct", "a number >= 0 and <= 100"),
    (lambda: GilbertElliott(0, 0), "p_bad_to_good_pct", "p_good_to_bad_pct + p_bad_to_good_pct > 0"),
])
def test_constructor_checks_the_same_bounds_as_the_parser(build, path: str, allowed: str) -> None:
    """Bounds live once, in the field metadata; objects built in code get field-name paths."""
    with pytest.raises(ConfigError) as err:
        build()
    assert err.value.path == path and err.value.allowed.startswith(allowed)


def test_from_table_names_every_key_when_one_is_unknown() -> None:
    with pytest.raises(ConfigError) as err:
        parse("delay = 10")
    assert err.value.allowed == ("no such key here; known keys: delay_ms, jitter_distribution, jitter_ms, "
                                 "loss_burst, loss_pct, queue_limit_bytes, queue_limit_pkts, rate_mbps, up")


def test_gilbert_elliott_mean_loss() -> None:
    assert GilbertElliott(1, 9, 0, 100).mean_loss_pct() == pytest.approx(10.0)
    assert GilbertElliott(5, 5, 2, 50).mean_loss_pct() == pytest.approx(26.0)


def test_bdp_queue_default_is_in_full_size_frames() -> None:
    p = DirectionParams(delay_ms=50, rate_mbps=100)
    # rate x 2 x one-way delay = 1.25 MB = 825.6 frames of 1514 B
    assert p.effective_queue_limit_pkts() == 826 and p.effective_queue_limit_bytes() is None
    assert DirectionParams(rate_mbps=1).effective_queue_limit_pkts() == 64
    assert DirectionParams(delay_ms=50).effective_queue_limit_pkts() is None  # no rate: no queue
    only_bytes = DirectionParams(rate_mbps=1, queue_limit_bytes=3000)
    assert (only_bytes.effective_queue_limit_pkts(), only_bytes.effective_queue_limit_bytes()) == (None, 3000)
    assert DirectionParams(rate_mbps=1, queue_limit_pkts=5).effective_queue_limit_pkts() == 5


def test_schedule_rows_validate() -> None:
    ScheduleRow(0, 10, 0, 0, None, True)
    with pytest.raises(ConfigError):
        ScheduleRow(-1, 10, 0, 0, None, True)
    with pytest.raises(ConfigError):
        ScheduleRow(0, 10, 0, 0, 0.0, True)
    with pytest.raises(ConfigError):
        ScheduleRow(0, 10, 0, 0, None, "yes")
    with pytest.raises(ConfigError):
        check_schedule([])
    with pytest.raises(ConfigError, match=r"schedule\[1\]\.t_s"):
        check_schedule([ScheduleRow(1, 10, 0, 0, None, True), ScheduleRow(0.5, 10, 0, 0, None, True)])
    check_schedule([ScheduleRow(0, 10, 0, 0, None, True), ScheduleRow(0, 20, 0, 0, 5, False)])


def test_with_row_keeps_other_fields() -> None:
    base = DirectionParams(delay_ms=1, jitter_distribution="uniform", rate_mbps=5, queue_limit_pkts=9)
    p = base.with_row(ScheduleRow(3, 20, 1, 2, 50, False))
    assert (p.delay_ms, p.jitter_ms, p.loss_pct, p.rate_mbps, p.up) == (20, 1, 2, 50, False)
    assert p.jitter_distribution == "uniform" and p.queue_limit_pkts == 9


def test_netem_argv_replace_with_everything() -> None:
    p = DirectionParams(delay_ms=10, jitter_ms=2, jitter_distribution="normal", loss_pct=1,
                        rate_mbps=50)
    argv = netem_argv("h1-eth0", p)
    assert argv[:7] == ["tc", "qdisc", "replace", "dev", "h1-eth0", "root", "netem"]
    words = argv[7:]
    assert words[words.index("delay") + 1:words.index("delay") + 5] == ["10000.0001us", "2000.0001us",
                                                                          "distribution", "normal"]
    assert words[words.index("loss") + 1:words.index("loss") + 3] == ["random", "1%"]
    assert words[words.index("rate") + 1] == "50000000bit"
    # the BDP queue (50 Mbit/s x 20 ms = 83 frames) + frames in flight over delay + jitter (50)
    assert words[words.index("limit") + 1] == "133"


def test_netem_argv_always_has_a_rate_and_uses_change_for_updates() -> None:
    argv = netem_argv("s1-eth2", DirectionParams(delay_ms=5), "change", netns_pid=1234)
    assert argv[:3] == ["nsenter", "--net=/proc/1234/ns/net", "--"]
    assert argv[3:6] == ["tc", "qdisc", "change"]
    assert argv[argv.index("rate") + 1] == f"{UNLIMITED_RATE_BPS}bit"
    assert "distribution" not in argv and "loss" not in argv
    with pytest.raises(ValueError, match="allowed"):
        netem_argv("x", DirectionParams(), "add")


def test_netem_argv_uniform_jitter_gemodel_and_down() -> None:
    uni = netem_argv("x", DirectionParams(delay_ms=1, jitter_ms=1, jitter_distribution="uniform"))
    assert "distribution" not in uni and "1000.0001us" in uni
    ge = netem_argv("x", DirectionParams(loss_pct=5, loss_burst=GilbertElliott(1, 20, 0.5, 90)))
    i = ge.index("loss")
    assert ge[i + 1:i + 6] == ["gemodel", "1%", "20%", "90%", "0.5%"]
    down = netem_argv("x", DirectionParams(delay_ms=3, up=False))
    assert down[down.index("loss") + 1:down.index("loss") + 3] == ["random", "100%"]


def test_netem_limit_is_the_queue_plus_the_full_size_frames_in_flight() -> None:
    # 1 Gbit/s x 300 ms = 37.5 MB in flight = 24,769 frames of 1514 B, plus the BDP queue (2 x that)
    p = DirectionParams(delay_ms=300, rate_mbps=1000)
    assert netem_limit_pkts(p) == 24_769 + 49_538
    assert netem_limit_pkts(DirectionParams(rate_mbps=10, queue_limit_pkts=7)) == 7  # no delay line
    assert netem_limit_pkts(DirectionParams(delay_ms=10, rate_mbps=10, queue_limit_pkts=7)) == 7 + 9
    assert netem_limit_pkts(DirectionParams()) == 1000
    # without a rate: room for 1 Mpps over delay + 4 jitter (netem's tables reach 4 sigma)
    assert netem_limit_pkts(DirectionParams(delay_ms=20, jitter_ms=5)) == 40_000
    assert netem_limit_pkts(DirectionParams(delay_ms=3_600_000)) == 3_600_000_000  # < netem's u32


def test_wire_params_subtracts_calibration_and_maps_fields() -> None:
    p = DirectionParams(delay_ms=10, jitter_ms=1, jitter_distribution="pareto", loss_pct=2.5,
                        loss_burst=GilbertElliott(1, 25), rate_mbps=8, queue_limit_pkts=7, up=False)
    f = wire_params(p, delay_ms=9.95).split()  # the engine passes the compensated delay
    assert len(f) == 13
    assert f[0] == str(9_950_000) and f[1] == str(1_000_000) and f[2] == "2"
    assert float(f[3]) == round(0.025 * 0xFFFF_FFFF) / 0xFFFF_FFFF and f[4] == "1"
    assert float(f[5]) == pytest.approx(0.01) and float(f[6]) == pytest.approx(0.25)
    assert f[9] == "8000000" and f[10] == "7" and f[12] == "0"
    assert wire_params(p).split()[0] == str(10_000_000)  # default: the configured delay
    assert wire_params(DirectionParams(delay_ms=0.01), delay_ms=0.0).split()[0] == "0"


def test_netem_batch_line_is_the_argv_without_tc() -> None:
    p = DirectionParams(delay_ms=12.5, jitter_ms=1, loss_pct=2, rate_mbps=50)
    line = netem_batch_line("s1-eth2", p)
    assert line.split() == netem_argv("s1-eth2", p, "change")[1:]
    assert line.startswith("qdisc change dev s1-eth2 root netem limit ")
    assert "delay 12500.0001us 1000.0001us" in line and line.endswith("rate 50000000bit")
    assert "\n" not in line and "nsenter" not in line
    assert netem_batch_line("x", p, "replace").startswith("qdisc replace dev x root netem ")
    with pytest.raises(ValueError, match="verb"):
        netem_batch_line("x", p, "add")


def test_tc_batch_ties_each_failure_to_its_link_and_keeps_running(tmp_path: Path) -> None:
    """A change on a device that does not exist fails without root and touches nothing."""
    dev = "fsnodev" + secrets.token_hex(4)
    batch = TcBatch(None, tmp_path / "tc.log")
    try:
        for i in range(3):
            batch.send(("l1", "uplink") if i < 2 else ("l2", "downlink"), f"row {i}",
                       netem_batch_line(dev, DirectionParams(delay_ms=i)), dev)
        assert batch.drain(5.0)
        assert batch.alive()  # -force: tc goes on after a failed line
        got = batch.snapshot()
    finally:
        batch.close()
    assert (got["l1", "uplink"].sent, got["l1", "uplink"].errors, got["l1", "uplink"].applied) == (2, 2, 0)
    assert (got["l2", "downlink"].sent, got["l2", "downlink"].errors) == (1, 1)
    text = (tmp_path / "tc.log").read_text()
    assert text.count("Command failed -:") == 6 and dev in text  # change + its show, per row
    assert not batch.alive()


def test_schedule_summary_counts_and_percentiles() -> None:
    a, b = BatchCounters(sent=3, applied=2, errors=1, ack_ms=[0.2, 0.1]), BatchCounters(sent=1, applied=1,
                                                                                        ack_ms=[0.4])
    s = schedule_summary([a, b], [0.05, 0.5, 0.07])
    assert (s["rows_sent"], s["rows_applied"], s["errors"]) == (4, 3, 1)
    assert s["ack_ms_p50"] == 0.2 and s["ack_ms_max"] == 0.4 and s["late_ms_max"] == 0.5
    assert s["late_ms_p50"] == 0.07
    empty = schedule_summary([], [])
    assert empty["rows_sent"] == 0 and empty["ack_ms_p50"] is None and empty["late_ms_max"] is None

"""The relay's control channel, for both relays (C and pyrelay), with no link and no root: each
request line gets exactly one reply, a sched takes exactly its N rows, every field is checked,
lines are bounded, and the caller (RelayProcess) never waits forever. Fuzzed with a seeded stream."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from topologies.links import relayproc
from topologies.links.relayctl import LINE_MAX_BYTES, MAX_SCHED_ROWS
from topologies.links.relayproc import RelayError, RelayProcess, build_relay, check_request
from topologies.paths import REPO_ROOT

GOOD = "5000000 0 0 0.01 0 0 0 0 0 1000000 100 150000 1"  # the 13 numbers of P...
IMPLS = ("c", "python")


def relay_argv(impl: str) -> list[str]:
    """The relay run directly (no netns; without --disable-ipv6 it touches no sysctl)."""
    if impl == "c":
        binary = build_relay()
        assert binary is not None, "the C relay must build (gcc is a prerequisite)"
        return [str(binary)]
    return [sys.executable, "-m", "topologies.links.pyrelay"]


def talk(impl: str, data: bytes, timeout_s: float = 60) -> list[str]:
    """Feed ``data`` then EOF; the reply lines (after "ok relay ready"). The relay must exit 0."""
    done = subprocess.run(relay_argv(impl), input=data, capture_output=True, timeout=timeout_s,
                          cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    lines = done.stdout.decode().split("\n")
    assert lines[0] == "ok relay ready" and lines[-1] == ""
    return lines[1:-1]


def ask(impl: str, *requests: str) -> list[str]:
    return talk(impl, "".join(f"{r}\n" for r in requests).encode())


# --- an independent model of the framing: how many replies a byte stream gets ------------------
def _accepted_n(line: bytes) -> int:
    """Rows a request line makes the relay take: N of an accepted sched header, else 0."""
    if len(line) > LINE_MAX_BYTES or any((b < 0x20 and b not in b"\t\r\x0b\x0c") or b > 0x7E for b in line):
        return 0
    w = line.split()
    if len(w) < 4 or w[0] != b"sched" or not w[3].isdigit() or len(w[3].lstrip(b"0")) > 7:
        return 0
    return int(w[3]) if 1 <= int(w[3]) <= MAX_SCHED_ROWS else 0


def model(data: bytes) -> tuple[int, int]:
    """(replies, rows still owed to an unfinished sched) for the complete lines of ``data``."""
    replies = owed = 0
    for line in data.split(b"\n")[:-1]:
        if owed:
            owed -= 1
            replies += owed == 0
        elif (owed := _accepted_n(line)) == 0:
            replies += 1
    return replies, owed


# --- the fuzz ---------------------------------------------------------------------------------
def _number(rng: random.Random) -> str:
    return rng.choice(["0", "1", "-1", "0.5", "2", "1e3", "nan", "inf", "-inf", "1e999", "0x10", "", "1_0",
                       "3600000000001", "1e15", ".5", "5.", "+1", "-0", "1e-400", "7x", str(rng.random()),
                       str(rng.randrange(10**13)), "\u00e9".encode().decode("latin-1")])


def _params(rng: random.Random) -> str:
    words = GOOD.split() if rng.random() < 0.5 else [_number(rng) for _ in range(13)]
    if rng.random() < 0.3:
        i = rng.randrange(13)
        words[i] = _number(rng)
    if rng.random() < 0.15:
        words = words[:rng.randrange(13)] if rng.random() < 0.7 else words + ["0"]
    return " ".join(words)


def _message(rng: random.Random) -> bytes:
    """One fuzz message: one or more lines, each newline-terminated."""
    kind = rng.randrange(16)
    idx = rng.choice(["1", "0", "-1", "x", "99999999999", "2147483647"])
    dirn = rng.choice(["uplink", "downlink", "up", "1"])
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(60))) + b"\n"
    if kind == 1:
        text = rng.choice([f"set {idx} {dirn} {GOOD}", "sched 1 uplink 2", "stats 1", f"add 1 fzqa{idx} fzqb",
                           "seed 42", "ping", "ctlstats"])
        return text[:rng.randrange(len(text) + 1)].encode() + b"\n"
    if kind == 2:
        return f"set {idx} {dirn} {_params(rng)}\n".encode()
    if kind == 3:  # a schedule, sometimes with a wrong number of rows: the relay counts, not us
        n = rng.randrange(1, 6)
        rows = [f"{1000 * i + rng.choice([0, 0, 0, -5000])} {_params(rng) if rng.random() < 0.3 else GOOD}"
                for i in range(n + rng.choice([0, 0, 0, -1, 1]))]
        return "".join(f"{line}\n" for line in [f"sched {idx} {dirn} {n}", *rows]).encode()
    if kind == 4:
        n = rng.choice(["0", "1000001", "10" * 12, "-3", "1e3", "99999999999999999999999"])
        return f"sched 1 uplink {n}\n".encode()
    if kind == 5:
        return rng.choice([b"\n", b"   \n", b"\t \r\n", b"\r\n"])
    if kind == 6:
        return b"x" * rng.choice([LINE_MAX_BYTES, LINE_MAX_BYTES + 1, 5000, 70000]) + b"\n"
    if kind == 7:
        seed = rng.choice(["42", "abc", "-1", "18446744073709551616", "18446744073709551615", ""])
        return f"seed {seed}\n".encode()
    if kind == 8:
        return f"add {idx} {rng.choice(['fzqa', 'x' * 16, 'fzqb'])} {rng.choice(['fzqb', 'fzqa'])}\n".encode()
    if kind == 9:
        return f"{rng.choice(['stats', 'del'])} {idx}{rng.choice(['', ' 2'])}\n".encode()
    if kind == 10:
        return rng.choice([b"ping\n", b"now\n", b"ctlstats\n", b"ping extra\n", b"frobnicate 1\n", b"PING\n"])
    if kind == 11:  # a truncated stream piece: no newline, it joins the next message
        return rng.choice([b"set 1 up", b"sch", b"ping", b"\x00\xff"])
    if kind == 14:  # links inside the relay (cells): these adds succeed
        a, b = rng.choice([("-", "-"), ("-", "fzqb"), ("fzqa", "-"), ("-", "x" * 16)])
        return f"add {rng.choice(['1', '2', '3', idx])} {a} {b}\n".encode()
    if kind == 15:
        ids = [rng.choice(["1", "2", "3", idx]) for _ in range(2)]
        mac = rng.choice(["02:00:00:00:00:01", "02:00:00:00:00:0G", "2:0:0:0:0:1", "02-00-00-00-00-01"])
        dscp = rng.choice(["46", "0", "63", "64", "-", "x", "-1"])
        text = rng.choice([f"cell {ids[0]} {ids[1]}", f"join {ids[0]} {ids[1]} {mac}", f"leave {ids[0]}",
                           f"cell {ids[0]}", f"join {ids[0]} {ids[1]}", f"leave {ids[0]} {ids[1]}",
                           f"n3dscp {ids[0]} {dscp}", f"n3dscp {ids[0]}"])
        return text.encode() + b"\n"
    if kind == 12:
        return f"set {idx} {dirn} {' '.join(['0'] * 12)}\n".encode()  # `up` missing
    return f"sched 1 uplink 3\n1 {GOOD}\n".encode()  # rows left owed: later messages become rows


def fuzz_stream(seed: int, count: int) -> tuple[bytes, int]:
    """A seeded stream ending in a complete "ping"; the number of replies it must get."""
    rng = random.Random(seed)
    data = b"".join(_message(rng) for _ in range(count)) + b"\n"
    data += b"\n" * model(data)[1]  # pay any rows still owed, so that the ping is a request
    data += b"ping\n"
    replies, owed = model(data)
    assert owed == 0
    return data, replies


def _normal(replies: list[str]) -> list[str]:
    # "now" differs by nature; stats texts differ in the C relay's extra keys (late_sum_ns, ...)
    return [re.sub(r"^ok \{\"uplink\".*$", "ok STATS", re.sub(r"^ok \d+$", "ok NOW", r)) for r in replies]


def test_fuzz_one_reply_per_request_and_both_relays_agree() -> None:
    data, expected = fuzz_stream(seed=8, count=2500)
    got = {impl: talk(impl, data) for impl in IMPLS}
    for impl, replies in got.items():
        assert len(replies) == expected, impl
        assert replies[-1] == "ok", impl  # the final ping: the relay survived, still in step
        assert all(r == "ok" or r.startswith(("ok ", "err ")) for r in replies), impl
        assert sum(r.startswith("err ") for r in replies) > expected // 3  # the fuzz did hit errors
    assert _normal(got["c"]) == _normal(got["python"])


@pytest.mark.parametrize("impl", IMPLS)
def test_huge_n_is_refused_without_reading_rows_and_the_maximum_is_taken(impl: str) -> None:
    assert ask(impl, "sched 1 uplink 100000000000000000000", "ping", "sched 1 uplink 1000001", "ping") == [
        "err sched: N: got 100000000000000000000; allowed an integer 1..1000000 (no rows read)", "ok",
        "err sched: N: got 1000001; allowed an integer 1..1000000 (no rows read)", "ok"]
    rows = b"\n" * MAX_SCHED_ROWS  # N = the maximum: exactly that many lines are rows, one reply
    replies = talk(impl, b"sched 1 uplink 1000000\n" + rows + b"ping\n")
    assert replies == ["err row 0: expected 14 numbers (t_ns and 13 parameters), got 0", "ok"]


@pytest.mark.parametrize("impl", IMPLS)
def test_a_bad_row_mid_schedule_gives_one_reply_and_keeps_step(impl: str) -> None:
    rows = [f"100 {GOOD}", f"200 {GOOD}", "300 5000000 0 0 2 0 0 0 0 0 1000000 100 150000 1", f"400 {GOOD}"]
    assert ask(impl, "sched 1 uplink 4", *rows, "ping") == ["err row 2: loss_prob: got 2; allowed 0..1", "ok"]
    assert ask(impl, "sched 1 uplink 3", f"100 {GOOD}", f"50 {GOOD}", "garbage", "ping") == [
        "err row 1: t_ns: got 50; allowed >= the previous row's t_ns", "ok"]
    # valid rows, same times allowed: the only complaint left is the missing link
    assert ask(impl, "sched 1 uplink 3", f"100 {GOOD}", f"100 {GOOD}", f"200 {GOOD}") == ["err no link 1"]
    assert ask(impl, "sched 1 sideways 2", "junk", "junk", "ping") == [
        "err usage: sched ID uplink|downlink N", "ok"]


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_and_blank_lines_each_get_one_reply(impl: str) -> None:
    assert ask(impl, "", "   ", "\t\r", "ping") == ["err empty command"] * 3 + ["ok"]


@pytest.mark.parametrize("impl", IMPLS)
def test_fields_are_all_required_finite_and_bounded(impl: str) -> None:
    zeros = ["0"] * 13
    cases = {
        " ".join(zeros[:12]): "err expected 13 numbers, got 12",  # `up` missing: no longer "down"
        " ".join(zeros + ["0"]): "err expected 13 numbers, got 14",
        GOOD.replace("0.01", "nan"): "err loss_prob: got nan; allowed 0..1",
        GOOD.replace("0.01", "inf"): "err loss_prob: got inf; allowed 0..1",
        GOOD.replace("0.01", "1e999"): "err loss_prob: got 1e999; allowed 0..1",
        GOOD.replace("5000000", "-1", 1): "err delay_ns: got -1; allowed an integer 0..3600000000000",
        GOOD.replace("5000000", "0x10", 1): "err delay_ns: got 0x10; allowed an integer 0..3600000000000",
        GOOD.replace("5000000", "5.5", 1): "err delay_ns: got 5.5; allowed an integer 0..3600000000000",
        GOOD.replace("5000000", "5x", 1): "err delay_ns: got 5x; allowed an integer 0..3600000000000",
        GOOD.replace(" 0 0 0.01", " 0 3 0.01", 1): "err jdist: got 3; allowed 0, 1 or 2",
        GOOD[:-1] + "2": "err up: got 2; allowed 0 or 1",
        GOOD.replace("1000000", "0.5"): "err rate_bps: got 0.5; allowed 0 (unlimited) or 1..1000000000000",
        GOOD.replace("150000", "1e16"): "err qlim_bytes: got 1e16; allowed an integer 0..1000000000000000",
        GOOD: "err no link 3",  # every field fine
        GOOD.replace("1000000", "0").replace("0.01", "1e-3"): "err no link 3",
    }
    replies = ask(impl, *(f"set 3 downlink {p}" for p in cases))
    assert replies == list(cases.values())
    assert ask(impl, "add 1 abcdefghijklmnop b", "add 1 fzq0 fzq0", "add 1 fzqnope0 fzqnope1", "seed x",
               "seed 7", "seed 7 8", "stats 1 2", "del", "now 1", "ctlstats") == [
        "err interface name too long: abcdefghijklmnop (max 15 bytes)", "err IFA and IFB must differ",
        "err no such interface fzqnope0", "err seed: got x; allowed an integer 0..18446744073709551615",
        "ok", "err usage: seed S", "err usage: stats ID", "err usage: del ID", "err usage: now",
        'ok {"requests":9,"errors":8,"too_long":0,"rows":0}']


@pytest.mark.parametrize("impl", IMPLS)
def test_long_lines_get_one_reply_in_bounded_memory(impl: str) -> None:
    exact = "ping" + " " * (LINE_MAX_BYTES - 4)
    assert ask(impl, exact, exact + " ", "x" * 100_000, "ping", "ctlstats") == [
        "ok", "err line too long (max 4096 bytes)", "err line too long (max 4096 bytes)", "ok",
        'ok {"requests":4,"errors":2,"too_long":2,"rows":0}']
    # 32 MB without a newline, then a ping: the relay's peak memory hardly moves
    proc = subprocess.Popen(relay_argv(impl), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), cwd=REPO_ROOT)
    try:
        assert proc.stdout.readline() == b"ok relay ready\n"
        before_kb = _peak_rss_kb(proc.pid)
        chunk = b"y" * (1 << 16)
        for _ in range(512):
            proc.stdin.write(chunk)
        proc.stdin.write(b"\nping\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"err line too long (max 4096 bytes)\n"
        assert proc.stdout.readline() == b"ok\n"
        assert _peak_rss_kb(proc.pid) - before_kb < 4096
    finally:
        proc.kill()
        proc.wait()


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


# --- the caller: RelayProcess ---------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_relay_process_times_out_names_the_command_and_fails_fast_after(impl: str, tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    relay = RelayProcess(None, log, prefer_c=impl == "c", realtime=False, timeout_s=0.5)
    assert relay.implementation == impl
    try:
        assert relay.command("ping") == ""
        with pytest.raises(RelayError, match=r"relay: set: err expected 13 numbers, got 12; see .*relay.log"):
            relay.command("set 1 uplink " + " ".join(["0"] * 12))
        with pytest.raises(RelayError, match="row 1: t_ns"):
            relay.command("sched 1 uplink 2", [f"5 {GOOD}", f"4 {GOOD}"])
        assert relay.command("ping") == ""  # still in step
        os.kill(relay.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(RelayError, match=r"no reply to 'stats 1' within 0.5 s "
                           rf"\(relay pid \d+ still running\); see {re.escape(str(log))}") as caught:
            relay.command("stats 1")
        assert time.monotonic() - t0 < 3 and caught.value.alive and caught.value.log_path == log
        os.kill(relay.pid, signal.SIGCONT)
        with pytest.raises(RelayError, match="out of step"):  # the late reply must not answer this
            relay.command("ping")
    finally:
        os.kill(relay.pid, signal.SIGCONT)
        relay.stop()
    assert relay.proc.returncode == 0


def test_relay_process_reports_a_dead_relay_and_refuses_bad_framing(tmp_path: Path) -> None:
    relay = RelayProcess(None, tmp_path / "relay.log", realtime=False, timeout_s=2)
    try:
        for line, rows in [("sched 1 uplink 2", [GOOD]), ("sched 1 uplink 1", None), ("ping", [GOOD]),
                           ("ping\nping", None), ("set 1 uplink " + "0 " * 3000, None),
                           ("sched 1 uplink 1", [f"1 {GOOD}\n2 {GOOD}"])]:
            with pytest.raises(ValueError):
                relay.command(line, rows)
        check_request("sched 1 uplink 1", [f"1 {GOOD}"])
        relay.proc.kill()
        relay.proc.wait()
        with pytest.raises(RelayError, match=r"relay exited with -9 before 'ping'"):
            relay.command("ping")
    finally:
        relay.stop()


def test_build_rebuilds_when_any_source_or_header_changes(tmp_path: Path, monkeypatch) -> None:
    for name in (*relayproc.TOOL_SOURCES["relay"], "relay.h"):
        (tmp_path / name).write_bytes((relayproc.RELAY_DIR / name).read_bytes())
    monkeypatch.setattr(relayproc, "RELAY_DIR", tmp_path)
    binary = build_relay()
    assert binary == tmp_path / "bin" / "relay"
    for name in ("control.c", "relay.h"):
        built = binary.stat().st_mtime_ns
        later = built + 2_000_000_000
        os.utime(tmp_path / name, ns=(later, later))
        assert build_relay() == binary and binary.stat().st_mtime_ns > built, name
    ran = subprocess.run([str(binary)], input=b"ping\n", capture_output=True, timeout=10)
    assert ran.stdout == b"ok relay ready\nok\n"

"""Link backends as strategies: registry and selection, the engine's common part (directions,
compensation, shortfall, floor warnings, metadata) on a fake backend, the relay and netem
backends' command lines without root, the Python relay's wire format, and the package's imports."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import topologies.links.backends.netem as netem_backend
import topologies.links.backends.relay as relay_backend
from topologies.links import (
    BACKENDS,
    DIRECTIONS,
    REGISTRY,
    DirectionParams,
    LinkEngine,
    ScheduleRow,
    select_backend,
)
from topologies.links.backend import BackendContext, BackendLink, Endpoint, LinkBackend, Setting
from topologies.links.backend import veth_offloads as plain_veth_offloads
from topologies.links.backends.netem import NetemBackend, NetemLink
from topologies.links.backends.relay import OFFLOADS_OFF, RelayBackend, RelayLink
from topologies.links.direction import check_direction
from topologies.links.pyrelay import Relay
from topologies.links.relayproc import wire_params
from topologies.manifest import Manifest
from topologies.paths import REPO_ROOT

LINKS_DIR = REPO_ROOT / "topologies" / "links"
HOST = SimpleNamespace(pid=4242, inNamespace=True)
HOST2 = SimpleNamespace(pid=4343, inNamespace=True)
SWITCH = SimpleNamespace(pid=77, inNamespace=False)  # a switch: root namespace


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Manifest:
    monkeypatch.setattr("topologies.manifest.STATE_ROOT", tmp_path / "state")
    return Manifest.create("tunit")


# --- registry and selection --------------------------------------------------------------------
def test_registry_is_the_backend_list() -> None:
    assert BACKENDS == ("auto", "relay", "netem") == ("auto", *REGISTRY)
    assert all(issubclass(cls, LinkBackend) for cls in REGISTRY.values())


def test_select_backend_names_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="allowed: 'auto', 'relay', 'netem'"):
        select_backend("tc")
    monkeypatch.setattr(NetemBackend, "unavailable_reason", classmethod(lambda cls: "no netem here"))
    assert select_backend("auto") == "relay"
    with pytest.raises(ValueError, match="'netem' was requested but no netem here; use 'relay' or 'auto'"):
        select_backend("netem")
    monkeypatch.setattr(NetemBackend, "unavailable_reason", classmethod(lambda cls: None))
    assert select_backend("auto") == "netem"  # the higher auto_priority
    assert select_backend("netem") == "netem"


def test_directions_are_uplink_and_downlink() -> None:
    assert DIRECTIONS == ("uplink", "downlink")
    assert check_direction("downlink") == "downlink"
    for bad in ("ab", "ba", "up", 0):
        with pytest.raises(ValueError, match="allowed: 'uplink', 'downlink'"):
            check_direction(bad)


# --- the engine's common part, on a fake backend --------------------------------------------------
class FakeBackend(LinkBackend):
    """Records every call; its own latency is set by the test."""

    metadata_keys = ("fake_counter",)

    def __init__(self, ctx: BackendContext, offset_ms: float = 0.0, floor_ms: float = 0.0) -> None:
        super().__init__(ctx)
        self.cal = {"offset_ms": offset_ms, "floor_ms": floor_ms, "measured": True}
        self.calls: list[tuple] = []

    def start(self) -> None:
        self.calls.append(("start",))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def calibration(self) -> dict[str, Any]:
        return dict(self.cal)

    def make_intf_pair(self, name: str, end1: Endpoint, end2: Endpoint, options: Any) -> BackendLink:
        self.calls.append(("make_intf_pair", name, end1.intf, end2.intf, dict(options)))
        return BackendLink(name, end1, end2, options)

    def attach(self, link: BackendLink, uplink: Setting, downlink: Setting) -> None:
        self.calls.append(("attach", link.name, uplink, downlink))

    def set(self, link: BackendLink, direction: str, setting: Setting) -> None:
        self.calls.append(("set", link.name, direction, setting))

    def schedule(self, link: BackendLink, direction: str, rows: Any, t0_monotonic_s: float) -> None:
        self.calls.append(("schedule", link.name, direction, list(rows), t0_monotonic_s))

    def stats(self, link: BackendLink) -> dict:
        return {d: {"tx": 1} for d in DIRECTIONS}

    def detach(self, link: BackendLink) -> None:
        self.calls.append(("detach", link.name))

    def metadata(self) -> dict[str, Any]:
        return {"fake_counter": 3}


@pytest.fixture
def fake_engine(manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LinkEngine:
    monkeypatch.setitem(REGISTRY, "fake", FakeBackend)  # one registry line is all a backend needs
    engine = LinkEngine("fake", "tunit", manifest, tmp_path, seed=3, offset_ms=0.05, floor_ms=0.08)
    engine.switch_hop_ms = 0.1
    engine.start()
    return engine


def _build(engine: LinkEngine, name: str, uplink: DirectionParams, downlink: DirectionParams,
           hops: dict[str, int]) -> None:
    """What the Mininet link class does, in its order."""
    engine.add_link(name, emulated=True, switch_hops=hops)
    engine.make_intf_pair(name, Endpoint(HOST, f"{name}-a"), Endpoint(SWITCH, f"{name}-b"), {"x": 1})
    engine.attach(name, uplink, downlink)


def test_engine_compensates_backend_latency_and_switch_hop(fake_engine: LinkEngine) -> None:
    _build(fake_engine, "l1", DirectionParams(delay_ms=10), DirectionParams(delay_ms=10, loss_pct=1),
           {"uplink": 1, "downlink": 0})
    backend = fake_engine.backend
    assert backend.calls[0] == ("start",)
    assert backend.calls[1] == ("make_intf_pair", "l1", "l1-a", "l1-b", {"x": 1})
    _, _, up, down = backend.calls[2]
    assert up.delay_ms == pytest.approx(9.85) and up.params == DirectionParams(delay_ms=10)
    assert down.delay_ms == pytest.approx(9.95) and down.params.loss_pct == 1  # no switch entered
    fake_engine.set_params("l1", "uplink", DirectionParams(delay_ms=0.1))
    assert backend.calls[-1][3] == Setting(DirectionParams(delay_ms=0.1), 0.0)
    meta = fake_engine.metadata()
    assert meta["switch_hop_shortfall_ms"] == {"l1": {"uplink": 0.05}}
    assert meta["backend"] == "fake" and meta["fake_counter"] == 3 and meta["seed"] == 3
    assert meta["relay_implementation"] is None and meta["netem_schedule"] is None  # others' keys
    assert meta["calibration"]["offset_ms"] == 0.05 and meta["switch_hop_ms_compensated"] == 0.1
    assert set(meta) >= {"links", "versions", "switch_hop_shortfall_ms"}


def test_engine_schedule_rows_are_compensated_and_keep_other_fields(fake_engine: LinkEngine) -> None:
    base = DirectionParams(delay_ms=5, jitter_distribution="uniform", rate_mbps=10, queue_limit_pkts=9)
    _build(fake_engine, "sat", DirectionParams(), base, {"uplink": 1, "downlink": 1})
    rows = [ScheduleRow(0.0, 20, 1, 0, 10, True), ScheduleRow(1.5, 30, 0, 2, 50, False)]
    fake_engine.set_schedule("sat", "downlink", rows, 123.0)
    _, name, direction, settings, t0 = fake_engine.backend.calls[-1]
    assert (name, direction, t0) == ("sat", "downlink", 123.0)
    assert [s.t_s for s in settings] == [0.0, 1.5]
    assert [s.delay_ms for s in settings] == pytest.approx([19.85, 29.85])
    assert settings[1].params.queue_limit_pkts == 9 and settings[1].params.up is False
    with pytest.raises(ValueError, match="schedule"):
        fake_engine.set_schedule("sat", "downlink", [], 0.0)


def test_engine_rejects_bad_directions_names_and_transparent_links(fake_engine: LinkEngine) -> None:
    _build(fake_engine, "l1", DirectionParams(delay_ms=1), DirectionParams(), {})
    with pytest.raises(ValueError, match="allowed: 'uplink', 'downlink'"):
        fake_engine.set_params("l1", "ab", DirectionParams())
    with pytest.raises(KeyError, match="no link named 'nope'"):
        fake_engine.stats("nope")
    with pytest.raises(ValueError, match="already used"):
        fake_engine.add_link("l1", emulated=True)
    with pytest.raises(TypeError):
        fake_engine.set_params("l1", "uplink", {"delay_ms": 1})
    fake_engine.add_link("plain", emulated=False)
    with pytest.raises(ValueError, match="transparent"):
        fake_engine.set_params("plain", "uplink", DirectionParams(delay_ms=1))
    assert fake_engine.stats("l1") == {"uplink": {"tx": 1}, "downlink": {"tx": 1}}
    fake_engine.remove_link("l1")
    fake_engine.remove_link("plain")
    assert fake_engine.backend.calls[-1] == ("detach", "l1")  # the plain link never reached it


def test_engine_warns_below_the_backend_floor(fake_engine: LinkEngine, caplog: pytest.LogCaptureFixture
                                              ) -> None:
    with caplog.at_level(logging.WARNING, logger="topologies.links.engine"):
        _build(fake_engine, "l1", DirectionParams(delay_ms=0.05), DirectionParams(), {})
    assert "link l1 uplink: delay_ms 0.050 is below" in caplog.text
    assert "downlink" not in caplog.text  # a zero delay is transparent, not below the floor


def test_backend_options_reach_the_backend_and_unknown_ones_fail(
        manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NetemBackend, "unavailable_reason", classmethod(lambda cls: None))
    with pytest.raises(TypeError, match="bogus"):
        LinkEngine("netem", "tunit", manifest, tmp_path, bogus=1)
    with pytest.raises(ValueError, match="relay_impl"):
        LinkEngine("relay", "tunit", manifest, tmp_path, relay_impl="rust")
    engine = LinkEngine("relay", "tunit", manifest, tmp_path, relay_impl="python")
    assert engine.backend.relay_impl == "python"


def test_veth_offloads() -> None:
    assert plain_veth_offloads(DirectionParams(), DirectionParams(), txo=True) == ()
    lossy = DirectionParams(loss_pct=1)
    assert plain_veth_offloads(DirectionParams(), lossy, txo=True) == ("tso", "off", "gso", "off")
    assert plain_veth_offloads(DirectionParams(), DirectionParams(), txo=False) == ("tx", "off")


# --- the relay backend's control lines -------------------------------------------------------------
class FakeRelay:
    pid, implementation = 999, "c"

    def __init__(self) -> None:
        self.lines: list[tuple[str, list[str] | None]] = []

    def command(self, line: str, rows: list[str] | None = None) -> str:
        self.lines.append((line, rows))
        return ""

    def alive(self) -> bool:
        return True

    def stats(self, link_id: int) -> dict:
        return {"uplink": {"rx": link_id}, "downlink": {"rx": 0}}


def test_relay_backend_makes_two_veth_pairs_and_speaks_uplink_downlink(
        manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(relay_backend, "run_cmd",
                        lambda argv, stdin=None, cwd=None: ran.append((argv, stdin)))
    backend = RelayBackend(BackendContext("tunit", manifest, tmp_path))
    with pytest.raises(RuntimeError, match="start"):
        backend.make_intf_pair("l0", Endpoint(HOST, "h1-eth0"), Endpoint(HOST2, "h2-eth0"), {})
    backend.relay = relay = FakeRelay()
    link = backend.make_intf_pair("l1", Endpoint(HOST, "h1-eth0", "02:00:00:00:00:01"),
                                  Endpoint(SWITCH, "s1-eth1"), {})
    assert isinstance(link, RelayLink) and link.link_id == 1
    assert ran == [(["ip", "-n", "fstunitrly", "-batch", "-"],
                    "link add a1 type veth peer name h1-eth0 address 02:00:00:00:00:01 netns 4242\n"
                    "link add b1 type veth peer name s1-eth1 netns 77\n")]
    assert {"kind": "link", "name": "s1-eth1"} in manifest.entries  # root-namespace end recorded
    assert backend.offloads(DirectionParams(), DirectionParams(), txo=True) == OFFLOADS_OFF
    up = Setting(DirectionParams(delay_ms=10), 9.9)
    down = Setting(DirectionParams(delay_ms=2, loss_pct=1), 2.0)
    backend.attach(link, up, down)
    assert relay.lines == [("add 1 a1 b1", None), (f"set 1 uplink {wire_params(up.params, 9.9)}", None),
                           (f"set 1 downlink {wire_params(down.params)}", None)]
    assert relay.lines[1][0].split()[3] == "9900000"
    backend.schedule(link, "downlink", [Setting(DirectionParams(delay_ms=5), 4.5, t_s=0.25)], 100.0)
    assert relay.lines[-1] == ("sched 1 downlink 1", [f"100250000000 {wire_params(DirectionParams(), 4.5)}"])
    assert backend.stats(link) == {"uplink": {"rx": 1}, "downlink": {"rx": 0}}
    backend.detach(link)
    assert relay.lines[-1] == ("del 1", None)
    assert backend.metadata() == {"relay_implementation": "c"} and backend.data_path_pids() == [999]


# --- the netem backend's command lines ---------------------------------------------------------------
class FakeBatch:
    made: list[tuple[int | None, FakeBatch]] = []

    def __init__(self, ns_pid: int | None, log_path: Path) -> None:
        self.pid, self.counters, self.sent = 31337, {}, []
        self.done = threading.Event()
        FakeBatch.made.append((ns_pid, self))

    def send(self, key: tuple[str, str], what: str, line: str, dev: str) -> float:
        self.sent.append((key, what, line, dev))
        if len(self.sent) == 2:
            self.done.set()
        return time.monotonic()

    def alive(self) -> bool:
        return True

    def drain(self, timeout_s: float = 2.0) -> bool:
        return True

    def snapshot(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def test_netem_backend_shapes_each_direction_on_its_egress(
        manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(netem_backend, "run_cmd", lambda argv, stdin=None, cwd=None: ran.append(argv))
    monkeypatch.setattr(netem_backend, "TcBatch", FakeBatch)
    monkeypatch.setattr(FakeBatch, "made", [])
    backend = NetemBackend(BackendContext("tunit", manifest, tmp_path))
    assert NetemBackend.owns_qdisc and backend.data_path_pids() == []
    link = NetemLink("l1", Endpoint(HOST, "h1-eth0"), Endpoint(SWITCH, "s1-eth1"))
    backend.attach(link, Setting(DirectionParams(delay_ms=10), 9.9),
                   Setting(DirectionParams(delay_ms=30), 30.0))
    assert ran[0][:9] == ["nsenter", "--net=/proc/4242/ns/net", "--", "tc", "qdisc", "replace", "dev",
                          "h1-eth0", "root"]
    assert ran[0][ran[0].index("delay") + 1] == "9900.0001us"       # the compensated delay
    assert ran[1][:5] == ["tc", "qdisc", "replace", "dev", "s1-eth1"]  # root namespace: no nsenter
    assert ran[1][ran[1].index("delay") + 1] == "30000.0001us"
    backend.set(link, "downlink", Setting(DirectionParams(delay_ms=5, loss_pct=1), 4.8))
    assert ran[2][:3] == ["tc", "qdisc", "change"] and "4800.0001us" in ran[2] and "loss" in ran[2]
    rows = [Setting(DirectionParams(delay_ms=20), 19.9, 0.0),
            Setting(DirectionParams(delay_ms=40), 39.9, 0.001)]
    backend.schedule(link, "uplink", rows, time.monotonic())
    [(ns_pid, batch)] = FakeBatch.made  # one tc batch, in node1's namespace
    assert ns_pid == 4242
    assert batch.done.wait(5)
    assert [s[0] for s in batch.sent] == [("l1", "uplink")] * 2
    assert batch.sent[0][2].startswith("qdisc change dev h1-eth0 root netem ")
    assert "19900.0001us" in batch.sent[0][2]
    assert "39900.0001us" in batch.sent[1][2] and batch.sent[1][1] == "schedule row at 0.001 s"
    monkeypatch.setattr(netem_backend, "netem_stats", lambda dev, pid: {"tx": 5, "dev": dev, "pid": pid})
    stats = backend.stats(link)
    assert stats["uplink"]["dev"] == "h1-eth0" and stats["downlink"]["pid"] is None
    assert stats["uplink"]["schedule"]["rows_sent"] == 0  # the fake batch counts nothing
    backend.detach(link)
    backend.stop()
    assert backend.metadata()["netem_schedule"]["rows_sent"] == 0
    assert "seed" not in " ".join(w for argv in ran for w in argv)  # no seed given: none sent


# --- the Python relay's wire format ------------------------------------------------------------------
def test_python_relay_takes_direction_tokens_and_reports_uplink_downlink() -> None:
    relay = Relay()
    assert relay.command("add 7 - -") == "ok"  # both ends inside the relay: no sockets
    up, down = relay.links[7].dirs
    words = wire_params(DirectionParams(delay_ms=3), 2.5)
    assert relay.command(f"set 7 downlink {words}", lambda: "") == "ok"
    assert down.sched[0][1].delay == pytest.approx(0.0025) and up.sched[0][1].delay == 0
    rows = iter([f"1000000000 {words}", f"2000000000 {wire_params(DirectionParams(delay_ms=9))}"])
    assert relay.command("sched 7 uplink 2", lambda: next(rows)) == "ok"
    assert [t for t, _ in up.sched] == [1.0, 2.0]
    assert relay.command(f"set 7 1 {words}", lambda: "").startswith("err usage")
    reply = relay.command("stats 7", lambda: "")
    assert reply.startswith("ok ") and '"uplink": {"rx": 0' in reply and '"downlink"' in reply


def test_c_relay_speaks_the_same_directions() -> None:
    source = (LINKS_DIR / "relay" / "relay.c").read_text()
    assert '{"uplink", "downlink"}' in source and '"ab"' not in source and '"ba"' not in source

# Import cycles and private names across modules: tests/unit/test_architecture.py (whole tree).

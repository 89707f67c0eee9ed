"""The leo_adaptation controller app without a switch: it waits for the run's configuration, then
steers through the switch app beside it (flow mods on fake datapaths) and reports in its status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("os_ken")

from os_ken.base import app_manager  # noqa: E402
from os_ken.ofproto import ofproto_v1_3 as OFP  # noqa: E402
from test_controller_apps import POLICY, FakeDatapath, features  # noqa: E402

from controllers.adaptation import PRIO_STEER, SteeringConfig, SteerSwitch  # noqa: E402
from controllers.apps import (  # noqa: E402
    ADAPTATION_FILE_NAME,
    ADAPTATION_STATUS_FILE_NAME,
    ENV_POLICY,
    ENV_STATUS,
)
from controllers.apps.leo_adaptation import LeoAdaptation  # noqa: E402
from controllers.apps.slice_switch import SliceSwitch  # noqa: E402

S = 1_000_000_000
UPF = SteerSwitch(7, {"10.0.0.1": 1, "10.0.0.9": 2}, {"10.0.0.1": 1, "10.0.0.9": 3})


def _config(tmp: Path, dpid: int = 7) -> dict:
    switch = SteerSwitch(dpid, UPF.via_leo, UPF.via_backup)
    return SteeringConfig(0, 10.0, 60.0, ((12.0, 12.5),), (("10.0.0.1", "10.0.0.9"),), (switch,),
                          str(tmp / "probe.bin"), 100.0, 1.0).to_dict()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    monkeypatch.setenv(ENV_POLICY, str(tmp_path / "policy.json"))
    monkeypatch.setenv(ENV_STATUS, str(tmp_path / "status.json"))
    return tmp_path


@pytest.fixture
def apps(env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SliceSwitch, LeoAdaptation, FakeDatapath]:
    switch = SliceSwitch()
    monkeypatch.setattr(app_manager, "SERVICE_BRICKS", {"SliceSwitch": switch})
    dp = FakeDatapath(7)
    switch.switch_features_handler(features(dp))
    _ready(switch, 7, generation=1)
    dp.sent.clear()
    return switch, LeoAdaptation(), dp


def _ready(switch: SliceSwitch, dpid: int, generation: int) -> None:
    """The switch app's resync of ``dpid`` done (its barrier answered) under ``generation``."""
    switch.generation[dpid] = generation
    switch.ready_dpids.add(dpid)


def _status(tmp: Path) -> dict:
    return json.loads((tmp / ADAPTATION_STATUS_FILE_NAME).read_text())


def test_the_app_waits_for_its_configuration_then_steers_through_the_switch_app(env: Path, apps) -> None:
    _, app, dp = apps
    app.tick(12 * S)
    assert app.loop is None and dp.sent == []  # nothing to do before the run's configuration
    (env / ADAPTATION_FILE_NAME).write_text(json.dumps(_config(env)))
    app.tick(5 * S)
    assert _status(env)["configured"] and dp.sent == []  # before the on arm: nothing moves
    app.tick(12 * S + 100_000_000)  # inside the window, adaptation on
    mod, = dp.sent
    assert mod.command == OFP.OFPFC_ADD and mod.priority == PRIO_STEER
    assert (mod.match["ipv4_src"], mod.match["ipv4_dst"]) == ("10.0.0.1", "10.0.0.9")
    assert mod.instructions[0].actions[0].port == 3  # the backup tree's port
    (change,) = _status(env)["changes"]
    assert change["via"] == "backup" and change["reason"] == "reconfiguration" and change["applied_ns"] > 0
    app.tick(12 * S + 600_000_000)  # window over: back on the LEO tree's port, same match
    assert dp.sent[-1].instructions[0].actions[0].port == 2 and _status(env)["via"] == "leo"


def test_a_switch_that_is_not_connected_is_reported_not_half_steered(env: Path, apps) -> None:
    _, app, dp = apps
    (env / ADAPTATION_FILE_NAME).write_text(json.dumps(_config(env, dpid=9)))
    app.tick(12 * S + 100_000_000)
    assert dp.sent == []
    (change,) = _status(env)["changes"]
    assert change["error"] == "dpid 0x9 is not connected" and change["applied_ns"] is None


def test_rules_go_only_to_a_ready_switch_and_again_after_its_resync(env: Path, apps) -> None:
    switch, app, dp = apps
    (env / ADAPTATION_FILE_NAME).write_text(json.dumps(_config(env)))
    app.tick(5 * S)
    switch.ready_dpids.discard(7)  # reconnected, resync under way: what is sent now it would delete
    app.tick(12 * S + 100_000_000)
    assert dp.sent == [] and "not ready" in _status(env)["changes"][-1]["error"]
    _ready(switch, 7, generation=2)
    app.tick(12 * S + 200_000_000)  # 100 ms later: tried again
    assert dp.sent[-1].instructions[0].actions[0].port == 3 and _status(env)["via"] == "backup"
    sent = len(dp.sent)
    app.tick(12 * S + 210_000_000)
    assert len(dp.sent) == sent  # nothing new while nothing changes
    switch.ready_dpids.discard(7)
    app.tick(12 * S + 220_000_000)
    _ready(switch, 7, generation=3)  # a resync replaced the switch's rules: the backup path again
    app.tick(12 * S + 230_000_000)
    assert len(dp.sent) == sent + 1 and dp.sent[-1].instructions[0].actions[0].port == 3
    assert [c["via"] for c in _status(env)["changes"] if c["error"] is None] == ["backup", "backup"]


def test_a_restarted_app_keeps_the_earlier_records_and_steers_as_it_should(env: Path, apps) -> None:
    _, app, dp = apps
    (env / ADAPTATION_FILE_NAME).write_text(json.dumps(_config(env)))
    app.tick(12 * S + 100_000_000)  # on the backup in the window
    before = _status(env)
    assert before["via"] == "backup" and before["restarts_s"] == []
    restarted = LeoAdaptation()  # the controller came back (its switch app resynced: rules gone)
    restarted.tick(12 * S + 200_000_000)  # still in the window: the backup path again
    after = _status(env)
    assert after["restarts_s"] == [12.2] and after["via"] == "backup"
    assert after["changes"][: len(before["changes"])] == before["changes"]
    assert len(after["changes"]) == len(before["changes"]) + 1
    assert dp.sent[-1].instructions[0].actions[0].port == 3


def test_without_a_switch_app_the_error_is_recorded(env: Path, apps, monkeypatch: pytest.MonkeyPatch) -> None:
    _, app, _ = apps
    monkeypatch.setattr(app_manager, "SERVICE_BRICKS", {"LeoAdaptation": app})
    (env / ADAPTATION_FILE_NAME).write_text(json.dumps(_config(env)))
    with pytest.raises(LookupError, match="no switch app"):
        app.tick(12 * S + 100_000_000)

"""controllers.sdn, the os-ken / Ryu 4.34 import shim: the framework choice, the apps importing
through it, and (when a Ryu 4.34 interpreter exists) the same apps and launcher under Ryu.

Ryu runs in its own venv (``controllers/ryu-requirements.txt``): ``FACTORYSAT_RYU_PYTHON`` names
its interpreter, default ``.venv-ryu/bin/python`` (made by bootstrap.sh). Without one the Ryu tests
are skipped and say so (under CI=true they fail: CI runs bootstrap.sh). No root, no OVS: a switch
is played by a few lines speaking OpenFlow 1.3 over loopback.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from controllers.launcher import ControllerProcess, tcp_listening
from controllers.sdn import ENV_FRAMEWORK, FRAMEWORKS, select_framework
from topologies.paths import REPO_ROOT
from topologies.validate import ConfigError

RYU_PYTHON_ENV = "FACTORYSAT_RYU_PYTHON"
RYU_PYTHON_DEFAULT = str(REPO_ROOT / ".venv-ryu" / "bin" / "python")  # made by bootstrap.sh
APP_FILES = sorted((REPO_ROOT / "controllers" / "apps").glob("*.py"))
POLICY = {
    "slices": {"urllc": {"dscp": 46}},
    "hosts": [{"name": "agv1", "ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "slice": "urllc"}],
    "switches": [{"name": "s1", "dpid": 5, "access_hosts": ["agv1"],
                  "mac_to_port": {"00:00:00:00:00:01": 1}}],
}


def ryu_python() -> str | None:
    """The Ryu 4.34 interpreter: $FACTORYSAT_RYU_PYTHON, else .venv-ryu/bin/python if present."""
    named = os.environ.get(RYU_PYTHON_ENV)
    if named:
        return named
    return RYU_PYTHON_DEFAULT if Path(RYU_PYTHON_DEFAULT).exists() else None


def _need_ryu() -> str:
    python = ryu_python()
    if python is not None and not Path(python).exists():
        pytest.fail(f"{RYU_PYTHON_ENV}={python}: no such interpreter")
    if python is None and os.environ.get("CI") == "true":  # CI runs bootstrap.sh, which installs it
        pytest.fail(f"no Ryu 4.34 interpreter at {RYU_PYTHON_DEFAULT}: bootstrap.sh should have made it")
    if python is None:
        pytest.skip(f"no Ryu 4.34 interpreter: set {RYU_PYTHON_ENV} or create {RYU_PYTHON_DEFAULT} "
                    f"(see controllers/ryu-requirements.txt)")
    return python


def _run(python: str, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run([python, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


# --- the choice -----------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "installed", "chosen"), [
    ({}, {"os_ken", "ryu"}, "os_ken"),
    ({}, {"ryu"}, "ryu"),
    ({ENV_FRAMEWORK: ""}, {"os_ken"}, "os_ken"),
    ({ENV_FRAMEWORK: "ryu"}, {"os_ken", "ryu"}, "ryu"),
    ({ENV_FRAMEWORK: "os_ken"}, {"os_ken", "ryu"}, "os_ken"),
])
def test_framework_choice(env: dict[str, str], installed: set[str], chosen: str) -> None:
    assert select_framework(env, installed.__contains__) == chosen


@pytest.mark.parametrize("value", ["ryu4", "OS_KEN", "os-ken", " ryu"])
def test_a_bad_value_names_the_variable_and_the_allowed_values(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        select_framework({ENV_FRAMEWORK: value}, lambda _name: True)
    assert err.value.path == ENV_FRAMEWORK
    assert all(repr(f) in str(err.value) for f in FRAMEWORKS) and repr(value) in str(err.value)


def test_a_chosen_framework_that_is_missing_names_the_variable() -> None:
    with pytest.raises(ImportError, match=f"{ENV_FRAMEWORK}=ryu"):
        select_framework({ENV_FRAMEWORK: "ryu"}, {"os_ken"}.__contains__)
    with pytest.raises(ImportError, match="neither os-ken"):
        select_framework({}, lambda _name: False)


def test_a_bad_value_fails_the_import_of_an_app() -> None:
    done = _run(sys.executable, "import controllers.apps.slice_switch", **{ENV_FRAMEWORK: "floodlight"})
    assert done.returncode != 0
    assert f"{ENV_FRAMEWORK}: got 'floodlight'; allowed: 'os_ken' or 'ryu'" in done.stderr


# --- under the project venv (os-ken) ---------------------------------------------------------
@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: p.name)
def test_apps_import_the_framework_only_through_the_shim(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n.split(".")[0] in FRAMEWORKS for n in names), f"{path.name}: imports {names}"


def test_under_os_ken_the_shim_hands_out_os_kens_own_objects() -> None:
    pytest.importorskip("os_ken")
    if os.environ.get(ENV_FRAMEWORK) == "ryu":
        pytest.skip(f"{ENV_FRAMEWORK}=ryu in this environment")
    from os_ken.base import app_manager
    from os_ken.controller import handler
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3_parser

    import controllers.sdn as sdn
    from controllers.apps.slice_monitor import SliceMonitor
    from controllers.apps.slice_switch import SliceSwitch

    assert sdn.FRAMEWORK == "os_ken"
    assert sdn.BaseApp is app_manager.OSKenApp and sdn.AppManager is app_manager.AppManager
    assert sdn.set_ev_cls is handler.set_ev_cls and sdn.MAIN_DISPATCHER == handler.MAIN_DISPATCHER
    assert sdn.hub is hub and sdn.ofproto_v1_3_parser is ofproto_v1_3_parser
    assert issubclass(SliceSwitch, app_manager.OSKenApp) and issubclass(SliceMonitor, SliceSwitch)


# --- under Ryu 4.34 ----------------------------------------------------------------------------
RYU_APP_CHECK = """
    import json, os, struct
    import controllers.sdn as sdn
    from controllers.apps.leo_adaptation import LeoAdaptation
    from controllers.apps.slice_monitor import SliceMonitor
    from controllers.apps.slice_switch import SliceSwitch, build_flow_mod
    from controllers.policy import FlowRule, forward_rule
    import ryu
    from ryu.base import app_manager
    from ryu.base.app_manager import RyuApp
    from ryu.controller import ofp_event
    from ryu.ofproto import ofproto_parser, ofproto_protocol
    from ryu.ofproto import ofproto_v1_3 as OFP, ofproto_v1_3_parser as P

    class FakeDatapath(ofproto_protocol.ProtocolDesc):
        def __init__(self, dpid):
            super().__init__(OFP.OFP_VERSION)
            self.id, self.xid, self.sent = dpid, 0, []
        def send_msg(self, msg):
            if msg.xid is None:
                self.xid += 1
                msg.set_xid(self.xid)
            msg.serialize()
            self.sent.append(msg)

    def parse(dp, msg_type, xid, body):
        length = OFP.OFP_HEADER_SIZE + len(body)
        buf = bytearray(struct.pack(OFP.OFP_HEADER_PACK_STR, OFP.OFP_VERSION, msg_type, length, xid) + body)
        return ofproto_parser.msg(dp, OFP.OFP_VERSION, msg_type, length, xid, buf)

    dp = FakeDatapath(5)
    app = SliceSwitch()
    app.switch_features_handler(ofp_event.EventOFPSwitchFeatures(parse(
        dp, OFP.OFPT_FEATURES_REPLY, 1, struct.pack(OFP.OFP_SWITCH_FEATURES_PACK_STR, 5, 256, 254, 0, 0, 0))))
    (request,) = dp.sent
    assert isinstance(request, P.OFPFlowStatsRequest), request
    dp.sent.clear()
    head = struct.pack(OFP.OFP_MULTIPART_REPLY_PACK_STR, OFP.OFPMP_FLOW, 0)
    app.resync_reply_handler(ofp_event.EventOFPFlowStatsReply(parse(dp, OFP.OFPT_MULTIPART_REPLY,
                                                                    request.xid, head)))
    barrier = dp.sent[-1]
    assert isinstance(barrier, P.OFPBarrierRequest), barrier
    mods = [m for m in dp.sent if isinstance(m, P.OFPFlowMod)]
    app.barrier_reply_handler(ofp_event.EventOFPBarrierReply(parse(dp, OFP.OFPT_BARRIER_REPLY, barrier.xid,
                                                                   b"")))
    status = json.loads(open(os.environ["FACTORYSAT_CTL_STATUS"]).read())
    mod = build_flow_mod(dp, forward_rule("00:00:00:00:00:01", 3))
    mod.serialize()
    adaptation = LeoAdaptation()
    adaptation.tick(0)  # no configuration yet: nothing to do
    app_manager.SERVICE_BRICKS["SliceSwitch"] = app
    print(json.dumps({
        "framework": sdn.FRAMEWORK, "ryu_version": ryu.__version__ if hasattr(ryu, "__version__") else None,
        "ryu_file": ryu.__file__,
        "os_ken_loaded": any(m.split(".")[0] == "os_ken" for m in __import__("sys").modules),
        "base_is_ryuapp": sdn.BaseApp is RyuApp, "switch_is_ryuapp": issubclass(SliceSwitch, RyuApp),
        "monitor_is_switch": issubclass(SliceMonitor, SliceSwitch),
        "adaptation_is_ryuapp": issubclass(LeoAdaptation, RyuApp),
        "adaptation_finds_switch": adaptation.switch_app() is app,
        "mod_type": type(mod).__module__ + "." + type(mod).__name__, "mod_len": len(mod.buf),
        "flow_mods": len(mods), "ready": status["ready_dpids"],
    }))
"""


def test_under_ryu_the_apps_load_and_install_the_policy(tmp_path: Path) -> None:
    python = _need_ryu()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    done = _run(python, RYU_APP_CHECK, **{ENV_FRAMEWORK: "ryu", "FACTORYSAT_CTL_POLICY": str(policy),
                                           "FACTORYSAT_CTL_STATUS": str(tmp_path / "status.json")})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["framework"] == "ryu" and "/ryu/" in result["ryu_file"] and not result["os_ken_loaded"]
    assert result["base_is_ryuapp"] and result["switch_is_ryuapp"] and result["monitor_is_switch"]
    assert result["adaptation_is_ryuapp"] and result["adaptation_finds_switch"]
    assert result["mod_type"] == "ryu.ofproto.ofproto_v1_3_parser.OFPFlowMod" and result["mod_len"] > 48
    assert result["flow_mods"] > 0 and result["ready"] == [5]


def test_under_ryu_unset_variable_falls_back_to_ryu_without_os_ken() -> None:
    python = _need_ryu()
    done = _run(python, "import importlib.util, controllers.sdn as s; "
                        "print(s.FRAMEWORK, importlib.util.find_spec('os_ken') is None)",
                **{ENV_FRAMEWORK: ""})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ryu", "True"]


# --- the launcher, with a switch played over loopback ----------------------------------------
OFPT_HELLO, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 2, 3
OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 5, 6
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY, OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 18, 19, 20, 21


def _fake_switch(port: int, dpid: int, stop: threading.Event, seen: list[int]) -> None:
    """Speak just enough OpenFlow 1.3 for a controller to install its flows: hello, features,
    empty multipart replies (flow stats, port descriptions, meters...), barrier and echo replies."""
    def send(sock: socket.socket, msg_type: int, xid: int, body: bytes = b"") -> None:
        sock.sendall(struct.pack("!BBHI", 4, msg_type, 8 + len(body), xid) + body)

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        send(sock, OFPT_HELLO, 1)
        buf = b""
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buf += data
            while len(buf) >= 8:
                _version, msg_type, length, xid = struct.unpack("!BBHI", buf[:8])
                if len(buf) < length:
                    break
                body, buf = buf[8:length], buf[length:]
                seen.append(msg_type)
                if msg_type == OFPT_FEATURES_REQUEST:
                    send(sock, OFPT_FEATURES_REPLY, xid, struct.pack("!QIBB2xII", dpid, 256, 254, 0, 0, 0))
                elif msg_type == OFPT_MULTIPART_REQUEST:
                    (mp_type,) = struct.unpack("!H", body[:2])
                    send(sock, OFPT_MULTIPART_REPLY, xid, struct.pack("!HH4x", mp_type, 0))
                elif msg_type == OFPT_BARRIER_REQUEST:
                    send(sock, OFPT_BARRIER_REPLY, xid)
                elif msg_type == OFPT_ECHO_REQUEST:
                    send(sock, OFPT_ECHO_REPLY, xid, body)


def _launch_and_connect(tmp_path: Path, python: str, framework: str) -> str:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    stop, seen = threading.Event(), []
    with ControllerProcess(python=python) as ctl:
        ctl.start(policy, tmp_path / "status.json", tmp_path / "controller.log", apps=["slice_monitor"],
                  app_env={ENV_FRAMEWORK: framework})
        assert tcp_listening(ctl.port, ctl.pid)
        switch = threading.Thread(target=_fake_switch, args=(ctl.port, 5, stop, seen), daemon=True)
        switch.start()
        status = None
        try:
            ctl.wait_ready([5], timeout_s=20)
            status = ctl.read_status()  # before the played switch hangs up (then it is not ready)
        finally:
            stop.set()
            switch.join(5)
        assert status is not None and status["ready_dpids"] == [5]
    assert 14 in seen  # OFPT_FLOW_MOD
    return (tmp_path / "controller.log").read_text()


def test_launcher_under_ryu_listens_and_installs_the_policy_on_a_played_switch(tmp_path: Path) -> None:
    log = _launch_and_connect(tmp_path, _need_ryu(), "ryu")
    assert "ryu.base.app_manager: loading app controllers.apps.slice_monitor" in log
    assert "apps: controllers.apps.slice_monitor (SliceMonitor)" in log and "os_ken" not in log


def test_launcher_under_os_ken_does_the_same(tmp_path: Path) -> None:
    pytest.importorskip("os_ken")
    log = _launch_and_connect(tmp_path, sys.executable, "os_ken")
    assert "apps: controllers.apps.slice_monitor (SliceMonitor)" in log

"""The northbound REST API (controllers/northbound.py) against a fake SliceControl, over loopback:
authentication, each endpoint, errors that change nothing, the request limits, credentials, stop()."""

from __future__ import annotations

import copy
import json
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from controllers.admission import Decision, FlowRequest, check_admission
from controllers.northbound import (
    MAX_BODY_BYTES,
    NorthboundServer,
    SliceControl,
    jsonable,
    match_route,
    parse_ran_changes,
    ran_with_changes,
)
from topologies.nr.config import SliceRan
from topologies.validate import ConfigError

TOKEN = "test-token-0123456789abcdef"


class S:
    def __init__(self, name: str, latency_bound_ms: float, ran: SliceRan) -> None:
        self.name, self.latency_bound_ms, self.ran = name, latency_bound_ms, ran


class FakeControl:
    """Two slices on one 100/200 Mbit/s cell, flows admitted by check_admission."""

    def __init__(self) -> None:
        self.shares: tuple[tuple[str, SliceRan], ...] = (
            ("urllc", SliceRan(dedicated_pct=10, min_pct=10, priority=10)),
            ("embb", SliceRan(min_pct=30, priority=5)),
        )
        self.bounds = {"urllc": 10.0, "embb": 50.0}
        self.admitted: list[FlowRequest] = []
        self.calls: list[str] = []

    def state(self) -> Any:
        return copy.deepcopy((self.shares, self.admitted))

    def slices(self) -> dict[str, dict]:
        return {n: {"ran": asdict(r), "latency_bound_ms": self.bounds[n], "sla": {"p99_ms": float("nan")}}
                for n, r in self.shares}

    def set_ran(self, name: str, changes: dict) -> dict:
        self.calls.append(f"set_ran {name}")
        self.shares = ran_with_changes(self.shares, name, changes)  # ConfigError (ValueError): unchanged
        return asdict(dict(self.shares)[name])

    def flows(self) -> list[dict]:
        return [f.to_dict() for f in self.admitted]

    def admit_flow(self, request: FlowRequest) -> Decision:
        if request.ue == "ghost":
            raise ValueError("unknown UE 'ghost'")
        slices = {n: S(n, self.bounds[n], r) for n, r in self.shares}
        decision = check_admission(request, slices, {"uplink": 100.0, "downlink": 200.0}, self.admitted)
        if decision.admitted:
            self.admitted.append(request)
        return decision

    def remove_flow(self, name: str) -> None:
        for f in self.admitted:
            if f.name == name:
                self.admitted.remove(f)
                return
        raise KeyError(name)


def _is_control(c: SliceControl) -> SliceControl:  # the fake satisfies the Protocol (checked by type)
    return c


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def server(control: FakeControl) -> Iterator[NorthboundServer]:
    with NorthboundServer(_is_control(control), token=TOKEN) as srv:
        yield srv


def call(srv: NorthboundServer, method: str, path: str, body: Any = None, token: str | None = TOKEN,
         raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, decoded JSON body or None, headers)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, payload, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, payload, hdrs = err.code, err.read(), err.headers
    assert hdrs["Content-Type"] == "application/json"
    return status, (json.loads(payload) if payload else None), hdrs


def raw_request(srv: NorthboundServer, text: bytes) -> tuple[int, dict]:
    """Send bytes as they are; (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(text)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# --- authentication -----------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", "", TOKEN + "x", TOKEN[:-1]])
def test_no_or_a_wrong_token_is_401_on_every_path(server: NorthboundServer, token: str | None) -> None:
    for method, path in [("GET", "/v1/health"), ("GET", "/v1/slices"), ("GET", "/nope"),
                         ("DELETE", "/v1/flows/x")]:
        status, body, headers = call(server, method, path, token=token)
        assert status == 401, (method, path)
        assert "token" in body["error"] or "Authorization" in body["error"]
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_other_schemes_are_refused(server: NorthboundServer) -> None:
    status, _, _ = call(server, "GET", "/v1/health", token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401


def test_a_refused_post_changes_nothing(server: NorthboundServer, control: FakeControl) -> None:
    flow = {"name": "f", "ue": "agv1", "slice": "urllc", "direction": "uplink", "rate_mbps": 1,
            "packet_bytes": 100}
    assert call(server, "POST", "/v1/flows", flow, token="nope-nope-nope-nope")[0] == 401
    assert control.admitted == []


# --- reading ------------------------------------------------------------------------------------------
def test_health_and_lists(server: NorthboundServer, control: FakeControl) -> None:
    assert call(server, "GET", "/v1/health")[:2] == (200, {"status": "ok"})
    status, body, headers = call(server, "GET", "/v1/slices")
    assert status == 200 and list(body["slices"]) == ["urllc", "embb"]
    assert body["slices"]["embb"]["ran"]["min_pct"] == 30
    assert body["slices"]["urllc"]["sla"]["p99_ms"] is None  # NaN is not JSON
    assert headers["Cache-Control"] == "no-store"
    status, one, _ = call(server, "GET", "/v1/slices/urllc")
    assert status == 200 and one == body["slices"]["urllc"]
    assert call(server, "GET", "/v1/flows")[:2] == (200, {"flows": []})


def test_unknown_slice_and_path_are_404(server: NorthboundServer) -> None:
    status, body, _ = call(server, "GET", "/v1/slices/video")
    assert status == 404 and "'video'" in body["error"] and "'urllc'" in body["error"]
    for path in ["/", "/v2/slices", "/v1", "/v1/", "/v1/slices/", "/v1/slices/urllc/ran/x", "/v1/flowz"]:
        status, body, _ = call(server, "GET", path)
        assert status == 404 and body["error"], path


def test_wrong_method_is_405_with_allow(server: NorthboundServer) -> None:
    for method, path, allow in [("POST", "/v1/slices", "GET"), ("DELETE", "/v1/slices/urllc", "GET"),
                                ("GET", "/v1/slices/urllc/ran", "PATCH"), ("PUT", "/v1/flows", "GET, POST"),
                                ("GET", "/v1/flows/x", "DELETE")]:
        status, body, headers = call(server, method, path, body={} if method in ("POST", "PUT") else None)
        assert status == 405, (method, path)
        assert headers["Allow"] == allow and allow in body["error"]


# --- PATCH /v1/slices/{name}/ran ----------------------------------------------------------------------
def test_patch_ran_changes_the_slices_share(server: NorthboundServer, control: FakeControl) -> None:
    status, body, _ = call(server, "PATCH", "/v1/slices/embb/ran", {"min_pct": 40, "priority": 7})
    assert status == 200 and body["min_pct"] == 40 and body["priority"] == 7
    assert dict(control.shares)["embb"] == SliceRan(min_pct=40, priority=7)
    assert dict(control.shares)["urllc"].min_pct == 10
    assert call(server, "GET", "/v1/slices/embb")[1]["ran"]["min_pct"] == 40


@pytest.mark.parametrize(("raw", "status", "words"), [
    (b'{"min_pct": 40, "weight": 3}', 400, ["weight", "dedicated_pct, min_pct, max_pct, priority"]),
    (b'{"min_pct": ', 400, ["not valid JSON"]),
    (b'{"min_pct": NaN}', 400, ["not valid JSON"]),
    (b'{"min_pct": 1, "min_pct": 2}', 400, ["twice"]),
    (b"\xff\xfe", 400, ["not valid JSON"]),
    (b"[1, 2]", 400, ["a JSON object"]),
    (b"{}", 400, ["at least one"]),
    (b'{"min_pct": "40"}', 400, ["min_pct", "a number"]),
    (b'{"priority": 2.5}', 400, ["priority", "a whole number"]),
    (b'{"max_pct": 120}', 400, ["max_pct", "<= 100"]),
    (b'{"min_pct": 95}', 422, ["min_pct", "100"]),            # 10 + 95 > 100 % (TS 28.541)
    (b'{"max_pct": 20}', 422, ["max_pct", ">= 30"]),          # below its own min_pct
])
def test_a_bad_or_refused_patch_is_4xx_and_changes_nothing(
        server: NorthboundServer, control: FakeControl, raw: bytes, status: int, words: list[str]) -> None:
    before = control.state()
    got, body, _ = call(server, "PATCH", "/v1/slices/embb/ran", raw=raw)
    assert got == status, body
    for word in words:
        assert word in body["error"], (word, body)
    assert control.state() == before
    assert (status == 422) == (control.calls == ["set_ran embb"])  # 400s never reach the control


def test_patch_of_an_unknown_slice_is_404(server: NorthboundServer, control: FakeControl) -> None:
    status, body, _ = call(server, "PATCH", "/v1/slices/video/ran", {"min_pct": 5})
    assert status == 404 and "'video'" in body["error"] and control.calls == []


# --- flows --------------------------------------------------------------------------------------------
FLOW = {"name": "agv1-ctrl", "ue": "agv1", "slice": "urllc", "direction": "uplink", "rate_mbps": 6,
        "packet_bytes": 100, "latency_bound_ms": 10}


def test_post_admits_lists_and_refuses_over_the_share(server: NorthboundServer, control: FakeControl) -> None:
    status, body, headers = call(server, "POST", "/v1/flows", FLOW)
    assert status == 201 and body["admitted"] is True and body["headroom_mbps"] == 4.0
    assert body["flow"]["name"] == "agv1-ctrl" and headers["Location"] == "/v1/flows/agv1-ctrl"
    assert [f.name for f in control.admitted] == ["agv1-ctrl"]
    assert call(server, "GET", "/v1/flows")[1]["flows"][0]["rate_mbps"] == 6.0

    status, body, _ = call(server, "POST", "/v1/flows", {**FLOW, "name": "agv2-ctrl", "rate_mbps": 5})
    assert status == 409 and set(body) == {"error"}
    assert "guarantees 10 Mbit/s" in body["error"] and "use 6 Mbit/s" in body["error"]
    status, body, _ = call(server, "POST", "/v1/flows", FLOW)
    assert status == 409 and "already admitted" in body["error"]
    status, body, _ = call(server, "POST", "/v1/flows", {**FLOW, "name": "b", "latency_bound_ms": 1})
    assert status == 409 and "asks 1 ms" in body["error"]
    assert [f.name for f in control.admitted] == ["agv1-ctrl"]

    status, body, _ = call(server, "DELETE", "/v1/flows/agv1-ctrl")
    assert status == 200 and body == {"removed": "agv1-ctrl"} and control.admitted == []
    assert call(server, "POST", "/v1/flows", {**FLOW, "name": "agv2-ctrl", "rate_mbps": 5})[0] == 201


@pytest.mark.parametrize(("change", "words"), [
    ({"rate_mbps": 0}, ["rate_mbps", "> 0"]),
    ({"direction": "sideways"}, ["direction", "'uplink', 'downlink'"]),
    ({"colour": "red"}, ["colour", "known keys", "packet_bytes"]),
    ({"name": None}, ["name"]),
])
def test_a_bad_flow_body_is_400_naming_the_field(server: NorthboundServer, control: FakeControl,
                                                 change: dict, words: list[str]) -> None:
    status, body, _ = call(server, "POST", "/v1/flows", {**FLOW, **change})
    assert status == 400
    for word in words:
        assert word in body["error"], (word, body)
    assert control.admitted == []


def test_a_flow_the_control_refuses_otherwise_is_422(server: NorthboundServer, control: FakeControl) -> None:
    status, body, _ = call(server, "POST", "/v1/flows", {**FLOW, "ue": "ghost"})
    assert status == 422 and "unknown UE 'ghost'" in body["error"] and control.admitted == []


def test_delete_of_an_unknown_flow_is_404(server: NorthboundServer) -> None:
    status, body, _ = call(server, "DELETE", "/v1/flows/nope")
    assert status == 404 and "'nope'" in body["error"]


# --- request limits -----------------------------------------------------------------------------------
def test_a_body_over_64_kib_is_413_and_changes_nothing(server: NorthboundServer,
                                                       control: FakeControl) -> None:
    big = json.dumps({**FLOW, "ue": "x" * MAX_BODY_BYTES}).encode()
    status, body, _ = call(server, "POST", "/v1/flows", raw=big)
    assert status == 413 and str(MAX_BODY_BYTES) in body["error"] and control.admitted == []
    assert call(server, "GET", "/v1/health")[0] == 200  # still serving


def test_content_length_missing_is_411_and_invalid_is_400(server: NorthboundServer) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    status, body = raw_request(server, b"POST /v1/flows HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    assert status == 411 and "Content-Length" in body["error"]
    status, body = raw_request(server, b"POST /v1/flows HTTP/1.1\r\nHost: x\r\n" + auth
                               + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status == 411
    for bad in (b"-1", b"abc", b"1e3"):
        status, body = raw_request(server, b"PATCH /v1/slices/embb/ran HTTP/1.1\r\nHost: x\r\n" + auth
                                   + b"Content-Length: " + bad + b"\r\n\r\n{}")
        assert status == 400 and "Content-Length" in body["error"], bad
    status, body = raw_request(server, b"PATCH /v1/slices/embb/ran HTTP/1.1\r\nHost: x\r\n" + auth
                               + b"Content-Length: 50\r\n\r\n{}")
    assert status == 400 and "ended after 2 of 50" in body["error"]


def test_malformed_and_unknown_methods_answer_json(server: NorthboundServer) -> None:
    status, body = raw_request(server, b"BREW /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and "BREW" in body["error"]
    status, body = raw_request(server, b"GARBAGE\r\n\r\n")
    assert status == 400 and "GARBAGE" in body["error"]
    status, body = raw_request(server, b"GET /v1/health HTTP/2.0\r\n\r\n")
    assert status == 505 and body["error"]
    status, body = raw_request(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414 and body["error"]
    assert [e["status"] for e in server.requests] == [501, 400, 505, 414]
    assert all(type(e["status"]) is int for e in server.requests)


# --- the server ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.1", ""])
def test_only_loopback_hosts_are_allowed(control: FakeControl, host: str) -> None:
    with pytest.raises(ValueError, match="allowed 127.0.0.1, ::1, localhost"):
        NorthboundServer(control, host=host)


def test_bad_port_or_token_is_refused(control: FakeControl) -> None:
    with pytest.raises(ValueError, match="port"):
        NorthboundServer(control, port=70000)
    for token in ["short", "has space in it 0123456789", "ümlaut-0123456789abcdef"]:
        with pytest.raises(ValueError, match="token"):
            NorthboundServer(control, token=token)


def test_a_token_is_made_when_none_is_given_and_localhost_binds_loopback(control: FakeControl) -> None:
    srv = NorthboundServer(control, host="localhost")
    port, token = srv.start()
    try:
        assert port > 0 and len(token) >= 32 and srv.url == f"http://127.0.0.1:{port}"
        assert call(srv, "GET", "/v1/health", token=token)[0] == 200
        assert call(srv, "GET", "/v1/health", token=TOKEN)[0] == 401
        with pytest.raises(RuntimeError):
            srv.start()
    finally:
        srv.stop()
    assert NorthboundServer(control).token != NorthboundServer(control).token


def test_credentials_file_is_0600_and_never_overwritten(server: NorthboundServer, tmp_path: Path) -> None:
    path = server.write_credentials(tmp_path / "northbound.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": server.url, "token": TOKEN}
    with pytest.raises(FileExistsError):
        server.write_credentials(path)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FileExistsError):
        server.write_credentials(link)
    assert not (tmp_path / "elsewhere.json").exists()


def test_the_request_log_records_method_path_status_and_time(server: NorthboundServer) -> None:
    call(server, "GET", "/v1/health")
    call(server, "GET", "/v1/slices", token=None)
    call(server, "DELETE", "/v1/flows/x")
    log = server.requests
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/v1/health", 200), ("GET", "/v1/slices", 401), ("DELETE", "/v1/flows/x", 404)]
    assert all(isinstance(e["time"], float) for e in log)
    assert not any(TOKEN in json.dumps(e) for e in log)


def test_a_failing_control_is_500_and_the_server_keeps_serving(server: NorthboundServer,
                                                              control: FakeControl,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> list[dict]:
        raise RuntimeError("relay gone")

    monkeypatch.setattr(control, "flows", boom)
    status, body, _ = call(server, "GET", "/v1/flows")
    assert status == 500 and "relay gone" in body["error"]
    assert server.requests[-1]["detail"] == "RuntimeError: relay gone"
    assert call(server, "GET", "/v1/health")[0] == 200


def test_nothing_is_printed(server: NorthboundServer, capsys: pytest.CaptureFixture[str]) -> None:
    call(server, "GET", "/v1/health")
    call(server, "GET", "/v1/nope")
    raw_request(server, b"GARBAGE\r\n\r\n")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_stop_releases_the_port(control: FakeControl) -> None:
    srv = NorthboundServer(control, token=TOKEN)
    port, _ = srv.start()
    assert call(srv, "GET", "/v1/health")[0] == 200
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with NorthboundServer(control, port=port, token=TOKEN) as again:
        assert again.port == port and call(again, "GET", "/v1/health")[0] == 200


# --- pure helpers -------------------------------------------------------------------------------------
def test_routes_and_helpers() -> None:
    assert match_route("/v1/flows/a%2Fb?x=1") == ({"DELETE": "delete_flow"}, ["a/b"])
    assert match_route("/v1/slices//ran") is None
    assert jsonable({"a": (1.0, float("inf")), 2: [float("nan")]}) == {"a": [1.0, None], "2": [None]}
    assert parse_ran_changes({"min_pct": 5, "priority": 3}) == {"min_pct": 5.0, "priority": 3}
    with pytest.raises(ConfigError, match="priority"):
        parse_ran_changes({"priority": True})
    shares = (("a", SliceRan(min_pct=50)), ("b", SliceRan(min_pct=40)))
    with pytest.raises(ConfigError, match="summing to 100 at most"):
        ran_with_changes(shares, "a", {"min_pct": 61})
    with pytest.raises(KeyError):
        ran_with_changes(shares, "c", {"min_pct": 1})
    assert ran_with_changes(shares, "a", {"min_pct": 60})[0] == ("a", SliceRan(min_pct=60))
    assert shares[0][1].min_pct == 50


def test_concurrent_admissions_never_overbook_a_slice(server: NorthboundServer, control: FakeControl) -> None:
    """The server serializes control calls: 20 clients at once asking 1 Mbit/s of a 10 Mbit/s share."""
    def ask(i: int) -> int:
        return call(server, "POST", "/v1/flows", {**FLOW, "name": f"f{i}", "rate_mbps": 1})[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(ask, range(20)))
    assert sorted(statuses) == [201] * 10 + [409] * 10
    assert len(control.admitted) == 10


def test_ipv6_loopback(control: FakeControl) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = NorthboundServer(control, host="::1", token=TOKEN)
    try:
        srv.start()
    except OSError as exc:
        pytest.skip(f"::1 cannot be bound here ({exc})")
    try:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert call(srv, "GET", "/v1/health")[0] == 200
    finally:
        srv.stop()

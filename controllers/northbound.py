"""The SDN controller's northbound REST API: slices, their RAN shares and admitted flows, over HTTP/JSON.

Standard library only (``http.server.ThreadingHTTPServer`` in a daemon thread), on the loopback
interface only. The server holds no state of its own: every request is answered by a
:class:`SliceControl` (the run's controller), whose calls the server serializes (one at a time), so
admission's check-and-record cannot interleave. Nothing is printed; ``NorthboundServer.requests``
keeps the last requests (method, path, status, time) for the run's records.

Authentication
--------------
Every request needs ``Authorization: Bearer <token>``. The token is given to the server or made by
it (``secrets.token_urlsafe(32)``); ``NorthboundServer.write_credentials(path)`` writes
``{"url": "http://127.0.0.1:PORT", "token": "..."}`` to a new file of mode 0600 for clients::

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:PORT/v1/slices

Conventions
-----------
- Request and response bodies are JSON objects (``Content-Type: application/json``, UTF-8). A
  request body needs ``Content-Length`` (no chunked bodies) and may be at most 64 KiB.
- Every error answer is ``{"error": "<reason>"}``; a request that fails changes nothing.
- Numbers that are not finite (no measurement yet) are sent as ``null``.
- Errors common to every endpoint: 401 missing or wrong token (checked before anything else; with
  ``WWW-Authenticate: Bearer``), 404 unknown path, 405 method not allowed there (with ``Allow``),
  411 a body without ``Content-Length`` (or chunked), 400 an invalid ``Content-Length`` or a body
  that is not a JSON object, 413 a body over 64 KiB, 500 the control failed unexpectedly, 501 an
  unknown HTTP method.

Endpoints
---------
``GET /v1/health``
    200 ``{"status": "ok"}``.

``GET /v1/slices``
    200 ``{"slices": {"<name>": <description>, ...}}``: each slice as the control describes it
    (its RAN share, SLA targets and SLA state).

``GET /v1/slices/{name}``
    200 ``<description>`` of one slice; 404 unknown slice.

``PATCH /v1/slices/{name}/ran``
    Body: a non-empty subset of ``{"dedicated_pct": 0..100, "min_pct": 0..100, "max_pct": 0..100,
    "priority": 0..255 (whole)}`` (TS 28.541 RRMPolicyRatio; keys left out keep their values).
    200 the control's answer (the slice's new RAN share); 404 unknown slice; 400 bad JSON, not an
    object, an unknown key (the error names the allowed ones), a wrong type or a value out of
    those ranges; 422 a change the control refuses (e.g. ``min_pct`` below ``dedicated_pct`` or
    minimum shares summing over 100 %), with its reason.

``GET /v1/flows``
    200 ``{"flows": [<flow>, ...]}``: the admitted flows as the control describes them.

``POST /v1/flows``
    Body: a flow request (``controllers/admission.py``)::

        {"name": "agv1-video", "ue": "agv1", "slice": "embb", "direction": "uplink" | "downlink",
         "rate_mbps": 4.0, "packet_bytes": 1200, "latency_bound_ms": 50.0 | null (optional)}

    201 admitted, with ``Location: /v1/flows/{name}`` and ``{"admitted": true, "reason": "...",
    "headroom_mbps": <slice's guaranteed rate left in that direction>, "flow": <the request>}``;
    409 refused by admission control, ``{"error": "<the decision's reason, with the numbers>"}``
    (an unknown slice, a name already admitted, a latency bound tighter than the slice's, a slice
    without a guaranteed share, or the slice's guaranteed share exceeded); 400 a bad body (the
    error names the field and what is allowed); 422 a request the control refuses otherwise (e.g.
    an unknown UE).

``DELETE /v1/flows/{name}``
    200 ``{"removed": "<name>"}``: the flow's guaranteed rate is released; 404 unknown flow.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import secrets
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from controllers.admission import Decision, FlowRequest
from topologies.config_schema import parse_table
from topologies.nr.config import SliceRan, check_shares
from topologies.validate import ConfigError, Table, check_int, check_number

API_PREFIX = "/v1"
ALLOWED_HOSTS = ("127.0.0.1", "::1", "localhost")
MAX_BODY_BYTES = 64 << 10
REQUEST_LOG_SIZE = 1000            # the last requests kept in NorthboundServer.requests
READ_TIMEOUT_S = 10.0              # a client that stops sending mid-request is dropped after this
LINGER_S, LINGER_BYTES = 2.0, 4 << 20  # an unread body is drained for at most this long / this much
TOKEN_RE = re.compile(r"[\x21-\x7e]{16,512}")  # printable ASCII, no spaces: fits a header
# The RAN share keys a PATCH may change (TS 28.541 RRMPolicyRatio, and the slice priority).
RAN_KEYS = ("dedicated_pct", "min_pct", "max_pct", "priority")


class SliceControl(Protocol):
    """What the northbound API asks the run's controller; the server calls it one call at a time."""

    def slices(self) -> dict[str, dict]:
        """Slice name -> a JSON-able description, including its RAN share and SLA state."""
        ...

    def set_ran(self, name: str, changes: dict) -> dict:
        """Apply RAN share ``changes`` (a validated subset of :data:`RAN_KEYS`) to slice ``name``;
        the slice's new share (JSON-able). ``ValueError`` with the reason for a change it refuses,
        having changed nothing; ``KeyError`` for an unknown slice."""
        ...

    def flows(self) -> list[dict]:
        """The admitted flows, JSON-able."""
        ...

    def admit_flow(self, request: FlowRequest) -> Decision:
        """Admission control's decision (``controllers.admission.check_admission``); records the flow
        when admitted. ``ValueError`` for a request it refuses otherwise (e.g. an unknown UE)."""
        ...

    def remove_flow(self, name: str) -> None:
        """Forget an admitted flow; ``KeyError`` if there is none of that name."""
        ...


# --- pure helpers (also for SliceControl implementations) ------------------------------------------
def parse_ran_changes(raw: Any) -> dict[str, float | int]:
    """A PATCH body as RAN share changes: a non-empty subset of :data:`RAN_KEYS`, each of the right
    type and range (percentages as floats, ``priority`` a whole number); ``ConfigError`` otherwise."""
    allowed = ", ".join(RAN_KEYS)
    if not isinstance(raw, Mapping):
        raise ConfigError("body", raw, f"a JSON object with some of the keys {allowed}")
    if not raw:
        raise ConfigError("body", {}, f"at least one of {allowed}")
    changes: dict[str, float | int] = {}
    for key, value in raw.items():
        if key not in RAN_KEYS:
            raise ConfigError(str(key), value, f"no such key here; known keys: {allowed}")
        if key == "priority":
            changes[key] = check_int(key, value, min=0, max=255)
        else:
            changes[key] = check_number(key, value, min=0, max=100)
    return changes


def ran_with_changes(shares: Sequence[tuple[str, SliceRan]], name: str,
                     changes: Mapping[str, Any]) -> tuple[tuple[str, SliceRan], ...]:
    """Every slice's share (in order) after applying ``changes`` to slice ``name``'s, validated as the
    scenario's ``ran`` table is (min_pct >= dedicated_pct, max_pct >= min_pct, ...) and together
    (minimum shares summing to 100 % at most). ``ConfigError`` naming the key, ``KeyError`` for an
    unknown slice; ``shares`` is never changed."""
    names = [n for n, _ in shares]
    if name not in names:
        raise KeyError(name)
    out = []
    for n, ran in shares:
        if n == name:
            ran = parse_table(SliceRan, Table({**asdict(ran), **changes}, f"slices.{name}.ran"))
        out.append((n, ran))
    check_shares(out)
    return tuple(out)


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class HttpError(Exception):
    """An error answer: status, reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


# --- routes ---------------------------------------------------------------------------------------
# A route: path segments after /v1, a "{}" segment matching any (non-empty) name; methods -> handler.
_ROUTES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("health",), {"GET": "health"}),
    (("slices",), {"GET": "list_slices"}),
    (("slices", "{}"), {"GET": "get_slice"}),
    (("slices", "{}", "ran"), {"PATCH": "patch_ran"}),
    (("flows",), {"GET": "list_flows", "POST": "post_flow"}),
    (("flows", "{}"), {"DELETE": "delete_flow"}),
)
_BODY_METHODS = ("POST", "PATCH")


def match_route(path: str) -> tuple[dict[str, str], list[str]] | None:
    """(methods -> handler name, the path's names) for a request path, or None when no route has it."""
    parts = urlsplit(path).path.split("/")
    if parts[:2] != ["", API_PREFIX.strip("/")]:
        return None
    segments = parts[2:]
    for pattern, methods in _ROUTES:
        if len(pattern) != len(segments):
            continue
        args = []
        for want, got in zip(pattern, segments, strict=True):
            if want == "{}":
                if not got:
                    break
                args.append(unquote(got, errors="strict"))
            elif want != got:
                break
        else:
            return methods, args
    return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "factorysat-northbound/1"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S
    server: _HttpServer

    # every method BaseHTTPRequestHandler may dispatch lands in one place
    def do_GET(self) -> None: self._handle()
    def do_HEAD(self) -> None: self._handle()
    def do_POST(self) -> None: self._handle()
    def do_PUT(self) -> None: self._handle()
    def do_PATCH(self) -> None: self._handle()
    def do_DELETE(self) -> None: self._handle()
    def do_OPTIONS(self) -> None: self._handle()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing to stdout or stderr: the server keeps its own request log."""

    def _handle(self) -> None:
        api = self.server.northbound
        declared = self.headers.get("Content-Length", "").strip()
        self._body_pending = bool(self.headers.get("Transfer-Encoding")) or declared not in ("", "0")
        try:
            self._authenticate(api.token)
            found = match_route(self.path)
            if found is None:
                raise HttpError(404, f"no such path: {urlsplit(self.path).path} (the API is under "
                                     f"{API_PREFIX}/: health, slices, flows)")
            methods, args = found
            if self.command not in methods:
                allow = ", ".join(methods)
                raise HttpError(405, f"method {self.command} is not allowed here; allowed: {allow}",
                                {"Allow": allow})
            body = self._read_json() if self.command in _BODY_METHODS else None
            status, answer, headers = getattr(self, "_" + methods[self.command])(api, args, body)
        except HttpError as err:
            self._send(err.status, {"error": err.reason}, err.headers)
        except UnicodeDecodeError:
            self._send(400, {"error": "the path is not valid UTF-8 after percent-decoding"})
        except Exception as exc:  # the control failed: answer, keep serving, keep it for the records
            self._send(500, {"error": f"internal error: {type(exc).__name__}: {exc}"},
                       detail=f"{type(exc).__name__}: {exc}")
        else:
            self._send(status, answer, headers)

    # --- request checks -----------------------------------------------------------------------
    def _authenticate(self, token: str) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.strip().partition(" ")
        ok = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("ascii"))
        if scheme.lower() != "bearer" or not ok:
            reason = ("missing Authorization header: send 'Authorization: Bearer <token>'" if not header
                      else "wrong token: send 'Authorization: Bearer <token>' with the server's token")
            raise HttpError(401, reason, {"WWW-Authenticate": 'Bearer realm="factorysat"'})

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "a request body needs Content-Length (chunked bodies are not accepted)")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            raise HttpError(411, "a request body needs Content-Length")
        if len(self.headers.get_all("Content-Length", [])) > 1 or not raw_length.strip().isdigit():
            raise HttpError(400, f"Content-Length {raw_length!r}: allowed one whole number of bytes")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"the body has {length} bytes; allowed at most {MAX_BODY_BYTES}")
        try:
            data = self.rfile.read(length)
        except OSError as exc:  # timeout or reset mid-body
            raise HttpError(400, f"the body could not be read ({exc})") from None
        if len(data) != length:
            raise HttpError(400, f"the body ended after {len(data)} of {length} bytes")
        self._body_pending = False
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_no_constant,
                              object_pairs_hook=_unique_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise HttpError(400, f"the body is not valid JSON ({exc})") from None

    # --- endpoints: (status, answer, headers) ---------------------------------------------------
    def _health(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        return 200, {"status": "ok"}, {}

    def _list_slices(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        with api.lock:
            return 200, {"slices": api.control.slices()}, {}

    def _get_slice(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        with api.lock:
            slices = api.control.slices()
        if args[0] not in slices:
            raise HttpError(404, _unknown_slice(args[0], slices))
        return 200, slices[args[0]], {}

    def _patch_ran(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        try:
            changes = parse_ran_changes(body)
        except ConfigError as err:
            raise HttpError(400, str(err)) from None
        name = args[0]
        with api.lock:
            slices = api.control.slices()
            if name not in slices:
                raise HttpError(404, _unknown_slice(name, slices))
            try:
                answer = api.control.set_ran(name, changes)
            except KeyError:
                raise HttpError(404, _unknown_slice(name, slices)) from None
            except ValueError as err:
                raise HttpError(422, f"change refused: {err}") from None
        return 200, answer, {}

    def _list_flows(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        with api.lock:
            return 200, {"flows": api.control.flows()}, {}

    def _post_flow(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        try:
            request = FlowRequest.from_dict(body)
        except ConfigError as err:
            raise HttpError(400, str(err)) from None
        with api.lock:
            try:
                decision = api.control.admit_flow(request)
            except ValueError as err:
                raise HttpError(422, f"flow refused: {err}") from None
        if not decision.admitted:
            raise HttpError(409, decision.reason)
        answer = {**decision.to_dict(), "flow": request.to_dict()}
        return 201, answer, {"Location": f"{API_PREFIX}/flows/{request.name}"}

    def _delete_flow(self, api: NorthboundServer, args: list[str], body: Any) -> tuple[int, Any, dict]:
        with api.lock:
            try:
                api.control.remove_flow(args[0])
            except KeyError:
                raise HttpError(404, f"no admitted flow named {args[0]!r}") from None
        return 200, {"removed": args[0]}, {}

    def finish(self) -> None:
        """A body left unread (an error answered before it) is drained before the socket closes: closing
        with unread data makes the kernel reset the connection, and the client may lose the answer."""
        if getattr(self, "_body_pending", False):
            try:
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(1.0)
                deadline, drained = time.monotonic() + LINGER_S, 0
                while drained < LINGER_BYTES and time.monotonic() < deadline:
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
            except OSError:
                pass
        super().finish()

    # --- answers --------------------------------------------------------------------------------
    def _send(self, status: int, answer: Any, headers: Mapping[str, str] | None = None,
              detail: str | None = None) -> None:
        try:
            data = json.dumps(jsonable(answer), allow_nan=False).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as exc:  # the control answered something that is not JSON
            status, headers, detail = 500, {}, f"{type(exc).__name__}: {exc}"
            data = json.dumps({"error": f"internal error: the answer is not JSON ({exc})"}).encode() + b"\n"
        if getattr(self, "request_version", "") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a garbled request line still gets a status line and headers
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")  # an unread body never becomes the next request
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        # recorded before the answer leaves: a client that has it finds it in the log
        self.server.northbound.record(self.command or "", getattr(self, "path", ""), int(status), detail)
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, an unknown method...) as JSON too."""
        reason = message or HTTPStatus(code).phrase
        if code == 501 and self.command:
            reason = f"method {self.command} is not supported; the API uses GET, POST, PATCH, DELETE"
        try:
            self._send(code, {"error": reason})
        except OSError:
            self.close_connection = True


def _unknown_slice(name: str, slices: Mapping[str, Any]) -> str:
    return f"no slice named {name!r} (known: {', '.join(map(repr, slices)) or 'none'})"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # listen backlog: a burst of clients is not left to SYN retransmits

    def __init__(self, address: tuple[str, int], northbound: NorthboundServer, family: int) -> None:
        self.address_family = family
        self.northbound = northbound
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (socket.getfqdn): slow without DNS, not needed
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class NorthboundServer:
    """The northbound API (module docstring) for ``control``, on the loopback interface.

    ``host`` is 127.0.0.1, ::1 or localhost (bound as 127.0.0.1); ``port`` 0 picks a free port.
    ``token`` (printable ASCII without spaces, 16..512 characters) is made with
    ``secrets.token_urlsafe(32)`` when not given. Use ``start()`` / ``stop()`` or ``with``.
    """

    def __init__(self, control: SliceControl, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        if host not in ALLOWED_HOSTS:
            raise ValueError(f"host {host!r}: allowed {', '.join(ALLOWED_HOSTS)} (the API is loopback only)")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port {port!r}: allowed a whole number 0..65535 (0: any free port)")
        if token is not None and (not isinstance(token, str) or not TOKEN_RE.fullmatch(token)):
            raise ValueError("token: allowed 16-512 printable ASCII characters without spaces")
        self.control = control
        self.host = host
        self.port = port
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.lock = threading.Lock()  # one control call at a time
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._log_lock = threading.Lock()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> tuple[int, str]:
        """Bind and serve in a daemon thread; (the bound port, the token)."""
        if self._server is not None:
            raise RuntimeError("the northbound server is already started")
        bind_host = "::1" if self.host == "::1" else "127.0.0.1"
        family = socket.AF_INET6 if bind_host == "::1" else socket.AF_INET
        server = _HttpServer((bind_host, self.port), self, family)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"northbound:{self.port}", daemon=True)
        self._thread.start()
        return self.port, self.token

    def stop(self) -> None:
        """Stop serving and release the port (no-op when not started)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> NorthboundServer:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (or ``http://[::1]:PORT``) once started."""
        if self._server is None:
            raise RuntimeError("the northbound server is not started")
        host = "[::1]" if self.host == "::1" else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def write_credentials(self, path: Path | str) -> Path:
        """Write ``{"url": ..., "token": ...}`` to a NEW file ``path`` of mode 0600 (``FileExistsError``
        if it exists; never readable by others, not even while being written). The path."""
        path = Path(path)
        data = json.dumps({"url": self.url, "token": self.token}, indent=2).encode() + b"\n"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return path

    # --- records --------------------------------------------------------------------------------
    def record(self, method: str, path: str, status: int, detail: str | None = None) -> None:
        entry: dict[str, Any] = {"time": time.time(), "method": method[:16], "path": path[:256],
                                 "status": status}
        if detail is not None:
            entry["detail"] = detail[:1000]
        with self._log_lock:
            self._log.append(entry)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last requests, oldest first: {"time" (Unix s), "method", "path", "status"[, "detail"]}."""
        with self._log_lock:
            return [dict(e) for e in self._log]

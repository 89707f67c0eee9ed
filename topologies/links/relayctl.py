"""The relay control protocol in Python: limits, parsing and the one-reply-per-request state machine.

The C relay (relay/control.c) implements the same rules with the same reply texts; pyrelay.py runs
this module's :class:`ControlChannel`; relayproc.py (the caller) documents the protocol and uses
its limits. Standard library only (the Python relay starts light).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Sequence

DIRECTIONS = ("uplink", "downlink")  # uplink: frames received on IFA leave on IFB; downlink: back
LINE_MAX_BYTES = 4096          # one request or row, without its newline
MAX_SCHED_ROWS = 1_000_000
MAX_ID = 2**31 - 1
MAX_T_NS = 4 * 10**18
MAX_SEED = 2**64 - 1
MAX_IFNAME = 15                # IFNAMSIZ - 1
MAX_LINKS = 4096
QOS_MAX_CLASSES = 8            # classes of a class-based queue ("qos"; relay/relay.c)
QOS_MAX_WEIGHT = 1_000_000
QOS_NDSCP = 64
QOS_USAGE = "usage: qos ID uplink|downlink N MAP W_0 .. W_{N-1} | qos ID uplink|downlink off"
INSIDE = "-"                   # a link end with no interface: inside the relay (relay/cell.c)
MAC_RE = re.compile(rb"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
# Departure lateness histogram of the data path (stats key ``late_hist``): bucket i counts departures
# at most LATE_EDGES_NS[i] late, the last bucket those beyond. relay/control.c holds the same edges.
LATE_EDGES_NS = (10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
                 10_000_000, 20_000_000, 50_000_000, 100_000_000)


def late_bucket(late_ns: float) -> int:
    """The ``late_hist`` bucket of one departure ``late_ns`` after its scheduled time."""
    for i, edge in enumerate(LATE_EDGES_NS):
        if late_ns <= edge:
            return i
    return len(LATE_EDGES_NS)


def late_quantile_ms(hist: Sequence[int], q: float) -> float | None:
    """Upper bound of the ``q`` quantile of a ``late_hist`` (its bucket's edge, ms; ``inf`` beyond
    the last edge); None for an empty histogram."""
    total = sum(hist)
    if total == 0:
        return None
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= q * total:
            return LATE_EDGES_NS[i] / 1e6 if i < len(LATE_EDGES_NS) else math.inf
    return math.inf
# the 13 numbers of P... in wire order: name, allowed (as in replies), min, max, integer only
FIELDS = (
    ("delay_ns", "an integer 0..3600000000000", 0, 3.6e12, True),
    ("jitter_ns", "an integer 0..3600000000000", 0, 3.6e12, True),
    ("jdist", "0, 1 or 2", 0, 2, True),
    ("loss_prob", "0..1", 0, 1, False),
    ("ge_on", "0 or 1", 0, 1, True),
    ("ge_p", "0..1", 0, 1, False),
    ("ge_r", "0..1", 0, 1, False),
    ("ge_loss_good", "0..1", 0, 1, False),
    ("ge_loss_bad", "0..1", 0, 1, False),
    ("rate_bps", "0 (unlimited) or 1..1000000000000", 1, 1e12, False),  # 0 is allowed too
    ("qlim_pkts", "an integer 0..1000000000000000", 0, 1e15, True),
    ("qlim_bytes", "an integer 0..1000000000000000", 0, 1e15, True),
    ("up", "0 or 1", 0, 1, True),
)
RATE_FIELD = 9
DECIMAL = re.compile(rb"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # no hex, inf, nan
PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\r\x0b\x0c"  # any other byte in a line: bad character

Row = tuple[float, list[float]]  # (t in CLOCK_MONOTONIC seconds, the 13 numbers)


class ProtocolError(ValueError):
    """A request or row the relay rejects; the message is the reply after ``err``."""


def show(word: bytes) -> str:
    """A word as echoed in a reply: its first 32 bytes (like the C relay's %.32s)."""
    return word[:32].decode("ascii", "replace")


def parse_uint(word: bytes, limit: int) -> int | None:
    """Decimal digits only, value <= limit; else None."""
    if not word.isdigit() or len(word.lstrip(b"0")) > 20:
        return None
    value = int(word)
    return value if value <= limit else None


def parse_mac(word: bytes) -> bytes | None:
    """``aa:bb:cc:dd:ee:ff`` (hex either case) -> its 6 bytes; else None."""
    return bytes.fromhex(word.decode().replace(":", "")) if MAC_RE.fullmatch(word) else None


def parse_params(words: Sequence[bytes]) -> list[float]:
    """The 13 wire numbers, each checked for syntax, finiteness and range (ProtocolError)."""
    if len(words) != len(FIELDS):
        raise ProtocolError(f"expected 13 numbers, got {len(words)}")
    values = []
    for i, (word, (name, allowed, lo, hi, integral)) in enumerate(zip(words, FIELDS, strict=True)):
        v = float(word) if DECIMAL.fullmatch(word) else math.nan
        good = (math.isfinite(v) and ((i == RATE_FIELD and v == 0) or lo <= v <= hi)
                and (not integral or v == math.floor(v)))
        if not good:
            raise ProtocolError(f"{name}: got {show(word)}; allowed {allowed}")
        values.append(v)
    return values


def parse_row(line: bytes, too_long: bool, last_t_ns: int) -> tuple[int, list[float]]:
    """One ``sched`` row "T_NS P..." -> (t_ns, the 13 numbers); ProtocolError says what is wrong."""
    if too_long:
        raise ProtocolError(f"line too long (max {LINE_MAX_BYTES} bytes)")
    if line.translate(None, PRINTABLE):
        raise ProtocolError("bad character (printable ASCII only)")
    w = line.split()
    if len(w) != 14:
        raise ProtocolError(f"expected 14 numbers (t_ns and 13 parameters), got {len(w)}")
    t_ns = parse_uint(w[0], MAX_T_NS)
    if t_ns is None:
        raise ProtocolError(f"t_ns: got {show(w[0])}; allowed an integer 0..{MAX_T_NS}")
    values = parse_params(w[1:])
    if t_ns < last_t_ns:
        raise ProtocolError(f"t_ns: got {show(w[0])}; allowed >= the previous row's t_ns")
    return t_ns, values


class LineFramer:
    """Splits a byte stream into lines of at most ``max_bytes`` (without the newline), in bounded
    memory: a longer line comes out once, as (b"", True), when its newline arrives."""

    def __init__(self, max_bytes: int = LINE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.too_long = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        lines, start = [], 0
        while True:
            nl = chunk.find(b"\n", start)
            part = chunk[start:] if nl < 0 else chunk[start:nl]
            if not self.too_long:
                self.buf += part
                if len(self.buf) > self.max_bytes:
                    self.too_long = True
                    self.buf.clear()
            if nl < 0:
                return lines
            lines.append((b"", True) if self.too_long else (bytes(self.buf), False))
            self.buf.clear()
            self.too_long = False
            start = nl + 1


class PendingSched:
    """An accepted ``sched ID DIR N`` whose N rows are still coming."""

    def __init__(self, n: int, err: str | None, link_id: int = 0, direction: int = 0) -> None:
        self.n = self.left = n
        self.err, self.link_id, self.direction = err, link_id, direction
        self.rows: list[Row] = []
        self.last_t_ns = -1
        self.oom = False


class ControlChannel:
    """Requests in, exactly one reply per request out; subclasses serve the links (the hooks)."""

    def __init__(self) -> None:
        self.counters = dict.fromkeys(("requests", "errors", "too_long", "rows"), 0)
        self.pending: PendingSched | None = None
        self.quit = False

    # --- hooks -----------------------------------------------------------------------------------
    def add_link(self, link_id: int, a: str, b: str) -> str:
        """Serve a new link (id not in use); the reply."""
        raise NotImplementedError

    def has_link(self, link_id: int) -> bool:
        raise NotImplementedError

    def del_link(self, link_id: int) -> None:
        raise NotImplementedError

    def set_rows(self, link_id: int, direction: int, rows: list[Row]) -> None:
        raise NotImplementedError

    def link_stats(self, link_id: int) -> str:
        """The JSON after ``ok`` of ``stats``."""
        raise NotImplementedError

    def cell_backhaul(self, cell_id: int, n3_id: int) -> str | None:
        """Wire link ``n3_id`` as the backhaul of cell ``cell_id`` (both exist); None or the error."""
        raise NotImplementedError

    def cell_join(self, ue_id: int, cell_id: int, mac: bytes) -> str | None:
        """UE radio link ``ue_id`` joins cell ``cell_id`` (leaving its cell first); None or the error."""
        raise NotImplementedError

    def cell_leave(self, ue_id: int) -> None:
        raise NotImplementedError

    def set_qos(self, link_id: int, direction: int, classes: int, dscp_map: bytes,
                weights: list[int]) -> None:
        """Class-based queue of a direction of an existing link: ``classes`` 0 = off; ``dscp_map[k]``
        the class of DSCP k; ``weights[i]`` 0 = strict priority."""
        raise NotImplementedError

    def n3_dscp(self, ue_id: int, dscp: int | None) -> str | None:
        """UE radio link ``ue_id``'s uplink packets get ``dscp`` entering its cell (None: left as
        they are); None or the error."""
        raise NotImplementedError

    # --- the protocol ----------------------------------------------------------------------------
    def command(self, line: str, next_row: Callable[[], str] = lambda: "") -> str:
        """One request (rows of a ``sched`` pulled from ``next_row``) -> its reply."""
        reply = self.feed(line.encode())
        while reply is None:
            reply = self.feed(next_row().encode())
        return reply

    def feed(self, line: bytes, too_long: bool = False) -> str | None:
        """One input line (without newline) -> its reply, or None while it is a row of a ``sched``."""
        self.counters["too_long"] += too_long
        reply = self._row(line, too_long) if self.pending else self._request(line, too_long)
        if reply is not None:
            self.counters["requests"] += 1
            self.counters["errors"] += reply.startswith("err")
        return reply

    def _request(self, line: bytes, too_long: bool) -> str | None:
        if too_long:
            return f"err line too long (max {LINE_MAX_BYTES} bytes)"
        if line.translate(None, PRINTABLE):
            return "err bad character (printable ASCII only)"
        w = line.split()
        if not w:
            return "err empty command"
        cmd = w[0].decode()
        if cmd in ("ping", "quit", "now", "ctlstats"):
            if len(w) != 1:
                return f"err usage: {cmd}"
            self.quit = cmd == "quit"
            if cmd == "now":
                return f"ok {time.monotonic_ns()}"
            if cmd == "ctlstats":
                return "ok " + json.dumps(self.counters, separators=(",", ":"))
            return "ok"
        if cmd == "sched":
            return self._sched(w)
        if cmd == "seed":
            if len(w) != 2:
                return "err usage: seed S"
            if (seed := parse_uint(w[1], MAX_SEED)) is None:
                return f"err seed: got {show(w[1])}; allowed an integer 0..{MAX_SEED}"
            random.seed(seed)
            return "ok"
        if cmd in ("cell", "join", "leave"):
            return self._cell_request(cmd, w)
        if cmd == "qos":
            return self._qos_request(w)
        if cmd == "n3dscp":
            return self._n3dscp(w)
        if cmd not in ("add", "del", "stats", "set"):
            return f"err unknown command {show(w[0])}"
        return self._link_request(cmd, w)

    def _link_request(self, cmd: str, w: list[bytes]) -> str:
        name = w[2].decode() if len(w) >= 3 else ""
        if cmd == "set" and name not in DIRECTIONS:
            return "err usage: set ID uplink|downlink P..."
        if cmd != "set" and len(w) != (4 if cmd == "add" else 2):
            return "err usage: add ID IFA IFB" if cmd == "add" else f"err usage: {cmd} ID"
        if (link_id := parse_uint(w[1], MAX_ID)) is None:
            return f"err ID: got {show(w[1])}; allowed an integer 0..{MAX_ID}"
        if cmd == "add":
            if longer := next((n for n in w[2:4] if len(n) > MAX_IFNAME), None):
                return f"err interface name too long: {show(longer)} (max {MAX_IFNAME} bytes)"
            if w[2] == w[3] and w[2] != INSIDE.encode():
                return "err IFA and IFB must differ"
            return self.add_link(link_id, w[2].decode(), w[3].decode())
        values = None
        if cmd == "set":
            try:
                values = parse_params(w[3:])
            except ProtocolError as exc:
                return f"err {exc}"
        if not self.has_link(link_id):
            return f"err no link {link_id}"
        if cmd == "del":
            self.del_link(link_id)
        elif cmd == "set":
            self.set_rows(link_id, DIRECTIONS.index(name), [(0.0, values)])
        else:
            return "ok " + self.link_stats(link_id)
        return "ok"

    def _cell_request(self, cmd: str, w: list[bytes]) -> str:
        """``cell ID N3`` | ``join ID CELL MAC`` | ``leave ID`` (relay/cell.c)."""
        usage = {"cell": "usage: cell ID N3", "join": "usage: join ID CELL MAC", "leave": "usage: leave ID"}
        if len(w) != {"cell": 3, "join": 4, "leave": 2}[cmd]:
            return f"err {usage[cmd]}"
        ids = []
        for i, word in enumerate(w[1:2] if cmd == "leave" else w[1:3]):
            if (value := parse_uint(word, MAX_ID)) is None:
                what = "ID" if i == 0 else ("CELL" if cmd == "join" else "N3")
                return f"err {what}: got {show(word)}; allowed an integer 0..{MAX_ID}"
            ids.append(value)
        mac = parse_mac(w[3]) if cmd == "join" else b""
        if mac is None:
            return f"err MAC: got {show(w[3])}; allowed aa:bb:cc:dd:ee:ff"
        for link_id in ids:
            if not self.has_link(link_id):
                return f"err no link {link_id}"
        if cmd == "leave":
            self.cell_leave(ids[0])
            return "ok"
        error = self.cell_join(ids[0], ids[1], mac) if cmd == "join" else self.cell_backhaul(ids[0], ids[1])
        return "ok" if error is None else f"err {error}"

    def _n3dscp(self, w: list[bytes]) -> str:
        """``n3dscp ID DSCP|-`` (relay/cell.c: the gNB's N3 transport marking of a UE's uplink)."""
        if len(w) != 3:
            return "err usage: n3dscp ID DSCP|-"
        if (ue_id := parse_uint(w[1], MAX_ID)) is None:
            return f"err ID: got {show(w[1])}; allowed an integer 0..{MAX_ID}"
        dscp = None if w[2] == b"-" else parse_uint(w[2], 63)
        if dscp is None and w[2] != b"-":
            return f"err DSCP: got {show(w[2])}; allowed an integer 0..63 or -"
        if not self.has_link(ue_id):
            return f"err no link {ue_id}"
        error = self.n3_dscp(ue_id, dscp)
        return "ok" if error is None else f"err {error}"

    def _qos_request(self, w: list[bytes]) -> str:
        """``qos ID DIR N MAP W_0 .. W_{N-1}`` | ``qos ID DIR off`` (relay/control.c qos_request)."""
        if len(w) < 4 or w[2].decode() not in DIRECTIONS:
            return f"err {QOS_USAGE}"
        if (link_id := parse_uint(w[1], MAX_ID)) is None:
            return f"err ID: got {show(w[1])}; allowed an integer 0..{MAX_ID}"
        n, dscp_map, weights = 0, b"", []
        if w[3] == b"off":
            if len(w) != 4:
                return f"err {QOS_USAGE}"
        else:
            n = parse_uint(w[3], QOS_MAX_CLASSES) or 0
            if not n:
                return f"err N: got {show(w[3])}; allowed an integer 1..{QOS_MAX_CLASSES} or off"
            if len(w) != 5 + n:
                return f"err expected MAP and {n} weights after N, got {len(w) - 4} words"
            if len(w[4]) != QOS_NDSCP:
                return (f"err MAP: got {len(w[4])} characters; allowed exactly {QOS_NDSCP} digits 0..{n - 1} "
                        "(digit k: the class of DSCP k)")
            for k, ch in enumerate(w[4]):
                if not ord("0") <= ch < ord("0") + n:
                    return f"err MAP: DSCP {k}: got {chr(ch)}; allowed a digit 0..{n - 1}"
            dscp_map = bytes(ch - ord("0") for ch in w[4])
            for i, word in enumerate(w[5:]):
                if (weight := parse_uint(word, QOS_MAX_WEIGHT)) is None:
                    return (f"err W_{i}: got {show(word)}; allowed an integer 0 (strict priority) or "
                            f"1..{QOS_MAX_WEIGHT} (weight)")
                weights.append(weight)
        if not self.has_link(link_id):
            return f"err no link {link_id}"
        self.set_qos(link_id, DIRECTIONS.index(w[2].decode()), n, dscp_map, weights)
        return "ok"

    def _sched(self, w: list[bytes]) -> str | None:
        """A ``sched`` header: an accepted N (1..MAX_SCHED_ROWS) makes the next N lines its rows."""
        if len(w) < 4:
            return "err usage: sched ID uplink|downlink N"
        n = parse_uint(w[3], MAX_SCHED_ROWS)
        if not n:
            return f"err sched: N: got {show(w[3])}; allowed an integer 1..{MAX_SCHED_ROWS} (no rows read)"
        name = w[2].decode()
        if len(w) != 4 or name not in DIRECTIONS:
            self.pending = PendingSched(n, "usage: sched ID uplink|downlink N")
        elif (link_id := parse_uint(w[1], MAX_ID)) is None:
            self.pending = PendingSched(n, f"ID: got {show(w[1])}; allowed an integer 0..{MAX_ID}")
        else:
            self.pending = PendingSched(n, None, link_id, DIRECTIONS.index(name))
        return None

    def _row(self, line: bytes, too_long: bool) -> str | None:
        p = self.pending
        i = p.n - p.left
        self.counters["rows"] += 1
        if p.err is None and not p.oom:
            try:
                p.last_t_ns, values = parse_row(line, too_long, p.last_t_ns)
                p.rows.append((p.last_t_ns / 1e9, values))
            except ProtocolError as exc:
                p.err, p.rows = f"row {i}: {exc}", []
            except MemoryError:
                p.oom, p.rows = True, []
        p.left -= 1
        if p.left:
            return None
        self.pending = None
        if p.err is not None:
            return f"err {p.err}"
        if p.oom:
            return f"err out of memory for {p.n} rows"
        if not self.has_link(p.link_id):
            return f"err no link {p.link_id}"
        self.set_rows(p.link_id, p.direction, p.rows)
        return "ok"

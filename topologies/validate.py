"""Small helpers that turn raw TOML tables into typed values with clear errors.

Every error names the key path (``cells[1].slices[0].dscp``), the bad value and what is
allowed, so a user can fix a scenario file without reading code.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from topologies.errors import UserError

# Names that become file, interface, bridge or namespace names: plain identifiers, checked with a
# FULL match (``re.match`` with ``$`` would let a trailing newline through).
NAME_RE = re.compile(r"[a-z][a-z0-9]{0,9}")
NAME_TEXT = "1-10 lowercase letters/digits starting with a letter"
# Experiment names become results/<name>/ folders.
EXPERIMENT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
EXPERIMENT_NAME_TEXT = ("1-64 letters, digits, '_' or '-' starting with a letter "
                        "(it names the results/<name>/ folder)")
# Files read as configuration: far larger than any real scenario, experiment or TLE catalogue.
MAX_FILE_BYTES = 64 << 20


class ConfigError(UserError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        super().__init__(f"{path}: got {value!r}; allowed: {allowed}")


_MISSING = object()


class Table:
    """A TOML table being validated: reads keys and rejects unknown ones at the end.

    Use as ``with Table(raw, "cells[0]") as t: name = t.str("name")``; leaving the
    ``with`` block raises for every key that was never read (typos fail loudly).
    """

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(path or "<root>", raw, "a table")
        self.raw = raw
        self.path = path
        self._seen: set[str] = set()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, default: Any = _MISSING) -> Any:
        self._seen.add(name)
        if name in self.raw:
            return self.raw[name]
        if default is _MISSING:
            raise ConfigError(self.key(name), None, "this key is required")
        return default

    def str(self, name: str, default: Any = _MISSING, choices: Iterable[str] | None = None) -> str:
        return check_str(self.key(name), self.get(name, default), choices)

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        return check_bool(self.key(name), self.get(name, default))

    def number(
        self,
        name: str,
        default: Any = _MISSING,
        min: float | None = None,
        max: float | None = None,
        min_exclusive: bool = False,
        why: str | None = None,
    ) -> float:
        value = self.get(name, default)
        return check_number(self.key(name), value, min=min, max=max, min_exclusive=min_exclusive,
                            why=why)

    def int(self, name: str, default: Any = _MISSING, min: int | None = None, max: int | None = None,
            why: str | None = None) -> int:
        return check_int(self.key(name), self.get(name, default), min=min, max=max, why=why)

    def name(self, key: str, default: Any = _MISSING) -> str:
        """A node name (see :data:`NAME_RE`)."""
        return check_name(self.key(key), self.get(key, default))

    def optional_number(self, name: str, **kwargs: Any) -> float | None:
        if name not in self.raw:
            self._seen.add(name)
            return None
        return self.number(name, **kwargs)

    def table(self, name: str, default: Any = _MISSING) -> Table:
        value = self.get(name, default)
        return Table(value, self.key(name))

    def tables(self, name: str, default: Any = _MISSING) -> list[Table]:
        value = self.get(name, default)
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise ConfigError(self.key(name), value, "an array of tables ([[...]])")
        return [Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(value)]

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self._seen)
        if unknown:
            raise ConfigError(
                self.key(unknown[0]),
                self.raw[unknown[0]],
                "no such key here; known keys: " + ", ".join(sorted(self._seen)),
            )


def check_number(
    path: str,
    value: Any,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    why: str | None = None,
) -> float:
    """Return ``value`` as float if it is a finite number within [min, max] (or (min, max]).

    ``true``/``false`` are not numbers here (Python's bool is an int, TOML's is not); ``nan`` and
    ``inf`` are not either. ``why`` (the reason for the bounds) is appended to the error.
    """
    text = "a number" + range_text(min, max, min_exclusive) + (f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, value, text)
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:  # NaN, inf, -inf
        raise ConfigError(path, value, "a finite " + text[2:])
    if min is not None and (value < min or (min_exclusive and value == min)):
        raise ConfigError(path, value, text)
    if max is not None and value > max:
        raise ConfigError(path, value, text)
    return float(value)


def check_int(path: str, value: Any, min: int | None = None, max: int | None = None,
              why: str | None = None) -> int:
    """Return ``value`` if it is a whole number (not a bool, not ``1.0``) within [min, max]."""
    if (isinstance(value, bool) or not isinstance(value, int)
            or (min is not None and value < min) or (max is not None and value > max)):
        raise ConfigError(path, value, "a whole number" + range_text(min, max)
                          + (f" ({why})" if why else ""))
    return value


def check_bool(path: str, value: Any) -> bool:
    """Return ``value`` if it is ``true`` or ``false`` (``1`` and ``"yes"`` are not)."""
    if not isinstance(value, bool):
        raise ConfigError(path, value, "true or false")
    return value


def check_str(path: str, value: Any, choices: Iterable[str] | None = None) -> str:
    """Return ``value`` if it is a string (one of ``choices``, when given)."""
    if not isinstance(value, str):
        raise ConfigError(path, value, "a string")
    if choices is not None:
        choices = list(choices)
        if value not in choices:
            raise ConfigError(path, value, "one of " + ", ".join(map(repr, choices)))
    return value


def range_text(min: float | None, max: float | None, min_exclusive: bool = False) -> str:
    """`` >= 0 and <= 100`` (or `` > 0``, or ``""`` without bounds): the tail of an "allowed" text."""
    lo = "" if min is None else (f"> {min}" if min_exclusive else f">= {min}")
    hi = "" if max is None else f"<= {max}"
    both = " and ".join(p for p in (lo, hi) if p)
    return f" {both}" if both else ""


def check_name(path: str, value: Any, pattern: re.Pattern[str] = NAME_RE, text: str = NAME_TEXT) -> str:
    """Return ``value`` if the WHOLE string matches ``pattern`` (a name that becomes a file,
    interface, bridge or namespace name)."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(path, value, text)
    return value


def read_text_file(path: Path, key: str, what: str = "file") -> str:
    """The UTF-8 text of a configuration file, or a ConfigError naming ``key``, the file and the problem.

    ``what`` says what the file should be (``"TOML file"``), for the error.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(key, str(path), f"a {what}, not a folder")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(key, str(path), f"a {what} of at most {MAX_FILE_BYTES >> 20} MiB "
                                              f"(this one has {size} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, str(path), f"a readable {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(key, str(path), f"UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} "
                                          "is not UTF-8)") from None


def read_toml_file(path: Path, key: str) -> dict:
    """A TOML file parsed, or a ConfigError naming ``key``, the file and the problem."""
    text = read_text_file(path, key, "TOML file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, str(path), f"valid TOML ({exc})") from None

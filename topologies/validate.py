"""Small helpers that turn raw TOML tables into typed values with clear errors.

Every error names the key path (``cells[1].slices[0].dscp``), the bad value and what is
allowed, so a user can fix a scenario file without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from topologies.errors import UserError


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
    ) -> float:
        value = self.get(name, default)
        return check_number(self.key(name), value, min=min, max=max, min_exclusive=min_exclusive)

    def int(self, name: str, default: Any = _MISSING, min: int | None = None, max: int | None = None) -> int:
        return check_int(self.key(name), self.get(name, default), min=min, max=max)

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
) -> float:
    """Return ``value`` as float if it is a number within [min, max] (or (min, max]).

    ``true``/``false`` are not numbers here (Python's bool is an int, TOML's is not).
    """
    text = "a number" + range_text(min, max, min_exclusive)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, value, text)
    if value != value:  # NaN
        raise ConfigError(path, value, text)
    if min is not None and (value < min or (min_exclusive and value == min)):
        raise ConfigError(path, value, text)
    if max is not None and value > max:
        raise ConfigError(path, value, text)
    return float(value)


def check_int(path: str, value: Any, min: int | None = None, max: int | None = None) -> int:
    """Return ``value`` if it is a whole number (not a bool, not ``1.0``) within [min, max]."""
    if (isinstance(value, bool) or not isinstance(value, int)
            or (min is not None and value < min) or (max is not None and value > max)):
        raise ConfigError(path, value, "a whole number" + range_text(min, max))
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

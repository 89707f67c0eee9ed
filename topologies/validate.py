"""Small helpers that turn raw TOML tables into typed values with clear errors.

Every error names the key path (``cells[1].slices[0].dscp``), the bad value and what is
allowed, so a user can fix a scenario file without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class ConfigError(ValueError):
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
        value = self.get(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(name), value, "a string")
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                raise ConfigError(self.key(name), value, "one of " + ", ".join(map(repr, choices)))
        return value

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), value, "true or false")
        return value

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
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), value, "a whole number" + _range_text(min, max))
        if (min is not None and value < min) or (max is not None and value > max):
            raise ConfigError(self.key(name), value, "a whole number" + _range_text(min, max))
        return value

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
    """Return ``value`` as float if it is a number within [min, max] (or (min, max])."""
    text = "a number" + _range_text(min, max, min_exclusive)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, value, text)
    if value != value:  # NaN
        raise ConfigError(path, value, text)
    if min is not None and (value < min or (min_exclusive and value == min)):
        raise ConfigError(path, value, text)
    if max is not None and value > max:
        raise ConfigError(path, value, text)
    return float(value)


def _range_text(min: float | None, max: float | None, min_exclusive: bool = False) -> str:
    lo = "" if min is None else (f"> {min}" if min_exclusive else f">= {min}")
    hi = "" if max is None else f"<= {max}"
    both = " and ".join(p for p in (lo, hi) if p)
    return f" {both}" if both else ""

"""Parse a TOML table into a frozen dataclass, reading the dataclass's own fields.

A config class states each key once: name, type and default in its field declaration, bounds in
the field's metadata, the source of the value in a comment beside it. :func:`parse_table` reads
the rest from there, so no parser restates the fields::

    @dataclass(frozen=True)
    class Shell:
        # Starlink shell 1 (FCC 21-48): 550 km, 72 planes; F is not published (assumption).
        altitude_km: float = field(default=550.0, metadata=bounds(min=100.0, max=40_000.0))
        planes: int = field(default=72, metadata=bounds(min=1, max=1000, why="held in memory"))
        phasing_f: int = field(default=1, metadata=bounds(min=0, max=lambda s: s.planes - 1))
        policy: str = field(default="a", metadata=bounds(choices=("a", "b")))
        rate_mbps: float | None = field(default=None, metadata=bounds(min=0, min_exclusive=True))

    shell = parse_table(Shell, Table(raw, "leo.orbit.shell"))

Rules (errors are :class:`ConfigError` naming the full key path, the value and what is allowed,
with the bound's reason ``why`` when given):

* Types: ``bool`` (only true/false), ``int`` (whole numbers; ``true`` and ``1.5`` are not),
  ``float`` (any finite number, stored as float), ``str`` (``choices`` optional), ``X | None``, a nested
  dataclass (a sub-table, parsed recursively: ``leo.orbit.shell.planes``) and ``tuple[X, ...]``
  (a TOML array; of tables when X is a dataclass). Type hints may be strings
  (``from __future__ import annotations``); config classes must live at module level.
* An absent key takes the field's default (a nested table: its defaults come from the field's
  default object); a field without a default is required. Defaults pass the same checks.
* Unknown keys are rejected (:meth:`Table.finish`).
* A bound may be a callable of the values parsed before it, looked up in this table first and
  then in the enclosing ones (``max=lambda c: c.reconfiguration.interval_s / 2``).
* Cross-field rules go in ``__post_init__``: raise ``ConfigError(path, value, allowed)`` with a
  path relative to the object (``"step_s"``, ``"handover.before_s"``); :func:`parse_table`
  prefixes the table's key path. ``__post_init__`` may call :func:`check_fields` so objects built
  in code meet the same bounds (paths are then field names).
* Keys handled by explicit code (a file path resolved against the scenario's folder, a table
  keyed by host names) are passed in: ``parse_table(cls, t, tle_file=path)``. The caller reads
  such a key itself (``t.get``), so that the table knows it.
* :func:`nested` (``prefix``, ``fixed``) adjusts how a nested dataclass is read.

Experiment-kind parameters, e.g. a ``[params]`` table whose ``targets`` sub-table is keyed by host::

    def parse_params(raw: dict) -> OffloadParams:
        with Table(raw, "params") as t:
            targets = DEFAULT_TARGETS
            if t.has("targets"):
                with t.table("targets") as tt:
                    targets = tuple(parse_table(Target, tt.table(h), host=h) for h in list(tt.raw))
            else:
                t.get("targets", None)
            return parse_table(OffloadParams, t, targets=targets)
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from topologies.validate import ConfigError, Table, check_bool, check_int, check_number, check_str

T = TypeVar("T")
METADATA_KEY = "factorysat.config"
SCALARS = (bool, int, float, str)
Bound = float | Callable[[Any], float | None] | None


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What a config field accepts beyond its type; build it with :func:`bounds` or :func:`nested`."""

    min: Bound = None
    max: Bound = None
    min_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    why: str | None = None  # the reason for the bounds, shown in the error
    # nested dataclasses only: read its keys from this table as prefix + name (no sub-table) ...
    prefix: str | None = None
    # ... and keep these of its fields at the default object's values (not keys of the table)
    fixed: tuple[str, ...] = ()


def bounds(
    min: Bound = None,
    max: Bound = None,
    *,
    min_exclusive: bool = False,
    choices: Iterable[str] | None = None,
    why: str | None = None,
) -> dict[str, FieldSpec]:
    """Field metadata for a number's range (``min`` < value if ``min_exclusive``) or a string's choices.

    ``why`` states the reason for the bounds (``"one hour: schedules are held in memory"``).
    """
    return {METADATA_KEY: FieldSpec(min, max, min_exclusive, None if choices is None else tuple(choices),
                                    why)}


def nested(*, prefix: str | None = None, fixed: Iterable[str] = ()) -> dict[str, FieldSpec]:
    """Field metadata for a nested dataclass read differently from a plain sub-table.

    ``prefix``: its keys sit in the enclosing table as ``prefix + name`` (``pop_lat_deg``).
    ``fixed``: these of its fields are not keys at all; they keep the field default's values.
    """
    return {METADATA_KEY: FieldSpec(prefix=prefix, fixed=tuple(fixed))}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    kind: type | None  # bool / int / float / str / tuple / a dataclass; None: only passed in
    item: type | None  # element type of a tuple
    optional: bool
    spec: FieldSpec
    default: Any  # dataclasses.MISSING when required


def _supported(hint: Any) -> bool:
    return hint in SCALARS or (isinstance(hint, type) and dataclasses.is_dataclass(hint))


@functools.cache
def _schema(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint, optional, item = hints[f.name], False, None
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(hint) if a is not type(None)]
            hint, optional = (rest[0], True) if len(rest) == 1 else (None, False)
        if typing.get_origin(hint) is tuple:
            args = typing.get_args(hint)
            ok = len(args) == 2 and args[1] is Ellipsis and _supported(args[0])
            hint, item = (tuple, args[0]) if ok else (None, None)
        spec = f.metadata.get(METADATA_KEY, FieldSpec())
        if (spec.min_exclusive and hint is not float) or (spec.choices and hint is not str) or (
                (spec.prefix is not None or spec.fixed) and not dataclasses.is_dataclass(hint)):
            raise TypeError(f"{cls.__name__}.{f.name}: {spec} does not fit its type {hints[f.name]}")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(_Field(f.name, hint if hint is tuple or _supported(hint) else None, item,
                          optional, spec, default))
    return tuple(out)


class _Scope:
    """Attribute view of the values parsed so far: this table's first, then the enclosing ones'."""

    def __init__(self, maps: tuple[Mapping[str, Any], ...]) -> None:
        self._maps = maps

    def __getattr__(self, name: str) -> Any:
        for values in self._maps:
            if name in values:
                return values[name]
        raise AttributeError(f"{name!r} is not parsed yet: a bound may use only fields declared "
                             "before it, in its table or an enclosing one")


def parse_table(cls: type[T], table: Table, /, **given: Any) -> T:
    """Build ``cls`` from ``table`` (see the module docstring); ``given`` fields are not read."""
    return _parse(cls, table, None, None, (), (), given)


def _parse(cls: type[T], table: Table, prefix: str | None, base: Any, fixed: tuple[str, ...],
           scopes: tuple[Mapping[str, Any], ...], given: Mapping[str, Any]) -> T:
    values: dict[str, Any] = dict(given)
    scopes = (values, *scopes)
    for f in _schema(cls):
        if f.name in given:
            continue
        default = f.default if base is None else getattr(base, f.name)
        if f.name in fixed:
            values[f.name] = default
            continue
        values[f.name] = _read(cls, f, table, prefix or "", default, scopes)
    try:
        obj = cls(**values)
    except ConfigError as err:  # a cross-field rule in __post_init__, path relative to the object
        raise ConfigError(table.key((prefix or "") + err.path), err.value, err.allowed) from None
    if prefix is None:
        table.finish()
    return obj


def _read(cls: type, f: _Field, table: Table, prefix: str, default: Any,
          scopes: tuple[Mapping[str, Any], ...]) -> Any:
    if f.kind is None:
        raise TypeError(f"{cls.__name__}.{f.name} cannot be read from a table: "
                        f"pass it to parse_table(..., {f.name}=...)")
    key = prefix + f.name
    path = table.key(key)
    if f.kind is not tuple and dataclasses.is_dataclass(f.kind):
        base = default if dataclasses.is_dataclass(default) else None
        if f.spec.fixed and base is None:
            raise TypeError(f"{cls.__name__}.{f.name}: nested(fixed=...) needs a default object")
        if f.spec.prefix is not None:
            return _parse(f.kind, table, prefix + f.spec.prefix, base, f.spec.fixed, scopes, {})
        if not table.has(key) and default is not dataclasses.MISSING and base is None:
            return table.get(key, default)  # absent optional table: None
        sub = table.table(key, {}) if default is not dataclasses.MISSING else table.table(key)
        return _parse(f.kind, sub, None, base, f.spec.fixed, scopes, {})
    if not table.has(key) and f.kind is tuple and default is not dataclasses.MISSING:
        return table.get(key, default)  # a default array is taken as declared
    value = table.get(key) if default is dataclasses.MISSING else table.get(key, default)
    if value is None and f.optional:
        return None
    if f.kind is not tuple:
        return _check(f.kind, path, value, f.spec, _Scope(scopes))
    if not isinstance(value, list | tuple):
        raise ConfigError(path, value, "an array of tables ([[...]])" if dataclasses.is_dataclass(f.item)
                          else "an array")
    if dataclasses.is_dataclass(f.item):
        return tuple(_parse(f.item, Table(v, f"{path}[{i}]"), None, None, (), scopes, {})
                     for i, v in enumerate(value))
    return tuple(_check(f.item, f"{path}[{i}]", v, f.spec, _Scope(scopes)) for i, v in enumerate(value))


def _check(kind: type, path: str, value: Any, spec: FieldSpec, scope: Any) -> Any:
    lo = spec.min(scope) if callable(spec.min) else spec.min
    hi = spec.max(scope) if callable(spec.max) else spec.max
    if kind is bool:
        return check_bool(path, value)
    if kind is int:
        return check_int(path, value, min=lo, max=hi, why=spec.why)
    if kind is float:
        return check_number(path, value, min=lo, max=hi, min_exclusive=spec.min_exclusive, why=spec.why)
    return check_str(path, value, spec.choices)


def check_fields(obj: Any) -> None:
    """Check an object built in code against its fields' types and bounds; call from ``__post_init__``.

    Error paths are field names. Nested dataclasses are only checked for their type (they checked
    themselves when built); callable bounds see the object's own fields.
    """
    for f in _schema(type(obj)):
        value = getattr(obj, f.name)
        if f.kind is None or (value is None and f.optional):
            continue
        kind, item = (f.kind, None) if f.kind is not tuple else (tuple, f.item)
        try:
            if dataclasses.is_dataclass(kind) and not isinstance(value, kind):
                raise ConfigError(f.name, value, f"a {kind.__name__}")
            if kind is tuple:
                if not isinstance(value, tuple):
                    raise ConfigError(f.name, value, "a tuple")
                for i, v in enumerate(value):
                    if dataclasses.is_dataclass(item) and not isinstance(v, item):
                        raise ConfigError(f"{f.name}[{i}]", v, f"a {item.__name__}")
                    if item in SCALARS:
                        _check(item, f"{f.name}[{i}]", v, f.spec, obj)
            elif kind in SCALARS:
                _check(kind, f.name, value, f.spec, obj)
        except ConfigError as err:
            if not f.optional:
                raise
            raise ConfigError(err.path, err.value, err.allowed + " or None") from None

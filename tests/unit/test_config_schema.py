"""parse_table / check_fields: a dataclass's fields, defaults and metadata bounds as its TOML schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from topologies.config_schema import bounds, check_fields, nested, parse_table
from topologies.validate import ConfigError, Table


@dataclass(frozen=True)
class Inner:
    rate_mbps: float = field(default=1.0, metadata=bounds(min=0, min_exclusive=True))
    count: int = field(default=2, metadata=bounds(min=1, max=lambda c: c.limit))  # Outer.limit


@dataclass(frozen=True)
class Point:
    lat_deg: float = field(metadata=bounds(min=-90.0, max=90.0))
    mask_deg: float = 10.0


@dataclass(frozen=True)
class Outer:
    limit: int = field(default=5, metadata=bounds(min=1))
    name: str = field(default="a", metadata=bounds(choices=("a", "b")))
    enabled: bool = False
    gain: float | None = field(default=None, metadata=bounds(min=0, max=10))
    inner: Inner = Inner()
    extra: Inner | None = None
    home: Point = field(default=Point(1.0), metadata=nested(fixed=("mask_deg",)))
    pop: Point = field(default=Point(2.0, 0.0), metadata=nested(prefix="pop_", fixed=("mask_deg",)))
    sizes: tuple[int, ...] = field(default=(1,), metadata=bounds(min=1))
    points: tuple[Point, ...] = ()
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.low > self.high:  # a cross-field rule: path relative to the object
            raise ConfigError("high", self.high, f"a number >= low ({self.low})")


@dataclass(frozen=True)
class Wrapper:
    outer: Outer = Outer()
    path: Path | None = None  # not readable from a table: passed in


def parse(raw: dict, cls: type = Outer, **given):
    return parse_table(cls, Table(raw, "cfg"), **given)


def error(raw: dict, cls: type = Outer, **given) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse(raw, cls, **given)
    assert str(err.value).startswith(f"{err.value.path}: got {err.value.value!r}; allowed: ")
    return err.value


def test_empty_table_gives_the_defaults() -> None:
    assert parse({}) == Outer()
    assert parse({}, Wrapper, path=None) == Wrapper()


def test_values_are_read_and_numbers_become_floats() -> None:
    o = parse({"limit": 3, "name": "b", "enabled": True, "gain": 2, "inner": {"rate_mbps": 5},
               "extra": {}, "home": {"lat_deg": -5}, "pop_lat_deg": 3, "sizes": [1, 2],
               "points": [{"lat_deg": 1, "mask_deg": 2}], "low": 1, "high": 1.5})
    assert o == Outer(3, "b", True, 2.0, Inner(5.0), Inner(), Point(-5.0), Point(3.0, 0.0), (1, 2),
                      (Point(1.0, 2.0),), 1.0, 1.5)
    assert type(o.gain) is float and type(o.inner.rate_mbps) is float and type(o.low) is float
    assert o.home.mask_deg == 10.0 and o.pop.mask_deg == 0.0  # fixed: from the field's default


@pytest.mark.parametrize(("raw", "path", "value", "allowed"), [
    # bounds, with the range in the message (min_exclusive, callables of earlier/enclosing fields)
    ({"inner": {"rate_mbps": 0}}, "cfg.inner.rate_mbps", 0, "a number > 0"),
    ({"limit": 0}, "cfg.limit", 0, "a whole number >= 1"),
    ({"limit": 3, "inner": {"count": 4}}, "cfg.inner.count", 4, "a whole number >= 1 and <= 3"),
    ({"limit": 1}, "cfg.inner.count", 2, "a whole number >= 1 and <= 1"),  # defaults are checked too
    ({"gain": 11}, "cfg.gain", 11, "a number >= 0 and <= 10"),
    ({"name": "c"}, "cfg.name", "c", "one of 'a', 'b'"),
    # bool vs int strictness, as Table has it: true is not a number, 1 is not true
    ({"limit": True}, "cfg.limit", True, "a whole number >= 1"),
    ({"limit": 2.0}, "cfg.limit", 2.0, "a whole number >= 1"),
    ({"gain": True}, "cfg.gain", True, "a number >= 0 and <= 10"),
    ({"enabled": 1}, "cfg.enabled", 1, "true or false"),
    ({"name": 1}, "cfg.name", 1, "a string"),
    # tables, unknown keys, required keys, arrays
    ({"inner": 3}, "cfg.inner", 3, "a table"),
    ({"inner": {"rate": 1}}, "cfg.inner.rate", 1, "no such key here; known keys: count, rate_mbps"),
    ({"home": {"mask_deg": 1}}, "cfg.home.mask_deg", 1, "no such key here; known keys: lat_deg"),
    ({"pop_lat_deg": 91}, "cfg.pop_lat_deg", 91, "a number >= -90.0 and <= 90.0"),
    ({"pop": {"lat_deg": 1}}, "cfg.pop", {"lat_deg": 1}, "no such key here"),
    ({"sizes": 1}, "cfg.sizes", 1, "an array"),
    ({"sizes": [1, 0]}, "cfg.sizes[1]", 0, "a whole number >= 1"),
    ({"points": [{"lat_deg": 1}, {}]}, "cfg.points[1].lat_deg", None, "this key is required"),
    ({"points": {"lat_deg": 1}}, "cfg.points", {"lat_deg": 1}, "an array of tables ([[...]])"),
    # a cross-field rule in __post_init__ gets the table's key path
    ({"low": 2}, "cfg.high", 1.0, "a number >= low (2.0)"),
])
def test_errors_name_key_path_value_and_allowed(raw: dict, path: str, value, allowed: str) -> None:
    err = error(raw)
    assert (err.path, err.value) == (path, value)
    assert err.allowed.startswith(allowed)


def test_key_paths_stay_full_when_nested_deeper() -> None:
    assert error({"outer": {"inner": {"count": 9}}}, Wrapper, path=None).path == "cfg.outer.inner.count"
    assert error({"outer": {"low": 3}}, Wrapper, path=None).path == "cfg.outer.high"
    assert error({"outer": {"extra": {"x": 1}}}, Wrapper, path=None).path == "cfg.outer.extra.x"


def test_unknown_key_lists_every_field() -> None:
    err = error({"limt": 3})
    assert err.allowed == ("no such key here; known keys: enabled, extra, gain, high, home, inner, limit, "
                           "low, name, points, pop_lat_deg, sizes")


def test_given_values_are_not_read_from_the_table() -> None:
    assert parse({}, Wrapper, path=Path("x")).path == Path("x")
    assert parse({}, name="b").name == "b"  # as given: the caller validated it
    assert error({"name": "b"}, name="b").path == "cfg.name"  # the caller did not read the key
    t = Table({"name": "b"}, "cfg")
    assert parse_table(Outer, t, name=t.str("name")).name == "b"
    with pytest.raises(TypeError, match="pass it to parse_table"):
        parse({}, Wrapper)


def test_table_keyed_by_name_with_given_field() -> None:
    @dataclass(frozen=True)
    class Target:
        host: str
        tops: float = 1.0

    with Table({"edge1": {"tops": 2}, "sat1": {}}, "params.targets") as tt:
        got = tuple(parse_table(Target, tt.table(h), host=h) for h in list(tt.raw))
    assert got == (Target("edge1", 2.0), Target("sat1", 1.0))


def test_table_helpers_keep_bool_int_strictness() -> None:
    t = Table({"n": True, "x": True, "b": 1, "i": 1.0}, "t")
    for read in (lambda: t.int("n"), lambda: t.number("x"), lambda: t.bool("b"), lambda: t.int("i")):
        with pytest.raises(ConfigError):
            read()


@dataclass(frozen=True)
class Checked:
    rate: float = field(default=1.0, metadata=bounds(min=0, min_exclusive=True))
    pkts: int | None = field(default=None, metadata=bounds(min=1))
    inner: Inner | None = None
    planes: int = 4
    phase: int = field(default=0, metadata=bounds(min=0, max=lambda c: c.planes - 1))

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(("kwargs", "path", "allowed"), [
    ({"rate": 0}, "rate", "a number > 0"),
    ({"pkts": 0}, "pkts", "a whole number >= 1 or None"),
    ({"pkts": True}, "pkts", "a whole number >= 1 or None"),
    ({"inner": 3}, "inner", "a Inner or None"),
    ({"phase": 4}, "phase", "a whole number >= 0 and <= 3"),
])
def test_check_fields_validates_objects_built_in_code(kwargs: dict, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        Checked(**kwargs)
    assert (err.value.path, err.value.allowed) == (path, allowed)
    assert Checked(rate=2, pkts=3, inner=Inner(), phase=3).phase == 3


def test_specs_that_do_not_fit_the_type_are_refused() -> None:
    @dataclass(frozen=True)
    class Bad:
        x: float = field(default=1.0, metadata=bounds(choices=("a",)))

    with pytest.raises(TypeError, match="does not fit"):
        parse_table(Bad, Table({}, "bad"))


@dataclass(frozen=True)
class WithReason:
    hours: float = field(default=1.0, metadata=bounds(min=0, max=24, why="one day: held in memory"))
    count: int = field(default=1, metadata=bounds(min=1, max=9, why="a single digit"))


@pytest.mark.parametrize("raw, path, allowed", [
    ({"hours": 25}, "cfg.hours", "a number >= 0 and <= 24 (one day: held in memory)"),
    ({"hours": float("inf")}, "cfg.hours", "a finite number >= 0 and <= 24 (one day: held in memory)"),
    ({"hours": float("nan")}, "cfg.hours", "a finite number >= 0 and <= 24 (one day: held in memory)"),
    ({"count": 10}, "cfg.count", "a whole number >= 1 and <= 9 (a single digit)"),
])
def test_bounds_carry_their_reason_and_reject_non_finite(raw: dict, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_table(WithReason, Table(raw, "cfg"))
    assert (err.value.path, err.value.allowed) == (path, allowed)
    with pytest.raises(ConfigError, match="finite"):
        check_fields(WithReason(hours=float("-inf")))

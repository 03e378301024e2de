"""Metadata is plain data, with one documented set of conversions (issue 16, item 12).

put converts exactly: tuple -> list; subclasses of bool, int, float, str and
bytes (IntEnum, StrEnum...) -> the base type's value; bytearray and memoryview
-> bytes; numpy bool, integer and floating scalars up to 64 bits -> bool, int,
float. ``info().user_metadata`` shows the converted value, also from a fresh
Store. Anything else is InvalidMetadataError naming the key path.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
from collections import OrderedDict, namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cas


class Level(enum.IntEnum):
    HIGH = 3


class Color(enum.StrEnum):
    RED = "red"


class Flag(enum.IntFlag):
    A = 1


class MyFloat(float):
    pass


class MyBytes(bytes):
    pass


Point = namedtuple("Point", "x y")

CONVERTED: dict[str, tuple[Any, Any]] = {
    "tuple": ((1, "a", (2.5,)), [1, "a", [2.5]]),
    "namedtuple": (Point(1, 2), [1, 2]),
    "IntEnum": (Level.HIGH, 3),
    "IntFlag": (Flag.A, 1),
    "StrEnum": (Color.RED, "red"),
    "float subclass": (MyFloat(1.5), 1.5),
    "bytes subclass": (MyBytes(b"ab"), b"ab"),
    "bytearray": (bytearray(b"ab"), b"ab"),
    "memoryview": (memoryview(b"abcd")[1:3], b"bc"),
    "np.bool_": (np.bool_(True), True),
    "np.int64": (np.int64(-5), -5),
    "np.uint64 max": (np.uint64(2**64 - 1), 2**64 - 1),
    "np.int8": (np.int8(7), 7),
    "np.float64": (np.float64(0.25), 0.25),
    "np.float32": (np.float32(0.5), 0.5),
    "np.float16": (np.float16(1.5), 1.5),
    "OrderedDict": (OrderedDict(b=1, a=2), {"a": 2, "b": 1}),
    "nested in lists and dicts": ({"m": [np.int64(1), (Level.HIGH,)]}, {"m": [1, [3]]}),
    "plain values unchanged": ([None, True, 0, -(2**63), 2**64 - 1, 1e300, "", b""], [None, True, 0, -(2**63), 2**64 - 1, 1e300, "", b""]),
}  # fmt: skip


@pytest.mark.parametrize("name", CONVERTED)
def test_each_conversion_is_what_info_shows(tmp_path: Path, name: str) -> None:
    given, expected = CONVERTED[name]
    with cas.open(tmp_path / "s") as store:
        ref = store.put(b"x", "thing", metadata={"v": given})
        shown = store.info(ref).user_metadata
    with cas.open(tmp_path / "s", create=False) as fresh:
        again = fresh.info("thing").user_metadata
    for got in (shown, again):
        assert got == {"v": expected}
        assert _types(got["v"]) == _types(expected)


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: (type(k), _types(v)) for k, v in value.items()}
    return type(value)


def test_str_subclass_keys_become_str(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        meta = store.info(store.put(b"x", metadata={Color.RED: 1})).user_metadata
    assert meta == {"red": 1} and type(next(iter(meta))) is str


def test_nan_and_infinities_are_floats(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        meta = store.info(store.put(b"x", metadata={"n": float("nan"), "i": np.float64("-inf")})).user_metadata
    assert math.isnan(meta["n"]) and meta["i"] == -math.inf


def test_the_callers_dict_is_not_changed(tmp_path: Path) -> None:
    given = {"t": (1, 2), "e": Level.HIGH}
    with cas.open(tmp_path / "s") as store:
        store.put(b"x", metadata=given)
    assert given == {"t": (1, 2), "e": Level.HIGH} and type(given["t"]) is tuple


class Thing:
    pass


_DEEP: list[Any] = []
_DEEP.append(_DEEP)  # a list that holds itself: refused by depth, never a RecursionError

REFUSED: dict[str, tuple[Any, str]] = {
    "set": ({"tags": {1, 2}}, r"metadata\['tags'\]: builtins.set is not plain data"),
    "datetime deep": ({"metrics": {"when": datetime.datetime(2026, 1, 1)}}, r"metadata\['metrics'\]\['when'\]: datetime.datetime"),
    "date": ({"d": datetime.date(2026, 1, 1)}, r"metadata\['d'\]: datetime.date"),
    "Decimal": ({"d": decimal.Decimal("1")}, r"metadata\['d'\]: decimal.Decimal"),
    "numpy array in a list": ({"a": [1, np.zeros(2)]}, r"metadata\['a'\]\[1\]: numpy.ndarray"),
    "np.longdouble": ({"a": np.longdouble(1)}, r"metadata\['a'\]: numpy.longdouble"),
    "np.complex128": ({"a": np.complex128(1)}, r"metadata\['a'\]: numpy.complex128"),
    "np.datetime64": ({"a": np.datetime64("2020-01-01")}, r"metadata\['a'\]: numpy.datetime64"),
    "an object": ({"a": Thing()}, r"metadata\['a'\]: .*Thing is not plain data"),
    "int key": ({1: "x"}, r"metadata: key 1 is a int, not a str"),
    "nested int key": ({"m": {(1, 2): 1}}, r"metadata\['m'\]: key \(1, 2\) is a tuple"),
    "int beyond 64 bits": ({"big": 2**64}, r"metadata\['big'\]: int .* does not fit in 64 bits"),
    "negative int beyond 64 bits": ({"big": -(2**63) - 1}, r"metadata\['big'\]: int"),
    "too deep": ({"d": _DEEP}, "nested deeper than"),
    "not a dict": ([1], "metadata must be a dict, not list"),
    "frozenset": ({"f": frozenset()}, r"builtins.frozenset"),
    "an Enum that is not int or str": ({"e": enum.Enum("E", "A").A}, r"metadata\['e'\]: .*E is not plain data"),
}  # fmt: skip


@pytest.mark.parametrize("name", REFUSED)
def test_each_refusal_names_the_key_path(tmp_path: Path, name: str) -> None:
    metadata, message = REFUSED[name]
    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.InvalidMetadataError, match=message):
            store.put(b"x", "thing", metadata=metadata)
        assert not store.exists("thing")


def test_np_str_is_a_str(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        meta = store.info(store.put(b"x", metadata={"s": np.str_("a"), "b": np.bytes_(b"q")})).user_metadata
    assert meta == {"s": "a", "b": b"q"} and type(meta["s"]) is str and type(meta["b"]) is bytes


def test_materializer_metadata_follows_the_same_rule(tmp_path: Path) -> None:
    """What a materializer records goes through the same conversions (a pandas frame's dtypes are strs)."""
    import pandas as pd

    with cas.open(tmp_path / "s") as store:
        info = store.info(store.put(pd.DataFrame({"a": [1]}), metadata={"rows": np.int64(1)}))
    assert info.user_metadata == {"rows": 1} and type(info.user_metadata["rows"]) is int
    assert info.metadata["rows"] == 1 and info.metadata["columns"] == ["a"]

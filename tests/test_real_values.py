"""Everyday Python values (issue 16 item 4) stored by cas.value, without pickle."""

from __future__ import annotations

import datetime
import enum
import typing
import uuid
import zoneinfo
from collections import OrderedDict, defaultdict, deque, namedtuple
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgpack
import pytest

import cas
from materializers import valuecodec


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Stage(enum.Enum):
    TRAIN = "train"
    EVAL = ("eval", 2)
    ALSO_TRAIN = "train"  # an alias


class Perm(enum.Flag):
    R = 1
    W = 2


Point = namedtuple("Point", "x y")


class Pair(typing.NamedTuple):
    left: Any
    right: float = 0.0


UTC = datetime.timezone.utc
NY = zoneinfo.ZoneInfo("America/New_York")

VALUES: list[Any] = [
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    datetime.datetime(2024, 1, 2, tzinfo=UTC),
    datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    datetime.datetime(2024, 11, 3, 1, 30, tzinfo=NY, fold=1),
    datetime.date(1, 1, 1),
    datetime.time(23, 59, 59, 999999),
    datetime.time(1, 2, tzinfo=datetime.timezone(-datetime.timedelta(hours=3))),
    datetime.timedelta(days=-3, seconds=5, microseconds=7),
    Decimal("1.10"),
    Decimal("-0E-7"),
    Decimal("Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Fraction(-3, 7),
    Fraction(2**80, 3),
    OrderedDict([("b", 1.0), ("a", 2.0)]),
    defaultdict(list, {"a": [1]}),
    defaultdict(int),
    deque([1, "x"]),
    deque([1, 2], maxlen=2),
    deque(maxlen=0),
    Color.RED,
    Stage.EVAL,
    Perm.W,
    Point(1, (2, 3)),
    Pair("a", 1.5),
]


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    assert a == b
    if isinstance(a, datetime.datetime | datetime.time):
        assert a.fold == b.fold and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset()
    if isinstance(a, deque):
        assert a.maxlen == b.maxlen
    if isinstance(a, defaultdict):
        assert a.default_factory is b.default_factory
    if isinstance(a, OrderedDict):
        assert list(a) == list(b)
    if isinstance(a, Decimal):
        assert str(a) == str(b)
    if isinstance(a, dict):
        for key in a:
            _same(a[key], b[key])
    if isinstance(a, list | tuple):
        for x, y in zip(a, b, strict=True):
            _same(x, y)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_each_type_round_trips_exactly(local_store: cas.Store, value: Any) -> None:
    _same(valuecodec.decode(valuecodec.encode(value)), value)
    ref = local_store.put(value)
    assert local_store.info(ref).materializer == "cas.value"
    _same(local_store.get(ref), value)


def test_nested_metrics_and_state_dict(local_store: cas.Store) -> None:
    metrics = {
        "started": datetime.datetime(2024, 5, 1, 12, tzinfo=UTC),
        "took": datetime.timedelta(seconds=93.5),
        "loss": [Decimal("0.125"), Decimal("0.0625")],
        "run": uuid.UUID(int=7),
        "stage": Stage.TRAIN,
        "seen": {Color.GREEN, Point(1, 2), datetime.date(2024, 1, 1)},
        "history": deque([(1, Fraction(1, 3))], maxlen=10),
    }
    state = OrderedDict((f"layer{i}.weight", float(i) / 3) for i in range(50))
    state["counts"] = defaultdict(int, {"a": 1})
    for value in (metrics, state, [metrics, state]):
        ref = local_store.put(value)
        assert local_store.info(ref).materializer == "cas.value"
        _same(local_store.get(ref), value)


def test_containers_of_arrays_keep_their_type(local_store: cas.Store) -> None:
    np = pytest.importorskip("numpy")
    state = OrderedDict(w=np.arange(3.0), b=np.zeros(2))
    back = local_store.get(local_store.put({"state": state, "when": datetime.date(2024, 1, 1), "p": Pair(np.ones(1))}))
    assert type(back["state"]) is OrderedDict and list(back["state"]) == ["w", "b"]
    assert (back["state"]["w"] == np.arange(3.0)).all()
    assert type(back["p"]) is Pair and (back["p"].left == np.ones(1)).all()
    assert back["when"] == datetime.date(2024, 1, 1)


def test_encoding_is_deterministic() -> None:
    a = {Stage.TRAIN, Color.RED, datetime.date(2024, 1, 1), Decimal("1.5"), uuid.UUID(int=1), Fraction(1, 2)}
    b = set(reversed(list(a)))
    assert valuecodec.encode(a) == valuecodec.encode(b)
    # An alias stores its canonical member.
    assert valuecodec.encode(Stage.ALSO_TRAIN) == valuecodec.encode(Stage.TRAIN)


def _factory() -> list[int]:
    return []


class Local(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)


Renamed = namedtuple("Other", "x")  # noqa: PYI024 - found again only by its own name


class MyDict(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "value",
    [
        defaultdict(_factory),
        defaultdict(None),
        defaultdict(lambda: 0),
        datetime.datetime(2024, 1, 1, tzinfo=Local()),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1), "CET")),
        Perm.R | Perm.W,  # a pseudo-member has no name of its own
        Renamed(1),
        MyDict(a=1),
        [MyDict(a=1)],
        OrderedDict(a=MyDict()),
        {"x": object()},
    ],
    ids=lambda v: type(v).__name__,
)
def test_what_can_not_be_stored_is_refused(local_store: cas.Store, value: Any) -> None:
    with pytest.raises(cas.UnsupportedTypeError):
        local_store.put(value)


def test_locally_defined_classes_are_refused(local_store: cas.Store) -> None:
    class Mood(enum.Enum):
        HAPPY = 1

    Inner = namedtuple("Inner", "x")
    for value in (Mood.HAPPY, Inner(1)):
        with pytest.raises(cas.UnsupportedTypeError, match="allow_pickle"):
            local_store.put(value)
        assert local_store.info(local_store.put(value, allow_pickle=True)).materializer == "cas.pickle"


def _ext(code: int, payload: Any) -> bytes:
    raw = payload if isinstance(payload, bytes) else msgpack.packb(payload, use_bin_type=True)
    return msgpack.packb(msgpack.ExtType(code, raw))


HOSTILE = [
    _ext(8, [2024, 13, 1, 0, 0, 0, 0, 0, None]),  # month 13
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 2, None]),  # fold 2
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 0]),  # short
    _ext(8, [2024, 1, 1, 0, 0, 0, 0.5, 0, None]),  # a float
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 0, 86_400_000_000]),  # offset of a day
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 0, "../../etc/passwd"]),
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 0, "/etc/localtime"]),
    _ext(8, [2024, 1, 1, 0, 0, 0, 0, 0, b"UTC"]),
    _ext(8, {"year": 2024}),
    _ext(8, b"\xc1"),
    _ext(9, [2024, 2, 30]),
    _ext(9, [True, 1, 1]),
    _ext(10, [24, 0, 0, 0, 0, None]),
    _ext(11, [0, 86400, 0]),  # not normalized
    _ext(11, [10**9, 0, 0]),  # out of range
    _ext(12, b"1_000"),
    _ext(12, b" 1"),
    _ext(12, b"1e5"),  # canonical is 1E+5
    _ext(12, b"\xff"),
    _ext(12, b"x"),
    _ext(13, bytes(15)),
    _ext(14, [1, 0]),
    _ext(14, [2, 4]),  # not in lowest terms
    _ext(14, [1, -2]),
    _ext(15, [1, 2]),
    _ext(16, ["eval", {}]),
    _ext(16, ["list", [1]]),
    _ext(16, ["object", {}]),
    _ext(17, [1, [1, 2]]),  # more than maxlen
    _ext(17, [-1, []]),
    _ext(17, [None, {}]),
    _ext(18, ["builtins", "object", "x"]),
    _ext(18, [1, 2, 3]),
    _ext(18, [__name__, "Stage", 5]),
    _ext(18, [__name__, "Color", "BLUE"]),
    _ext(18, [__name__, "Color", "_member_map_"]),
    _ext(19, [__name__, "Point", [1]]),
    _ext(19, [__name__, "Color", [1]]),
    _ext(19, ["builtins", "tuple", [1]]),
    _ext(19, [__name__, "Point", {"x": 1}]),
    _ext(20, b""),
    _ext(127, b""),
]


@pytest.mark.parametrize("data", HOSTILE)
def test_malformed_payloads_are_typed_errors(data: bytes) -> None:
    with pytest.raises(cas.CasError) as info:
        valuecodec.decode(data)
    assert isinstance(info.value, cas.CorruptObjectError | cas.IncompatibleArtifactError)


@pytest.mark.parametrize("data", HOSTILE[:31])
def test_malformed_builtin_payloads_are_corruption(data: bytes) -> None:
    with pytest.raises(cas.CorruptObjectError):
        valuecodec.decode(data)


def test_classes_are_never_imported() -> None:
    import sys

    assert "antigravity" not in sys.modules
    with pytest.raises(cas.IncompatibleArtifactError):
        valuecodec.decode(_ext(18, ["antigravity", "X", "Y"]))
    with pytest.raises(cas.IncompatibleArtifactError):
        valuecodec.decode(_ext(19, ["antigravity", "X", []]))
    assert "antigravity" not in sys.modules


def test_unknown_time_zone_is_not_corruption() -> None:
    with pytest.raises(cas.IncompatibleArtifactError, match="time zone"):
        valuecodec.decode(_ext(8, [2024, 1, 1, 0, 0, 0, 0, 0, "Nowhere/Atlantis"]))


def test_deep_nesting_is_bounded() -> None:
    data = valuecodec.encode(None)
    for _ in range(valuecodec.MAX_DEPTH + 5):
        data = msgpack.packb(msgpack.ExtType(15, b"\x81\xa1k" + data))  # OrderedDict({"k": ...})
    with pytest.raises(cas.CorruptObjectError):
        valuecodec.decode(data)


def test_old_values_decode_as_before() -> None:
    value = {"a": (1, 2.5, {3, 4}), 5: [None, True, b"x", 2**70, 1j, bytearray(b"y")]}
    old = bytes.fromhex(  # written by cas before ext types 8-19
        "82a161c70f039301cb4004000000000000d50403040596c0c3c40178c70901400000000000000000"
        "d8020000000000000000000000000000f03fd40679"
    )
    assert valuecodec.encode(value) == old
    assert valuecodec.decode(old) == value

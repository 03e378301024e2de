"""A typed msgpack encoding of plain Python values, one byte string per value.

Lists, str-keyed... any dicts, and scalars use msgpack's own types; what msgpack
lacks is an ext type whose payload is again this encoding:

====  ===========  =======================================================
code  Python type  payload
====  ===========  =======================================================
1     int          a big int: signed big-endian two's complement bytes
2     complex      real and imaginary part, two little-endian float64
3     tuple        the items, as an array
4     set          the items' encodings, sorted bytewise, concatenated
5     frozenset    as set
6     bytearray    the bytes
7     (leaf)       the number of a leaf stored by its own materializer
8     datetime     [year, month, day, hour, minute, second, microsecond,
                   fold, tz]; tz: nil (naive), an int (a fixed UTC offset in
                   microseconds), or a str (a zoneinfo key)
9     date         [year, month, day]
10    time         [hour, minute, second, microsecond, fold, tz]
11    timedelta    [days, seconds, microseconds], normalized
12    Decimal      ``str(d)`` in ASCII (the bytes, not msgpack)
13    UUID         the 16 bytes (not msgpack)
14    Fraction     [numerator, denominator], in lowest terms, denominator > 0
15    OrderedDict  the items, as a map
16    defaultdict  [factory name, map]; factory: a built-in type's name
17    deque        [maxlen or nil, array of the items]
18    Enum member  [module, qualname, member name]
19    namedtuple   [module, qualname, array of the fields]
====  ===========  =======================================================

Enum and namedtuple classes are found again only among the modules already
imported (``materializers.structured.find_class``), never imported; the
member or instance is rebuilt without running the class's code.

Sets are sorted by the bytes of their items, so a set's encoding (and hash)
does not depend on the process's hash seed. Dicts keep insertion order; keys
may be any encodable hashable value. Strings keep lone surrogates.
"""

from __future__ import annotations

import datetime
import enum
import functools
import re
import struct
import uuid
import zoneinfo
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgpack

from cas.errors import CasError, CorruptObjectError, IncompatibleArtifactError, UnsupportedTypeError

EXT_BIGINT = 1
EXT_COMPLEX = 2
EXT_TUPLE = 3
EXT_SET = 4
EXT_FROZENSET = 5
EXT_BYTEARRAY = 6
EXT_LEAF = 7
EXT_DATETIME = 8
EXT_DATE = 9
EXT_TIME = 10
EXT_TIMEDELTA = 11
EXT_DECIMAL = 12
EXT_UUID = 13
EXT_FRACTION = 14
EXT_ORDEREDDICT = 15
EXT_DEFAULTDICT = 16
EXT_DEQUE = 17
EXT_ENUM = 18
EXT_NAMEDTUPLE = 19
# codes whose payload is decoded again: each level counts against MAX_DEPTH
_NESTING = frozenset({EXT_TUPLE, EXT_SET, EXT_FROZENSET, EXT_DATETIME, EXT_DATE, EXT_TIME, EXT_TIMEDELTA,
                      EXT_FRACTION, EXT_ORDEREDDICT, EXT_DEFAULTDICT, EXT_DEQUE, EXT_ENUM, EXT_NAMEDTUPLE})  # fmt: skip
_FACTORIES: dict[str, type] = {t.__name__: t for t in (list, dict, set, int, float, str, tuple, frozenset, bytes)}
#: Types besides the builtin scalars and containers that this encoding keeps (Enum: its members).
EVERYDAY_TYPES: tuple[type, ...] = (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, Decimal,
                                    uuid.UUID, Fraction, OrderedDict, defaultdict, deque, enum.Enum)  # fmt: skip
#: Containers that may hold leaves (values of other materializers), besides namedtuples.
CONTAINERS: tuple[type, ...] = (list, tuple, dict, OrderedDict, defaultdict, deque)
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")

Leaf = Callable[[Any], int]
LoadLeaf = Callable[[int], Any]
_COMPLEX = struct.Struct("<dd")
MAX_DEPTH = 256
_STACKED_DEPTH = 4  # nested decodes that may use the C stack (~40 KiB each): fits a 512 KiB thread


def _unsupported(what: str) -> UnsupportedTypeError:
    return UnsupportedTypeError(
        f"{what} can not be stored inside a plain value: register a materializer for it, "
        "or allow pickle (put(..., allow_pickle=True))"
    )


def _tz_code(tz: datetime.tzinfo | None) -> int | str | None:
    if tz is None:
        return None
    if type(tz) is datetime.timezone:
        offset = tz.utcoffset(None)
        if tz.tzname(None) == datetime.timezone(offset).tzname(None):  # no custom name to lose
            return offset // datetime.timedelta(microseconds=1)
    elif type(tz) is zoneinfo.ZoneInfo and isinstance(tz.key, str) and tz.key in _zone_keys():
        return tz.key
    raise _unsupported(f"a time zone of type {type(tz).__module__}.{type(tz).__qualname__} ({tz!r})")


def _tz_from(code: Any) -> datetime.tzinfo | None:
    if code is None:
        return None
    if type(code) is int:
        return datetime.timezone(datetime.timedelta(microseconds=code))
    if type(code) is str and len(code) <= 255 and _ZONE_KEY.fullmatch(code):
        # Only keys this process lists: ZoneInfo(key) would otherwise import tzdata.zoneinfo.<key's folders>.
        if code not in _zone_keys():
            raise IncompatibleArtifactError(f"the time zone {code!r} is not known in this process")
        return zoneinfo.ZoneInfo(code)
    raise ValueError("malformed time zone")


@functools.cache
def _zone_keys() -> frozenset[str]:
    """The IANA keys available here (read once: the system's zoneinfo folders and the tzdata package)."""
    return frozenset(key for key in zoneinfo.available_timezones() if _ZONE_KEY.fullmatch(key))


def _class_facts(t: type) -> list[str]:
    """module and qualname of a user's class, checked to be found again the way loading will."""
    from materializers.structured import find_class

    facts = {"module": t.__module__, "qualname": t.__qualname__}
    try:
        if "<locals>" in t.__qualname__ or find_class(facts) is not t:
            raise _unsupported(f"{t.__module__}.{t.__qualname__} (not found again by its module and name)")
    except CasError:
        raise _unsupported(f"{t.__module__}.{t.__qualname__} (not found again by its module and name)") from None
    return [t.__module__, t.__qualname__]


def is_namedtuple(obj: Any) -> bool:
    t = type(obj)
    fields = vars(t).get("_fields")
    return t.__bases__ == (tuple,) and type(fields) is tuple and all(type(f) is str for f in fields)


def _enum_member(obj: Any) -> list[Any] | None:
    """[module, qualname, name] of an Enum member that is one of its class's named members."""
    t = type(obj)
    name = getattr(obj, "_name_", None)
    if type(name) is not str or t.__members__.get(name) is not obj:
        raise _unsupported(f"the {t.__qualname__} value {obj!r} (not a named member)")
    return [*_class_facts(t), name]


def _default_for(leaf: Leaf | None) -> Callable[[Any], Any]:
    def default(obj: Any) -> Any:
        t = type(obj)
        if t is int:
            length = (obj.bit_length() + 8) // 8
            return msgpack.ExtType(EXT_BIGINT, obj.to_bytes(length, "big", signed=True))
        if t is complex:
            return msgpack.ExtType(EXT_COMPLEX, _COMPLEX.pack(obj.real, obj.imag))
        if t is tuple:
            return msgpack.ExtType(EXT_TUPLE, encode(list(obj), leaf))
        if t is set or t is frozenset:
            # No leaves inside sets: their order, and so the leaves' numbers, would vary.
            items = b"".join(sorted(encode(item) for item in obj))
            return msgpack.ExtType(EXT_SET if t is set else EXT_FROZENSET, items)
        if t is bytearray:
            return msgpack.ExtType(EXT_BYTEARRAY, bytes(obj))
        if t is datetime.datetime:
            fields = [obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold]
            return msgpack.ExtType(EXT_DATETIME, encode([*fields, _tz_code(obj.tzinfo)]))
        if t is datetime.date:
            return msgpack.ExtType(EXT_DATE, encode([obj.year, obj.month, obj.day]))
        if t is datetime.time:
            fields = [obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold, _tz_code(obj.tzinfo)]
            return msgpack.ExtType(EXT_TIME, encode(fields))
        if t is datetime.timedelta:
            return msgpack.ExtType(EXT_TIMEDELTA, encode([obj.days, obj.seconds, obj.microseconds]))
        if t is Decimal:
            return msgpack.ExtType(EXT_DECIMAL, str(obj).encode("ascii"))
        if t is uuid.UUID:
            return msgpack.ExtType(EXT_UUID, obj.bytes)
        if t is Fraction:
            return msgpack.ExtType(EXT_FRACTION, encode([obj.numerator, obj.denominator]))
        if t is OrderedDict:
            return msgpack.ExtType(EXT_ORDEREDDICT, encode(dict(obj), leaf))
        if t is defaultdict:
            factory = obj.default_factory
            name = getattr(factory, "__name__", "")
            if factory is None or _FACTORIES.get(name) is not factory:
                raise _unsupported(f"a defaultdict whose factory is {factory!r} (only built-in types)")
            return msgpack.ExtType(EXT_DEFAULTDICT, encode([name, dict(obj)], leaf))
        if t is deque:
            return msgpack.ExtType(EXT_DEQUE, encode([obj.maxlen, list(obj)], leaf))
        if isinstance(obj, enum.Enum):
            return msgpack.ExtType(EXT_ENUM, encode(_enum_member(obj)))
        if is_namedtuple(obj):
            return msgpack.ExtType(EXT_NAMEDTUPLE, encode([*_class_facts(t), list(obj)], leaf))
        if leaf is not None:
            return msgpack.ExtType(EXT_LEAF, msgpack.packb(leaf(obj)))
        raise _unsupported(f"{t.__module__}.{t.__qualname__}")

    return default


_SCALARS = (type(None), bool, int, float, str, bytes, complex)


def _mark_bytearrays(value: Any, depth: int = 0) -> Any:
    """msgpack packs bytearray as bin without asking; wrap them so they stay bytearrays."""
    if depth > MAX_DEPTH:
        raise UnsupportedTypeError(f"value nested deeper than {MAX_DEPTH}")
    t = type(value)
    if t in _SCALARS:
        return value
    if t is bytearray:
        return msgpack.ExtType(EXT_BYTEARRAY, bytes(value))
    if t is list or t is tuple:
        items = [_mark_bytearrays(v, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if t is list else tuple(items)
    if t is dict:
        marked = {k: _mark_bytearrays(v, depth + 1) for k, v in value.items()}
        if all(marked[k] is v for k, v in value.items()):
            return value
        return marked  # keys are hashable, so never bytearrays
    return value  # sets hold only hashable items, and bytearray is not hashable


def encode(value: Any, leaf: Leaf | None = None) -> bytes:
    """Encode a value; UnsupportedTypeError names the first type that has no encoding.

    With ``leaf``, a value of any other type is handed to it and stored as the
    number it returns (ext type 7): how containers of arrays and frames are kept.
    """
    try:
        return msgpack.packb(
            _mark_bytearrays(value),
            default=_default_for(leaf),
            strict_types=True,
            use_bin_type=True,
            unicode_errors="surrogatepass",
        )
    except (ValueError, RecursionError) as exc:  # msgpack's nesting limit
        raise UnsupportedTypeError(f"value can not be encoded: {exc}") from None


def _hook_for(leaf: LoadLeaf | None, depth: int = 0) -> Callable[[int, bytes], Any]:
    def hook(code: int, data: bytes) -> Any:
        # Each nested tuple or set is a new msgpack decode inside the previous
        # one's C stack: unbounded, stored bytes could crash the process.
        if code in _NESTING and depth > MAX_DEPTH:
            raise ValueError(f"tuples and sets nested deeper than {MAX_DEPTH}")
        if code == EXT_BIGINT:
            return int.from_bytes(data, "big", signed=True)
        if code == EXT_COMPLEX:
            real, imag = _COMPLEX.unpack(data)
            return complex(real, imag)
        if code == EXT_TUPLE:
            items = _decode(data, leaf, depth + 1)
            if not isinstance(items, list):
                raise ValueError("tuple payload is not an array")
            return tuple(items)
        if code in (EXT_SET, EXT_FROZENSET):
            unpacker = msgpack.Unpacker(
                ext_hook=_hook_for(None, depth + 1),
                strict_map_key=False,
                raw=False,
                unicode_errors="surrogatepass",
                max_buffer_size=max(len(data), 1),
            )
            unpacker.feed(data)
            items = list(unpacker)
            return set(items) if code == EXT_SET else frozenset(items)
        if code == EXT_BYTEARRAY:
            return bytearray(data)
        if code == EXT_LEAF and leaf is not None:
            number = msgpack.unpackb(data)
            if type(number) is not int:
                raise ValueError("leaf reference is not an int")
            return leaf(number)
        if EXT_DATETIME <= code <= EXT_NAMEDTUPLE:
            return _decode_more(code, data, leaf, depth)
        raise ValueError(f"unknown ext type {code}")

    return hook


def _ints(items: Any, count: int, tail: int = 0) -> list[Any]:
    """An array of ``count`` exact ints followed by ``tail`` other items."""
    if type(items) is not list or len(items) != count + tail or any(type(i) is not int for i in items[:count]):
        raise ValueError("malformed payload")
    return items


def _find(module: Any, qualname: Any) -> type:
    from materializers.structured import find_class

    if type(module) is not str or type(qualname) is not str:
        raise ValueError("malformed class name")
    return find_class({"module": module, "qualname": qualname})


def _decode_more(code: int, data: bytes, leaf: LoadLeaf | None, depth: int) -> Any:
    """The ext types 8 to 19; ValueError (or a CasError) when malformed."""
    if code == EXT_DECIMAL:
        text = data.decode("ascii")
        value = Decimal(text)
        if str(value) != text:
            raise ValueError("decimal not in canonical form")
        return value
    if code == EXT_UUID:
        if len(data) != 16:
            raise ValueError("a UUID is 16 bytes")
        return uuid.UUID(bytes=bytes(data))
    if code in (EXT_ORDEREDDICT, EXT_DEFAULTDICT, EXT_DEQUE, EXT_NAMEDTUPLE):
        items = _decode(data, leaf, depth + 1)
    else:
        items = _decode(data, None, depth + 1)
    result: Any
    if code == EXT_DATETIME:
        y, mo, d, h, mi, s, us, fold, tz = _ints(items, 8, 1)
        result = datetime.datetime(y, mo, d, h, mi, s, us, tzinfo=_tz_from(tz), fold=fold)
    elif code == EXT_DATE:
        result = datetime.date(*_ints(items, 3))
    elif code == EXT_TIME:
        h, mi, s, us, fold, tz = _ints(items, 5, 1)
        result = datetime.time(h, mi, s, us, tzinfo=_tz_from(tz), fold=fold)
    elif code == EXT_TIMEDELTA:
        days, seconds, micro = _ints(items, 3)
        if not (0 <= seconds < 86400 and 0 <= micro < 1_000_000):
            raise ValueError("timedelta not normalized")
        result = datetime.timedelta(days, seconds, micro)
    elif code == EXT_FRACTION:
        num, den = _ints(items, 2)
        result = Fraction(num, den)
        if result.numerator != num or result.denominator != den:
            raise ValueError("fraction not in lowest terms")
    elif code == EXT_ORDEREDDICT:
        if type(items) is not dict:
            raise ValueError("OrderedDict payload is not a map")
        result = OrderedDict(items)
    elif code == EXT_DEFAULTDICT:
        name, mapping = _ints(items, 0, 2)
        factory = _FACTORIES.get(name) if type(name) is str else None
        if factory is None or type(mapping) is not dict:
            raise ValueError("malformed defaultdict")
        result = defaultdict(factory, mapping)
    elif code == EXT_DEQUE:
        maxlen, values = _ints(items, 0, 2)
        if not (maxlen is None or (type(maxlen) is int and maxlen >= 0)) or type(values) is not list:
            raise ValueError("malformed deque")
        if maxlen is not None and len(values) > maxlen:
            raise ValueError("deque holds more than its maxlen")
        result = deque(values, maxlen)
    elif code == EXT_ENUM:
        module, qualname, name = _ints(items, 0, 3)
        cls = _find(module, qualname)
        if not issubclass(cls, enum.Enum) or type(name) is not str:
            raise IncompatibleArtifactError(f"{module}.{qualname} is not an Enum")
        members = vars(cls).get("_member_map_")
        result = members.get(name) if isinstance(members, dict) else None
        if type(result) is not cls:
            raise IncompatibleArtifactError(f"{module}.{qualname} has no member {name!r}")
    else:  # EXT_NAMEDTUPLE
        module, qualname, values = _ints(items, 0, 3)
        cls = _find(module, qualname)
        fields = vars(cls).get("_fields")
        if cls.__bases__ != (tuple,) or type(fields) is not tuple:
            raise IncompatibleArtifactError(f"{module}.{qualname} is not a namedtuple")
        if type(values) is not list or len(values) != len(fields):
            raise IncompatibleArtifactError(f"{module}.{qualname} does not have {len(values)} fields")
        result = tuple.__new__(cls, values)  # not cls(...): no code of the class runs
    return result


def _decode(data: bytes | bytearray | memoryview, leaf: LoadLeaf | None, depth: int) -> Any:
    if depth < _STACKED_DEPTH:
        return msgpack.unpackb(
            data, ext_hook=_hook_for(leaf, depth), strict_map_key=False, raw=False, unicode_errors="surrogatepass"
        )
    # Deeper payloads: unpackb keeps its parse stack (tens of KiB) on the C
    # stack, and MAX_DEPTH of them overflow it; an Unpacker (slower to set up)
    # keeps it on the heap.
    unpacker = msgpack.Unpacker(
        ext_hook=_hook_for(leaf, depth),
        strict_map_key=False,
        raw=False,
        unicode_errors="surrogatepass",
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    value = unpacker.unpack()
    if unpacker.tell() != len(data):
        raise ValueError("extra bytes after a nested value")
    return value


def decode(data: bytes | bytearray | memoryview, leaf: LoadLeaf | None = None) -> Any:
    """Decode a value (``leaf`` loads ext-7 leaves by number); malformed bytes raise CorruptObjectError.

    Tuples and sets nest at most MAX_DEPTH deep (as ``encode`` refuses deeper
    values); msgpack bounds the nesting of lists and maps within each.
    """
    try:
        return _decode(data, leaf, 0)
    except CasError:  # includes errors from loading leaves
        raise
    except Exception as exc:  # msgpack, struct, and unhashable keys raise many types
        raise CorruptObjectError(f"stored value does not decode: {type(exc).__name__}: {exc}") from None

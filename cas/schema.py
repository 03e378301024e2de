"""Declared schemas: each object kind lists its fields once, and that one list encodes and decodes it.

A :class:`Schema` is a kind's ``type`` tag, its schema version ``v`` and its fields, in
order. A :class:`Field` names a map key, the *check* that turns the decoded msgpack value
into the Python value, and (when it is not simply the attribute of that name) how the
value is written. Decoding checks the header (a map, the expected ``type``, the known
``v``), then that the map has exactly the declared keys, then each field, then the kind's
``rules`` between fields. Every failure is a CorruptObjectError naming the key read:
every byte read from a store is untrusted.

A check is a function ``(value, key, name) -> value`` that raises ``corrupt(key, why)``;
the helpers below build them (``of_type(str)``, ``DIGEST``, ``optional(DIGEST)``,
``list_of(...)``, ``map_of(...)``, ``array(...)``, ``one_of(...)``,
``at_least(0)``, ``table(...)``). Canonical msgpack (cas.canonical) already guarantees str
map keys, sorted, and at most 64 levels of nesting.

A *closed* check accepts only values whose whole shape it fixes (no map or list
it lets through unexamined); the helpers mark theirs, ``closed(check)`` marks a
hand-written one. A kind whose fields are all closed skips cas.canonical's walk
over the value: its checks already bound the nesting and the types, key order is
checked where each map is, and one C-level re-encoding compared with the input
proves the canonical form (FORMAT.md R6). That is what makes a tree of 100,000
chunks decode in milliseconds; ``table`` checks its rows column by column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgpack

from cas import canonical
from cas.errors import CorruptObjectError, UnsupportedFormatError
from cas.hashing import DIGEST_SIZE

__all__ = ["DIGEST", "FLOAT", "INT", "MAP", "STR", "Check", "Field", "Schema", "array", "at_least", "check_fields",
           "closed", "corrupt", "is_closed", "list_of", "map_of", "of_type", "one_of", "optional", "table"]  # fmt: skip

Check = Callable[[Any, str, str], Any]
"""``check(value, key, name)``: the value to keep, or raise ``corrupt(key, why)``."""


def corrupt(key: str, why: str) -> CorruptObjectError:
    """The error for stored bytes under ``key`` that break a rule (``why``)."""
    return CorruptObjectError(f"{key}: {why}", key=key)


_CLOSED = "_cas_closed"
_BULK = "_cas_bulk"

Bulk = Callable[[Sequence[Any], str, str], None]
"""``bulk(values, key, name)``: check a whole column of values at once, or raise ``corrupt(key, why)``."""


def closed(check: Check, bulk: Bulk | None = None) -> Check:
    """Mark ``check`` as closed (it fixes its value's whole shape); ``bulk`` checks a column of such values."""
    setattr(check, _CLOSED, True)
    if bulk is not None:
        setattr(check, _BULK, bulk)
    return check


def is_closed(check: Check) -> bool:
    """Whether ``check`` lets no map or list through unexamined (see the module docstring)."""
    return getattr(check, _CLOSED, False) is True


def _scalar(kind: type | tuple[type, ...]) -> bool:
    return not any(issubclass(t, (dict, list, tuple)) for t in _types(kind))


def of_type(kind: type | tuple[type, ...]) -> Check:
    """Exactly this msgpack type (an int is never a bool, a float is never an int)."""

    def check(value: Any, key: str, name: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
            raise corrupt(key, f"field {name!r} has the wrong type")
        return value

    def bulk(values: Sequence[Any], key: str, name: str) -> None:
        # type() is exact: True is a bool, never an int (and msgpack returns no subclasses).
        if not set(map(type, values)) <= set(_types(kind)):
            raise corrupt(key, f"field {name!r} has the wrong type")

    return closed(check, bulk) if _scalar(kind) else check


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


STR = of_type(str)
INT = of_type(int)
FLOAT = of_type(float)
MAP = of_type(dict)


# A msgpack array: a list from cas.canonical, a tuple from the closed kinds' unpacking (see Schema.decode).
_ARRAYS = (list, tuple)


def _digest(value: Any, key: str, name: str) -> bytes:
    """A 32-byte hash (bin32)."""
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise corrupt(key, f"hash field {name!r} is not 32 bytes")
    return value


def _digests(values: Sequence[Any], key: str, name: str) -> None:
    if values and (set(map(type, values)) != {bytes} or set(map(len, values)) != {DIGEST_SIZE}):
        raise corrupt(key, f"hash field {name!r} is not 32 bytes")


#: A 32-byte hash (bin32).
DIGEST: Check = closed(_digest, _digests)


def at_least(low: int) -> Check:
    """An int (not a bool) no smaller than ``low``."""

    def check(value: Any, key: str, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise corrupt(key, f"field {name!r} is not an int")
        if value < low:
            raise corrupt(key, f"field {name!r} is {'negative' if low == 0 else f'under {low}'}")
        return value

    def bulk(values: Sequence[Any], key: str, name: str) -> None:
        if not values:
            return
        if set(map(type, values)) != {int}:
            raise corrupt(key, f"field {name!r} is not an int")
        if min(values) < low:
            raise corrupt(key, f"field {name!r} is {'negative' if low == 0 else f'under {low}'}")

    return closed(check, bulk)


def one_of(*allowed: str) -> Check:
    """One of these strs."""

    def check(value: Any, key: str, name: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise corrupt(key, f"unknown {name} {str(value)[:40]!r}")
        return value

    return closed(check)


def optional(inner: Check) -> Check:
    """nil, or what ``inner`` accepts."""

    def check(value: Any, key: str, name: str) -> Any:
        return None if value is None else inner(value, key, name)

    return closed(check) if is_closed(inner) else check


def list_of(item: Check, *, max_items: int | None = None) -> Check:
    """An array of items that ``item`` accepts, kept as a tuple."""

    def check(value: Any, key: str, name: str) -> tuple[Any, ...]:
        if not isinstance(value, _ARRAYS):
            raise corrupt(key, f"field {name!r} is not an array")
        if max_items is not None and len(value) > max_items:
            raise corrupt(key, f"field {name!r} has more than {max_items} items")
        return tuple(item(x, key, name) for x in value)

    return closed(check) if is_closed(item) else check


def map_of(item: Check) -> Check:
    """A map (str keys, canonical msgpack's rule) whose values ``item`` accepts."""

    def check(value: Any, key: str, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise corrupt(key, f"field {name!r} is not a map")
        return {k: item(v, key, name) for k, v in value.items()}

    return check


def array(*items: Check) -> Check:
    """A fixed-length array, one check per position, kept as a tuple."""

    def check(value: Any, key: str, name: str) -> tuple[Any, ...]:
        if not isinstance(value, _ARRAYS) or len(value) != len(items):
            raise corrupt(key, f"an item of {name!r} is not a {len(items)}-element array")
        return tuple(each(x, key, name) for each, x in zip(items, value, strict=True))

    return closed(check) if all(map(is_closed, items)) else check


def table(*columns: Check) -> Check:
    """An array of fixed-length arrays (``list_of(array(*columns))``), checked column by column, kept as tuples.

    A column whose check has a bulk form (DIGEST, ``at_least``, ``of_type``) is
    checked in a few C-level passes instead of one Python call per row.
    """
    width = len(columns)
    row = array(*columns)
    bulks: list[Bulk | None] = [getattr(c, _BULK, None) for c in columns]
    getters = [itemgetter(i) for i in range(width)]

    def check(value: Any, key: str, name: str) -> tuple[tuple[Any, ...], ...]:
        if not isinstance(value, _ARRAYS):
            raise corrupt(key, f"field {name!r} is not an array")
        if not value:
            return ()
        kinds = set(map(type, value))
        if (kinds != {tuple} and kinds != {list}) or set(map(len, value)) != {width}:
            raise corrupt(key, f"an item of {name!r} is not a {width}-element array")
        if None not in bulks:  # map(itemgetter) beats zip(*rows) many times over for a long table
            for bulk, get in zip(bulks, getters, strict=True):
                bulk(list(map(get, value)), key, name)  # type: ignore[misc]
            return tuple(value) if kinds == {tuple} else tuple(map(tuple, value))
        return tuple(row(x, key, name) for x in value)

    return closed(check) if is_closed(row) else check


@dataclass(frozen=True, slots=True)
class Field:
    """One key of an object's map: how to check it when read, and how to write it.

    ``encode`` takes the whole object (a few fields are written from two attributes);
    left out, the attribute named ``name`` is written as it is.
    """

    name: str
    check: Check
    encode: Callable[[Any], Any] | None = None

    def value_of(self, obj: Any) -> Any:
        return getattr(obj, self.name) if self.encode is None else self.encode(obj)


def check_fields(value: Any, fields: tuple[Field, ...], key: str, what: str) -> dict[str, Any]:
    """A map with exactly these fields, in canonical (sorted) order, each checked: name -> checked value."""
    if not isinstance(value, dict):
        raise corrupt(key, f"{what} is not a map")
    if len(value) != len(fields) or any(f.name not in value for f in fields):
        names = {f.name for f in fields}
        missing = sorted(names - value.keys())
        unexpected = sorted(str(k)[:40] for k in value.keys() - names)
        raise corrupt(key, f"{what} has missing {missing} or unexpected {unexpected} fields")
    _check_order(value, key)
    return {f.name: f.check(value[f.name], key, f.name) for f in fields}


def _check_order(value: dict[str, Any], key: str) -> None:
    # Code point order is UTF-8 byte order (msgpack hands back no lone surrogates).
    keys = list(value)
    if keys != sorted(keys):
        raise corrupt(key, "not in canonical form (map keys out of order)")


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code} is not allowed")


def _unpack(data: bytes | bytearray | memoryview, key: str) -> Any:
    """msgpack as cas.canonical.decode reads it, without its walk (for closed kinds, which re-encode after)."""
    if len(data) > canonical.MAX_ENCODED_SIZE:
        raise corrupt(key, f"encoded object too large ({len(data)} bytes)")
    try:
        # Arrays as tuples: half the unpacking time, and the rows a table keeps are made already.
        return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True, ext_hook=_refuse_ext)
    except Exception as exc:  # msgpack raises many unrelated types on bad input
        raise corrupt(key, f"not valid msgpack: {exc}") from None


@dataclass(frozen=True)
class Schema:
    """A kind's tag, version and fields: the one declaration both directions use.

    ``rules(values, key)`` checks what involves several fields (chunk sizes that add
    up to a file size, sorted entries) and raises ``corrupt(key, why)``.
    """

    tag: str
    version: int
    fields: tuple[Field, ...]
    rules: Callable[[Mapping[str, Any], str], None] | None = None
    #: Earlier versions of the kind that readers still decode (each with the fields it had).
    older: tuple[Schema, ...] = ()
    #: Every field's check is closed: decoding proves canonical form by one re-encoding (module docstring).
    closed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "closed", all(is_closed(f.check) for f in self.fields))

    def encode(self, obj: Any) -> bytes:
        """The canonical bytes of ``obj``: ``type``, ``v`` and every declared field."""
        value = {"type": self.tag, "v": self.version}
        value.update((f.name, f.value_of(obj)) for f in self.fields)
        return canonical.encode(value)

    def decode(self, data: bytes | bytearray | memoryview, key: str) -> dict[str, Any]:
        """Field name -> checked value, from canonical bytes; CorruptObjectError for anything else."""
        return self.decode_versioned(data, key)[1]

    def decode_versioned(self, data: bytes | bytearray | memoryview, key: str) -> tuple[int, dict[str, Any]]:
        """The schema version the bytes declare (this one or one of ``older``) and their checked fields."""
        value = _unpack(data, key) if self.closed else canonical.decode(data, key=key)
        if not isinstance(value, dict):
            raise corrupt(key, "object is not a map")
        if value.get("type") != self.tag:
            raise corrupt(key, f"expected a {self.tag} object, found {str(value.get('type'))[:40]!r}")
        version = value.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version > self.version:
            why = f"{self.tag} schema version {version} is newer than this cas: upgrade cas"
            raise UnsupportedFormatError(f"{key}: {why}", key=key)
        if version != self.version or isinstance(version, bool):
            for old in self.older:
                if version == old.version and not isinstance(version, bool):
                    if old.closed != self.closed:  # unpacked another way (tuples or lists)
                        value = _unpack(data, key) if old.closed else canonical.decode(data, key=key)
                    return old.version, old._checked(value, data, key)
            raise corrupt(key, f"unknown {self.tag} schema version {str(version)[:40]!r}")
        return self.version, self._checked(value, data, key)

    def _checked(self, value: dict[str, Any], data: bytes | bytearray | memoryview, key: str) -> dict[str, Any]:
        """The fields of an unpacked object of this version, checked (canonical form too)."""
        body = {k: v for k, v in value.items() if k not in ("type", "v")}
        values = check_fields(body, self.fields, key, self.tag)
        if self.closed:
            # The checks fixed every value's shape (so its depth) and each map's key order:
            # what is left of canonical form (shortest ints and lengths, float64, str vs bin) is
            # exactly what re-encoding the same value gives back.
            _check_order(value, key)
            if msgpack.packb(value, use_bin_type=True) != data:
                raise corrupt(key, "not in canonical form")
        if self.rules is not None:
            self.rules(values, key)
        return values

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
``at_least(0)``). Canonical msgpack (cas.canonical) already guarantees str map keys,
sorted, and at most 64 levels of nesting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cas import canonical
from cas.errors import CorruptObjectError, UnsupportedFormatError
from cas.hashing import DIGEST_SIZE

__all__ = ["DIGEST", "FLOAT", "INT", "MAP", "STR", "Check", "Field", "Schema", "array", "at_least", "check_fields",
           "corrupt", "list_of", "map_of", "of_type", "one_of", "optional"]  # fmt: skip

Check = Callable[[Any, str, str], Any]
"""``check(value, key, name)``: the value to keep, or raise ``corrupt(key, why)``."""


def corrupt(key: str, why: str) -> CorruptObjectError:
    """The error for stored bytes under ``key`` that break a rule (``why``)."""
    return CorruptObjectError(f"{key}: {why}", key=key)


def of_type(kind: type | tuple[type, ...]) -> Check:
    """Exactly this msgpack type (an int is never a bool, a float is never an int)."""

    def check(value: Any, key: str, name: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
            raise corrupt(key, f"field {name!r} has the wrong type")
        return value

    return check


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


STR = of_type(str)
INT = of_type(int)
FLOAT = of_type(float)
MAP = of_type(dict)


def _digest(value: Any, key: str, name: str) -> bytes:
    """A 32-byte hash (bin32)."""
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise corrupt(key, f"hash field {name!r} is not 32 bytes")
    return value


#: A 32-byte hash (bin32).
DIGEST: Check = _digest


def at_least(low: int) -> Check:
    """An int (not a bool) no smaller than ``low``."""

    def check(value: Any, key: str, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise corrupt(key, f"field {name!r} is not an int")
        if value < low:
            raise corrupt(key, f"field {name!r} is {'negative' if low == 0 else f'under {low}'}")
        return value

    return check


def one_of(*allowed: str) -> Check:
    """One of these strs."""

    def check(value: Any, key: str, name: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise corrupt(key, f"unknown {name} {str(value)[:40]!r}")
        return value

    return check


def optional(inner: Check) -> Check:
    """nil, or what ``inner`` accepts."""

    def check(value: Any, key: str, name: str) -> Any:
        return None if value is None else inner(value, key, name)

    return check


def list_of(item: Check, *, max_items: int | None = None) -> Check:
    """An array of items that ``item`` accepts, kept as a tuple."""

    def check(value: Any, key: str, name: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise corrupt(key, f"field {name!r} is not an array")
        if max_items is not None and len(value) > max_items:
            raise corrupt(key, f"field {name!r} has more than {max_items} items")
        return tuple(item(x, key, name) for x in value)

    return check


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
        if not isinstance(value, list) or len(value) != len(items):
            raise corrupt(key, f"an item of {name!r} is not a {len(items)}-element array")
        return tuple(each(x, key, name) for each, x in zip(items, value, strict=True))

    return check


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
    """A map with exactly these fields, each checked: name -> checked value."""
    if not isinstance(value, dict):
        raise corrupt(key, f"{what} is not a map")
    if len(value) != len(fields) or any(f.name not in value for f in fields):
        names = {f.name for f in fields}
        missing = sorted(names - value.keys())
        unexpected = sorted(str(k)[:40] for k in value.keys() - names)
        raise corrupt(key, f"{what} has missing {missing} or unexpected {unexpected} fields")
    return {f.name: f.check(value[f.name], key, f.name) for f in fields}


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

    def encode(self, obj: Any) -> bytes:
        """The canonical bytes of ``obj``: ``type``, ``v`` and every declared field."""
        value = {"type": self.tag, "v": self.version}
        value.update((f.name, f.value_of(obj)) for f in self.fields)
        return canonical.encode(value)

    def decode(self, data: bytes | bytearray | memoryview, key: str) -> dict[str, Any]:
        """Field name -> checked value, from canonical bytes; CorruptObjectError for anything else."""
        value = canonical.decode(data, key=key)
        if not isinstance(value, dict):
            raise corrupt(key, "object is not a map")
        if value.get("type") != self.tag:
            raise corrupt(key, f"expected a {self.tag} object, found {str(value.get('type'))[:40]!r}")
        version = value.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version > self.version:
            why = f"{self.tag} schema version {version} is newer than this cas: upgrade cas"
            raise UnsupportedFormatError(f"{key}: {why}", key=key)
        if version != self.version or isinstance(version, bool):
            raise corrupt(key, f"unknown {self.tag} schema version {str(version)[:40]!r}")
        body = {k: v for k, v in value.items() if k not in ("type", "v")}
        values = check_fields(body, self.fields, key, self.tag)
        if self.rules is not None:
            self.rules(values, key)
        return values

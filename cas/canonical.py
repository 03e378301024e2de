"""Canonical msgpack: one byte string for one value, and strict decoding.

Rules (FORMAT.md spells them out): maps have str keys sorted by their UTF-8
bytes; ints use the shortest msgpack form; floats are float64; text is the str
family and bytes the bin family; no ext types. Decoding re-encodes and compares,
so any non-canonical spelling (unsorted or duplicate keys, float32, long int
forms) is refused as corrupt.
"""

from __future__ import annotations

from typing import Any

import msgpack

from cas.errors import CorruptObjectError

MAX_DEPTH = 64
# Objects cas writes stay far below this; it bounds memory on hostile input.
MAX_ENCODED_SIZE = 256 << 20


class EncodingError(TypeError):
    """A value that has no canonical encoding (a programming error inside cas)."""


# Values written as they are: no check or copy needed (subclasses take the general path).
_SCALARS = frozenset({str, int, float, bytes, bool, type(None)})


def _canonical(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise EncodingError("value nested too deeply")
    if isinstance(value, dict):
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise EncodingError(f"map key {key!r} is not a str")
        # Code point order is UTF-8 byte order (a key that is not valid UTF-8 fails in packb).
        keys.sort()
        out = {}
        for key in keys:
            item = value[key]
            out[key] = item if type(item) in _SCALARS else _canonical(item, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        # Most lists (chunk and index tables) hold only flat rows; check those cheaply.
        out_list = []
        for item in value:
            t = type(item)
            if t is bytes or t is int or t is str:
                out_list.append(item)
            elif (t is list or t is tuple) and all(type(x) is bytes or type(x) is int for x in item):
                out_list.append(item)  # (msgpack writes a tuple as an array, like a list)
            else:
                out_list.append(_canonical(item, depth + 1))
        return out_list
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise EncodingError(f"no canonical encoding for {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically."""
    try:
        return msgpack.packb(_canonical(value, 0), use_bin_type=True)
    except (OverflowError, ValueError) as exc:
        raise EncodingError(str(exc)) from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code} is not allowed")


def decode(data: bytes | bytearray | memoryview, *, key: str = "object") -> Any:
    """Decode canonical msgpack, raising CorruptObjectError on anything else."""
    if len(data) > MAX_ENCODED_SIZE:
        raise CorruptObjectError(f"{key}: encoded object too large ({len(data)} bytes)", key=key)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
        canonical = encode(value) if _depth_ok(value) else None
    except CorruptObjectError:
        raise
    except Exception as exc:  # msgpack raises many unrelated types on bad input
        raise CorruptObjectError(f"{key}: not valid msgpack: {exc}", key=key) from None
    if canonical is None:
        raise CorruptObjectError(f"{key}: nested deeper than {MAX_DEPTH}", key=key)
    if canonical != bytes(data):
        raise CorruptObjectError(f"{key}: not in canonical form", key=key)
    return value


def _depth_ok(value: Any) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True

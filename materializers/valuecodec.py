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
====  ===========  =======================================================

Sets are sorted by the bytes of their items, so a set's encoding (and hash)
does not depend on the process's hash seed. Dicts keep insertion order; keys
may be any encodable hashable value. Strings keep lone surrogates.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

from cas.errors import CasError, CorruptObjectError, UnsupportedTypeError

EXT_BIGINT = 1
EXT_COMPLEX = 2
EXT_TUPLE = 3
EXT_SET = 4
EXT_FROZENSET = 5
EXT_BYTEARRAY = 6
EXT_LEAF = 7

Leaf = Callable[[Any], int]
LoadLeaf = Callable[[int], Any]
_COMPLEX = struct.Struct("<dd")
MAX_DEPTH = 256
_STACKED_DEPTH = 4  # nested decodes that may use the C stack (~40 KiB each): fits a 512 KiB thread


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
        if leaf is not None:
            return msgpack.ExtType(EXT_LEAF, msgpack.packb(leaf(obj)))
        raise UnsupportedTypeError(
            f"{t.__module__}.{t.__qualname__} can not be stored inside a plain value: register a materializer "
            "for it, or allow pickle (put(..., allow_pickle=True))"
        )

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
        if code in (EXT_TUPLE, EXT_SET, EXT_FROZENSET) and depth > MAX_DEPTH:
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
        raise ValueError(f"unknown ext type {code}")

    return hook


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

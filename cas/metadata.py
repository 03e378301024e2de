"""User and materializer metadata: converted to the plain data that is stored, or refused with the key path."""

from __future__ import annotations

import sys
from typing import Any

from cas import canonical
from cas.errors import InvalidMetadataError


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata as the plain data that is stored (and that ``info`` shows).

    Plain data is None, bool, int, float, str, bytes, lists and dicts with str
    keys. Exactly these conversions happen: tuple -> list; a subclass of bool,
    int, float, str or bytes (IntEnum, StrEnum...) -> the base type's value;
    bytearray and memoryview -> bytes; numpy bool, integer and floating scalars
    (up to 64 bits) -> bool, int, float. Anything else raises
    InvalidMetadataError naming the key path, e.g. ``metadata['metrics']['when']``.
    """
    if not isinstance(value, dict):
        raise InvalidMetadataError(f"metadata must be a dict, not {type(value).__name__}")
    plain = _plain(value, "metadata", 0)
    try:
        canonical.encode(plain)
    except canonical.EncodingError as exc:  # an int beyond 64 bits
        raise InvalidMetadataError(f"metadata is not plain data: {exc}") from None
    return plain  # type: ignore[no-any-return]


def _plain(value: Any, path: str, depth: int) -> Any:
    """``value`` converted to plain data (see check_metadata); InvalidMetadataError names ``path``."""
    if depth > canonical.MAX_DEPTH:
        raise InvalidMetadataError(f"{path}: nested deeper than {canonical.MAX_DEPTH}")
    t = type(value)
    if value is None or t is str or t is float or t is bool or t is bytes:
        return value
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        number = int.__index__(value)
        if not -(1 << 63) <= number < 1 << 64:
            raise InvalidMetadataError(f"{path}: int {number} does not fit in 64 bits")
        return number
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadataError(f"{path}: key {key!r} is a {type(key).__name__}, not a str")
            key = str.__str__(key)  # a str subclass (StrEnum) as its value
            out[key] = _plain(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value.tobytes() if isinstance(value, memoryview) else bytes(value)
    np = sys.modules.get("numpy")  # a numpy scalar exists only once numpy is imported
    if np is not None and isinstance(value, (np.bool_, np.integer)):
        return value.item()
    if np is not None and isinstance(value, np.floating) and value.itemsize <= 8:
        return float(value)
    raise InvalidMetadataError(f"{path}: {type(value).__module__}.{type(value).__qualname__} is not plain data")

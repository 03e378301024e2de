"""BLAKE3 digests: computing them and spelling them as text.

A digest is 32 raw bytes inside cas and 64 lowercase hex digits in text.
"""

from __future__ import annotations

import re

import blake3

from cas.errors import InvalidNameError

DIGEST_SIZE = 32
HEX_SIZE = 2 * DIGEST_SIZE
MIN_PREFIX = 6
# Below this size the thread start-up costs more than it saves.
_THREADED_MIN = 4 << 20
_HEX_RE = re.compile(r"[0-9a-f]+")


def digest(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 32-byte BLAKE3 digest of ``data`` (threaded for large buffers)."""
    if len(data) >= _THREADED_MIN:
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest()
    return blake3.blake3(data).digest()


def hasher() -> blake3.blake3:
    """An incremental BLAKE3 hasher on the calling thread (``update`` releases the GIL)."""
    return blake3.blake3()


def to_hex(raw: bytes) -> str:
    """Spell a digest as 64 lowercase hex digits."""
    return raw.hex()


def from_hex(text: str) -> bytes:
    """Parse a full 64-digit hex digest; raise InvalidNameError otherwise."""
    if not is_full_hex(text):
        raise InvalidNameError(f"not a hash (64 lowercase hex digits): {text!r}")
    return bytes.fromhex(text)


def is_full_hex(text: str) -> bool:
    """True when ``text`` is a complete lowercase hex digest."""
    return len(text) == HEX_SIZE and _HEX_RE.fullmatch(text) is not None


def is_hex_prefix(text: str) -> bool:
    """True when ``text`` can be a hash prefix (6 to 64 lowercase hex digits)."""
    return MIN_PREFIX <= len(text) <= HEX_SIZE and _HEX_RE.fullmatch(text) is not None


def short(raw_or_hex: bytes | str, length: int = 12) -> str:
    """The short spelling of a digest used in messages, as git prints them."""
    text = raw_or_hex.hex() if isinstance(raw_or_hex, bytes) else raw_or_hex
    return text[:length]

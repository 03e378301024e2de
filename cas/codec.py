"""The stored form of one object: a 16-byte header, then the payload.

Header (little endian)::

    magic    4 bytes  b"\\x89CAS"
    version  u8       FORMAT_VERSION (1)
    codec    u8       0 = raw, 1 = zstd (one frame, content size set)
    reserved u16      0
    raw_size u64      size of the uncompressed bytes

The object's hash is the BLAKE3 digest of the uncompressed bytes, so the codec
never changes identity.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import zstandard

from cas.errors import CorruptObjectError, IntegrityError, UnsupportedFormatError
from cas.hashing import digest, short

MAGIC = b"\x89CAS"
FORMAT_VERSION = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
HEADER = struct.Struct("<4sBBHQ")
HEADER_SIZE = HEADER.size
CODEC_BYTE = 5  # offset of the codec in the header
# Larger than anything cas writes as a single object or chunk; bounds memory on hostile input.
MAX_OBJECT_SIZE = 1 << 34
#: zstd's largest expansion: a block (at most 128 KiB of output) takes at least 4 bytes.
MAX_ZSTD_RATIO = 32768
# Compress when the sample shrinks below this share of its size.
COMPRESS_WORTH = 0.9
SAMPLE_SIZE = 64 << 10

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed object header."""

    codec: int
    raw_size: int


def pack_header(codec: int, raw_size: int) -> bytes:
    """Encode a header."""
    return HEADER.pack(MAGIC, FORMAT_VERSION, codec, 0, raw_size)


def parse_header(data: bytes | bytearray | memoryview, *, key: str = "object") -> Header:
    """Decode and validate a header; raise CorruptObjectError naming ``key``."""
    if len(data) < HEADER_SIZE:
        raise CorruptObjectError(f"{key}: truncated header ({len(data)} bytes)", key=key)
    magic, version, codec, reserved, raw_size = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptObjectError(f"{key}: bad magic {bytes(magic)!r}", key=key)
    if version > FORMAT_VERSION:
        why = f"unknown format version {version}, newer than this cas: upgrade cas"
        raise UnsupportedFormatError(f"{key}: {why}", key=key)
    if version != FORMAT_VERSION:
        raise CorruptObjectError(f"{key}: unknown format version {version}", key=key)
    if codec not in (CODEC_RAW, CODEC_ZSTD):
        raise CorruptObjectError(f"{key}: unknown codec {codec}", key=key)
    if reserved != 0:
        raise CorruptObjectError(f"{key}: reserved header bits set", key=key)
    if raw_size > MAX_OBJECT_SIZE:
        raise CorruptObjectError(f"{key}: absurd size {raw_size}", key=key)
    return Header(codec, raw_size)


def worth_compressing(sample: bytes | bytearray | memoryview, level: int) -> bool:
    """Decide from a sample whether zstd pays for these bytes."""
    sample = sample[:SAMPLE_SIZE]
    if len(sample) < 64:
        return False
    return len(_compressor(level).compress(sample)) <= COMPRESS_WORTH * len(sample)


def encode(
    raw: bytes | bytearray | memoryview, *, compress: bool, level: int = 1
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """Return (header, payload) for ``raw``; the payload is ``raw`` itself when stored raw.

    With ``compress`` set, zstd is still skipped when it does not shrink the bytes.
    """
    if compress and len(raw) >= 64:
        packed = _compressor(level).compress(raw)
        if len(packed) < len(raw):
            return pack_header(CODEC_ZSTD, len(raw)), packed
    return pack_header(CODEC_RAW, len(raw)), raw


def decode_payload(
    header: Header, payload: bytes | bytearray | memoryview, *, key: str = "object"
) -> bytes | bytearray | memoryview:
    """Turn a payload back into the raw bytes, never producing more than declared."""
    if header.codec == CODEC_RAW:
        if len(payload) != header.raw_size:
            raise CorruptObjectError(f"{key}: payload is {len(payload)} bytes, header says {header.raw_size}", key=key)
        return payload
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(f"{key}: bad zstd frame: {exc}", key=key) from None
    if declared != header.raw_size:
        raise CorruptObjectError(f"{key}: zstd frame declares {declared} bytes, header says {header.raw_size}", key=key)
    if header.raw_size > len(payload) * MAX_ZSTD_RATIO + (128 << 10):
        # A zstd block of at most 128 KiB takes at least 4 bytes: a frame claiming more is a bomb.
        raise CorruptObjectError(f"{key}: {len(payload)} bytes of zstd can not hold {header.raw_size}", key=key)
    try:
        raw = _decompressor().decompress(payload, max_output_size=header.raw_size)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(f"{key}: zstd data does not decompress: {exc}", key=key) from None
    if len(raw) != header.raw_size:
        raise CorruptObjectError(f"{key}: decompressed size differs from header", key=key)
    return raw


def decode(data: bytes | bytearray | memoryview, *, key: str = "object") -> bytes | bytearray | memoryview:
    """Parse a whole stored object (header + payload) into its raw bytes."""
    header = parse_header(data, key=key)
    return decode_payload(header, memoryview(data)[HEADER_SIZE:], key=key)


def verify(raw: bytes | bytearray | memoryview, expected: bytes, *, key: str = "object") -> None:
    """Raise IntegrityError unless ``raw`` hashes to ``expected``."""
    actual = digest(raw)
    if actual != expected:
        raise IntegrityError(f"{key}: content hashes to {short(actual)}, expected {short(expected)}", key=key)


def seal(payload: bytes) -> bytes:
    """A file that is not named by its hash (a ref, a cache entry): header, payload, BLAKE3 of the payload."""
    return pack_header(CODEC_RAW, len(payload)) + payload + digest(payload)


def unseal(data: bytes, *, key: str) -> bytes:
    """The payload of a sealed file; CorruptObjectError if it is truncated or does not match its checksum."""
    if len(data) < HEADER_SIZE + 32:
        raise CorruptObjectError(f"{key}: truncated", key=key)
    raw = bytes(decode(data[:-32], key=key))
    if digest(raw) != data[-32:]:
        raise CorruptObjectError(f"{key}: checksum mismatch", key=key)
    return raw

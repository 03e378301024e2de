import os

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from cas import codec
from cas.errors import CorruptObjectError, IntegrityError
from cas.hashing import digest


@given(st.binary(max_size=5000), st.booleans())
def test_encode_decode_roundtrip(raw: bytes, compress: bool) -> None:
    header, payload = codec.encode(raw, compress=compress)
    assert bytes(codec.decode(header + bytes(payload))) == raw


def test_compressible_data_is_compressed_and_random_is_not() -> None:
    text = b"spam and eggs " * 10_000
    assert codec.worth_compressing(text, 3)
    header, payload = codec.encode(text, compress=True)
    assert header[codec.CODEC_BYTE] == codec.CODEC_ZSTD and len(payload) < len(text) // 10
    noise = os.urandom(100_000)
    assert not codec.worth_compressing(noise, 3)
    header, payload = codec.encode(noise, compress=True)  # zstd tried, did not pay
    assert header[codec.CODEC_BYTE] == codec.CODEC_RAW and payload == noise


def test_header_layout() -> None:
    header = codec.pack_header(codec.CODEC_ZSTD, 1234)
    assert header == b"\x89CAS" + bytes([1, 1, 0, 0]) + (1234).to_bytes(8, "little")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: b"XXXX" + h[4:],  # magic
        lambda h: h[:4] + b"\x02" + h[5:],  # version
        lambda h: h[:5] + b"\x07" + h[6:],  # codec
        lambda h: h[:6] + b"\x01\x00" + h[8:],  # reserved
        lambda h: h[:8] + (1 << 40).to_bytes(8, "little"),  # absurd size
        lambda h: h[:10],  # truncated
    ],
)
def test_bad_headers_are_corrupt(mutate) -> None:  # type: ignore[no-untyped-def]
    header, payload = codec.encode(b"hello world", compress=False)
    with pytest.raises(CorruptObjectError):
        codec.decode(mutate(header) + bytes(payload))


def test_decompression_never_exceeds_declared_size() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    lying = codec.pack_header(codec.CODEC_ZSTD, 100) + bomb
    with pytest.raises(CorruptObjectError):
        codec.decode(lying)
    # A frame without a content size is refused too.
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 1000)
    with pytest.raises(CorruptObjectError):
        codec.decode(codec.pack_header(codec.CODEC_ZSTD, 1000) + no_size)


def test_raw_payload_length_must_match() -> None:
    with pytest.raises(CorruptObjectError):
        codec.decode(codec.pack_header(codec.CODEC_RAW, 5) + b"1234")


def test_verify() -> None:
    codec.verify(b"abc", digest(b"abc"))
    with pytest.raises(IntegrityError, match="expected"):
        codec.verify(b"abd", digest(b"abc"), key="thing")

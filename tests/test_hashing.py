import blake3
import pytest

from cas import hashing
from cas.errors import InvalidNameError


def test_digest_is_blake3_of_the_bytes() -> None:
    assert hashing.digest(b"abc") == blake3.blake3(b"abc").digest()
    big = bytes(range(256)) * (1 << 15)  # 8 MiB: the threaded path
    assert hashing.digest(big) == blake3.blake3(big).digest()
    assert hashing.digest(memoryview(big)) == hashing.digest(big)


def test_hex_spelling() -> None:
    d = hashing.digest(b"x")
    text = hashing.to_hex(d)
    assert len(text) == 64 and text == text.lower()
    assert hashing.from_hex(text) == d
    assert hashing.short(d) == text[:12]
    with pytest.raises(InvalidNameError):
        hashing.from_hex(text.upper())
    with pytest.raises(InvalidNameError):
        hashing.from_hex("zz" * 32)


@pytest.mark.parametrize(
    "text,ok",
    [("abcdef", True), ("abcde", False), ("ABCDEF", False), ("a" * 64, True), ("a" * 65, False), ("abcdeg", False)],
)
def test_prefix_rules(text: str, ok: bool) -> None:
    assert hashing.is_hex_prefix(text) is ok

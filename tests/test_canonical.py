import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas import canonical
from cas.errors import CorruptObjectError

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_roundtrip_and_stable(value: object) -> None:
    data = canonical.encode(value)
    assert canonical.encode(canonical.decode(data)) == data


@given(st.dictionaries(st.text(), st.integers(-(2**63), 2**64 - 1), min_size=2))
def test_key_order_does_not_matter(d: dict[str, int]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert canonical.encode(d) == canonical.encode(reordered)


def test_keys_sorted_by_utf8_bytes() -> None:
    data = canonical.encode({"b": 1, "a": 2, "é": 3, "Z": 4})
    assert list(msgpack.unpackb(data)) == ["Z", "a", "b", "é"]


_keys = st.text(st.characters(blacklist_categories=("Cs",)))  # any code point UTF-8 can spell


@given(st.dictionaries(_keys, st.integers(0, 9), min_size=2))
def test_any_keys_come_out_in_utf8_byte_order(d: dict[str, int]) -> None:
    """Keys are sorted as str (code points): the same order as their UTF-8 bytes, checked here."""
    keys = list(msgpack.unpackb(canonical.encode(d), raw=True))
    assert keys == sorted(k.encode("utf-8") for k in d)


def test_a_key_utf8_can_not_spell_is_refused() -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.encode({"\ud800": 1, "a": 2})


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"b": 1, "a": 2}),  # unsorted keys
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate keys
        b"\xca\x3f\x80\x00\x00",  # float32
        b"\xcd\x00\x01",  # uint16 for a value that fits a fixint
        b"\xd4\x01\x00",  # ext type
        b"\xc1",  # never-used byte
        b"\x92\x01",  # truncated
        b"\x01\x02",  # trailing data
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\x91" * 100 + b"\xc0",  # too deep
        b"\xdd\xff\xff\xff\xff",  # absurd length
        msgpack.packb({1: 2}),  # non-str key
    ],
)
def test_non_canonical_or_malformed_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptObjectError):
        canonical.decode(data)


def test_unencodable_values_are_refused() -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.encode({"x": object()})
    with pytest.raises(canonical.EncodingError):
        canonical.encode({1: "x"})
    assert math.isnan(canonical.decode(canonical.encode(float("nan"))))

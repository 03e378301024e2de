"""Closed kinds (trees, chunk maps, pack indexes, refs) decode without cas.canonical's walk: still strictly.

A closed kind proves canonical form by re-encoding its decoded value once (FORMAT.md R6); its
checks bound the nesting and the types, and each map's key order is checked where it is read.
These tests hold the fast path to exactly what the generic path accepts.
"""

from __future__ import annotations

import copy
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import canonical
from cas.errors import CorruptObjectError
from cas.hashing import digest
from cas.objects import ChunkMap, FileEntry, PackEntry, PackIndex, RefRecord, Tree
from cas.schema import DIGEST, Schema, at_least, is_closed, table

H = digest(b"chunk")
H2 = digest(b"other")


def _tree(chunks: int = 3) -> Tree:
    return Tree(
        (
            FileEntry(
                "a/big.bin",
                70_000 * chunks,
                tuple((digest(i.to_bytes(4, "little")), 70_000) for i in range(chunks)),
                hash=H,
            ),
            FileEntry("small.txt", 5, data=b"hello"),
        )
    )


def _generic(schema: Schema) -> Schema:
    """The same schema decoded the generic way (cas.canonical's walk), to compare against."""
    slow = copy.copy(schema)
    object.__setattr__(slow, "closed", False)
    return slow


def test_the_kinds_read_in_bulk_are_closed_and_the_open_ones_are_not() -> None:
    assert Tree.schema.closed and ChunkMap.schema.closed and PackIndex.schema.closed and RefRecord.schema.closed
    assert all(is_closed(f.check) for f in FileEntry.INLINE + FileEntry.CHUNKED)
    from cas.objects import Artifact, Run

    assert not Artifact.schema.closed and not Run.schema.closed  # free-form metadata maps: the generic walk


def _raw_tree(entry: dict[str, object], *, order: list[str] | None = None) -> bytes:
    """A tree holding one entry whose map keys are written in ``order`` (default: canonical)."""
    keys = order or sorted(entry)
    body = b"\x81" if len(keys) == 1 else bytes([0x80 | len(keys)])
    for k in keys:
        body += msgpack.packb(k) + msgpack.packb(entry[k], use_bin_type=True)
    return (
        b"\x83"
        + msgpack.packb("entries")
        + b"\x91"
        + body
        + msgpack.packb("type")
        + msgpack.packb("tree")
        + (msgpack.packb("v") + msgpack.packb(1))
    )


CHUNKED = {"chunks": [[H, 5]], "hash": H, "path": "x", "size": 5}


def test_a_hand_built_canonical_tree_decodes() -> None:
    # The helper itself writes canonical bytes: the refusals below are about the one change each makes.
    data = _raw_tree(CHUNKED)
    assert data == canonical.encode({"type": "tree", "v": 1, "entries": [CHUNKED]})
    assert Tree.from_bytes(data).entries[0].chunks == ((H, 5),)


NON_CANONICAL = {
    "entry keys out of order": _raw_tree(CHUNKED, order=["path", "chunks", "hash", "size"]),
    "object keys out of order": canonical.encode({"type": "tree", "v": 1, "entries": []}).replace(
        b"\x83\xa7entries\x90\xa4type\xa4tree\xa1v\x01", b"\x83\xa4type\xa4tree\xa7entries\x90\xa1v\x01"
    ),
    "size as uint32": _raw_tree(CHUNKED).replace(b"\xa4size\x05", b"\xa4size\xce\x00\x00\x00\x05"),
    "chunk size as uint16": _raw_tree(CHUNKED).replace(H + b"\x05", H + b"\xcd\x00\x05"),
    "path as str8": _raw_tree(CHUNKED).replace(b"\xa4path\xa1x", b"\xa4path\xd9\x01x"),
    "hash as bin16": _raw_tree(CHUNKED).replace(b"\xa4hash\xc4\x20", b"\xa4hash\xc5\x00\x20", 1),
    "chunk list as array16": _raw_tree(CHUNKED).replace(b"\xa6chunks\x91", b"\xa6chunks\xdc\x00\x01"),
    "trailing byte": _raw_tree(CHUNKED) + b"\xc0",
    "duplicate key": _raw_tree(CHUNKED).replace(b"\x84\xa6chunks", b"\x85\xa4size\x05\xa6chunks"),
    "size as float64": _raw_tree(CHUNKED).replace(b"\xa4size\x05", b"\xa4size" + b"\xcb" + struct.pack(">d", 5.0)),
    "timestamp ext as size": _raw_tree(CHUNKED).replace(b"\xa4size\x05", b"\xa4size\xd6\xff\x00\x00\x00\x05"),
    "bin key": _raw_tree(CHUNKED).replace(b"\xa4path\xa1x", b"\xc4\x04path\xa1x"),
    "bool as chunk size": _raw_tree({**CHUNKED, "chunks": [[H, True]]}),
    "row of three": _raw_tree({**CHUNKED, "chunks": [[H, 5, 0]]}),
    "row as a map": _raw_tree({**CHUNKED, "chunks": [{"a": H, "b": 5}]}),
    "31-byte digest": _raw_tree({**CHUNKED, "chunks": [[H[:31], 5]]}),
    "zero-size chunk": _raw_tree({**CHUNKED, "size": 0, "chunks": [[H, 0]]}),
    "deep nesting": _raw_tree({**CHUNKED, "chunks": [[H, 5]]}).replace(
        b"\x91\x92\xc4", b"\x91" * 100 + b"\x91\x92\xc4"
    ),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_or_malformed_trees_are_refused_by_both_paths(name: str) -> None:
    data = NON_CANONICAL[name]
    assert data != _raw_tree(CHUNKED)  # the replacement took place
    with pytest.raises(CorruptObjectError):
        Tree.from_bytes(data)
    with pytest.raises(CorruptObjectError):
        _generic(Tree.schema).decode(data, "tree")


def test_table_checks_each_column_and_keeps_rows_as_tuples() -> None:
    rows = table(DIGEST, at_least(1))
    assert rows([[H, 1], [H2, 2]], "k", "chunks") == ((H, 1), (H2, 2))
    assert rows([], "k", "chunks") == ()
    assert rows(((H, 1), (H2, 2)), "k", "chunks") == ((H, 1), (H2, 2))  # as the closed kinds unpack arrays
    for bad in (
        [[H, 0]],
        [[H, -1]],
        [[H, 1.0]],
        [[H, True]],
        [[b"x" * 33, 1]],
        [[H]],
        [(H, 1), [H2, 2]],  # rows of both array spellings: never from msgpack
        [H],
        "ab",
        [[H, 1], 5],
    ):
        with pytest.raises(CorruptObjectError):
            rows(bad, "k", "chunks")


def test_pack_index_rows_are_still_checked() -> None:
    good = PackIndex((PackEntry(H, 0, 30, 14, 0), PackEntry(H2, 30, 20, 100, 1)))
    assert PackIndex.from_bytes(good.to_bytes()) == good
    for rows in (
        [[H, 0, 30, 14, 2]],
        [[H, 0, 15, 14, 0]],
        [[H, 0, 30, 14, 0], [H2, 10, 20, 100, 1]],
        [[H, -1, 30, 1, 0]],
    ):
        data = canonical.encode({"type": "packindex", "v": 1, "entries": rows})
        with pytest.raises(CorruptObjectError):
            PackIndex.from_bytes(data)


def test_a_large_tree_round_trips() -> None:
    tree = _tree(20_000)  # a 1.3 GB file's chunk list
    decoded = Tree.from_bytes(tree.to_bytes())
    assert decoded == tree
    assert decoded.entries[0].chunks == tree.entries[0].chunks
    assert type(decoded.entries[0].chunks[0]) is tuple


SAMPLES = {
    "tree": _tree(3),
    "chunkmap": ChunkMap(H, 12, ((H, 5), (H2, 7))),
    "packindex": PackIndex((PackEntry(H, 0, 30, 14, 0), PackEntry(H2, 30, 20, 100, 1))),
    "ref": RefRecord(H, 1700000000.5, 3, "v1.0"),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_whatever_damaged_bytes_decode_to_is_what_the_generic_path_gives(kind: str, data: st.DataObject) -> None:
    """Flip, drop or insert bytes: both paths refuse, or both accept the same value (and it is canonical)."""
    sample = SAMPLES[kind]
    original = bytearray(sample.to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(original) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            original[i] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del original[i]
        else:
            original.insert(i, data.draw(st.integers(0, 255)))
    damaged = bytes(original)
    results = []
    for schema in (sample.schema, _generic(sample.schema)):
        try:
            results.append(schema.decode(damaged, kind))
        except CorruptObjectError:
            results.append(None)
    assert results[0] == results[1]
    if results[0] is not None:
        assert type(sample)(**results[0]).to_bytes() == damaged

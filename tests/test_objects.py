"""Object encodings: golden bytes pin the format; hostile bytes give CorruptObjectError."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import canonical
from cas.errors import CorruptObjectError, InvalidNameError
from cas.hashing import digest, to_hex
from cas.objects import Artifact, ChunkMap, FileEntry, PackEntry, PackIndex, RefRecord, Run, Tree, check_tree_path

H = digest(b"chunk")


def sample_tree() -> Tree:
    return Tree(
        (
            FileEntry("a/big.bin", 10, ((H, 4), (H, 6)), hash=digest(b"whole")),
            FileEntry("small.txt", 5, data=b"hello"),
        )
    )


def test_golden_tree_and_artifact_hashes() -> None:
    # Changing these means changing the on-store format: bump FORMAT_VERSION and note it in FORMAT.md.
    tree = sample_tree()
    assert to_hex(digest(tree.to_bytes())) == GOLDEN_TREE
    art = Artifact(digest(tree.to_bytes()), "builtins.bytes", "cas.bytes", "1", 15, {"length": 15}, {"k": [1, 2.5]})
    assert to_hex(digest(art.to_bytes())) == GOLDEN_ARTIFACT


GOLDEN_TREE = "ad679ade1190ed71c86a876b3bb4084b2fb616c5798316108d553cb58e8ebe08"


def test_golden_version_2_tree() -> None:
    # A version-2 tree (what cas writes since FORMAT Versions 21): no whole-file digest in chunked entries.
    tree = Tree((FileEntry("a/big.bin", 10, ((H, 4), (H, 6))), FileEntry("small.txt", 5, data=b"hello")))
    assert tree.version == 2
    data = tree.to_bytes()
    assert canonical.decode(data) == {
        "type": "tree",
        "v": 2,
        "entries": [
            {"path": "a/big.bin", "size": 10, "chunks": [[H, 4], [H, 6]]},
            {"path": "small.txt", "size": 5, "data": b"hello"},
        ],
    }
    assert to_hex(digest(data)) == GOLDEN_TREE_V2
    assert Tree.from_bytes(data) == tree


GOLDEN_TREE_V2 = "93f5a329c25f79f61ae7b2f0a0187cb685aedefeb0811307ef1b8bae1ff9625f"


def test_a_version_1_tree_reads_back_and_keeps_its_bytes() -> None:
    # Stores written before version 2 hold such trees: they decode as version 1 and re-encode
    # byte for byte (their digest is their id), whole-file digests included.
    tree = sample_tree()
    again = Tree.from_bytes(tree.to_bytes())
    assert again.version == 1 and again.entries[0].hash == digest(b"whole")
    assert again.to_bytes() == tree.to_bytes()


@pytest.mark.parametrize(
    "value",
    [
        {"type": "tree", "v": 2, "entries": [{"path": "f", "size": 1, "hash": H, "chunks": [[H, 1]]}]},
        {"type": "tree", "v": 1, "entries": [{"path": "f", "size": 1, "chunks": [[H, 1]]}]},
    ],
    ids=["hash-in-v2", "no-hash-in-v1"],
)
def test_each_tree_version_has_exactly_its_fields(value: dict[str, object]) -> None:
    with pytest.raises(CorruptObjectError, match="fields"):
        Tree.from_bytes(canonical.encode(value))


def test_a_tree_mixing_versions_can_not_be_made() -> None:
    with pytest.raises(ValueError):
        Tree((FileEntry("a", 10, ((H, 10),), hash=H), FileEntry("b", 10, ((H, 10),))))
    with pytest.raises(ValueError):
        Tree((FileEntry("a", 10, ((H, 10),), hash=H),), version=2)
    with pytest.raises(ValueError):
        Tree((FileEntry("a", 10, ((H, 10),)),), version=1)


def test_small_files_keep_version_1_trees() -> None:
    # Inline files and files of one chunk have their whole-file digest for free: such trees stay
    # version 1, byte for byte what cas wrote before (small artifacts keep their ids).
    inline_only = Tree((FileEntry("small.txt", 5, data=b"hello"),))
    one_chunk = Tree((FileEntry("f", 10, ((H, 10),), hash=H),))
    assert inline_only.version == one_chunk.version == 1
    assert canonical.decode(inline_only.to_bytes())["v"] == 1


GOLDEN_ARTIFACT = "14902e4dbb0715c0a917df54d508f56c686e0ac83f2158ab5fceab3b37c38d15"


def test_roundtrips() -> None:
    tree = sample_tree()
    assert Tree.from_bytes(tree.to_bytes()) == tree
    art = Artifact(H, "builtins.str", "cas.str", "1", 3, {"length": 3}, {})
    assert Artifact.from_bytes(art.to_bytes()) == art
    index = PackIndex((PackEntry(H, 0, 30, 14, 0), PackEntry(digest(b"x"), 30, 20, 100, 1)))
    assert PackIndex.from_bytes(index.to_bytes()) == index
    ref = RefRecord(H, 1700000000.5, 3, "v1.0")
    assert RefRecord.from_bytes(ref.to_bytes()) == ref
    cmap = ChunkMap(H, 10, ((H, 10),))
    assert ChunkMap.from_bytes(cmap.to_bytes()) == cmap


def _tree_value(**entry: object) -> bytes:
    return canonical.encode({"type": "tree", "v": 1, "entries": [entry]})


@pytest.mark.parametrize(
    "data",
    [
        canonical.encode({"type": "tree", "v": 3, "entries": []}),  # unknown schema version
        canonical.encode({"type": "tree", "v": 0, "entries": []}),
        canonical.encode({"type": "artifact", "v": 1, "entries": []}),  # wrong type tag
        canonical.encode([1, 2, 3]),  # not a map
        canonical.encode({"type": "tree", "v": 1, "entries": [], "extra": 1}),
        _tree_value(path="../x", size=1, data=b"x"),
        _tree_value(path="/etc/passwd", size=1, data=b"x"),
        _tree_value(path="a//b", size=1, data=b"x"),
        _tree_value(path="a\x00b", size=1, data=b"x"),
        _tree_value(path="C:evil", size=1, data=b"x"),
        _tree_value(path="x", size=2, data=b"x"),  # size mismatch
        _tree_value(path="x", size=-1, data=b""),
        _tree_value(path="x", size=5, hash=H, chunks=[[H, 4]]),  # chunks do not add up
        _tree_value(path="x", size=5, hash=H, chunks=[[b"short", 5]]),  # hash not 32 bytes
        _tree_value(path="x", size=5, hash=H, chunks=[[H, True]]),  # bool is not a size
        _tree_value(path="x", size=5, hash=b"", chunks=[[H, 5]]),
        canonical.encode(
            {
                "type": "tree",
                "v": 1,
                "entries": [{"path": "b", "size": 0, "data": b""}, {"path": "a", "size": 0, "data": b""}],
            }
        ),  # unsorted
        canonical.encode(
            {
                "type": "tree",
                "v": 1,
                "entries": [{"path": "a", "size": 0, "data": b""}, {"path": "a/b", "size": 0, "data": b""}],
            }
        ),  # file and folder
        canonical.encode({"type": "packindex", "v": 1, "entries": [[H, 100, 20, 4, 0], [H, 0, 20, 4, 0]]}),
        canonical.encode({"type": "packindex", "v": 1, "entries": [[H, 0, 20, 4, 9]]}),
        b"",
        b"\xff\xff",
    ],
)
def test_malformed_objects_are_corrupt(data: bytes) -> None:
    for cls in (Tree, Artifact, PackIndex, RefRecord, ChunkMap):
        with pytest.raises(CorruptObjectError):
            cls.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_corrupt(data: bytes) -> None:
    for cls in (Tree, Artifact, PackIndex, RefRecord, ChunkMap):
        try:
            cls.from_bytes(data)
        except CorruptObjectError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_objects_only_raise_corrupt(data: st.DataObject) -> None:
    good = bytearray(sample_tree().to_bytes())
    pos = data.draw(st.integers(0, len(good) - 1))
    good[pos] = data.draw(st.integers(0, 255))
    try:
        Tree.from_bytes(bytes(good))
    except CorruptObjectError:
        pass


@pytest.mark.parametrize("path", ["", ".", "..", "a/../b", "/abs", "a/", "a\\b", "x\x01", "a/./b"])
def test_bad_tree_paths(path: str) -> None:
    with pytest.raises(InvalidNameError):
        check_tree_path(path)


def test_good_tree_paths() -> None:
    for path in ("a", "a/b/c.txt", "ünïcode/файл", ".hidden", "a..b"):
        assert check_tree_path(path) == path


def test_a_decoded_object_has_the_id_of_its_bytes(local_store) -> None:  # type: ignore[no-untyped-def]
    """from_bytes takes the id from the bytes it decoded (canonical, so what to_bytes gives again)."""
    out = local_store.put({"x": [1, 2.5, "é"]}, "v")
    run = local_store.record_run(step="s", outputs={"o": out}, params={"b": {"z": 1, "a": [None, True]}})
    for data, kind in (
        (local_store.objects.get_object(run.hash), Run),
        (local_store.objects.get_object(bytes.fromhex(out.hash)), Artifact),
    ):
        decoded = kind.from_bytes(data)
        assert decoded.digest == digest(data) == digest(decoded.to_bytes())

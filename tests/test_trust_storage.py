"""A store written by someone else: trees that re-use chunks, forged chunk maps, special files.

Every hostile object here is planted the way another writer of the store
could: hash-valid objects made with cas's own encoders, written through the
object store or the backend. Each test checks the victim's side.
Sizes cross the chunking threshold (1 MiB): chunked files of several chunks,
in several packs.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cas
from cas import codec
from cas.errors import (
    CasError,
    CorruptObjectError,
    DeclaredSizeError,
    ExpansionLimitError,
    SpecialFileError,
)
from cas.hashing import digest, from_hex, to_hex
from cas.keys import chunkmap_key
from cas.objects import Artifact, ChunkMap, FileEntry, Tree
from cas.objectstore import object_key

MiB = 1 << 20


def _random(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _plant_bytes_artifact(store: cas.Store, entries: tuple[FileEntry, ...], name: str) -> str:
    """A ``cas.bytes`` artifact over a planted tree, named ``name`` (as any writer could)."""
    tree = Tree.of(entries)
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, "builtins.bytes", "cas.bytes", "1", tree.size)
    d = store.objects.put_object(artifact.to_bytes())
    store.refs.create_version(name, d)
    return to_hex(d)


def _tree_of(store: cas.Store, ref: str) -> Tree:
    return store._tree(store._artifact(store.resolve(ref)))


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _finishes(fn: Callable[[], Any], seconds: float = 20.0) -> BaseException | Any:
    """Run ``fn`` in a daemon thread; fail unless it ends in time; return its result or exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} still running after {seconds} s"
    return out[0]


def _typed(result: Any) -> None:
    """Either a result or a cas error: never another exception."""
    if isinstance(result, BaseException):
        assert isinstance(result, CasError), repr(result)


# -- item 5: a tree re-using its own chunks ---------------------------------------------


def test_one_chunk_listed_1024_times_is_refused_before_allocating(tmp_path: Path) -> None:
    """The issue's bomb: one 1 MiB chunk listed 1,024 times, tens of KiB stored, 1 GiB declared."""
    store = cas.open(tmp_path / "s")
    chunk = store.objects.put_object(bytes(MiB))
    entry = FileEntry("data", 1024 * MiB, ((chunk, MiB),) * 1024, hash=digest(b"whatever"))
    ref = _plant_bytes_artifact(store, (entry,), "bomb")
    before = _rss()
    with pytest.raises(ExpansionLimitError, match="max_expansion"):
        store.get("bomb")
    with pytest.raises(ExpansionLimitError):
        store.get(ref, path=tmp_path / "out")
    with pytest.raises(ExpansionLimitError):
        store.reader("bomb")
    assert _rss() - before < 256 * MiB
    assert not (tmp_path / "out").exists()
    assert store.info("bomb").size == 1024 * MiB  # info reads nothing, and says what it is


def test_expansion_limits_are_configurable(tmp_path: Path) -> None:
    """48 MiB from one 1 MiB chunk: refused under a 16 MiB allowance, read once the limit is raised."""
    store = cas.open(tmp_path / "s", expansion_allowance=16 * MiB, max_expansion=8)
    chunk = store.objects.put_object(bytes(MiB))
    entry = FileEntry("data", 48 * MiB, ((chunk, MiB),) * 48, hash=digest(bytes(48 * MiB)))
    _plant_bytes_artifact(store, (entry,), "zeros")
    with pytest.raises(ExpansionLimitError):
        store.get("zeros")
    store.close()
    with cas.open(tmp_path / "s", expansion_allowance=64 * MiB) as roomy:
        assert roomy.get("zeros") == bytes(48 * MiB)
    with cas.open(tmp_path / "s", expansion_allowance=0, max_expansion=float("inf")) as unbounded:
        assert unbounded.get("zeros") == bytes(48 * MiB)
    with cas.open(tmp_path / "s", expansion_allowance=0, max_expansion=48) as exact:
        assert exact.get("zeros") == bytes(48 * MiB)


def test_a_file_of_zeros_still_works(tmp_path: Path) -> None:
    """256 MiB of zeros is one 256 KiB chunk listed 1,024 times: within the default limits."""
    with cas.open(tmp_path / "s") as store:
        zeros = np.zeros(32 * MiB)  # 256 MiB
        ref = store.put(zeros, "zeros")
        tree = _tree_of(store, "zeros")
        (entry,) = [e for e in tree.entries if e.chunks]
        assert len(entry.chunks) >= 1024 and len({d for d, _ in entry.chunks}) == 1
        got = store.get(ref)
        assert got.shape == zeros.shape and not got.any()


@pytest.mark.parametrize("across_files", [False, True])
def test_same_chunk_with_two_sizes_is_corrupt(tmp_path: Path, across_files: bool) -> None:
    """In one file's list, or in two files whose lists are each consistent on their own."""
    with cas.open(tmp_path / "s") as store:
        data = _random(3 * MiB, 1)
        store.put(data, "x")
        (entry,) = _tree_of(store, "x").entries
        (d0, n0), (_, n1) = entry.chunks[:2]
        assert n0 != n1
        if across_files:
            planted = (dataclasses.replace(entry, path="a"), FileEntry("b", n1, ((d0, n1),)))
        else:
            planted = (dataclasses.replace(entry, chunks=((d0, n0), (d0, n1), *entry.chunks[2:])),)
        _plant_bytes_artifact(store, planted, "y")
        with pytest.raises(CorruptObjectError, match="two different sizes"):
            store.get("y")


def test_chunk_size_must_match_the_pack_index(tmp_path: Path) -> None:
    """A tree that moves bytes between two packed chunks (file size unchanged) is refused before reading."""
    with cas.open(tmp_path / "s") as store:
        data = _random(3 * MiB, 2)
        store.put(data, "x")
        (entry,) = _tree_of(store, "x").entries
        (d0, n0), (d1, n1) = entry.chunks[:2]
        planted = dataclasses.replace(entry, chunks=((d0, n0 + 1000), (d1, n1 - 1000), *entry.chunks[2:]))
        _plant_bytes_artifact(store, (planted,), "y")
        with pytest.raises(CorruptObjectError, match="pack index"):
            store.get("y")
        with pytest.raises(CorruptObjectError):
            store.get("y", path=tmp_path / "out")


def test_chunk_declaring_more_than_its_stored_bytes_can_hold(tmp_path: Path) -> None:
    """A pack entry of 116 stored bytes declaring 1 GiB: no zstd frame holds that much."""
    with cas.open(tmp_path / "s") as store:
        fake = digest(b"not the real content")
        header = codec.pack_header(codec.CODEC_ZSTD, 1 << 30)
        store.objects.write_pack([(fake, [header, bytes(100)], 1 << 30, codec.CODEC_ZSTD)])
        entry = FileEntry("data", 1 << 30, ((fake, 1 << 30),), hash=fake)
        _plant_bytes_artifact(store, (entry,), "big")
        before = _rss()
        with pytest.raises(DeclaredSizeError):
            store.get("big")
        assert _rss() - before < 256 * MiB


# -- item 6: chunk maps ------------------------------------------------------------------


def _plant_chunkmap(store: cas.Store, chunkmap: ChunkMap) -> None:
    """Another writer's chunk map (as cas wrote them up to tree version 1: sealed, under the whole-file digest)."""
    store.backend.write(chunkmap_key(chunkmap.hash), codec.seal(chunkmap.to_bytes()))


def _several_packs(store: cas.Store) -> None:
    store.backend.pack_target = 2 * MiB  # small packs: each batch of 8 MiB of chunks gets its own


def test_forged_chunk_map_is_not_used_by_a_put(tmp_path: Path) -> None:
    """A chunk map under hash(F) pointing at the chunks of other bytes E: put(F) must still store F."""
    with cas.open(tmp_path / "s") as store:
        _several_packs(store)
        f_bytes = _random(20 * MiB, 3)
        e_bytes = _random(20 * MiB, 4)
        store.put(e_bytes, "e")
        (e_entry,) = _tree_of(store, "e").entries
        assert len(e_entry.chunks) > 10
        assert len({store.objects.locate(d).pack for d, _ in e_entry.chunks}) > 1  # type: ignore[union-attr]
        _plant_chunkmap(store, ChunkMap(digest(f_bytes), len(f_bytes), e_entry.chunks))
        ref = store.put(f_bytes, "f")
        assert store.get(ref) == f_bytes
        assert store.get(store.put(f_bytes, "f", new_version=True)) == f_bytes
        assert _tree_of(store, "f").entries[0].chunks != e_entry.chunks


def test_chunk_map_wrong_in_one_chunk_only(tmp_path: Path) -> None:
    """F is E with one byte changed in its last chunk: a map with E's chunks fits F's sizes exactly."""
    with cas.open(tmp_path / "s") as store:
        e_bytes = _random(9 * MiB, 11)
        store.put(e_bytes, "e")
        (e_entry,) = _tree_of(store, "e").entries
        f = bytearray(e_bytes)
        f[-10] ^= 0xFF
        f_bytes = bytes(f)
        _plant_chunkmap(store, ChunkMap(digest(f_bytes), len(f_bytes), e_entry.chunks))
        assert store.get(store.put(f_bytes, "f")) == f_bytes


def test_forged_chunk_map_of_a_file_on_disk(tmp_path: Path) -> None:
    """The same through ``put(Path)``: the file is mapped, hashed, then checked against the map."""
    with cas.open(tmp_path / "s") as store:
        f_bytes = _random(5 * MiB, 5)
        e_bytes = _random(5 * MiB, 6)
        store.put(e_bytes, "e")
        (e_entry,) = _tree_of(store, "e").entries
        # Same chunk count and sizes as F would have is not needed: only the total must agree.
        _plant_chunkmap(store, ChunkMap(digest(f_bytes), len(f_bytes), e_entry.chunks))
        source = tmp_path / "f.bin"
        source.write_bytes(f_bytes)
        ref = store.put(source, "f")
        out = store.get(ref, path=tmp_path / "out.bin")
        assert Path(out).read_bytes() == f_bytes


def test_a_reput_of_identical_data_stores_nothing_new(tmp_path: Path) -> None:
    """A re-put of identical data stores nothing new (every chunk is found stored)."""
    with cas.open(tmp_path / "s") as store:
        data = _random(8 * MiB, 7)
        store.put(data, "x")
        packs = set(store.objects.pack_ids())
        store.put(data, "x")
        store.objects.refresh_index()
        assert set(store.objects.pack_ids()) == packs


def test_fsck_checks_whole_file_hashes(tmp_path: Path) -> None:
    """A tree entry whose chunks are other bytes than its hash says, and such a chunk map: fsck reports both."""
    with cas.open(tmp_path / "s") as store:
        _several_packs(store)
        f_bytes = _random(17 * MiB, 8)
        e_bytes = _random(17 * MiB, 9)
        store.put(e_bytes, "e")
        (e_entry,) = _tree_of(store, "e").entries
        assert store.fsck().ok
        forged = FileEntry("data", len(f_bytes), e_entry.chunks, hash=digest(f_bytes))
        _plant_bytes_artifact(store, (forged,), "f")
        map_hash = digest(b"some other file")
        _plant_chunkmap(store, ChunkMap(map_hash, len(e_bytes), e_entry.chunks))
        report = store.fsck()
        assert not report.ok
        text = "\n".join(report.corrupt)
        assert "'data' of tree" in text and "not to its file hash" in text
        assert chunkmap_key(map_hash) in text
        report = store.fsck(repair=True)
        assert any(chunkmap_key(map_hash) in r for r in report.repaired)
        assert not store.backend.exists(chunkmap_key(map_hash))


def test_fsck_checks_declared_sizes_and_never_hashes_past_the_reader_limit(tmp_path: Path) -> None:
    """Chunk sizes a read refuses are corrupt to fsck too; a tree beyond the expansion limit is not hashed whole."""
    with cas.open(tmp_path / "s") as store:
        store.put(_random(3 * MiB, 10), "real")
        (entry,) = _tree_of(store, "real").entries
        (first, n), *rest = entry.chunks
        off_by_one = ((first, n - 1), *rest)
        _plant_bytes_artifact(store, (FileEntry("data", entry.size - 1, off_by_one, hash=entry.hash),), "short")
        huge = ((first, 1 << 40),)
        _plant_bytes_artifact(store, (FileEntry("data", 1 << 40, huge, hash=entry.hash),), "huge")
        with pytest.raises(CorruptObjectError):
            store.get("short")
        report = _finishes(store.fsck)
        assert not report.ok and sum("its pack index" in c for c in report.corrupt) == 2
        bomb = FileEntry("data", n * 50_000, ((first, n),) * 50_000, hash=entry.hash)  # ~4 GB from one chunk
        _plant_bytes_artifact(store, (bomb,), "bomb")
        report = _finishes(store.fsck, 60.0)
        assert any("re-uses its chunks" in u for u in report.unchecked), report.unchecked
        assert "not checked" in str(report)


# -- item 11: special files in a folder store ----------------------------------------


def _ref_key(store: cas.Store, name: str) -> str:
    return next(k for k in store.backend.list(f"refs/{name}/") if "/@v/" in k)


def _victim_operations(store_dir: Path, tmp_path: Path) -> dict[str, Callable[[], Any]]:
    def opened() -> cas.Store:
        return cas.open(store_dir, create=False)

    def with_store(fn: Callable[[cas.Store], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with opened() as s:
                return fn(s)

        return run

    def pull() -> Any:
        with cas.open(tmp_path / f"pulled-{os.urandom(4).hex()}") as mine:
            return mine.pull(store_dir)

    def clone() -> Any:
        with cas.clone(store_dir, tmp_path / f"clone-{os.urandom(4).hex()}") as c:
            return list(c.names())

    return {
        "get": with_store(lambda s: s.get("x")),
        "get other": with_store(lambda s: s.get("ok")),
        "info": with_store(lambda s: s.info("x")),
        "log": with_store(lambda s: s.log()),
        "names": with_store(lambda s: list(s.names())),
        "pull": pull,
        "clone": clone,
        "fsck": with_store(lambda s: s.fsck()),
        "gc": with_store(lambda s: s.gc()),
    }


def _store_with_data(path: Path) -> None:
    with cas.open(path) as store:
        store.put(_random(3 * MiB, 10), "x")
        store.put(b"fine", "ok")


@pytest.mark.parametrize("kind", ["ref to /dev/zero", "ref fifo", "object fifo", "object link outside"])
def test_special_files_give_typed_errors_in_bounded_time(tmp_path: Path, kind: str) -> None:
    store_dir = tmp_path / "s"
    _store_with_data(store_dir)
    with cas.open(store_dir) as store:
        ref_path = store_dir / _ref_key(store, "x")
        artifact = store.resolve("x").hash
        object_path = store_dir / object_key(from_hex(artifact))
    if kind == "ref to /dev/zero":
        ref_path.unlink()
        ref_path.symlink_to("/dev/zero")
    elif kind == "ref fifo":
        ref_path.unlink()
        os.mkfifo(ref_path)
    elif kind == "object fifo":
        object_path.unlink()
        os.mkfifo(object_path)
    else:
        outside = tmp_path / "outside"
        outside.write_bytes(object_path.read_bytes())  # the true bytes, but not in the store
        object_path.unlink()
        object_path.symlink_to(outside)
    before = _rss()
    results = {name: _finishes(op) for name, op in _victim_operations(store_dir, tmp_path).items()}
    for name, result in results.items():
        _typed(result)
        assert not isinstance(result, MemoryError), name
    assert _rss() - before < 512 * MiB
    assert isinstance(results["get"], (SpecialFileError, cas.ObjectNotFoundError)), results["get"]
    assert results["get other"] == b"fine"
    assert isinstance(results["fsck"], CasError) or not results["fsck"].ok


def test_backend_refuses_special_files(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    with cas.open(store_dir) as store:
        backend = store.backend
        backend.write("refs/a", b"x")
        (store_dir / "refs" / "fifo").parent.mkdir(exist_ok=True)
        os.mkfifo(store_dir / "refs" / "fifo")
        (store_dir / "refs" / "zero").symlink_to("/dev/zero")
        (store_dir / "refs" / "dir").mkdir()
        (store_dir / "refs" / "dir" / "f").write_bytes(b"y")
        for key in ("refs/fifo", "refs/zero", "refs/dir"):
            for read in (backend.read, lambda k: backend.read_range(k, 0, 10), backend.size, backend.mtime):
                with pytest.raises(SpecialFileError):
                    _raise(read, key)
        assert backend.read("refs/a") == b"x"
        assert backend.read("refs/dir/f") == b"y"


def _raise(fn: Callable[[str], Any], key: str) -> None:
    result = _finishes(lambda: fn(key))
    if isinstance(result, BaseException):
        raise result


def test_listing_never_walks_a_linked_folder(tmp_path: Path) -> None:
    """A folder of the store replaced by a link to elsewhere: listing and reading stay inside."""
    store_dir = tmp_path / "s"
    _store_with_data(store_dir)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "@v").mkdir(parents=True)
    (elsewhere / "@v" / "1").write_bytes(b"junk")
    (store_dir / "refs" / "evil").symlink_to(elsewhere, target_is_directory=True)
    with cas.open(store_dir) as store:
        keys = list(store.backend.list("refs/"))
        assert "refs/evil/@v/1" not in keys
        assert "evil" not in set(store.names())
        with pytest.raises(SpecialFileError):
            store.backend.read("refs/evil/@v/1")
        with pytest.raises(SpecialFileError):
            store.backend.write("refs/evil/@v/2", b"x")  # never writes through the link
        assert not (elsewhere / "@v" / "2").exists()
        with pytest.raises(SpecialFileError):
            store.backend.write("refs/evil/new/1", b"x")  # nor creates a folder there
        assert not (elsewhere / "new").exists()
        assert store.get("ok") == b"fine"
    # A top folder that is a link: listing it is refused, not followed.
    objects = store_dir / "objects"
    objects.rename(tmp_path / "objects-elsewhere")
    objects.symlink_to(tmp_path / "objects-elsewhere", target_is_directory=True)
    with cas.open(store_dir) as store:
        with pytest.raises(SpecialFileError):
            list(store.backend.list("objects/"))

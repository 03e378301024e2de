"""The put side of large files (cas.trees, cas.ingest): what a put stores does not depend on how it is scheduled.

Regions are cut on the pool and stitched; batches of chunks are hashed and the
new ones stored. The tree must hold exactly the sequential cut of the bytes and
each chunk's digest (a version-2 tree: no whole-file digest, and no chunk map
is read or written). Every payload here is above the 1 MiB chunking threshold
(SMALL_MAX), so each is cut into chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cas
from cas.chunking import ChunkParams
from cas.hashing import digest
from cas.objects import ChunkMap, FileEntry, Tree
from cas.trees import SMALL_MAX, TreeWriter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[cas.Store]:
    # Local disk only: the scheduling under test is the same on every backend, and these payloads are large.
    with cas.open(tmp_path / "store") as s:
        yield s


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def _expected_chunks(data: bytes, params: ChunkParams) -> tuple[tuple[bytes, int], ...]:
    """The chunks of one sequential pass, independently of cas.ingest."""
    view = memoryview(data)
    return tuple((digest(view[c.offset : c.offset + c.length]), c.length) for c in params.cutter().cut_buf(view))


def _write(store: cas.Store, data: bytes | None = None, source: Path | None = None) -> FileEntry:
    repo = store.repository
    writer = TreeWriter(repo.objects, repo.config.chunking)
    if source is not None:
        writer.write_file("f", source)
    else:
        assert data is not None
        writer.write_bytes("f", data)
    tree = writer.finish()
    assert isinstance(tree, Tree) and len(tree.entries) == 1
    return tree.entries[0]


def _packs(store: cas.Store) -> set[str]:
    return set(store.backend.list("packs/"))


def _check(entry: FileEntry, data: bytes, params: ChunkParams) -> None:
    assert entry.size == len(data)
    assert entry.hash is None  # version-2 trees carry no whole-file digest
    assert entry.chunks == _expected_chunks(data, params)


def test_first_put_of_new_bytes_stores_the_sequential_cut(store: cas.Store) -> None:
    data = os.urandom(40 << 20)  # several 16 MiB regions and 8 MiB batches
    entry = _write(store, data)
    _check(entry, data, store.repository.config.chunking)
    assert not list(store.backend.list("chunkmaps/"))  # version 1 wrote one per file; nothing reads them now


def test_first_put_of_a_file_stores_the_sequential_cut(store: cas.Store, tmp_path: Path) -> None:
    data = os.urandom(24 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    _check(_write(store, source=source), data, store.repository.config.chunking)
    store.put(source, "file")
    store.export("file", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data


def test_reput_in_a_new_handle_writes_no_pack(store_url: str) -> None:
    data = os.urandom(12 << 20)
    with cas.open(store_url) as store:
        first = _write(store, data)
        packs = _packs(store)
    with cas.open(store_url) as store:  # cut and hashed again: every chunk is found stored
        again = _write(store, data)
        assert _packs(store) == packs
    assert again == first


def test_bytes_sharing_only_their_first_chunk_with_stored_ones(store: cas.Store) -> None:
    params = store.repository.config.chunking
    old = os.urandom(8 << 20)
    _write(store, old)
    new = old[: 2 * params.max_size] + os.urandom(8 << 20)  # first chunk stored, the rest new
    entry = _write(store, new)
    _check(entry, new, params)
    ref = store.put(new, "new")
    assert store.get(ref) == new


def test_bytes_whose_first_chunk_is_new_but_the_rest_stored(store: cas.Store) -> None:
    params = store.repository.config.chunking
    old = os.urandom(8 << 20)
    _write(store, old)
    new = os.urandom(100) + old  # a new first chunk; later cuts resynchronize with the stored ones
    packs = _packs(store)
    entry = _write(store, new)
    _check(entry, new, params)
    added = _packs(store) - packs
    stored = sum(store.backend.size(k) for k in added)
    assert stored < len(new) // 4  # only the chunks around the insertion are new


def test_a_chunk_repeated_in_a_put_is_stored_once(store: cas.Store) -> None:
    data = bytes(6 << 20)  # zeros: every chunk but the last is the same max-size chunk
    entry = _write(store, data)
    _check(entry, data, store.repository.config.chunking)
    entries = [e for pack in store.repository.objects.pack_entries().values() for e in pack]
    assert len({e.digest for e in entries}) == len(entries) <= 2


def test_a_float64_array_put_twice_is_one_artifact(store: cas.Store) -> None:
    arr = np.random.default_rng(0).random((SMALL_MAX * 6) // 8)
    first = store.put(arr, "a")
    second = store.put(arr.copy(), "b")
    assert first.hash == second.hash
    assert np.array_equal(store.get("b"), arr)


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_a_failing_ingest_raises_and_the_next_put_is_whole(
    store: cas.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from cas import ingest

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    data = os.urandom(4 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    monkeypatch.setattr(ingest.ChunkIngest, "add_buffer", broken)
    repo = store.repository
    writer = TreeWriter(repo.objects, repo.config.chunking)
    with pytest.raises(OSError, match="disk on fire"):
        if kind == "file":
            writer.write_file("f", source)
        else:
            writer.write_bytes("f", bytearray(data))
    writer.abort()
    monkeypatch.undo()
    assert source.read_bytes() == data
    _check(_write(store, source=source), data, repo.config.chunking)
    _check(_write(store, data), data, repo.config.chunking)


def test_a_put_ignores_a_chunk_map_an_older_cas_left(store: cas.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Version 1 looked up chunk maps by whole-file digest to skip the cutting of a re-put. A
    # version-2 put computes no whole-file digest: it neither reads nor writes a map, so even a
    # lying one (planted here under the digest of the bytes) changes nothing.
    from cas import codec
    from cas.keys import chunkmap_key

    objects = store.repository.objects
    data = os.urandom(12 << 20)
    other = os.urandom(len(data))
    lie = ChunkMap(digest(data), len(data), _expected_chunks(other, store.repository.config.chunking))
    _write(store, other)
    store.backend.write(chunkmap_key(digest(data)), codec.seal(lie.to_bytes()))
    touched: list[str] = []
    for name in ("read", "write"):
        real = getattr(objects.backend, name)

        def spy(key: str, *args: object, _real: object = real, **kwargs: object) -> object:
            touched.append(key)
            return _real(key, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(objects.backend, name, spy)
    params = store.repository.config.chunking
    _check(_write(store, data), data, params)
    _check(_write(store, data), data, params)
    assert not [k for k in touched if k.startswith("chunkmaps/")]
    ref = store.put(data, "data")
    assert store.get(ref) == data

"""Stores written before tree version 2 (FORMAT.md, Versions 21) stay readable, checkable and shareable.

Up to version 1 each chunked file of a tree carried the BLAKE3 digest of its
whole bytes, and each put left a chunk map under that digest. The artifacts
here are made as that cas made them (from what this cas stored, plus the
whole-file digests and chunk maps), then read by this cas in a new handle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cas
from cas import codec, restore
from cas.hashing import digest
from cas.keys import chunkmap_key
from cas.objects import Artifact, ChunkMap, FileEntry, Tree

MiB = 1 << 20


def _as_version_1(store: cas.Store, name: str, old_name: str) -> Artifact:
    """Write ``name``'s latest version again as cas wrote it before tree version 2, named ``old_name``."""
    objects = store.objects
    artifact = store._artifact(store.resolve(name))
    tree = store._tree(artifact)
    entries = []
    for entry in tree.entries:
        if entry.data is None:
            whole = digest(restore.read_bytes(objects, entry))
            entry = FileEntry(entry.path, entry.size, entry.chunks, hash=whole)
            if len(entry.chunks) > 1:
                chunkmap = ChunkMap(whole, entry.size, entry.chunks)
                store.backend.write(chunkmap_key(whole), codec.seal(chunkmap.to_bytes()))
        entries.append(entry)
    old_tree = Tree(tuple(entries), version=1)
    assert old_tree.to_bytes() != tree.to_bytes()
    old = Artifact(
        objects.put_object(old_tree.to_bytes()),
        artifact.python_type,
        artifact.materializer,
        artifact.materializer_version,
        artifact.size,
        artifact.metadata,
        artifact.user_metadata,
    )
    store.refs.create_version(old_name, objects.put_object(old.to_bytes()))
    return old


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    url = str(tmp_path / "store")
    rng = np.random.default_rng(0)
    with cas.open(url) as store:
        store.put(rng.random((6 * MiB) // 8), "array-new")  # chunked: several chunks
        _as_version_1(store, "array-new", "array")
        # Trees of inline files and of one-chunk files are still written as version 1.
        store.put(rng.bytes(MiB // 2), "blob")  # one loose object
        store.put({"lr": 0.1}, "params")  # inline
    return url


def test_version_1_trees_read_back(old_store: str, tmp_path: Path) -> None:
    with cas.open(old_store) as store:
        tree = store._tree(store._artifact(store.resolve("array")))
        assert tree.version == 1 and all(e.hash is not None for e in tree.entries if e.data is None)
        for name in ("blob", "params"):
            assert store._tree(store._artifact(store.resolve(name))).version == 1
        assert store._tree(store._artifact(store.resolve("array-new"))).version == 2
        rng = np.random.default_rng(0)
        array = rng.random((6 * MiB) // 8)
        assert np.array_equal(store.get("array"), array)
        assert store.get("blob") == rng.bytes(MiB // 2)
        assert store.get("params") == {"lr": 0.1}
        store.export("blob", tmp_path / "blob.bin")
        assert (tmp_path / "blob.bin").read_bytes() == store.get("blob")


def test_fsck_checks_version_1_whole_file_digests_and_gc_keeps_them(old_store: str) -> None:
    with cas.open(old_store) as store:
        report = store.fsck()
        assert report.ok, report.corrupt
        assert report.checked["file hash"] == 1  # the array's file (its chunk map makes the same claim)
        store.gc(grace=0)
        assert store.fsck().ok
        assert np.array_equal(store.get("array"), np.random.default_rng(0).random((6 * MiB) // 8))
        assert list(store.backend.list("chunkmaps/"))  # its chunks are all live: the map stays


def test_a_reput_of_version_1_content_stores_no_chunk_again(old_store: str) -> None:
    with cas.open(old_store) as store:
        packs = set(store.backend.list("packs/"))
        old = store.resolve("array")
        ref = store.put(np.random.default_rng(0).random((6 * MiB) // 8), "array")
        # A version-2 tree of the same bytes: another artifact (so a new version), the same chunks.
        assert ref.hash != old.hash and ref.number == (old.number or 0) + 1
        assert store._tree(store._artifact(ref)).version == 2
        assert set(store.backend.list("packs/")) == packs


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_version_1_artifacts_travel_as_they_are(old_store: str, tmp_path: Path, direction: str) -> None:
    other = str(tmp_path / "other")
    with cas.open(old_store) as source, cas.open(other) as target:
        if direction == "push":
            source.push(other, ["array"])
        else:
            target.pull(old_store, ["array"])
        assert target.resolve("array").hash == source.resolve("array").hash
        assert target._tree(target._artifact(target.resolve("array"))).version == 1
        assert np.array_equal(target.get("array"), source.get("array"))
        assert target.fsck().ok

"""gc's cost is what it lists and deletes (issue 19): no read, stat or request per unreachable object, batched deletes.

The speed itself (objects removed per second) is a benchmark row: ``python -m benchmarks --only gc-scale``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET

import cas
import cas.gc
from cas.backends import Backend
from cas.keys import object_key, pack_key

PER_KEY = ("read", "read_range", "mtime", "size", "exists", "delete", "delete_if_old", "touch")


def count_calls(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], list[int]]:
    """Count the per-key calls gc makes on ``objects/`` keys, and the sizes of its ``delete_many`` batches."""
    calls: Counter[str] = Counter()
    batches: list[int] = []
    for name in PER_KEY:
        real = getattr(backend, name)

        def counted(key: str, *args: Any, _real: Callable[..., Any] = real, _name: str = name) -> Any:
            if key.startswith("objects/"):
                calls[_name] += 1
            return _real(key, *args)

        monkeypatch.setattr(backend, name, counted)
    real_many = backend.delete_many

    def many(keys: list[str]) -> None:
        batches.append(len(keys))
        real_many(keys)

    monkeypatch.setattr(backend, "delete_many", many)
    return calls, batches


def put_garbage(store: cas.Store, n: int) -> list[str]:
    """``n`` unnamed small values: each one an artifact and a tree, both loose objects."""
    return [store.put({"garbage": i, "salt": uuid.uuid4().hex}).hash for i in range(n)]


def test_gc_reads_and_stats_no_unreachable_object(local_store: cas.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    put_garbage(local_store, 600)  # 1,200 objects: more than one batch of deletions
    kept = local_store.put({"named": True}, "kept")
    calls, _ = count_calls(local_store.backend, monkeypatch)
    report = local_store.gc(grace=0)
    assert report.removed["object"] == 1200
    # Before: one read (to name its kind), one size and two timestamps per object, one delete call each.
    assert sum(calls.values()) <= 2, calls  # reading the two objects the named value reaches
    assert report.freed["object"] > 0  # sizes come from the listing
    assert local_store.get("kept") == {"named": True} and local_store.resolve("kept").hash == kept.hash
    assert local_store.fsck().ok


@pytest.mark.slow
def test_gc_on_s3_deletes_in_batches_with_ages_from_the_listing(
    seaweed: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cas.open(f"s3://{BUCKET}/{uuid.uuid4().hex}") as store:
        hashes = put_garbage(store, 150)
        calls, batches = count_calls(store.backend, monkeypatch)
        time.sleep(1.1)  # S3 timestamps are whole seconds
        report = store.gc(grace=0)
        assert report.removed["object"] == 300
        assert sum(calls.values()) == 0, calls  # no HEAD, GET or DELETE of its own per object
        assert sum(batches) >= 300 and max(batches) <= 1000 and len(batches) <= 17  # a batch per listed shard
        assert not any(store.backend.exists(object_key(bytes.fromhex(h))) for h in hashes[:20])


def test_an_object_refreshed_after_the_listing_is_kept(local_store: cas.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local disk sets each file aside before looking at its timestamp again: a writer's late refresh wins."""
    hashes = put_garbage(local_store, 20)
    time.sleep(0.6)  # older than the grace below (grace 0 would declare that nobody else writes)
    reused = object_key(bytes.fromhex(hashes[7]))
    real = cas.gc.listed_shards

    def then_a_writer_reuses(backend: Backend, folder: str) -> Iterator[list[cas.gc.Listed]]:
        for shard in real(backend, folder):
            if folder == "objects/":
                local_store.backend.touch(reused)  # a put reuses it after gc listed it as old
            yield shard

    monkeypatch.setattr(cas.gc, "listed_shards", then_a_writer_reuses)
    report = local_store.gc(grace=0.5)
    assert report.removed["object"] == 39 and report.kept_young >= 1
    assert local_store.backend.exists(reused)
    assert not list((Path(local_store.url) / "tmp").glob("*/*"))  # nothing left set aside


def test_a_pack_the_index_knows_is_never_an_unindexed_leftover(
    local_store: cas.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack may have no ``index/`` file of its own (a chunk table covers it): the object store decides."""
    data = os.urandom(3 << 20)
    local_store.put(data, "packed")
    (pack,) = list(local_store.backend.list("packs/"))
    pack_id = bytes.fromhex(pack.rsplit("/", 1)[1])
    assert pack == pack_key(pack_id)
    local_store.backend.delete(f"index/{pack_id.hex()}")  # as if merged into a table
    objects = local_store.objects
    real_ids = objects.pack_ids
    monkeypatch.setattr(objects, "pack_ids", lambda: iter({*real_ids(), pack_id}))  # the table's packs
    report = local_store.gc(grace=0)
    assert report.removed["unindexed pack"] == 0
    assert local_store.backend.exists(pack)

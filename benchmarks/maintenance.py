"""gc and fsck workloads."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import cas
from benchmarks.harness import Row, alternate, drop_caches, median, remove, throughput_row


def gc_many_objects(work: Path, size: int, repeats: int) -> list[Row]:
    """gc of a local store holding 100,000 objects (half of them garbage)."""
    puts = 50_000 if repeats > 2 else 1_500  # each small put stores a tree and an artifact
    store_dir = work / "store"
    remove(store_dir)
    with cas.open(store_dir) as store:
        for i in range(puts):
            store.put({"i": i, "payload": "x" * (i % 50)}, "kept" if i % 2 == 0 else None)
        objects = sum(1 for _ in store.backend.list("objects/"))
        samples = []
        for attempt in range(2):
            start = time.perf_counter()
            report = store.gc(grace=0, dry_run=attempt == 0)
            samples.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert report.objects > 0 and store.fsck().ok
        fsck_time = time.perf_counter() - start
    remove(store_dir)
    value = median(samples)
    return [
        Row(f"gc of {objects:,} objects", value, "s", min(samples), max(samples), "", None, None, "<= 10 s",
            value <= 10, notes={"removed": report.objects}),
        Row(f"fsck of {objects - report.objects:,} small objects", fsck_time, "s", fsck_time, fsck_time, "", None,
            None, ""),
    ]  # fmt: skip


def fsck_throughput(work: Path, size: int, repeats: int) -> list[Row]:
    """fsck of large blobs vs reading the same pack files sequentially."""
    store_dir = work / "store"
    remove(store_dir)
    with cas.open(store_dir) as store:
        store.put(np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8).tobytes(), "big")
        packs = [store_dir / k for k in store.backend.list("packs/")]
        total = sum(p.stat().st_size for p in packs)

        def read_all() -> None:
            for p in packs:
                with open(p, "rb") as f:
                    while f.read(16 << 20):
                        pass

        # The disk's own speed is the reference: empty the page cache before each side when allowed.
        cold = drop_caches()
        times = alternate({"cas": (lambda: store.fsck(), drop_caches), "plain": (read_all, drop_caches)}, repeats)
    remove(store_dir)
    label = "disk read (cold cache)" if cold else "read (page cache)"
    return [throughput_row("fsck of large blobs", total, times["cas"], times["plain"], label, 0.8)]


WORKLOADS = {"gc": gc_many_objects, "fsck": fsck_throughput}

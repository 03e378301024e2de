"""Push to a SeaweedFS server: only what is new moves, and a push with no news is quick."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import cas
from benchmarks.harness import Row, median
from benchmarks.seaweed import shared_server


def sync_workloads(work: Path, size: int, repeats: int) -> list[Row]:
    """Pushing 1,000 artifacts of which 10 are new vs pushing those 10 alone; a no-change push of 10,000 objects."""
    quick = repeats <= 2
    server = shared_server()
    with server.aws_environment():
        prefix = f"s3://bench/{uuid.uuid4().hex}"
        return [
            _ten_new_of_many(work, prefix, 60 if quick else 1000, repeats),
            _no_change(work, prefix, 600 if quick else 10_000, repeats),
        ]


def _payload(i: int) -> bytes:
    return os.urandom(16 << 10) + i.to_bytes(8, "little")  # 16 KiB: one loose blob each, before the push


def _ten_new_of_many(work: Path, prefix: str, count: int, repeats: int) -> Row:
    many = cas.open(work / "sync-many")
    with many.batch():
        for i in range(count - 10):
            many.put(_payload(i), f"item{i}")
    remote = f"{prefix}/many"
    many.push(remote)
    ours: list[float] = []
    alone: list[float] = []
    sent: list[int] = []
    for attempt in range(repeats):
        new = [_payload(10_000 + attempt * 10 + j) for j in range(10)]
        only = cas.open(work / f"sync-only{attempt}")
        for j, data in enumerate(new):
            many.put(data, f"new{attempt}-{j}")
            only.put(data, f"new{attempt}-{j}")

        def push_many() -> None:
            report = many.push(remote)
            sent.append(len(report.refs))

        def push_alone(only: cas.Store = only, url: str = f"{prefix}/only{attempt}") -> None:
            only.push(url)

        sides = [push_many, push_alone] if attempt % 2 == 0 else [push_alone, push_many]
        for side in sides:
            start = time.perf_counter()
            side()
            (ours if side is push_many else alone).append(time.perf_counter() - start)
        only.close()
    many.close()
    value, ref = median(ours), median(alone)
    ratio = value / ref
    return Row(f"S3 push {count} artifacts, 10 new", value, "s", min(ours), max(ours), "push of those 10 alone", ref,
               ratio, "<= 5x, 10 sent", ratio <= 5 and set(sent) == {10}, notes={"refs sent": sorted(set(sent))})  # fmt: skip


def _no_change(work: Path, prefix: str, objects: int, repeats: int) -> Row:
    store = cas.open(work / "sync-still")
    with store.batch():
        for i in range(objects // 3):  # a blob, a tree and an artifact each
            store.put(os.urandom(8 << 10), f"still{i}")
    remote = f"{prefix}/still"
    store.push(remote)
    times, moved = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        report = store.push(remote)
        times.append(time.perf_counter() - start)
        moved.append(report.objects)
    store.close()
    value = median(times)
    return Row(f"S3 no-change push, {objects} objects", value, "s", min(times), max(times), "", None, None,
               "< 2 s, 0 sent", value < 2 and set(moved) == {0})  # fmt: skip


WORKLOADS = {"sync": sync_workloads}

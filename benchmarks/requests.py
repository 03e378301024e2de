"""Requests per operation, counted by a CountingBackend, on the local disk and on S3 (SeaweedFS).

Each operation runs on a store opened for it (a fresh index, as in a new
process); the counts leave out opening (its own row). A push counts both
sides (the store and its remote share one counter).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.counting import KINDS, Counts, open_counting
from benchmarks.harness import Row, remove
from cas import history

PAGE = 20  # a page of log / history, as a person reads it


def _train(lr: float, epochs: int = 1) -> dict[str, float]:
    """The step whose cache hit is counted (module level: the same source, so the same cache key)."""
    return {"lr": lr, "loss": 1.0 / (epochs + lr)}


def _random_file(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            left -= n
    return path


class _Counter:
    """Opens counting stores on one URL and records one row per operation."""

    def __init__(self, url: str, where: str, options: dict[str, Any] | None) -> None:
        self.url = url
        self.where = where
        self.options = options
        self.results: list[dict[str, Any]] = []

    def open(self, counts: Counts | None = None) -> tuple[Any, Counts]:
        return open_counting(self.url, counts, storage_options=self.options)

    def measure(self, operation: str, action: Callable[[Any], Any], *, store: Any = None) -> Any:
        """Run ``action(store)`` on a newly opened store (or ``store``) and record its requests."""
        own = store is None
        if own:
            store, counts = self.open()
        else:
            counts = store.backend.counts
        counts.reset()
        start = time.perf_counter()
        try:
            result = action(store)
        finally:
            seconds = time.perf_counter() - start
            snap = counts.snapshot()
            if own:
                store.close()
        self.results.append({"operation": operation, "where": self.where, "seconds": seconds, **snap})
        return result


def count_operations(url: str, where: str, work: Path, size: int, quick: bool,
                     options: dict[str, Any] | None = None, remote_url: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Every counted operation on the store at ``url`` (created here); returns one dict per operation."""
    c = _Counter(url, where, options)
    runs = 21 if quick else 100  # (more than a page of 20)
    names = 21 if quick else 100
    size = min(size, 8 << 20) if quick else size
    big = _random_file(work / "big.bin", size, seed=1)
    medium_size = min(size, 64 << 20)

    # Opening: the first open in this process probes create-if-absent; later ones only read the config.
    counts = Counts()
    start = time.perf_counter()
    store, _ = c.open(counts)
    c.results.append({"operation": "open a store (first in the process)", "where": where,
                      "seconds": time.perf_counter() - start, **counts.snapshot()})  # fmt: skip
    store.close()
    c.measure("open a store (again)", lambda s: None)

    c.measure("small put, new name", lambda s: s.put({"loss": 0.5, "i": 0}, "small"))
    c.measure("small put, new version of a name", lambda s: s.put({"loss": 0.25, "i": 1}, "small"))
    c.measure(f"put of {size >> 20} MiB (new data, named)", lambda s: s.put(big, "big"))
    c.measure(f"re-put of the same {size >> 20} MiB", lambda s: s.put(big, "big"))
    c.measure("get by name (small)", lambda s: s.get("small"))
    out = work / "out.bin"
    c.measure(f"export by name ({size >> 20} MiB file)", lambda s: s.export("big", out))
    remove(out)

    # Steps: one miss to fill the cache, then a hit in a newly opened store.
    c.measure("step call, cache miss", lambda s: s.step(_train)(0.5))
    c.measure("step call, cache hit", lambda s: s.step(_train)(0.5))
    setup, _ = c.open()
    with setup.batch():
        for i in range(runs):
            setup.step(_train)(float(i), epochs=2)
        for i in range(names):
            setup.put({"i": i}, f"name{i:04d}")
        for i in range(runs):
            setup.put({"v": i}, "versioned")
    setup.close()
    c.measure(f"log, first page ({PAGE} of {runs + 2} runs)", lambda s: list(s.log(limit=PAGE)))
    c.measure(f"ls ({names + 4} names, as `cas ls`)", lambda s: history.names_page(s.repository))
    c.measure(f"history of a name, first page ({PAGE} of {runs})", lambda s: list(s.history("versioned", limit=PAGE)))

    # A long-lived reader after another process wrote a pack (issue 21, item 10).
    medium = _random_file(work / "medium.bin", medium_size, seed=2)
    other = _random_file(work / "other.bin", medium_size, seed=3)
    writer, _ = c.open()
    writer.put(medium, "medium")
    reader, _ = c.open()
    reader.export("medium", out)  # loads the index
    writer.put(other, "other")
    writer.close()
    c.measure(f"export ({medium_size >> 20} MiB) in a long-lived store, after another wrote a pack",
              lambda s: s.export("other", out), store=reader)  # fmt: skip
    reader.close()

    # Push of one new artifact: the remote first holds everything, then one small put is pushed.
    if remote_url is not None:
        shared = Counts()  # both sides' requests
        src, _ = c.open(shared)
        remote, _ = open_counting(remote_url, shared, storage_options=options)
        src.push(remote)
        src.put({"new": uuid.uuid4().hex}, "pushed")
        c.measure("push of one new small artifact (both sides)", lambda s: s.push(remote), store=src)
        remote.close()
        src.close()
    c.measure("gc (nothing old enough to collect)", lambda s: s.gc())
    remove(big)
    remove(medium)
    remove(other)
    remove(out)
    return c.results


def markdown(results: list[dict[str, Any]]) -> str:
    """The table for the notes and docs: one line per operation and place."""
    lines = [
        "| operation | where | " + " | ".join(KINDS) + " | total | time |",
        "|---|---|" + "---:|" * (len(KINDS) + 2),
    ]
    for r in results:
        kinds = " | ".join(str(r["requests"].get(k, "")) for k in KINDS)
        lines.append(f"| {r['operation']} | {r['where']} | {kinds} | {r['total']} | {r['seconds']:.2f} s |")
    return "\n".join(lines)


def _rows(results: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for r in results:
        total = float(r["total"])
        kinds = ", ".join(f"{k} {n}" for k, n in r["requests"].items())
        rows.append(Row(f"requests: {r['operation']} [{r['where']}]", total, "req", total, total, kinds[:26],
                        notes={k: v for k, v in r.items() if k != "operation"}))  # fmt: skip
    return rows


def requests_local(work: Path, size: int, repeats: int) -> list[Row]:
    """Requests per operation on a local store (backend calls, weighted as S3 would count them)."""
    store_dir, remote_dir = work / "req-store", work / "req-remote"
    try:
        results = count_operations(str(store_dir), "local", work, size, repeats <= 2, remote_url=str(remote_dir))
    finally:
        remove(store_dir)
        remove(remote_dir)
    print(markdown(results))
    return _rows(results)


def requests_s3(work: Path, size: int, repeats: int) -> list[Row]:
    """Requests per operation on S3 (a SeaweedFS server started for the run)."""
    from benchmarks.seaweed import KEY, SECRET, shared_server

    server = shared_server()
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": server.endpoint}}
    prefix = f"s3://bench/{uuid.uuid4().hex}"
    results = count_operations(f"{prefix}/store", "S3", work, size, repeats <= 2, options,
                               remote_url=f"{prefix}/remote")  # fmt: skip
    print(markdown(results))
    return _rows(results)


WORKLOADS = {"requests": requests_local, "requests-s3": requests_s3}


def main() -> None:
    """``python -m benchmarks.requests [MiB]``: both tables, for the notes."""
    import sys
    import tempfile

    size = int(float(sys.argv[1]) * (1 << 20)) if len(sys.argv) > 1 else 32 << 20
    with tempfile.TemporaryDirectory(prefix="cas-req-", dir=os.environ.get("CAS_BENCH_DIR")) as tmp:
        requests_local(Path(tmp), size, 2)
        requests_s3(Path(tmp), size, 2)


if __name__ == "__main__":
    main()

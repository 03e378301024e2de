"""Run workloads: cache-hit latency, the store's overhead on a miss, lineage in a big store."""

from __future__ import annotations

import time
from pathlib import Path

import cas
from benchmarks.harness import Row, median, remove


def _ms(samples: list[float]) -> tuple[float, float, float]:
    values = [s * 1000 for s in samples]
    return median(values), min(values), max(values)


def step_latency(work: Path, size: int, repeats: int) -> list[Row]:
    """A cache-hit check alone, a whole cache hit that loads a small output and records itself, and the overhead of a miss."""
    store_dir = work / "store"
    remove(store_dir)
    calls = 200 if repeats > 2 else 50
    with cas.open(store_dir) as store:

        @store.step(name="bench.hit")
        def summarize(n: int) -> dict[str, float]:
            return {"mean": n / 2, "max": float(n)}

        _, first = summarize.call(10)  # the miss that fills the cache
        hits = []
        for _ in range(calls):
            start = time.perf_counter()
            summarize(10)
            hits.append(time.perf_counter() - start)
        checks = []  # the check alone: the cache entry, the run it names, its outputs still stored
        for _ in range(calls):
            start = time.perf_counter()
            found = store.cached_run(first.cache_key)
            checks.append(time.perf_counter() - start)
            assert found is not None and found.hash == first.hash

        @store.step(name="bench.miss")
        def noop(i: int) -> int:
            return i

        misses, bare = [], []
        for i in range(calls):
            start = time.perf_counter()
            noop(i)
            misses.append(time.perf_counter() - start)
            start = time.perf_counter()
            noop.fn(i)
            bare.append(time.perf_counter() - start)
    remove(store_dir)
    hit, hit_lo, hit_hi = _ms(hits)
    check, check_lo, check_hi = _ms(checks)
    overhead = [m - b for m, b in zip(misses, bare, strict=True)]
    miss, miss_lo, miss_hi = _ms(overhead)
    return [
        Row("step cache-hit check (store.cached_run)", check, "ms", check_lo, check_hi, "", None, None, "<= 1 ms",
            check <= 1),
        Row("step cache hit, small output (check, load, record)", hit, "ms", hit_lo, hit_hi, "", None, None,
            "<= 2 ms", hit <= 2),
        Row("step miss: store overhead (no-op body)", miss, "ms", miss_lo, miss_hi, "", None, None, "<= 5 ms",
            miss <= 5),
    ]  # fmt: skip


def lineage_in_big_store(work: Path, size: int, repeats: int) -> list[Row]:
    """Lineage of a depth-10 chain in a store holding many other runs."""
    total = 100_000 if repeats > 2 else 1_000
    store_dir = work / "store"
    remove(store_dir)
    with cas.open(store_dir) as store:
        previous = store.put(b"seed data", "chain")
        for depth in range(10):
            out = store.put(f"stage {depth}".encode(), "chain")
            store.record_run(step=f"stage{depth}", inputs={"data": previous}, outputs={"data": out},
                             params={"depth": depth})  # fmt: skip
            previous = out
        filler = store.put(b"unrelated", "filler")
        start = time.perf_counter()
        for i in range(total - 10):
            store.record_run(step="filler", inputs={"x": filler}, params={"i": i})
        fill_rate = (total - 10) / (time.perf_counter() - start)
        samples = []
        for _ in range(max(repeats, 5)):
            start = time.perf_counter()
            graph = store.lineage(previous, direction="up")
            samples.append(time.perf_counter() - start)
            assert len(graph.runs()) == 10
        ui_rows = _ui_pages(store, previous.hash, total, repeats)
    remove(store_dir)
    value, lo, hi = _ms(samples)
    return ui_rows + [
        Row(f"lineage depth 10 among {total:,} runs", value, "ms", lo, hi, "", None, None, "<= 50 ms", value <= 50,
            notes={"record_run per second": round(fill_rate)}),
        Row("record_run (filling the store)", fill_rate, "op/s", fill_rate, fill_rate, "", None, None, ""),
    ]  # fmt: skip


def _ui_pages(store: cas.Store, artifact: str, total: int, repeats: int) -> list[Row]:
    """``cas ui`` pages in the same store: each must come back fast however many runs it holds."""
    from cas.ui.app import create_app

    client = create_app(store).test_client()
    run_id = store.log(limit=1)[0].id
    pages = {"runs, first page": "/runs", "runs, page 100": "/runs?page=100", "runs of a common step": "/runs?step=filler", "runs of a rare step (one scan)": "/runs?step=stage3",
             "artifact": f"/artifact/{artifact}", "run": f"/run/{run_id}",
             "lineage graph": f"/lineage/artifact/{artifact}"}  # fmt: skip
    rows = []
    for label, url in pages.items():
        samples = []
        for _ in range(max(repeats, 3)):
            start = time.perf_counter()
            response = client.get(url)
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200, url
        value, lo, hi = _ms(samples)
        rows.append(Row(f"cas ui page among {total:,} runs: {label}", value, "ms", lo, hi, "", None, None,
                        "<= 500 ms", value <= 500))  # fmt: skip
    return rows


WORKLOADS = {"steps": step_latency, "lineage": lineage_in_big_store}

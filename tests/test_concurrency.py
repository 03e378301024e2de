"""16 writers and a gc loop on one store: no version lost, nothing a ref needs removed, no bad cache hit."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from pathlib import Path

import blake3

import cas
from cas.artifacts import is_complete

WRITERS = 16
OPS = 12


def _old_payloads() -> list[bytes]:
    """Payloads stored once, deleted and made old before the writers start: gc's favourite garbage."""
    rng = random.Random(11)
    base = rng.randbytes(1 << 20)
    return [base + rng.randbytes(300_000) for _ in range(6)] + [rng.randbytes(50_000) for _ in range(6)]


def _writer(url: str, worker: int, queue: mp.Queue, ready: mp.Barrier) -> None:  # type: ignore[type-arg]
    rng = random.Random(worker)
    old = _old_payloads()
    refs, runs = [], []
    with cas.open(url) as store:
        store.objects.ensure_index()  # it knows the old packs, which gc is about to remove
        ready.wait()
        for i in range(OPS):
            # Mostly re-puts of the old garbage (reusing chunks gc is about to take), some new bytes.
            data = rng.choice(old) if rng.random() < 0.7 else rng.randbytes(rng.randrange(10, 400_000))
            ref = store.put(data, rng.choice(["model", "data", "shared/features"]))
            refs.append((f"{ref.name}@{ref.number}", ref.hash, blake3.blake3(data).hexdigest()))
            if i % 2:
                out = store.put(rng.choice(old))  # unnamed: only the run keeps it
                run = store.record_run(step="concurrent.step", inputs={"x": ref}, outputs={"y": out.hash},
                                       params={"p": rng.randrange(3)})  # fmt: skip
                runs.append(run.id)
    queue.put((refs, runs))


def _collector(url: str, stop: mp.Event, queue: mp.Queue, ready: mp.Barrier) -> None:  # type: ignore[type-arg]
    passes = removed = 0
    with cas.open(url) as store:
        ready.wait()
        while not stop.is_set() or passes == 0:
            removed += store.gc().objects  # the store's normal grace period (one hour)
            passes += 1
    queue.put((passes, removed))


def _backdate(root: Path, seconds: float) -> None:
    then = time.time() - seconds
    for folder in ("objects", "packs", "index", "chunkmaps"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                os.utime(path, (then, then))


def test_sixteen_writers_and_a_gc_loop(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    with cas.open(url) as store:
        for i, data in enumerate(_old_payloads()):
            store.put(data, f"old{i}")
            store.delete(f"old{i}")
    _backdate(tmp_path / "store", 2 * 3600)  # unreachable and past the grace period: collectable
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["cas", "blake3"])
    results, gc_results, stop, ready = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Barrier(WRITERS + 1)
    collector = ctx.Process(target=_collector, args=(url, stop, gc_results, ready))
    collector.start()
    writers = [ctx.Process(target=_writer, args=(url, w, results, ready)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    reported = [results.get(timeout=300) for _ in writers]
    for p in writers:
        p.join(timeout=60)
        assert p.exitcode == 0
    stop.set()
    passes, removed = gc_results.get(timeout=300)
    collector.join(timeout=60)
    assert collector.exitcode == 0 and passes >= 1
    refs = [r for refs, _ in reported for r in refs]
    runs = [r for _, runs in reported for r in runs]
    with cas.open(url) as store:
        numbers: dict[str, list[int]] = {}
        for ref, artifact, digest in refs:  # no version lost
            assert store.resolve(ref).hash == artifact
            assert blake3.blake3(store.get(ref)).hexdigest() == digest
            name, _, number = ref.partition("@")
            numbers.setdefault(name, []).append(int(number))
        for name, got in numbers.items():
            # A put of what the latest version holds returns that version (#16 item 7), so a number
            # may be reported twice; each was made for one artifact (above), and none skipped.
            made = sorted(set(got))
            assert made == list(range(1, len(made) + 1)) == [v.number for v in store.versions(name)], name
        for run_id in runs:  # no cache hit pointing at missing data
            run = store.run(run_id)
            hit = store.cached_run(run.cache_key)
            assert hit is not None and all(is_complete(store.repository, h) for h in hit.outputs.values())
        report = store.fsck()
        assert report.ok, str(report)
    print(
        f"\n{WRITERS} writers, {len(refs)} versions, {len(runs)} runs; gc ran {passes} times, removed {removed} files"
    )

"""Smoke tests of the scale benchmark's store generator and of the request-counting backend (no timing)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import cas
from benchmarks.counting import KINDS, CountingBackend, Counts, open_counting
from benchmarks.scale import Case, generate
from cas.backends.base import Backend
from cas.backends.local import LocalBackend


def test_generated_store_is_complete_and_reachable(tmp_path: Path) -> None:
    case = Case(300, 7)
    folder = generate(case, root=tmp_path)
    info = json.loads((folder / "ready.json").read_text())
    assert info["chunks"] == 300 and info["packs"] == 7
    with cas.open(folder / "store") as store:
        assert len(list(store.backend.list("packs/"))) >= 7  # the synthetic packs (kept), plus the puts' own
        assert len(store.get("bulk-0000")) == 300 * 64
        assert len(store.get("chunked")) == 4 << 20
        assert store.get("small") == {"small": True, "loss": 0.125}
        report = store.fsck()
        assert report.ok, report
        assert store.gc(grace=0, dry_run=True).objects == 0  # every synthetic chunk is reachable
    with cas.open(folder / "mirror") as mirror:
        assert mirror.get("small") == {"small": True, "loss": 0.125}
    assert generate(case, root=tmp_path) == folder  # cached: not made again
    assert not list(tmp_path.glob("*.tmp*"))


def test_counting_backend_overrides_every_backend_method() -> None:
    public = {n for n, v in inspect.getmembers(Backend) if not n.startswith("_") and callable(v)}
    assert public <= set(vars(CountingBackend))
    CountingBackend(LocalBackend("/nonexistent-never-created"))  # instantiable: nothing left abstract


def test_counts_by_kind(tmp_path: Path) -> None:
    store, counts = open_counting(tmp_path / "s")
    try:
        counts.reset()
        store.put(b"x" * 3_000_000, "big")  # chunked: a pack through a sink
        snap = counts.snapshot()
        assert snap["calls"]["sink.commit"] >= 1 and snap["requests"]["PUT"] >= 2
        assert snap["bytes_written"] >= 0 and set(snap["requests"]) <= set(KINDS)
        counts.reset()
        with cas.open(tmp_path / "s") as plain:  # another process's view: nothing counted
            assert plain.get("big") == b"x" * 3_000_000
        assert counts.total() == 0
        assert store.get("big") == b"x" * 3_000_000
        assert counts.requests["GET"] + counts.requests["RANGE"] >= 1
    finally:
        store.close()


def test_listing_and_deletes_are_weighted_as_s3_requests(tmp_path: Path) -> None:
    counts = Counts()
    backend = CountingBackend(LocalBackend(tmp_path), counts)
    for i in range(2_500):
        backend.write(f"objects/{i:05d}", b"")
    counts.reset()
    assert len(list(backend.list("objects/"))) == 2_500
    assert counts.requests["LIST"] == 3 and counts.listed_keys == 2_500
    backend.delete_many([f"objects/{i:05d}" for i in range(2_500)])
    assert counts.requests["DELETE"] == 3
    backend.write("a", b"1")
    backend.touch("a")
    assert backend.exists("a") and backend.size("a") == 1
    assert counts.requests["COPY"] == 1 and counts.requests["HEAD"] == 2
    with pytest.raises(FileNotFoundError):
        backend.read("missing")
    assert counts.calls["read"] == 1

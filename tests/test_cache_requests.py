"""Requests a cache hit costs (issue 21 item 11, issue 20): counted by benchmarks.counting, S3-weighted.

A request-counting backend around a local folder counts what the same calls
would send to S3 (a listing page, a GET, a PUT, a HEAD...), told that asking
costs a request (``cheap_exists`` False) so that cas takes its object-store
paths. Bounds, not timings. The chunk index is listed once per process
(``index/``, ``midx/``): at most two LISTs.
"""

from __future__ import annotations

from pathlib import Path

import distributed_steps as ds
import numpy as np

import cas
from benchmarks.counting import Counts
from benchmarks.counting import open_counting as _open_counting  # not installed: pytest puts the checkout on sys.path


def open_counting(url: Path) -> tuple[cas.Store, Counts]:
    store, counts = _open_counting(url)
    store.backend.cheap_exists = False  # as on S3
    return store, counts


def _train(data: np.ndarray, lr: float) -> dict[str, object]:
    return {"w": float(data.sum() * lr), "n": len(data)}


def _fill(url: Path) -> cas.Ref:
    with cas.open(url) as store:
        ref = store.put(np.arange(100_000.0), "data")
        store.step(_train)(store.get("data"), 0.5)
        return ref


def test_a_cached_step_with_a_ref_input_is_a_handful_of_requests(tmp_path: Path) -> None:
    ref = _fill(tmp_path / "s")
    store, counts = open_counting(tmp_path / "s")
    with store:
        counts.reset()
        _, run = store.step(_train).call(ref, 0.5)
        assert run.status == "cached"
        snap = counts.snapshot()
        # cache entry, run, output artifact and tree (GETs); the run object, its consumed/ and runlog/ entries (PUTs)
        assert snap["requests"].get("LIST", 0) <= 2, snap
        assert snap["requests"].get("PUT", 0) == 3, snap
        assert snap["total"] - snap["requests"].get("LIST", 0) <= 7, snap


def test_a_value_loaded_from_the_store_is_not_stored_again_by_a_hit(tmp_path: Path) -> None:
    _fill(tmp_path / "s")
    store, counts = open_counting(tmp_path / "s")
    with store:
        data = store.get("data")  # a writeable array: its bytes are fingerprinted
        counts.reset()
        _, run = store.step(_train).call(data, 0.5)
        assert run.status == "cached"
        snap = counts.snapshot()
        assert snap["requests"].get("PUT", 0) == 3 and snap["requests"].get("COPY", 0) == 0, snap
        assert snap["total"] - snap["requests"].get("LIST", 0) <= 7, snap


def test_a_loaded_array_changed_in_place_is_hashed_again(tmp_path: Path) -> None:
    _fill(tmp_path / "s")
    with cas.open(tmp_path / "s") as store:
        data = store.get("data")
        step = store.step(_train)
        assert step.call(data, 0.5)[1].status == "cached"
        data[0] = 1e9
        result, run = step.call(data, 0.5)
        assert run.status == "completed" and result["w"] == float(data.sum() * 0.5)


def test_a_cached_five_step_task(tmp_path: Path) -> None:
    ds.single_process(str(tmp_path / "s"))
    store, counts = open_counting(tmp_path / "s")
    with store:
        counts.reset()
        s = ds.steps_of(store)
        ds.run_values(s, ds.SETTINGS[0])
        snap = counts.snapshot()
        assert {r.status for r in store.log(limit=5)} == {"cached"}
        assert snap["requests"].get("LIST", 0) <= 2, snap
        # per step: cache entry, run, its outputs' artifacts and trees and loose chunks, the run's three records
        assert snap["total"] - snap["requests"]["LIST"] <= 45, snap

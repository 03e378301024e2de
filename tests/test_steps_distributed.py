"""Steps across processes (issue 21, items 6 to 9): pickling, Refs as inputs, duplicates, inputs kept fresh.

Races and gc run in real child processes (spawn), never mocks.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import pickle
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

import cas
from cas import store as store_mod
from cas.config import CONFIG_KEY
from cas.steps import DUPLICATE_OF, InputGuard

SPAWN = mp.get_context("spawn")


def _with_grace(url: Path, grace: float) -> None:
    """Give the store at ``url`` another gc grace period (its config file, as an operator would)."""
    with cas.open(url) as s:
        s.backend.write(CONFIG_KEY, dataclasses.replace(s.config, gc_grace=grace).to_bytes())


# -- item 7: stores and steps pickle -------------------------------------------------------------
def test_a_store_pickles_as_its_url_and_is_reopened_once_per_process(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s", allow_pickle=True) as store:
        data = pickle.dumps(store)
        assert len(data) < 400 and b"_thread" not in data
        assert pickle.loads(data) is store  # in the process that has it open: the same Store
        child = SPAWN.Pool(1)
        try:
            same, url, allow = child.apply(_reopened_twice, (data,))
        finally:
            child.close()
            child.join()
        assert same and url == store.url and allow is True


def _reopened_twice(data: bytes) -> tuple[bool, str, bool]:
    first, second = pickle.loads(data), pickle.loads(data)
    return first is second, first.url, first.allow_pickle


def test_a_closed_store_is_reopened_by_its_pickle(tmp_path: Path) -> None:
    store = cas.open(tmp_path / "s")
    data = pickle.dumps(store)
    store.close()
    again = pickle.loads(data)
    assert again is not store and not again.closed and again.url == store.url


def test_a_worker_never_creates_a_store_the_driver_did_not_have(tmp_path: Path) -> None:
    moved = store_mod._Reopen(str(tmp_path / "nowhere"), None, None, False, False, False, True, 256.0, 512 << 20)
    with pytest.raises(cas.StoreNotFoundError):
        store_mod.reopen(moved)
    assert not (tmp_path / "nowhere").exists()


def _double(x: int) -> int:
    return x * 2


def test_store_steps_pickle_before_and_after_a_call(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        step = store.step(_double)
        before = cloudpickle.dumps(step)
        assert step(2) == 4
        after = pickle.dumps(step)  # plain pickle too: the function is importable
        for data in (before, after):
            copy = pickle.loads(data)
            assert copy.store is store and copy.code == step.code and copy(2) == 4
        assert [r.status for r in store.log()] == ["cached", "cached", "completed"]


def test_a_default_store_step_pickles_after_the_driver_called_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAS_STORE", str(tmp_path / "s"))
    step = cas.step(_double)
    assert step(3) == 6
    copy = cloudpickle.loads(cloudpickle.dumps(step))
    assert copy(3) == 6 and copy.store is step.store


def test_default_steps_share_one_store_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAS_STORE", str(tmp_path / "s"))
    first, second = cas.step(_double, name="a"), cas.step(_double, name="b")
    first(1)
    second(1)
    assert first.store is second.store


def test_a_step_defined_in_a_function_pickles_by_value_with_its_code_hash(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:

        @store.step
        def local(x: int) -> int:
            return x + 1

        assert local(1) == 2
        child = SPAWN.Pool(1)
        try:
            status, code = child.apply(_call_pickled, (cloudpickle.dumps(local), 1))
        finally:
            child.close()
            child.join()
        assert status == "cached" and code == local.code  # the same cache key in the other process


def _call_pickled(data: bytes, arg: Any) -> tuple[str, bytes]:
    step = cloudpickle.loads(data)
    _, run = step.call(arg)
    return run.status, step.code


# -- item 8: Refs are inputs ----------------------------------------------------------------------
def _total(values: np.ndarray) -> float:
    return float(values.sum())


def test_a_ref_is_the_artifact_it_names(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        data = np.arange(10.0)
        ref = store.put(data, "data")
        total = store.step(_total)
        result, run = total.call(ref)
        assert result == 45.0
        assert run.inputs == {"values": bytes.fromhex(ref.hash)} and run.params == {}
        # the value itself (hashed again) and the Ref give one cache key
        again, hit = total.call(store.get("data"))
        assert hit.status == "cached" and hit.cache_key == run.cache_key and again == 45.0
        assert store.lineage("data", "down").runs()


def test_a_ref_from_another_worker_keeps_the_lineage_edge(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        make = store.step(np.arange, name="make")
        total = store.step(_total)
        ref = make.ref(5.0)
        assert isinstance(ref, cas.Ref) and len(pickle.dumps(ref)) < 200
        ref = pickle.loads(pickle.dumps(ref))  # what a Dask or Ray task returns
        _, run = total.call(ref)
        producer = store.producer(ref)
        assert producer is not None and run.parents == (producer.hash,)
        graph = store.lineage(run)
        assert {n.label.split(" ")[0] for n in graph.runs()} == {"make", "_total"}


def test_ref_returns_the_shape_of_the_result_and_a_hit_loads_nothing(tmp_path: Path) -> None:
    def pair(n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(n), np.ones(n)

    with cas.open(tmp_path / "s") as store:
        step = store.step(pair)
        first = step.ref(3)
        assert isinstance(first, tuple) and all(isinstance(r, cas.Ref) for r in first)
        assert step.ref(3) == first
        assert store.log()[0].status == "cached"
        assert np.array_equal(store.get(first[1]), np.ones(3))


def test_a_ref_that_is_no_hash_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.InvalidNameError, match="argument 'values'"):
            store.step(_total)(cas.Ref("not-a-hash"))
        assert list(store.log()) == []


# -- item 9: a concurrent duplicate is recorded as such ------------------------------------------
def _noisy(seed: int, delay: float) -> np.ndarray:
    time.sleep(delay)
    return np.random.default_rng().normal(size=1000)  # a different result every time


def _race(url: str, delay: float, barrier: Any, queue: Any) -> None:
    with cas.open(url) as store:
        step = store.step(_noisy, name="noisy", ignore=["delay"])
        barrier.wait()
        value, run = step.call(1, delay)
        ref = store.put(value, "model")
        queue.put((value.tobytes(), run.hash, run.metadata, ref.number, ref.hash))


@pytest.mark.slow  # two fresh interpreters
def test_two_workers_running_one_call_agree_on_the_result(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    cas.open(url).close()
    barrier, queue = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [SPAWN.Process(target=_race, args=(url, delay, barrier, queue)) for delay in (0.2, 2.0)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    values, runs, metas, numbers, hashes = zip(*results, strict=True)
    assert values[0] == values[1]  # the later one returns what the cache holds
    assert numbers == (1, 1) and hashes[0] == hashes[1]  # one version for the name
    with cas.open(url) as store:
        (winner,) = [r for r, m in zip(runs, metas, strict=True) if DUPLICATE_OF not in m]
        (dup,) = [m for m in metas if DUPLICATE_OF in m]
        assert dup[DUPLICATE_OF] == winner.hex()
        assert store.run_index.cached(store.run(winner).cache_key) == winner
        assert store.run(winner).outputs["output"].hex() == hashes[0]
        assert [v.ref.number for v in store.history("model")] == [1]
        assert store.fsck().ok


# -- item 6 (writer side): a long step keeps its inputs -------------------------------------------
def _slow_total(values: np.ndarray, seconds: float, gc_ran: Any) -> float:
    assert gc_ran.wait(120), "the gc process never ran"
    time.sleep(seconds)
    return float(values.sum())


def _collector(url: str, grace: float, seconds: float, ran: Any) -> None:
    with cas.open(url) as store:
        until = time.time() + seconds
        while time.time() < until:
            store.gc(grace=grace)
            ran.set()
            time.sleep(0.05)


def _step_beside_gc(url: Path, value: Any, grace: float, seconds: float) -> tuple[Any, cas.Run]:
    """Call a step that runs ``seconds`` while another process collects with ``grace``, all along."""
    ran = SPAWN.Event()
    gc = SPAWN.Process(target=_collector, args=(str(url), grace, seconds + 1.0, ran))
    gc.start()
    try:
        with cas.open(url) as store:
            return store.step(_slow_total, ignore=["seconds", "gc_ran"]).call(value, seconds, ran)  # type: ignore[no-any-return]
    finally:
        gc.join(timeout=120)


@pytest.mark.slow  # a gc process running beside a 3-second step
def test_a_step_longer_than_the_grace_period_keeps_its_inputs(tmp_path: Path) -> None:
    url = tmp_path / "s"
    _with_grace(url, 1.0)
    with cas.open(url) as store:
        ref = store.put(np.arange(200_000.0))  # no name: nothing but the running step needs it
    time.sleep(1.5)  # older than the grace period already
    result, run = _step_beside_gc(url, ref, 1.0, 3.0)
    assert run.status == "completed" and result == float(np.arange(200_000.0).sum())
    with cas.open(url) as store:
        report = store.fsck()
        assert report.ok, str(report)


@pytest.mark.slow  # a gc process with no grace at all, beside a running step
def test_an_input_collected_under_a_running_step_fails_it_with_a_typed_error(tmp_path: Path) -> None:
    url = tmp_path / "s"
    _with_grace(url, 0.4)
    with cas.open(url) as store:
        ref = store.put(np.arange(1000.0))
    with pytest.raises(cas.InputGoneError, match="_slow_total"):
        _step_beside_gc(url, ref, 0.0, 1.0)
    with cas.open(url) as store:
        assert [r.status for r in store.log()] == []  # no run names the missing input
        assert store.fsck().ok


def test_the_input_guard_refreshes_at_once_and_reports_a_gone_input(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        ref = store.put(np.arange(300_000.0))
        d = bytes.fromhex(ref.hash)
        touched: list[str] = []
        real_touch = store.backend.touch

        def touch(key: str) -> None:
            touched.append(key)
            real_touch(key)

        store.backend.touch = touch  # type: ignore[method-assign]
        with InputGuard(store.repository, {d}, 3600.0) as guard:
            time.sleep(0.3)
        guard.check()
        assert len(touched) >= 3  # artifact, tree, chunk
        for key in list(store.backend.list("objects/")):
            if d.hex()[2:] in key:
                store.backend.delete(key)
        guard = InputGuard(store.repository, {d}, 3600.0)
        guard._closures.clear()
        with pytest.raises(cas.InputGoneError):
            guard.check()


def test_inputs_a_step_just_stored_cost_no_refresh(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        d = bytes.fromhex(store.put(np.arange(300_000.0)).hash)
        calls: list[str] = []
        for name in ("touch", "read", "exists"):
            real = getattr(store.backend, name)
            setattr(store.backend, name, lambda key, *a, _real=real, _n=name: calls.append(_n) or _real(key, *a))
        with InputGuard(store.repository, set(), 3600.0, fresh={d}) as guard:
            time.sleep(0.1)
        guard.check()
        assert calls == []


# -- item 8: a value keeps its cache key when it crosses to another worker -----------------------
def _count(n: int) -> int:
    return n + 1


def _describe(config: dict[str, Any]) -> str:
    return ",".join(sorted(config))


def _settings(n: int) -> dict[str, Any]:
    return {"depth": n, "name": "forest"}


@pytest.mark.parametrize(
    ("make", "use", "arg"),
    [(_count, _count, 10**9), (_settings, _describe, 3), (np.arange, _total, 6.0)],
    ids=["int", "dict", "array"],
)
def test_a_value_that_crossed_to_another_worker_gives_the_same_cache_key(
    tmp_path: Path, make: Any, use: Any, arg: Any
) -> None:
    with cas.open(tmp_path / "s") as store:
        first, second = store.step(make, name="make"), store.step(use, name="use")
        value = first(arg)
        _, here = second.call(value)  # the value this process made: known by provenance
        travelled = pickle.loads(pickle.dumps(value))  # what a Dask or Ray worker receives
        assert travelled is not value
        _, there = second.call(travelled)
        assert there.status == "cached" and there.cache_key == here.cache_key
        producer = store.log(step="make")[0]
        assert here.parents == (producer.hash,)  # the lineage edge where the value was known
        assert producer.outputs["output"] in here.inputs.values()

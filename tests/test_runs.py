"""Runs, caching, log and lineage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import executed, run_example

import cas
from cas.runs import Run


def test_second_run_in_another_process_is_all_cache_hits(tmp_path: Path) -> None:
    store, trace = tmp_path / "store", tmp_path / "trace"
    first = run_example(store, trace)
    assert executed(trace) == ["make_data", "split", "standardize", "evaluate"]
    second = run_example(store, trace)
    assert executed(trace) == []  # no step body ran
    assert first == second
    with cas.open(store) as s:
        runs = s.log()
        assert [r.status for r in runs[:4]] == ["cached"] * 4
        assert [r.status for r in runs[4:]] == ["completed"] * 4
        assert all(r.cached_from is not None for r in runs[:4])
        assert len({r.pipeline["id"] for r in runs[:4]}) == 1 and runs[0].pipeline["name"] == "example"


def test_a_parameter_change_reruns_that_step_and_downstream_only(tmp_path: Path) -> None:
    store, trace = tmp_path / "store", tmp_path / "trace"
    run_example(store, trace)
    executed(trace)
    run_example(store, trace, "scale=2.0")
    assert executed(trace) == ["standardize", "evaluate"]
    run_example(store, trace, "ratio=0.5", "scale=2.0")
    assert executed(trace) == ["split", "standardize", "evaluate"]


def _pipeline(s: cas.Store, trace: list[str], scale: float = 1.0, code_version: int = 1):  # type: ignore[no-untyped-def]
    @s.step(name="load")
    def load(n: int) -> np.ndarray:
        trace.append("load")
        return np.arange(n, dtype=float)

    if code_version == 1:

        @s.step(name="fit")
        def fit(data: np.ndarray, scale: float) -> float:
            trace.append("fit")
            return float(data.sum() * scale)

    else:

        @s.step(name="fit")
        def fit(data: np.ndarray, scale: float) -> float:
            trace.append("fit")
            return float(data.sum() * scale) + 1

    return fit(load(10), scale)


def test_code_change_invalidates_the_step(local_store: cas.Store) -> None:
    trace: list[str] = []
    assert _pipeline(local_store, trace) == 45.0
    assert _pipeline(local_store, trace) == 45.0
    assert trace == ["load", "fit"]
    assert _pipeline(local_store, trace, code_version=2) == 46.0
    assert trace == ["load", "fit", "fit"]


def test_deleted_output_turns_a_hit_into_a_rerun(store: cas.Store) -> None:
    trace: list[str] = []
    _pipeline(store, trace)
    fit_run = store.log(step="fit")[0]
    (output,) = fit_run.outputs.values()
    store.backend.delete(f"objects/{output.hex()[:2]}/{output.hex()[2:]}")  # as a bad gc would
    assert _pipeline(store, trace) == 45.0
    assert trace == ["load", "fit", "fit"]
    assert store.get(output.hex()) == 45.0  # stored again


def test_missing_chunk_of_an_output_is_not_a_hit(local_store: cas.Store) -> None:
    calls = []

    @local_store.step
    def big() -> bytes:
        calls.append(1)
        return os.urandom(3 << 20)

    big()
    for key in list(local_store.backend.list("packs/")):
        local_store.backend.delete(key)
    for pack_id in list(local_store.objects.pack_ids()):
        local_store.objects.forget_pack(pack_id)
    big()
    assert len(calls) == 2


def test_failed_runs_are_recorded_reraised_and_never_hits(local_store: cas.Store) -> None:
    attempts = []

    @local_store.step
    def flaky(x: int) -> int:
        attempts.append(x)
        raise RuntimeError("boom")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom"):
            flaky(1)
    assert len(attempts) == 2
    failed = local_store.log(step="flaky")
    assert [r.status for r in failed] == ["failed", "failed"] and "boom" in (failed[0].error or "")


def test_options_cache_salt_ignore_expiry_and_depends_on(local_store: cas.Store) -> None:
    calls: list[str] = []

    @local_store.step(cache=False)
    def uncached(x: int) -> int:
        calls.append("uncached")
        return x

    uncached(1), uncached(1)
    assert calls.count("uncached") == 2

    @local_store.step(ignore=["verbose"])
    def quiet(x: int, verbose: bool = False) -> int:
        calls.append("quiet")
        return x

    quiet(1, verbose=True), quiet(1, verbose=False)
    assert calls.count("quiet") == 1

    def salted(salt: str):  # type: ignore[no-untyped-def]
        @local_store.step(name="salted", salt=salt)
        def f(x: int) -> int:
            calls.append("salted")
            return x

        return f

    salted("a")(1), salted("a")(1), salted("b")(1)
    assert calls.count("salted") == 2

    @local_store.step(expires_after=0.05)
    def fresh(x: int) -> int:
        calls.append("fresh")
        return x

    fresh(1), fresh(1)
    time.sleep(0.1)
    fresh(1)
    assert calls.count("fresh") == 2

    def helper_v1(x: int) -> int:
        return x

    def helper_v2(x: int) -> int:
        return x + 1

    def with_helper(helper):  # type: ignore[no-untyped-def]
        @local_store.step(name="helped", depends_on=[helper])
        def f(x: int) -> int:
            calls.append("helped")
            return helper(x)

        return f

    assert with_helper(helper_v1)(1) == 1
    assert with_helper(helper_v1)(1) == 1
    assert with_helper(helper_v2)(1) == 2
    assert calls.count("helped") == 2


def test_multiple_outputs(local_store: cas.Store) -> None:
    @local_store.step
    def pair() -> tuple[int, str]:
        return 1, "a"

    @local_store.step
    def named() -> dict[str, object]:
        return {"weights": np.ones(3), "score": 0.5}

    @local_store.step(outputs=["left", "right"])
    def halves(x: list[int]) -> tuple[list[int], list[int]]:
        return x[:1], x[1:]

    for _ in range(2):
        assert pair() == (1, "a")
        result = named()
        assert result["score"] == 0.5 and np.array_equal(result["weights"], np.ones(3))
        assert halves([1, 2, 3]) == ([1], [2, 3])
    runs = local_store.log(step="halves")
    assert set(runs[0].outputs) == {"left", "right"} and runs[0].status == "cached"
    assert set(local_store.log(step="named")[0].outputs) == {"output"}  # a returned dict is one artifact (#16 item 8)


def test_inputs_are_hashed_by_content(local_store: cas.Store) -> None:
    calls = []

    @local_store.step
    def total(data: np.ndarray) -> float:
        calls.append(1)
        return float(data.sum())

    total(np.arange(100.0))
    total(np.arange(100.0))  # equal content, another object: a hit
    total(np.arange(101.0))
    assert len(calls) == 2
    run = local_store.log(step="total")[0]
    assert "data" in run.inputs and run.params == {}


def test_lineage_up_and_down(local_store: cas.Store) -> None:
    @local_store.step
    def raw(n: int) -> list[int]:
        return list(range(n))

    @local_store.step
    def double(xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    @local_store.step
    def total(xs: list[int], ys: list[int]) -> int:
        return sum(xs) + sum(ys)

    a = raw(5)
    b = double(a)
    result = total(a, b)
    model = local_store.put(result, "result")
    assert local_store.get("result") == 30
    total_run = local_store.log(step="total")[0]
    (out,) = total_run.outputs.values()
    up = local_store.lineage(out.hex(), direction="up")
    assert sorted(n.attrs["step"].rsplit(".", 1)[-1] for n in up.runs()) == ["double", "raw", "total"]
    raw_out = local_store.log(step="raw")[0].outputs["output"]
    down = local_store.lineage(raw_out.hex(), direction="down")
    assert sorted(n.attrs["step"].rsplit(".", 1)[-1] for n in down.runs()) == ["double", "total"]
    assert local_store.lineage(raw_out.hex(), direction="down", depth=1).runs().__len__() == 2  # double and total
    shallow = local_store.lineage(out.hex(), direction="up", depth=1)
    assert [n.attrs["step"].rsplit(".", 1)[-1] for n in shallow.runs()] == ["total"]
    assert any(n.label.startswith("result@1") for n in up.artifacts())
    assert model.hash == out.hex()
    dot, mermaid, data = up.to_dot(), up.to_mermaid(), up.to_json()
    assert dot.startswith("digraph") and "->" in dot
    assert mermaid.startswith("flowchart LR") and "-->|xs|" in mermaid
    assert {e["label"] for e in data["edges"]} >= {"xs", "ys", "output"}
    assert total_run.parents and set(total_run.parents) == {
        local_store.log(step="raw")[0].hash,
        local_store.log(step="double")[0].hash,
    }


def test_log_order_content_and_versions(local_store: cas.Store) -> None:
    @local_store.step
    def produce(i: int) -> str:
        return f"v{i}"

    for i in range(3):
        local_store.put(produce(i), "thing")
    local_store.put("by hand", "thing")
    runs = local_store.log()
    assert [r.params["i"] for r in runs] == [2, 1, 0]
    assert all(isinstance(r, Run) for r in runs) and runs[0].ended >= runs[1].ended
    assert len(local_store.log(limit=2)) == 2
    text = str(runs[0])
    assert "produce" in text and "completed" in text
    versions = local_store.log("thing")
    assert [str(v.ref) for v in versions] == ["thing@4", "thing@3", "thing@2", "thing@1"]
    assert versions[0].run is None and versions[1].run is not None and versions[1].run.params == {"i": 2}
    assert "put directly" in str(versions[0])


def test_record_run_and_cached_run_low_level(store: cas.Store) -> None:
    data = store.put(b"input bytes", "data")
    model = store.put({"w": [1, 2]}, "model")
    run = store.record_run(
        step="train", inputs={"data": "data"}, outputs={"model": model}, params={"lr": 0.1}, message="by hand"
    )
    assert run.inputs == {"data": bytes.fromhex(data.hash)} and run.message == "by hand"
    assert store.cached_run(run.cache_key) == run
    assert store.run(run.id) == run and store.run(run.short) == run
    assert store.log()[0] == run
    failed = store.record_run(step="train", inputs={"data": "data"}, params={"lr": 0.1}, status="failed", error="oops")
    assert store.cached_run(failed.cache_key) == run  # a failure never replaces the cached run
    with pytest.raises(cas.InvalidArgumentError):
        store.record_run(step="x", status="weird")
    with pytest.raises(cas.RefNotFoundError):
        store.record_run(step="x", inputs={"a": "no-such-name"})


def test_run_index_is_rebuildable(local_store: cas.Store) -> None:
    @local_store.step
    def f(x: int) -> int:
        return x + 1

    f(1)
    f(2)
    before = [r.hash for r in local_store.log()]
    local_store.run_index.clear()
    assert local_store.log() == []
    assert local_store.rebuild_run_index() == 2
    assert [r.hash for r in local_store.log()] == before
    assert local_store.cached_run(local_store.log()[0].cache_key) is None  # cleared, and runs may be foreign
    assert local_store.rebuild_run_index(trust_runs=True) == 2
    assert local_store.cached_run(local_store.log()[0].cache_key) is not None


def test_run_objects_decode_strictly() -> None:
    with pytest.raises(cas.CorruptObjectError):
        Run.from_bytes(b"\x80", bytes(32))

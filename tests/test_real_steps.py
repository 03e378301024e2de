"""Steps as ML code uses them (#16 items 5 and 8).

A step's pickle policy (``@cas.step(allow_pickle=True)``: "I trust the outputs
this step stored here"), errors that speak of the step instead of ``put``, and
a returned value that is one artifact, so ``store.put(result, name)`` links the
name to the run that produced it, also after a cache hit and in a fresh process.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cas
from cas.steps import cache_key

ROOT = Path(__file__).resolve().parent.parent


class Opaque:
    """A value no materializer handles (not a dataclass, not plain data)."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.weights == self.weights


def _train(n: int) -> Opaque:
    return Opaque([0.5] * n)


def _steps(store: cas.Store, allow_pickle: bool | None) -> cas.Step:
    # Step() around one function: the same code hash whatever the policy, so one cache entry.
    return cas.Step(_train, store=store, name="train", allow_pickle=allow_pickle)


# -- item 5: the step's own pickle policy --------------------------------------------------
def test_an_output_no_materializer_handles_fails_speaking_of_the_step(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.UnsupportedTypeError) as info:
            _steps(store, None)(3)
        message = str(info.value)
        assert "step 'train' returned a " in message and "Opaque" in message
        assert "@cas.step(allow_pickle=True)" in message
        assert "put(" not in message  # the user never called put
        assert isinstance(info.value.__cause__, cas.UnsupportedTypeError)
        (failed,) = store.log(step="train")
        assert failed.status == "failed" and "step 'train'" in (failed.error or "")


def test_step_allow_pickle_stores_and_trusts_its_cache_hits(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        value, run = _steps(store, True).call(3)
        assert value == Opaque([0.5] * 3) and run.status == "completed"
        again, hit = _steps(store, True).call(3)
        assert hit.status == "cached" and again == value
    with cas.open(tmp_path / "s") as fresh:  # a fresh Store object: nothing remembered
        again, hit = _steps(fresh, True).call(3)
        assert hit.status == "cached" and again == value and again is not value


def test_a_pickled_cache_hit_without_the_steps_consent_speaks_of_the_step(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        _steps(store, True)(3)
    with cas.open(tmp_path / "s") as fresh:
        with pytest.raises(cas.UntrustedPickleError) as info:
            _steps(fresh, None)(3)
        message = str(info.value)
        assert "step 'train' has a cached output that is a pickle" in message
        assert "@cas.step(allow_pickle=True)" in message
    with cas.open(tmp_path / "s", trust_pickle=True) as trusting:  # trusting the whole store still works
        assert _steps(trusting, None)(3) == Opaque([0.5] * 3)


def test_store_allow_pickle_stores_but_a_hit_needs_the_steps_consent(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s", allow_pickle=True) as store:
        step = _steps(store, None)
        assert step(3) == Opaque([0.5] * 3)  # the store's allow_pickle stores it
        with pytest.raises(cas.UntrustedPickleError, match="step 'train' has a cached output"):
            step(3)
        assert _steps(store, True)(3) == Opaque([0.5] * 3)  # the same cache entry, now trusted


def test_step_allow_pickle_false_overrides_the_store(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s", allow_pickle=True) as store:
        with pytest.raises(cas.UnsupportedTypeError, match="step 'train' returned"):
            _steps(store, False)(3)


def _refuse() -> None:
    raise RuntimeError("this object can not be rebuilt")


class Unloadable:
    """Pickles, but never unpickles: refused at put even with pickle allowed (#16 item 6)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def test_an_output_even_pickle_can_not_store_does_not_advise_allow_pickle(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.UnsupportedTypeError) as info:
            cas.Step(Unloadable, store=store, name="make", allow_pickle=True)()
        message = str(info.value)
        assert message.startswith("step 'make' returned a ") and "even with pickle" in message
        assert "@cas.step(allow_pickle=True)" not in message


def test_store_step_takes_allow_pickle(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:

        @store.step(name="fit", allow_pickle=True)
        def fit(n: int) -> Opaque:
            return Opaque([1.0] * n)

        assert fit(2) == fit(2) == Opaque([1.0, 1.0])
        assert [r.status for r in store.log(step="fit")] == ["cached", "completed"]


def test_an_input_no_materializer_handles_names_the_step_and_the_argument(tmp_path: Path) -> None:
    def score(model: Opaque, scale: float) -> float:
        return sum(model.weights) * scale

    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.UnsupportedTypeError) as info:
            cas.Step(score, store=store, name="score")(Opaque([1.0]), 2.0)
        message = str(info.value)
        assert "step 'score'" in message and "argument 'model'" in message and "put(" not in message
        assert "allow_pickle=True" in message and "ignore=['model']" in message
        trusted = cas.Step(score, store=store, name="score", allow_pickle=True)
        assert trusted(Opaque([1.0]), 2.0) == trusted(Opaque([1.0]), 2.0) == 2.0  # equal content: a hit
        run = store.log(step="score")[0]
        assert run.status == "cached" and set(run.inputs) == {"model"}


def test_user_exceptions_propagate_unchanged(tmp_path: Path) -> None:
    raised: list[BaseException] = []

    def boom(kind: str) -> None:
        exc: Exception = cas.UnsupportedTypeError("mine") if kind == "cas" else KeyError("mine")
        raised.append(exc)
        raise exc

    with cas.open(tmp_path / "s") as store:
        step = cas.Step(boom, store=store, name="boom")
        for kind in ("cas", "plain"):
            with pytest.raises(Exception) as info:
                step(kind)
            assert info.value is raised[-1] and info.value.args == ("mine",)
        assert [r.status for r in store.log(step="boom")] == ["failed", "failed"]


def test_a_result_that_does_not_match_declared_outputs_names_the_step(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        step = cas.Step(lambda: [1, 2], store=store, name="pair", outputs=["a", "b"])
        with pytest.raises(TypeError, match="step 'pair' declares outputs"):
            step()
        assert store.log(step="pair")[0].status == "failed"


def test_a_damaged_cached_output_speaks_of_the_step_and_keeps_its_class(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8).tobytes()  # chunked, packed

    def load() -> bytes:
        return data

    with cas.open(tmp_path / "s") as store:
        cas.Step(load, store=store, name="load")()
        (pack,) = [k for k in store.backend.list("packs/") if not k.endswith(".idx")]
        raw = bytearray(store.backend.read(pack))
        raw[len(raw) // 2] ^= 0xFF
        store.backend.write(pack, bytes(raw))
    with cas.open(tmp_path / "s") as fresh:
        with pytest.raises(cas.IntegrityError) as info:
            cas.Step(load, store=fresh, name="load")()
        assert "step 'load', loading cached output 'output'" in str(info.value)
        assert isinstance(info.value.__cause__, cas.IntegrityError)


def test_a_cached_output_this_process_can_not_load_is_recomputed(tmp_path: Path) -> None:
    from cas.objects import Artifact

    calls = []

    def fit(n: int) -> Opaque:
        calls.append(n)
        return Opaque([2.0] * n)

    with cas.open(tmp_path / "s") as store:
        step = cas.Step(fit, store=store, name="fit", allow_pickle=True)
        ref = store.put(Opaque([9.0]), allow_pickle=True)
        art = Artifact.from_bytes(store.objects.get_object(bytes.fromhex(ref.hash)))
        old = dataclasses.replace(art, metadata={**art.metadata, "python": "2.7.18"})
        planted = store.objects.put_object(old.to_bytes())
        key = cache_key("fit", step.code, {"n": 1}, {}, None)
        store.record_run(step="fit", code=step.code, params={"n": 1}, cache_key=key, outputs={"output": planted},
                         returns="single", order=("output",))  # fmt: skip
        assert store.cached_run(key) is not None
        assert step(1) == Opaque([2.0])  # written by another Python: run again, not "pass allow_python_mismatch"
        assert calls == [1] and store.log(step="fit")[0].status == "completed"


# -- a real model, if scikit-learn is installed ---------------------------------------------
def test_a_scikit_learn_model_through_a_step(tmp_path: Path) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    pytest.importorskip("skops")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(int)

    def train(x: np.ndarray, y: np.ndarray, c: float) -> Any:
        return linear_model.LogisticRegression(C=c).fit(x, y)

    def train_with_code(x: np.ndarray, y: np.ndarray, c: float) -> Any:  # a lambda: only pickle stores it
        return make_pipeline(FunctionTransformer(lambda v: v), linear_model.LogisticRegression(C=c)).fit(x, y)

    with cas.open(tmp_path / "s") as store:
        # since issue 18 a plain estimator is stored natively (cas.sklearn): no consent either way
        model, run = cas.Step(train, store=store, name="train").call(x, y, 1.0)
        again, hit = cas.Step(train, store=store, name="train").call(x, y, 1.0)
        assert run.status == "completed" and hit.status == "cached"
        assert np.array_equal(again.coef_, model.coef_) and np.array_equal(again.predict(x), model.predict(x))
        named = store.put(again, "model")  # the loaded model is written to the same bytes
        assert named.hash == run.outputs["output"].hex() and store.producer("model") == run
        # one holding code still needs the step's consent (what this test checked before issue 18)
        with pytest.raises(cas.UnsupportedTypeError) as info:
            cas.Step(train_with_code, store=store, name="code")(x, y, 1.0)
        assert "step 'code' returned a sklearn." in str(info.value) and "Pipeline" in str(info.value)
        assert "put(" not in str(info.value)
        step = cas.Step(train_with_code, store=store, name="code", allow_pickle=True)
        model, run = step.call(x, y, 1.0)
        again, hit = step.call(x, y, 1.0)
        assert run.status == "completed" and hit.status == "cached"
        assert np.array_equal(again.predict(x), model.predict(x))


# -- fresh processes ------------------------------------------------------------------------
FRESH = r"""
import sys, cas

class Opaque:
    def __init__(self, w):
        self.w = w

def train(n):
    return Opaque([n] * 3)

store = cas.open(sys.argv[1])
step = cas.Step(train, store=store, name="train", allow_pickle={"1": True, "0": None}[sys.argv[2]])
try:
    value, run = step.call(4)
except cas.UntrustedPickleError as exc:
    print("untrusted:", exc)
else:
    named = store.put(value, "model", allow_pickle=True)
    print(run.status, value.w, run.outputs["output"].hex() == named.hash or "rehashed")
"""

FRESH_SKLEARN = r"""
import sys, cas
import numpy as np
from sklearn.linear_model import LogisticRegression

def train(x, y):
    return LogisticRegression().fit(x, y)

rng = np.random.default_rng(1)
x = rng.normal(size=(300, 3))
y = (x[:, 0] > 0).astype(int)
store = cas.open(sys.argv[1])
step = cas.Step(train, store=store, name="train", allow_pickle={"1": True, "0": None}[sys.argv[2]])
try:
    model, run = step.call(x, y)
except cas.UntrustedPickleError as exc:
    print("untrusted:", exc)
else:
    print(run.status, round(float(model.score(x, y)), 3))
"""


def _fresh(code: str, store: Path, allow: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, str(store), allow],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "random"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return out.stdout.strip()


def test_a_pickled_cache_hit_in_a_fresh_process(tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert _fresh(FRESH, store, "1") == "completed [4, 4, 4] True"
    assert _fresh(FRESH, store, "1") == "cached [4, 4, 4] True"
    refused = _fresh(FRESH, store, "0")
    assert refused.startswith("untrusted: step 'train' has a cached output that is a pickle")


@pytest.mark.slow  # a fresh interpreter (or a probe process) per case
def test_a_scikit_learn_cache_hit_in_a_fresh_process(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    store = tmp_path / "s"
    first = _fresh(FRESH_SKLEARN, store, "1")
    assert first.startswith("completed ")
    assert _fresh(FRESH_SKLEARN, store, "1") == first.replace("completed", "cached")
    # stored natively since issue 18 (cas.sklearn): a hit needs no consent
    assert _fresh(FRESH_SKLEARN, store, "0") == first.replace("completed", "cached")


# -- item 8: one returned value, one artifact, linked to its run ----------------------------
VALUES = {
    "float": lambda: 0.93,
    "dict": lambda: {"weights": np.arange(4.0), "bias": 0.5, "classes": ["a", "b"]},
    "array": lambda: np.linspace(0.0, 1.0, 1000).reshape(100, 10),
    "frame": lambda: pd.DataFrame({"x": np.arange(50.0), "label": [f"r{i}" for i in range(50)]}),
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_putting_a_step_result_links_the_name_to_its_run(tmp_path: Path, kind: str) -> None:
    make = VALUES[kind]

    def produce(seed: int) -> Any:
        return make()

    with cas.open(tmp_path / "s") as store:
        step = cas.Step(produce, store=store, name="produce")
        result, run = step.call(1)
        assert run.returns == "single" and list(run.outputs) == ["output"]
        ref = store.put(result, "model")
        assert ref.hash == run.outputs["output"].hex()  # the same content, the same artifact
        producer = store.producer("model")
        assert producer is not None and producer.hash == run.hash
        assert store.log("model")[0].run == run
        assert [n.id for n in store.lineage("model", direction="up").runs()] == [run.hash.hex()]
    with cas.open(tmp_path / "s") as fresh:  # a cache hit in a fresh Store: the loaded value, put again
        again, hit = cas.Step(produce, store=fresh, name="produce").call(1)
        assert hit.status == "cached" and hit.cached_from == run.hash
        ref2 = fresh.put(again, "model2")
        assert ref2.hash == run.outputs["output"].hex()
        assert fresh.producer("model2") == run


def test_a_returned_dict_is_one_artifact_the_caller_gets_back(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        step = cas.Step(lambda: {"b": 1, "a": [2]}, store=store, name="metrics")
        first, run = step.call()
        again, hit = step.call()
        assert first == again == {"b": 1, "a": [2]} and list(again) == ["b", "a"]
        assert list(run.outputs) == ["output"] and run.returns == "single" and hit.returns == "single"
        assert store.get(run.outputs["output"].hex()) == {"b": 1, "a": [2]}


def test_tuples_and_declared_outputs_still_split(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        pair = cas.Step(lambda: (1, "a"), store=store, name="pair")
        assert pair() == pair() == (1, "a")
        assert list(store.log(step="pair")[0].outputs) == ["output_0", "output_1"]
        named = cas.Step(lambda: {"score": 0.5, "model": [1.0]}, store=store, name="named", outputs=["model", "score"])
        first, run = named.call()
        again, hit = named.call()
        assert first == again == {"score": 0.5, "model": [1.0]} and list(again) == ["score", "model"]
        assert run.returns == "dict" and set(run.outputs) == {"model", "score"} and hit.status == "cached"
        assert store.put([1.0]).hash == run.outputs["model"].hex()


def test_an_old_run_that_split_a_dict_still_joins_on_a_cache_hit(tmp_path: Path) -> None:
    calls = []

    def old(seed: int) -> dict[str, Any]:
        calls.append(seed)
        return {"weights": [1.0], "score": 0.5}

    with cas.open(tmp_path / "s") as store:
        step = cas.Step(old, store=store, name="old")
        key = cache_key("old", step.code, {"seed": 1}, {}, None)
        outputs = {"weights": store.put([1.0]), "score": store.put(0.5)}
        store.record_run(step="old", code=step.code, params={"seed": 1}, cache_key=key, outputs=outputs,
                         returns="dict", order=("weights", "score"))  # fmt: skip
        result, hit = step.call(1)
        assert calls == [] and hit.status == "cached" and hit.returns == "dict"
        assert result == {"weights": [1.0], "score": 0.5} and list(result) == ["weights", "score"]


def test_a_cached_run_of_a_shape_the_step_never_returns_is_recomputed(tmp_path: Path) -> None:
    """A run recorded by hand under the step's key, "single" with two outputs: no ValueError, the step runs."""
    calls = []

    def one(seed: int) -> float:
        calls.append(seed)
        return 0.5

    with cas.open(tmp_path / "s") as store:
        step = cas.Step(one, store=store, name="one")
        key = cache_key("one", step.code, {"seed": 1}, {}, None)
        outputs = {"a": store.put(1.0), "b": store.put(2.0)}
        store.record_run(step="one", code=step.code, params={"seed": 1}, cache_key=key, outputs=outputs,
                         returns="single", order=("a", "b"))  # fmt: skip
        assert store.cached_run(key) is not None
        assert step(1) == 0.5 and calls == [1]
        assert step(1) == 0.5 and calls == [1]  # the step's own run answers now


# -- a step that returns a file or folder ----------------------------------------------------------


def test_a_step_returning_a_folder_gives_its_files_back_on_a_cache_hit(tmp_path: Path) -> None:
    store = cas.open(tmp_path / "store")
    calls = []

    @store.step
    def export(n: int) -> Path:
        calls.append(n)
        out = tmp_path / f"work{len(calls)}" / "report"
        (out / "parts").mkdir(parents=True)
        (out / "summary.txt").write_text(f"n={n}\n")
        (out / "parts" / "data.bin").write_bytes(bytes(range(256)) * 100)
        return out

    first = export(3)
    again = export(3)  # a cache hit: the files, written into a new folder under the stored name
    assert calls == [3]
    assert again != first and again.name == "report" and again.is_dir()
    assert (again / "summary.txt").read_text() == "n=3\n"
    assert (again / "parts" / "data.bin").read_bytes() == bytes(range(256)) * 100
    assert store.log(limit=1)[0].status == "cached"


def test_a_step_returning_a_file_gives_it_back_on_a_cache_hit(tmp_path: Path) -> None:
    store = cas.open(tmp_path / "store")

    @store.step
    def write(text: str) -> Path:
        out = tmp_path / "model.txt"
        out.write_text(text)
        return out

    first = write("weights")
    first.unlink()  # gone from where the step wrote it: the cache hit still gives the file back
    again = write("weights")
    assert again.name == "model.txt" and again.read_text() == "weights" and again != first


def test_a_cached_file_output_never_goes_where_the_store_says(tmp_path: Path) -> None:
    """Another writer of the store plants a run whose file output names itself '../../evil'."""
    store = cas.open(tmp_path / "store")
    src = tmp_path / "a.txt"
    src.write_text("planted")
    ref = store.put(src)
    artifact = store._artifact(store.resolve(ref))
    hostile = cas.objects.Artifact(
        tree=artifact.tree, python_type=artifact.python_type, materializer="cas.path",
        materializer_version=artifact.materializer_version, size=artifact.size,
        metadata={**artifact.metadata, "name": "../../evil"}, user_metadata={},
    )  # fmt: skip
    planted = store.objects.put_object(hostile.to_bytes())

    def victim(x: int) -> Path:
        raise AssertionError("a cache hit must not run the step")

    step = cas.Step(victim, store=store, name="victim")
    key = cas.steps.cache_key(step.name, step.code, {"x": 1}, {}, None)
    store.record_run(
        step=step.name, code=step.code, params={"x": 1}, inputs={}, outputs={"output": planted},
        cache_key=key, status="completed", returns="single", order=("output",),
    )  # fmt: skip
    got = step(1)
    assert got.name == cas.hashing.short(planted.hex()) and got.read_text() == "planted"
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()

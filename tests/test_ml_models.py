"""scikit-learn (skops), xgboost and lightgbm models: native round trips, the trust list, hostile stores.

Models are small (a few hundred rows, tens of trees: under the 1 MiB chunking
threshold, except the forest's node arrays, which cross it in
test_a_forest_dedups_its_unchanged_trees). Hostile files are planted hash-valid,
as another writer of the store could (see tests/test_trust_materializers.py).
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'cas-store[sklearn]')")
pytest.importorskip("skops", reason="skops is not installed (pip install 'cas-store[sklearn]')")

from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import cas  # noqa: E402
from cas.hashing import to_hex  # noqa: E402
from cas.objects import Artifact  # noqa: E402
from cas.trees import TreeWriter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
X, Y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=0)


def plant(store: cas.Store, files: dict[str, bytes], materializer: str, python_type: str) -> str:
    """Put hash-valid files and an artifact naming them; return the artifact's hash."""
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    artifact = Artifact(store.objects.put_object(tree.to_bytes()), python_type, materializer, "1", tree.size, {}, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)


def files_of(store: cas.Store, ref: str) -> dict[str, bytes]:
    reader = store.reader(ref)
    return {p: reader.read_bytes(p) for p in reader.paths()}


def info(store: cas.Store, ref: str) -> Any:
    return store._artifact(store.resolve(ref))


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(X, Y)


def pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, Y)


def boosting() -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, Y)


class Doubler(BaseEstimator, TransformerMixin):  # a user's own transformer: not on the trusted list
    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return X * 2


# -- scikit-learn through skops ----------------------------------------------------------


@pytest.mark.parametrize("make", [forest, pipeline, boosting])
def test_sklearn_models_round_trip_exactly_without_pickle(local_store: cas.Store, make: Any) -> None:
    model = make()
    ref = local_store.put(model, "model")
    assert info(local_store, ref.hash).materializer == "cas.sklearn"
    back = local_store.get(ref.hash)  # no trust_pickle
    assert type(back) is type(model)
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))
    assert local_store.put(model, "model").hash == ref.hash  # same model, same bytes: a cache hit


@pytest.mark.slow  # a fresh interpreter (or a probe process) per case
def test_the_same_model_has_the_same_hash_in_another_process(local_store: cas.Store, tmp_path: Path) -> None:
    # skops names arrays by id() and bytes by uuid; cas renumbers them, so a put is reproducible.
    ref = local_store.put(forest())
    code = f"""
        import cas
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        X, Y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=0)
        with cas.open({str(tmp_path / "other")!r}, create=True) as s:
            print(s.put(RandomForestClassifier(n_estimators=20, random_state=0).fit(X, Y)).hash)
    """
    assert run_python(code).strip() == ref.hash


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_models_load_in_a_fresh_process(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    models = {
        "forest": forest(), "pipeline": pipeline(), "boosting": boosting(),
        "xgb": xgb.XGBClassifier(n_estimators=10).fit(X, Y),
        "lgbm": lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, Y),
    }  # fmt: skip
    with cas.open(tmp_path / "store", create=True) as store:
        for name, model in models.items():
            store.put(model, name)
            np.save(tmp_path / f"{name}.npy", model.predict_proba(X))
    np.save(tmp_path / "X.npy", X)
    code = f"""
        import sys, numpy as np, cas
        root = {str(tmp_path)!r}
        X = np.load(root + "/X.npy")
        with cas.open(root + "/store") as store:
            for name in {sorted(models)!r}:
                model = store.get(name)  # nothing imported but cas: the registry finds each materializer
                assert np.array_equal(model.predict_proba(X), np.load(root + f"/{{name}}.npy")), name
        print("ok", "torch" in sys.modules)
    """
    assert run_python(code).startswith("ok")


def test_a_custom_transformer_needs_consent_and_is_stored_as_pickle(local_store: cas.Store) -> None:
    model = Pipeline([("double", Doubler()), ("clf", LogisticRegression())]).fit(X, Y)
    with pytest.raises(cas.UnsupportedTypeError, match=r"tests\.test_ml_models\.Doubler|test_ml_models\.Doubler"):
        local_store.put(model)
    ref = local_store.put(model, allow_pickle=True)
    assert info(local_store, ref.hash).materializer == "cas.pickle"
    with pytest.raises(cas.UntrustedPickleError):
        local_store.get(ref.hash)
    back = local_store.get(ref.hash, trust_pickle=True)
    assert np.array_equal(back.predict(X), model.predict(X))


def test_a_lambda_and_a_hist_gradient_boosting_model_are_not_trusted(local_store: cas.Store) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(cas.UnsupportedTypeError, match="lambda"):
        local_store.put(FunctionTransformer(lambda x: x))
    with pytest.raises(cas.UnsupportedTypeError, match="TreePredictor"):
        local_store.put(HistGradientBoostingClassifier(max_iter=3).fit(X, Y))
    # a numpy ufunc is data to skops (trusted by default): stored natively
    ref = local_store.put(FunctionTransformer(np.log1p))
    assert local_store.get(ref.hash).func is np.log1p


def test_parameters_and_sizes_are_shown(local_store: cas.Store) -> None:
    from materializers.sklearn_model import SklearnMaterializer

    mat = SklearnMaterializer()
    facts = mat.metadata(forest())
    assert facts["n_features"] == 8 and facts["n_estimators"] == 20
    views = {v.name: v for v in mat.visualize(forest())}
    assert b"n_estimators" in views["parameters"].data
    assert mat.metadata(pipeline())["steps"] == ["scale", "clf"]


# -- hostile skops files -----------------------------------------------------------------


def _schema_with(store: cas.Store, ref: str, old: str, new: str) -> dict[str, bytes]:
    files = files_of(store, ref)
    text = files["schema.json"].decode()
    assert old in text
    files["schema.json"] = text.replace(old, new, 1).encode()
    return files


@pytest.mark.parametrize(("module", "name"), [("builtins", "eval"), ("os", "system"), ("this", "x")])
def test_a_schema_naming_an_untrusted_function_is_never_built(local_store: cas.Store, module: str, name: str) -> None:
    from sklearn.preprocessing import FunctionTransformer

    ref = local_store.put(FunctionTransformer(np.log1p)).hash
    files = _schema_with(local_store, ref, '"__class__":"log1p","__module__":"numpy"',
                         f'"__class__":"{name}","__module__":"{module}"')  # fmt: skip
    hostile = plant(
        local_store, files, "cas.sklearn", "sklearn.preprocessing._function_transformer.FunctionTransformer"
    )
    assert "this" not in sys.modules  # importing it prints the Zen of Python: it must stay unimported
    with pytest.raises(cas.UntrustedTypesError, match=f"{module}.{name}"):
        local_store.get(hostile)
    assert "this" not in sys.modules
    with pytest.raises(cas.UntrustedTypesError):
        local_store.get(hostile, trust_pickle=True)  # skops' untrusted loading is code execution: never


def test_a_schema_naming_an_untrusted_class_is_never_built(local_store: cas.Store) -> None:
    ref = local_store.put(pipeline()).hash
    files = _schema_with(local_store, ref, '"__class__":"StandardScaler","__module__":"sklearn.preprocessing._data"',
                         '"__class__":"Popen","__module__":"subprocess"')  # fmt: skip
    hostile = plant(local_store, files, "cas.sklearn", "sklearn.pipeline.Pipeline")
    with pytest.raises(cas.UntrustedTypesError, match="subprocess.Popen"):
        local_store.get(hostile)


def test_mutated_skops_files_give_typed_errors(local_store: cas.Store) -> None:
    ref = local_store.put(pipeline()).hash
    good = files_of(local_store, ref)
    rng = random.Random(18)
    for i in range(60):
        files = dict(good)
        path = rng.choice(sorted(files))
        data = bytearray(files[path])
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randrange(1, 40)]
        files[path] = bytes(data)
        if i % 10 == 0:
            files.pop(rng.choice(sorted(files)))  # a missing member
        hostile = plant(local_store, files, "cas.sklearn", "sklearn.pipeline.Pipeline")
        try:
            local_store.get(hostile)
        except cas.CasError:
            pass


def test_stray_files_and_a_zip_are_refused(local_store: cas.Store) -> None:
    ref = local_store.put(pipeline()).hash
    files = files_of(local_store, ref)
    for extra in ("x.npy", "a.py", "12.pkl"):
        hostile = plant(local_store, {**files, extra: b"x"}, "cas.sklearn", "sklearn.pipeline.Pipeline")
        with pytest.raises(cas.CorruptObjectError):
            local_store.get(hostile)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("schema.json", b"{" * 10_000_000)  # 10 MB of nesting in a few KB
    hostile = plant(local_store, {"schema.json": buffer.getvalue()}, "cas.sklearn", "sklearn.pipeline.Pipeline")
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(hostile)
    deep = plant(local_store, {"schema.json": b"[" * 100_000}, "cas.sklearn", "sklearn.pipeline.Pipeline")
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(deep)


def _tampered_tree(change: str) -> DecisionTreeClassifier:
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y)
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    inner = np.flatnonzero(nodes["left_child"] != -1)
    if change == "child out of range":
        nodes["left_child"][inner[-1]] = 10**6
    elif change == "cycle":
        nodes["right_child"][inner[-1]] = 0
    elif change == "shared child":
        nodes["right_child"][inner[0]] = nodes["left_child"][inner[0]]
    elif change == "feature out of range":
        nodes["feature"][inner[0]] = 8
    state["nodes"] = nodes
    if change == "depth":
        state["max_depth"] = 1
    model.tree_.__setstate__(state)
    if change == "fewer features":
        model.n_features_in_ = 3
    return model


@pytest.mark.parametrize(
    "change", ["child out of range", "cycle", "shared child", "feature out of range", "depth", "fewer features"]
)
def test_a_tree_that_would_read_out_of_bounds_is_refused(local_store: cas.Store, change: str) -> None:
    # sklearn follows node indices without bounds checks (why skops does not trust Tree); cas checks them.
    ref = local_store.put(_tampered_tree(change))  # put does not look: the victim's get must
    with pytest.raises(cas.CorruptObjectError, match="decision tree"):
        local_store.get(ref.hash)


def test_a_forest_dedups_its_unchanged_trees(tmp_path: Path) -> None:
    def stored_bytes() -> int:
        return sum(p.stat().st_size for p in (tmp_path / "s").rglob("*") if p.is_file())

    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(np.tile(X, (8, 1)), np.tile(Y, 8))
    with cas.open(tmp_path / "s", create=True) as store:
        first = store.put(model)
        size = info(store, first.hash).size
        assert size > 1024 * 1024  # crosses the chunking threshold (schema.json alone is ~600 KB)
        before = stored_bytes()
        model.estimators_[0] = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
        second = store.put(model)
        files_a, files_b = files_of(store, first.hash), files_of(store, second.hash)
        assert second.hash != first.hash
        assert sorted(p for p in files_b if files_a.get(p) != files_b[p]) == ["1.npy", "4.npy", "5.npy", "schema.json"]
        assert stored_bytes() - before < size // 5  # one tree of 100 changed: a fraction is stored again


# -- xgboost and lightgbm ----------------------------------------------------------------


def _mutations(raw: bytes, seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        data = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            kind = rng.randrange(4)
            if kind == 0:
                data[at] = rng.randrange(256)
            elif kind == 1:
                data[at] = rng.choice(b"0123456789-.e")
            elif kind == 2:
                del data[at : at + rng.randrange(1, 50)]
            else:
                data[at:at] = rng.choice([b"99999999999", b"-1", b"\x00", b"nan"])
        found.append(bytes(data))
    return found


@pytest.mark.slow  # a fresh interpreter (or a probe process) per case
def test_xgboost_boosters_and_wrappers_round_trip(local_store: cas.Store) -> None:
    xgb = pytest.importorskip("xgboost", reason="xgboost is not installed (pip install 'cas-store[xgboost]')")
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, Y), 10)
    ref = local_store.put(booster)
    assert info(local_store, ref.hash).materializer == "cas.xgboost.booster"
    back = local_store.get(ref.hash)
    assert np.array_equal(back.predict(xgb.DMatrix(X)), booster.predict(xgb.DMatrix(X)))
    for model in (xgb.XGBClassifier(n_estimators=10, max_depth=3), xgb.XGBRegressor(n_estimators=10)):
        model.fit(X, Y)
        ref = local_store.put(model)
        assert info(local_store, ref.hash).materializer == "cas.xgboost.sklearn"  # not cas.sklearn
        back = local_store.get(ref.hash)
        assert type(back) is type(model)
        set_before = {k: v for k, v in model.get_params().items() if v is not None and v == v}  # not None, not NaN
        assert {k: back.get_params()[k] for k in set_before} == set_before  # xgboost fills in the rest from the model
        assert np.array_equal(back.predict(X), model.predict(X))
    unfitted = local_store.get(local_store.put(xgb.XGBClassifier(n_estimators=7)).hash)
    assert unfitted.n_estimators == 7 and not unfitted.__sklearn_is_fitted__()


@pytest.mark.slow  # a fresh interpreter (or a probe process) per case
def test_lightgbm_boosters_and_wrappers_round_trip(local_store: cas.Store) -> None:
    lgb = pytest.importorskip("lightgbm", reason="lightgbm is not installed (pip install 'cas-store[lightgbm]')")
    booster = lgb.train({"verbose": -1, "num_leaves": 7}, lgb.Dataset(X, Y), 10)
    ref = local_store.put(booster)
    assert info(local_store, ref.hash).materializer == "cas.lightgbm.booster"
    assert np.array_equal(local_store.get(ref.hash).predict(X), booster.predict(X))
    labels = np.array(["no", "yes"])[Y]
    for model, target in ((lgb.LGBMClassifier(n_estimators=10, verbose=-1), labels),
                          (lgb.LGBMRegressor(n_estimators=10, verbose=-1), Y.astype(float))):  # fmt: skip
        model.fit(X, target)
        ref = local_store.put(model)
        assert info(local_store, ref.hash).materializer == "cas.lightgbm.sklearn"
        back = local_store.get(ref.hash)
        assert type(back) is type(model)
        assert np.array_equal(back.predict(X), model.predict(X))
        if hasattr(model, "classes_"):
            assert list(back.classes_) == ["no", "yes"]
            assert np.array_equal(back.predict_proba(X), model.predict_proba(X))


@pytest.mark.slow
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_mutated_native_models_give_typed_errors_and_never_crash(local_store: cas.Store, library: str) -> None:
    # Some of these mutations segfault or abort the library in-process (see materializers/model_probe.py).
    if library == "xgboost":
        xgb = pytest.importorskip("xgboost")
        raw = bytes(xgb.train({"max_depth": 3}, xgb.DMatrix(X, Y), 5).save_raw("ubj"))
        name, path, python_type = "cas.xgboost.booster", "model.ubj", "xgboost.core.Booster"
    else:
        lgb = pytest.importorskip("lightgbm")
        raw = lgb.train({"verbose": -1, "num_leaves": 7}, lgb.Dataset(X, Y), 5).model_to_string().encode()
        name, path, python_type = "cas.lightgbm.booster", "model.txt", "lightgbm.basic.Booster"
    cases = [raw[: len(raw) // 2], b"", *_mutations(raw, 7, 12)]
    if library == "xgboost":
        cases.append(_segfaulting_xgboost_model())
    outcomes = []
    for data in cases:
        try:
            local_store.get(plant(local_store, {path: data}, name, python_type))
            outcomes.append("loaded")
        except cas.CorruptObjectError:
            outcomes.append("refused")
    assert outcomes[:2] == ["refused", "refused"] and "refused" in outcomes[2:]


def _segfaulting_xgboost_model() -> bytes:
    """Three byte deletions in a small model: loading and predicting segfaults xgboost 3.2 in-process."""
    xgb = pytest.importorskip("xgboost")
    features, labels = make_classification(200, 6, random_state=0)
    data = bytearray(xgb.train({"max_depth": 3}, xgb.DMatrix(features, labels), 5).save_raw("ubj"))
    rng = random.Random(3)
    for _ in range(19):  # the 19th mutation of this seed (found by fuzzing)
        mutated, kind = bytearray(data), rng.randrange(4)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(mutated))
            if kind == 0:
                mutated[at] = rng.randrange(256)
            elif kind == 1:
                mutated[at] = rng.choice(b"0123456789-.e")
            elif kind == 2:
                del mutated[at : at + rng.randrange(1, 50)]
            else:
                mutated[at:at] = rng.choice([b"99999999999", b"-1", b"1e308", b"\x00", b"nan"])
    return bytes(mutated)


def test_a_probe_crash_is_a_corrupt_object_error() -> None:
    from materializers import model_probe

    pytest.importorskip("lightgbm")
    with pytest.raises(cas.CorruptObjectError, match="probe"):
        model_probe.check("lightgbm", b"tree\nversion=v4\nnum_class=1\n")


def test_a_wrapper_class_that_is_not_imported_is_a_load_error(local_store: cas.Store) -> None:
    xgb = pytest.importorskip("xgboost")
    ref = local_store.put(xgb.XGBClassifier(n_estimators=3).fit(X, Y)).hash
    found = info(local_store, ref)
    hostile = Artifact(found.tree, "os.Popen", "cas.xgboost.sklearn", "1", found.size, {}, {})
    digest = to_hex(local_store.objects.put_object(hostile.to_bytes()))
    local_store.objects.flush()
    with pytest.raises(cas.LoadError, match="not an XGBModel class"):
        local_store.get(digest)


def test_params_that_are_code_go_to_pickle_with_consent(local_store: cas.Store) -> None:
    lgb = pytest.importorskip("lightgbm")

    def objective(y_true: Any, y_pred: Any) -> Any:
        return y_pred - y_true, np.ones_like(y_pred)

    model = lgb.LGBMRegressor(n_estimators=3, objective=objective, verbose=-1).fit(X, Y.astype(float))
    with pytest.raises(cas.UnsupportedTypeError):
        local_store.put(model)
    assert info(local_store, local_store.put(model, allow_pickle=True).hash).materializer == "cas.pickle"


def test_json_schema_is_canonical(local_store: cas.Store) -> None:
    files = files_of(local_store, local_store.put(pipeline()).hash)
    schema = json.loads(files["schema.json"])
    assert schema["__class__"] == "Pipeline"
    assert all(p == "schema.json" or p.split(".")[0].isdigit() for p in files)

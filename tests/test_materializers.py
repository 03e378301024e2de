"""Materializers: every supported type comes back equal and of the same type."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import StoreFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cas
from materializers import registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types all the way down and treats nan as equal to nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**70, max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.complex_numbers(allow_nan=False)
    | st.text()
    | st.binary(max_size=50)
)
hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)


@FIXTURE
@given(value=values)
def test_builtin_values_roundtrip(new_store: StoreFactory, value: Any) -> None:
    with new_store() as store:  # one store per example
        back = store.get(store.put(value))
        if isinstance(value, (str, bytes)):
            assert back == value
        else:
            assert same(back, value), (back, value)


def test_container_types_are_preserved(local_store: cas.Store) -> None:
    value = {
        "tuple": (1, (2, 3)),
        1: "int key",
        (1, "a"): "tuple key",
        "set": {3, 1, 2},
        "frozen": frozenset({"a"}),
        "big": 2**100,
        "neg": -(2**90),
        "c": 1 + 2j,
        "f": [float("inf"), -0.0, float("nan")],
        "ba": bytearray(b"x"),
        "s": "lone \udcff surrogate",
    }
    back = local_store.get(local_store.put(value))
    assert same(back, value)
    assert type(back["set"]) is set and type(back["frozen"]) is frozenset and type(back["tuple"]) is tuple
    assert local_store.info(local_store.put(value)).materializer == "cas.value"
    assert len(local_store.info(local_store.put(value)).files) == 1  # one object per container


SET_HASH = (
    "import cas, sys; s = cas.open(sys.argv[1]); print(s.put({'b', 'a', 'c', ('x', 1), frozenset({3, 'q'})}).hash)"
)


def test_set_hash_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    hashes = set()
    for seed in ("1", "2", "3"):
        out = subprocess.run(
            [sys.executable, "-c", SET_HASH, str(tmp_path / "s")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1


def test_subclasses_of_builtins_are_not_silently_downgraded(local_store: cas.Store) -> None:
    import enum
    from collections import namedtuple

    class Color(enum.IntEnum):
        RED = 1

    Point = namedtuple("Point", "x y")
    for value in (Color.RED, Point(1, 2)):
        with pytest.raises(cas.UnsupportedTypeError, match="allow_pickle"):
            local_store.put(value)


# -- numpy ---------------------------------------------------------------------

dtypes = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="=")
    | hnp.unsigned_integer_dtypes(endianness=">")
    | hnp.floating_dtypes(endianness="<")
    | hnp.floating_dtypes(endianness=">")
    | hnp.complex_number_dtypes()
    | hnp.datetime64_dtypes()
    | hnp.timedelta64_dtypes()
    | hnp.byte_string_dtypes()
    | hnp.unicode_string_dtypes()
)


def array_same(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        type(a) is type(b)
        and a.dtype == b.dtype
        and a.dtype.str == b.dtype.str
        and a.shape == b.shape
        and a.tobytes() == b.tobytes()
    )


@FIXTURE
@given(arr=hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
def test_numpy_arrays_roundtrip(new_store: StoreFactory, arr: np.ndarray) -> None:
    with new_store() as store:  # one store per example
        back = store.get(store.put(arr))
        assert array_same(back, arr)


def test_numpy_layouts_and_special_dtypes(store: cas.Store) -> None:
    base = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", [("c", ">f8", (2,))]), ("s", "S3")])
    structured["a"] = [1, 2, 3]
    cases = [
        np.asfortranarray(base),
        base[:, ::2, 1:],  # a non-contiguous view
        base.astype(">f8"),  # byte order kept
        structured,
        np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        np.zeros((0, 3)),
        np.array(5.5),
        np.random.default_rng(0).random((300, 1000)),  # large enough to be chunked
    ]
    for arr in cases:
        back = store.get(store.put(arr))
        assert back.shape == arr.shape and back.dtype == arr.dtype and back.tobytes() == arr.tobytes()
    fortran = store.get(store.put(np.asfortranarray(base)))
    assert fortran.flags.f_contiguous
    info = store.info(store.put(base))
    # A built-in format records no library versions: the same array has one hash under every numpy.
    assert info.metadata == {"shape": [2, 3, 4], "dtype": "float64", "nbytes": 192}


def test_numpy_scalars_keep_their_type(local_store: cas.Store) -> None:
    for value in (np.float32(1.5), np.int64(-3), np.bool_(True), np.datetime64("2024-01-01")):
        back = local_store.get(local_store.put(value))
        assert type(back) is type(value) and back == value


def test_object_arrays_need_pickle(local_store: cas.Store) -> None:
    arr = np.array([{"a": 1}, None], dtype=object)
    with pytest.raises(cas.UnsupportedTypeError, match="pickle"):
        local_store.put(arr)
    ref = local_store.put(arr, allow_pickle=True)
    assert list(local_store.get(ref, trust_pickle=True)) == list(arr)


# -- pandas / arrow ---------------------------------------------------------------

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402


def frames() -> list[Any]:
    return [
        pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, np.nan, 1.5]}),
        pd.DataFrame({"v": [1, 2]}, index=pd.Index(["r1", "r2"], name="row")),
        pd.DataFrame(
            {"v": [1, 2, 3]}, index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["k", "n"])
        ),
        pd.DataFrame({"cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True)}),
        pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="Europe/Berlin")}),
        pd.DataFrame(
            {
                "i": pd.array([1, None, 3], dtype="Int64"),
                "s": pd.array(["a", None, "c"], dtype="string"),
                "b": pd.array([True, None, False], dtype="boolean"),
            }
        ),
        pd.DataFrame({0: [1, 2], 1: [3, 4]}),  # int column names
        pd.DataFrame({0: [1], "a": [2], (1, "x"): [3]}),  # mixed and tuple column names
        pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
        pd.DataFrame([[1, 2]], columns=["dup", "dup"]),
        pd.DataFrame({"x": []}),
    ]


@pytest.mark.parametrize("index", range(len(frames())))
def test_dataframes_roundtrip(store: cas.Store, index: int) -> None:
    frame = frames()[index]
    back = store.get(store.put(frame))
    pd.testing.assert_frame_equal(back, frame)


def test_series_and_arrow_tables(store: cas.Store) -> None:
    for series in (pd.Series([1.5, 2.5], name="price"), pd.Series([1, 2], name=None), pd.Series(["a"], name=0)):
        back = store.get(store.put(series))
        pd.testing.assert_series_equal(back, series)
    table = pa.table({"x": [1, 2], "y": ["a", "b"]})
    assert store.get(store.put(table)).equals(table)
    info = store.info(store.put(frames()[0]))
    assert info.metadata["rows"] == 3 and info.metadata["columns"] == ["a", "b", "c"]


# -- dataclasses, pydantic ----------------------------------------------------------


@dataclasses.dataclass
class Config:
    lr: float
    layers: tuple[int, ...]
    name: str = "model"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_dataclasses(store: cas.Store) -> None:
    cfg = Config(0.1, (64, 32), extra={"seed": 1})
    back = store.get(store.put(cfg))
    assert back == cfg and type(back) is Config
    info = store.info(store.put(cfg))
    assert info.metadata["qualname"] == "Config" and info.metadata["fields"] == ["lr", "layers", "name", "extra"]


def test_classes_are_never_imported_by_name(local_store: cas.Store) -> None:
    ref = local_store.put(Config(0.1, (1,)))
    artifact = local_store._artifact(local_store.resolve(ref))
    assert artifact.metadata["module"] == __name__
    module = sys.modules.pop(__name__)
    try:
        with pytest.raises(cas.IncompatibleArtifactError, match="import"):
            local_store.get(ref)
    finally:
        sys.modules[__name__] = module


import pydantic  # noqa: E402


class Settings(pydantic.BaseModel):
    rate: float
    tags: list[str] = []
    when: datetime.date | None = None


def test_pydantic_models(store: cas.Store) -> None:
    model = Settings(rate=0.5, tags=["a"], when=datetime.date(2024, 1, 2))
    back = store.get(store.put(model))
    assert back == model and type(back) is Settings


# -- pickle by consent --------------------------------------------------------------


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value


class Malicious:
    """Unpickling this writes a file: the proof that loading a pickle runs code."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path(self.target).write_text, ("pwned",))


def test_unsupported_types_need_consent(local_store: cas.Store) -> None:
    with pytest.raises(cas.UnsupportedTypeError, match="allow_pickle"):
        local_store.put(Opaque(1))
    with pytest.raises(cas.UnsupportedTypeError):
        local_store.put([Opaque(1)])  # inside a container too
    ref = local_store.put(Opaque(1), allow_pickle=True)
    info = local_store.info(ref)
    assert (
        info.materializer == "cas.pickle" and info.metadata["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    )
    with pytest.raises(cas.UntrustedPickleError):
        local_store.get(ref)
    assert local_store.get(ref, trust_pickle=True) == Opaque(1)


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    with cas.open(tmp_path / "s", allow_pickle=True) as store:
        ref = store.put(Malicious(str(target)), "evil")
    target.unlink()  # put loads the pickle back once, in the writer's own process, to check that it loads
    with cas.open(tmp_path / "s") as store:
        with pytest.raises(cas.UntrustedPickleError):
            store.get("evil")
        assert not target.exists()
        store.get("evil", trust_pickle=True)  # with trust it runs: the test above could fail
        assert target.read_text() == "pwned"
    assert ref.name == "evil"


def test_pickles_from_another_python_are_refused(local_store: cas.Store) -> None:
    ref = local_store.put(Opaque(2), allow_pickle=True)
    mat = registry.by_name("cas.pickle")
    with pytest.raises(cas.IncompatibleArtifactError, match="Python"):
        mat.check_environment({"python": "2.7"})
    mat.check_environment({"python": "2.7"}, override=True)
    assert local_store.get(ref, trust_pickle=True, allow_python_mismatch=True) == Opaque(2)


# -- registering your own -------------------------------------------------------------


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees


class CelsiusMaterializer(cas.Materializer):
    """Registered just by subclassing."""

    name = "tests.celsius"
    version = "2"
    types = (Celsius,)

    def save(self, obj: Any, writer: Any) -> None:
        writer.write_bytes("deg.txt", str(obj.degrees).encode())

    def load(self, reader: Any, type_: type) -> Any:
        return type_(float(reader.read_bytes("deg.txt")))  # as the README's example: a subclass stays itself

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"degrees": obj.degrees}


class Kelvin(Celsius):
    pass


def test_user_materializer_by_subclassing(local_store: cas.Store) -> None:
    ref = local_store.put(Celsius(21.5))
    assert local_store.get(ref).degrees == 21.5
    info = local_store.info(ref)
    writer = {"module": CelsiusMaterializer.__module__}  # a custom materializer's module is recorded
    assert (info.materializer, info.materializer_version, info.metadata) == (
        "tests.celsius", "2", {"degrees": 21.5, "cas.writer": writer}
    )  # fmt: skip
    kelvin = local_store.get(local_store.put(Kelvin(3.0)))  # found through the MRO, and back as a Kelvin
    assert type(kelvin) is Kelvin and kelvin.degrees == 3.0


def test_user_materializer_by_decorator_and_forced(local_store: cas.Store) -> None:
    @cas.register_materializer
    class UpperStr(cas.Materializer, register=False):
        name = "tests.upper"
        types = ()

        def save(self, obj: Any, writer: Any) -> None:
            writer.write_bytes("u.txt", obj.upper().encode())

        def load(self, reader: Any, type_: type) -> Any:
            return reader.read_bytes("u.txt").decode()

    ref = local_store.put("shout", materializer="tests.upper")
    assert local_store.get(ref) == "SHOUT"
    assert local_store.get(local_store.put("shout", materializer=UpperStr)) == "SHOUT"
    assert local_store.get(local_store.put("shout")) == "shout"


def test_materializer_version_change_is_refused(local_store: cas.Store) -> None:
    ref = local_store.put(Celsius(1.0))
    CelsiusMaterializer.version = "3"
    try:
        registry.register(CelsiusMaterializer)
        with pytest.raises(cas.IncompatibleArtifactError, match="version 2"):
            local_store.get(ref)
    finally:
        CelsiusMaterializer.version = "2"
        registry.register(CelsiusMaterializer)


def test_missing_optional_materializer_is_a_clear_error(local_store: cas.Store) -> None:
    with pytest.raises(cas.UnsupportedTypeError, match="not available"):
        registry.by_name("nobody.knows")


# -- dedup semantics --------------------------------------------------------------------


def test_same_value_same_artifact_new_version_no_new_bytes(local_store: cas.Store) -> None:
    value = {"weights": list(range(1000)), "name": "m"}
    first = local_store.put(value, "model")
    before = sorted(local_store.backend.list("objects/"))
    second = local_store.put(dict(value), "model", new_version=True)
    assert first.hash == second.hash and second.number == 2
    assert sorted(local_store.backend.list("objects/")) == before

"""pandas fidelity (issue 16, item 11): what put stores comes back equal, index, dtypes and flags included.

Every frame goes through put, then get from a fresh Store on the same folder,
and must pass pandas' strictest equality (index and column types, freq,
flags). What Arrow can not give back as it was is refused with
UnsupportedTypeError naming the column, so ``allow_pickle=True`` stores it.
Hostile ``pandas.msgpack`` facts and pandas metadata are planted as another
writer of the store could (hash-valid files through cas's own TreeWriter).
"""

from __future__ import annotations

import datetime
import decimal
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter
from materializers import valuecodec


def roundtrip(tmp_path: Path, obj: Any, **options: Any) -> Any:
    with cas.open(tmp_path / "store") as store:
        ref = store.put(obj, **options)
    with cas.open(tmp_path / "store", create=False) as fresh:
        return fresh.get(ref.hash)


def assert_same(back: Any, obj: Any) -> None:
    assert type(back) is type(obj)
    strict = {"check_index_type": True, "check_freq": True, "check_flags": True, "check_exact": True}
    if isinstance(obj, pd.Series):
        pd.testing.assert_series_equal(back, obj, check_series_type=True, **strict)
        assert back.name == obj.name and type(back.name) is type(obj.name)
    else:
        pd.testing.assert_frame_equal(back, obj, check_column_type=True, check_frame_type=True, **strict)
    assert list(back.index.names) == list(obj.index.names)
    assert back.attrs == obj.attrs


def _with_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs["source"] = "sensor"
    frame.attrs["when"] = datetime.date(2026, 11, 28)
    return frame


N = 6
SAME: dict[str, Any] = {
    "RangeIndex": pd.DataFrame({"a": np.arange(N, dtype=float)}),
    "RangeIndex start stop step name": pd.DataFrame({"a": np.arange(N, dtype=float)}, index=pd.RangeIndex(3, 3 + 2 * N, 2, name="r")),
    "RangeIndex negative step": pd.DataFrame({"a": [1.0, 2.0]}, index=pd.RangeIndex(10, 6, -2)),
    "empty RangeIndex": pd.DataFrame({"a": []}, dtype=float),
    "empty frame": pd.DataFrame(),
    "DatetimeIndex freq D": pd.DataFrame({"a": range(N)}, index=pd.date_range("2020", periods=N, freq="D")),
    "DatetimeIndex tz freq h": pd.DataFrame({"a": range(N)}, index=pd.date_range("2020", periods=N, freq="h", tz="Europe/Paris")),
    "DatetimeIndex freq W-WED": pd.DataFrame({"a": range(N)}, index=pd.date_range("2020", periods=N, freq="W-WED")),
    "DatetimeIndex freq ME": pd.DataFrame({"a": range(N)}, index=pd.date_range("2020", periods=N, freq="ME")),
    "DatetimeIndex business days": pd.DataFrame({"a": range(N)}, index=pd.bdate_range("2020-01-01", periods=N)),
    "DatetimeIndex no freq tz": pd.DataFrame({"a": [1, 2]}, index=pd.DatetimeIndex(["2020-01-01", "2020-03-01"], tz="Asia/Tokyo")),
    "TimedeltaIndex freq 2h": pd.DataFrame({"a": range(N)}, index=pd.timedelta_range("1D", periods=N, freq="2h")),
    "PeriodIndex": pd.DataFrame({"a": range(N)}, index=pd.period_range("2020-01", periods=N, freq="M")),
    "IntervalIndex": pd.DataFrame({"a": [1, 2]}, index=pd.IntervalIndex.from_breaks([0, 1, 2])),
    "CategoricalIndex ordered": pd.DataFrame({"a": [1, 2]}, index=pd.CategoricalIndex([3, 4], ordered=True)),
    "string[python]": pd.DataFrame({"a": pd.array(["x", None, "z"], dtype="string[python]")}),
    "string[pyarrow]": pd.DataFrame({"a": pd.array(["x", None, "z"], dtype="string[pyarrow]")}),
    "str (pandas 3 default)": pd.DataFrame({"a": ["x", None, "z"]}),
    "str python storage nan": pd.DataFrame({"a": pd.array(["x", None], dtype=pd.StringDtype("python", na_value=np.nan))}),
    "object of str with None": pd.DataFrame({"a": pd.Series(["x", None, "z"], dtype=object)}),
    "object of int with None": pd.DataFrame({"a": pd.Series([1, None, 3], dtype=object)}),
    "object of bool": pd.DataFrame({"a": pd.Series([True, False], dtype=object)}),
    "object of bytes": pd.DataFrame({"a": pd.Series([b"x", None], dtype=object)}),
    "object of Decimal": pd.DataFrame({"a": pd.Series([decimal.Decimal("1.25"), None], dtype=object)}),
    "object of date": pd.DataFrame({"a": pd.Series([datetime.date(2020, 1, 1), None], dtype=object)}),
    "object of time": pd.DataFrame({"a": pd.Series([datetime.time(1, 2, 3)], dtype=object)}),
    "object of None": pd.DataFrame({"a": pd.Series([None, None], dtype=object)}),
    "empty object": pd.DataFrame({"a": pd.Series([], dtype=object)}),
    "categorical ordered": pd.DataFrame({"a": pd.Categorical(list("abcab"), categories=list("cba"), ordered=True)}),
    "categorical of int": pd.DataFrame({"a": pd.Categorical([1, 2, None, 1])}),
    "categorical string[python] categories": pd.DataFrame({"a": pd.Categorical(["x", "y"], categories=pd.Index(["x", "y"], dtype="string[python]"))}),
    "categorical object categories": pd.DataFrame({"a": pd.Categorical(["x", "y"], categories=pd.Index(["x", "y"], dtype=object))}),
    "Int64 boolean Float64": pd.DataFrame({
        "i": pd.array([1, None, 3], dtype="Int64"), "b": pd.array([True, None, False], dtype="boolean"),
        "f": pd.array([1.5, None, 3.0], dtype="Float64"), "u": pd.array([1, None, 3], dtype="UInt8"),
    }),
    "numpy ints floats bool": pd.DataFrame({
        "i32": np.arange(3, dtype="int32"), "u8": np.arange(3, dtype="uint8"), "f32": np.arange(3, dtype="float32"),
        "f16": np.arange(3, dtype="float16"), "u64": np.array([0, 1, 2**64 - 1], dtype="uint64"), "b": [True, False, True],
        "nan": [np.nan, 1.0, -np.inf],
    }),
    "datetime64 units and tz": pd.DataFrame({
        "ns_utc": pd.date_range("2020", periods=3, tz="UTC"), "us": pd.date_range("2020", periods=3, unit="us"),
        "s_ny": pd.date_range("2020", periods=3, unit="s", tz="America/New_York"),
        "ms_fixed": pd.date_range("2020", periods=3, unit="ms", tz="+05:30"),
        "nat": pd.to_datetime(["2020", None, "2021"]).as_unit("ns"),
    }),
    "timedelta64": pd.DataFrame({"s": pd.to_timedelta(range(3), unit="s"), "us": pd.to_timedelta(range(3), unit="s").as_unit("us")}),
    "period and interval columns": pd.DataFrame({"p": pd.period_range("2020", periods=2, freq="D"), "i": pd.arrays.IntervalArray.from_breaks([0, 1, 2])}),
    "pyarrow int64 dtype": pd.DataFrame({"a": pd.array([1, None], dtype="int64[pyarrow]")}),
    "MultiIndex index": pd.DataFrame({"a": range(4)}, index=pd.MultiIndex.from_product([["x", "y"], [1, 2]], names=["k", None])),
    "MultiIndex dates with freq": pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_arrays([pd.date_range("2020", periods=2, freq="D"), [1, 2]])),
    "MultiIndex string[python] level": pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_arrays([pd.Index(["a", "x"], dtype="string[python]"), [1, 2]])),
    "MultiIndex columns": pd.DataFrame(np.arange(8).reshape(2, 4), columns=pd.MultiIndex.from_product([["x", "y"], [1, 2]])),
    "RangeIndex columns": pd.DataFrame(np.arange(8.0).reshape(2, 4)),
    "named RangeIndex columns": pd.DataFrame(np.zeros((2, 3))).rename_axis(columns="c"),
    "int columns": pd.DataFrame([[1, 2]], columns=[7, 3]),
    "mixed int and str columns, named": pd.DataFrame([[1, 2]], columns=pd.Index([1, "a"], name="nm")),
    "float columns": pd.DataFrame([[1, 2]], columns=[1.5, 2.5]),
    "duplicate columns": pd.DataFrame([[1, 2]], columns=["a", "a"]),
    "tuple columns": pd.DataFrame([[1, 2]], columns=pd.Index([("a", 1), ("b", 2)], tupleize_cols=False)),
    "object-dtype str columns": pd.DataFrame([[1, 2]], columns=pd.Index(["a", "b"], dtype=object)),
    "index string[python]": pd.DataFrame({"a": [1, 2]}, index=pd.Index(["a", "b"], dtype="string[python]")),
    "index object of str": pd.DataFrame({"a": [1, 2]}, index=pd.Index(["a", "b"], dtype=object)),
    "index object of int": pd.DataFrame({"a": [1, 2]}, index=pd.Index([1, 2], dtype=object)),
    "index int32, uint64, float": pd.DataFrame({"a": [1, 2]}, index=pd.Index([1, 2], dtype="int32")),
    "index with a non-str name": pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 6], name=3)),
    "index str with missing": pd.DataFrame({"a": [1, 2]}, index=pd.Index(["a", None])),
    "duplicate index": pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 5])),
    "flags: no duplicate labels": pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=False),
    "attrs": _with_attrs(pd.DataFrame({"a": [1]})),
    "Series named": pd.Series([1.0, 2.0], name="x"),
    "Series int name": pd.Series([1.0, 2.0], name=3),
    "Series without name": pd.Series([1.0, 2.0]),
    "Series object of str": pd.Series(["a", None], dtype=object, name="s"),
    "Series string[python]": pd.Series(["a", None], dtype="string[python]"),
    "Series Int64 with named index": pd.Series([1, None], dtype="Int64", index=pd.Index(["p", "q"], name="k")),
    "Series with freq": pd.Series([1.0, 2.0], index=pd.date_range("2020", periods=2, freq="min")),
    "Series flags": pd.Series([1.0]).set_flags(allows_duplicate_labels=False),
}  # fmt: skip


@pytest.mark.parametrize("name", SAME)
def test_comes_back_the_same(tmp_path: Path, name: str) -> None:
    assert_same(roundtrip(tmp_path, SAME[name]), SAME[name])


class Thing:
    pass


REFUSED: dict[str, tuple[Any, str]] = {
    "sparse": (pd.DataFrame({"sp": pd.arrays.SparseArray([0, 0, 1])}), "column 'sp' is sparse"),
    "ints and strs": (pd.DataFrame({"mix": pd.Series([1, "x", 2.5], dtype=object)}), "column 'mix' is an object column mixing"),
    "strs and NaN": (pd.DataFrame({"m": pd.Series(["x", np.nan], dtype=object)}), "column 'm' is an object column mixing"),
    "arbitrary objects": (pd.DataFrame({"o": pd.Series([Thing(), Thing()], dtype=object)}), "column 'o' is an object column of Thing"),
    "lists": (pd.DataFrame({"l": pd.Series([[1], [2, 3]], dtype=object)}), "column 'l' is an object column of list"),
    "dicts": (pd.DataFrame({"d": pd.Series([{"x": 1}], dtype=object)}), "column 'd' is an object column of dict"),
    "datetime objects": (pd.DataFrame({"t": pd.Series([datetime.datetime(2020, 1, 1)], dtype=object)}), "column 't' is an object column of datetime"),
    "ints past 64 bits": (pd.DataFrame({"big": pd.Series([2**70], dtype=object)}), "does not convert to Arrow"),
    "complex": (pd.DataFrame({"c": np.array([1 + 2j])}), "column 'c' is complex"),
    "nested pyarrow dtype": (pd.DataFrame({"n": pd.array([[1], [2]], dtype=pd.ArrowDtype(pa.list_(pa.int64())))}), "column 'n' has the pyarrow dtype"),
    "mixed object index": (pd.DataFrame({"a": [1, 2]}, index=pd.Index([1, "b"], dtype=object)), "index is an object column mixing"),
    "mixed MultiIndex level": (pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_arrays([pd.Index([1, "x"], dtype=object), [1, 2]], names=["lv", None])), "index level 'lv'"),
    "DatetimeIndex columns": (pd.DataFrame([[1, 2]], columns=pd.date_range("2020", periods=2, freq="D")), "labels"),
    "attrs that are not values": (pd.DataFrame({"a": [1]}).pipe(lambda f: (f.attrs.update(x=Thing()), f)[1]), "attrs"),
    "sparse Series": (pd.Series(pd.arrays.SparseArray([0.0, 1.0])), "Series is sparse"),
}  # fmt: skip


@pytest.mark.parametrize("name", REFUSED)
def test_what_would_change_is_refused_then_pickled_when_allowed(tmp_path: Path, name: str) -> None:
    obj, message = REFUSED[name]
    with cas.open(tmp_path / "store") as store, pytest.raises(cas.UnsupportedTypeError, match=message):
        store.put(obj)
    if name in ("arbitrary objects", "attrs that are not values"):
        return  # a class local to this module does not unpickle back as the same object
    with cas.open(tmp_path / "store") as store:
        ref = store.put(obj, allow_pickle=True)
        assert store.info(ref).materializer == "cas.pickle"
    with cas.open(tmp_path / "store", create=False, trust_pickle=True) as fresh:
        back = fresh.get(ref.hash)
    if isinstance(obj, pd.Series):
        pd.testing.assert_series_equal(back, obj)
    else:
        pd.testing.assert_frame_equal(back, obj)


def test_a_range_index_is_not_stored(tmp_path: Path) -> None:
    """One float column of 1M rows above the 1 MiB chunking threshold: 8 MB, not 16 (the index was a column)."""
    frame = pd.DataFrame({"x": np.random.default_rng(0).standard_normal(1_000_000)})
    with cas.open(tmp_path / "store") as store:
        ref = store.put(frame)
        assert store.info(ref).size < 8_100_000
    assert_same(roundtrip(tmp_path, frame), frame)


def test_a_large_mixed_frame_above_the_chunking_threshold(tmp_path: Path) -> None:
    n = 300_000  # every column well above 1 MiB
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "f": rng.standard_normal(n),
            "i": pd.array(rng.integers(0, 100, n), dtype="Int64"),
            "s": pd.array(rng.choice(["a", "bb", None], n), dtype="string[python]"),
            "o": np.array([["x", "yy", None][k] for k in rng.integers(0, 3, n)], dtype=object),
            "c": pd.Categorical(rng.choice(["lo", "hi"], n), categories=["lo", "hi"], ordered=True),
            "t": pd.date_range("2020", periods=n, freq="s", tz="UTC"),
        },
        index=pd.date_range("2021", periods=n, freq="min", name="when"),
    )
    assert_same(roundtrip(tmp_path, frame), frame)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    hpd.data_frames(
        [
            hpd.column("f", dtype=float),
            hpd.column("i", dtype="int32"),
            hpd.column("b", dtype=bool),
            hpd.column("s", elements=st.text(max_size=5) | st.none(), dtype=object),
            hpd.column("t", dtype="datetime64[ns]"),
        ],
        index=hpd.range_indexes(max_size=20) | hpd.indexes(dtype="int64", max_size=20),
    )
)
def test_generated_frames_come_back_the_same(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> None:
    assert_same(roundtrip(tmp_path_factory.mktemp("h"), frame), frame)


# -- artifacts written before version 2 still load ------------------------------------------


def plant(store: cas.Store, files: dict[str, bytes], version: str = "2") -> str:
    """Hash-valid files and a cas.pandas artifact naming them, as another writer could store them."""
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, "pandas.DataFrame", "cas.pandas", version, tree.size, {}, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def test_a_version_1_artifact_still_loads(tmp_path: Path) -> None:
    """Version 1 stored every index as a column and only series, name and labels as facts."""
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}, index=pd.Index([10, 20], name="k"))
    old = {
        "table.arrow": ipc(pa.Table.from_pandas(frame, preserve_index=True)),
        "pandas.msgpack": valuecodec.encode({"series": False, "name": None, "labels": None}),
    }
    with cas.open(tmp_path / "store") as store:
        ref = plant(store, old, version="1")
    with cas.open(tmp_path / "store", create=False) as fresh:
        assert_same(fresh.get(ref), frame)
        series = pd.Series([1.0, 2.0], name="s")
        old_series = {
            "table.arrow": ipc(pa.Table.from_pandas(series.to_frame("__cas_series__"), preserve_index=True)),
            "pandas.msgpack": valuecodec.encode({"series": True, "name": "s", "labels": None}),
        }
        back = fresh.get(plant(fresh, old_series, version="1"))
        pd.testing.assert_series_equal(back, series, check_index_type=False)  # v1: the RangeIndex was an int64 column


def test_version_3_is_refused_as_incompatible(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0]})
    files = {"table.arrow": ipc(pa.Table.from_pandas(frame)), "pandas.msgpack": valuecodec.encode({"series": False})}
    with cas.open(tmp_path / "store") as store:
        ref = plant(store, files, version="3")
        with pytest.raises(cas.CasError):
            store.get(ref)


# -- hostile facts and pandas metadata --------------------------------------------------------


def facts_for(frame: pd.DataFrame, **extra: Any) -> dict[str, bytes]:
    facts = {"series": False, "name": None, "labels": None, **extra}
    return {"table.arrow": ipc(pa.Table.from_pandas(frame)), "pandas.msgpack": valuecodec.encode(facts)}


DAILY = pd.DataFrame({"a": [1, 2, 3]}, index=pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-05"]))
HOSTILE: dict[str, tuple[dict[str, bytes], str]] = {
    "freq not a frequency": (facts_for(DAILY, freq="__import__('os')"), "not a pandas frequency"),
    "freq too long": (facts_for(DAILY, freq="D" * 1000), "not a short string"),
    "freq not a str": (facts_for(DAILY, freq=7), "not a short string"),
    "freq the index does not follow": (facts_for(DAILY, freq="D"), "does not follow its recorded frequency"),
    "freq on a RangeIndex": (facts_for(pd.DataFrame({"a": [1]}), freq="D"), "an index without one"),
    "column dtypes of the wrong length": (facts_for(pd.DataFrame({"a": ["x"]}), columns=["object", None]), "do not match"),
    "a dtype fact cas never writes": (facts_for(pd.DataFrame({"a": ["x"]}), columns=[["string", "evil", True]]), "not one cas writes"),
    "a string fact on a float column": (facts_for(pd.DataFrame({"a": [1.0]}), columns=[["string", "python", False]]), "recorded as"),
    "an index fact for a RangeIndex": (facts_for(pd.DataFrame({"a": [1]}), index="object"), "not stored as a column"),
    "a column range that does not match": (facts_for(pd.DataFrame([[1, 2]], columns=["0", "1"]), column_range=[0, 5, 1]), "column range"),
    "a column range of a huge span": (facts_for(pd.DataFrame([[1, 2]], columns=["0", "1"]), column_range=[0, 2**62, 2**61]), "column range"),
    "a zero column range step": (facts_for(pd.DataFrame([[1, 2]], columns=["0", "1"]), column_range=[0, 2, 0]), "column range"),
    "names of the wrong length": (facts_for(pd.DataFrame({"a": [1]}), names={"index": [1, 2], "columns": [None]}), "axis names"),
    "flags cas never writes": (facts_for(pd.DataFrame({"a": [1]}), flags={"x": 1}), "flags"),
    "attrs not a map": (facts_for(pd.DataFrame({"a": [1]}), attrs=[1]), "attrs"),
    "levels for a flat index": (facts_for(pd.DataFrame({"a": [1]}), levels=[{"dtype": None, "freq": None}]), "index levels"),
}  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_pandas_facts_are_corrupt(tmp_path: Path, name: str) -> None:
    files, message = HOSTILE[name]
    with cas.open(tmp_path / "store") as store:
        ref = plant(store, files)
        with pytest.raises(cas.CorruptObjectError, match=message):
            store.get(ref)


def test_a_hostile_range_index_in_pandas_metadata_is_corrupt(tmp_path: Path) -> None:
    """pyarrow rebuilds a RangeIndex from the stored start, stop and step: a huge one must not allocate."""
    table = pa.Table.from_pandas(pd.DataFrame({"a": [1.0, 2.0]}))
    meta = table.schema.pandas_metadata
    for start, stop, step in ((0, 2**62, 1), (0, 10**30, 1), (0, 2, 0), ("0", 2, 1)):
        # pyarrow sizes the range by the stored rows (0, 2**62, 1 loads as 2 rows); the others are not ranges.
        meta["index_columns"] = [{"kind": "range", "name": None, "start": start, "stop": stop, "step": step}]
        hostile = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
        files = {
            "table.arrow": ipc(hostile),
            "pandas.msgpack": valuecodec.encode({"series": False, "name": None, "labels": None}),
        }
        with cas.open(tmp_path / "store") as store:
            ref = plant(store, files)
            if stop == 2**62:
                assert store.get(ref).index.equals(pd.RangeIndex(2))
                continue
            with pytest.raises(cas.CorruptObjectError):
                store.get(ref)

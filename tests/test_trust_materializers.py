"""Hostile artifacts for the materializers (issue 15, items 5, 12 and 14).

Each attack is planted as another writer of the store could: hash-valid files
written through cas's own TreeWriter, an Artifact object put with
``store.objects.put_object``, read back by hash. The victim's side must see
only typed errors, in bounded memory, with nothing imported.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter
from materializers import valuecodec

ROOT = Path(__file__).resolve().parent.parent
PANDAS_FACTS = valuecodec.encode({"series": False, "name": None, "labels": None})


def plant(store: cas.Store, files: dict[str, bytes], materializer: str, python_type: str,
          metadata: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Put hash-valid files and an artifact naming them; return the artifact's hash."""
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, python_type, materializer, "1", tree.size, metadata or {}, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)


def ipc(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def plant_frame(store: cas.Store, arrow: bytes, kind: str = "cas.pandas") -> str:
    if kind == "cas.pandas":
        return plant(store, {"table.arrow": arrow, "pandas.msgpack": PANDAS_FACTS}, kind, "pandas.DataFrame")
    return plant(store, {"table.arrow": arrow}, kind, "pyarrow.lib.Table")


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# -- Arrow: declared lengths against stored bytes ----------------------------------------


@pytest.mark.parametrize("kind", ["cas.pandas", "cas.arrow"])
def test_a_null_column_of_2_27_rows_is_refused_in_bounded_memory(local_store: cas.Store, kind: str) -> None:
    bomb = ipc(pa.table({"x": pa.nulls(2**27)}))
    assert len(bomb) < 1000  # 394 bytes declaring 2^27 values: 1 GiB as a pandas object column
    ref = plant_frame(local_store, bomb, kind)
    # A fresh process, so its peak RSS measures this get alone.
    out = run_python(f"""
        import resource, cas, pandas, pyarrow
        store = cas.open({local_store.url!r}, create=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            store.get({ref!r})
        except cas.DeclaredSizeError as exc:
            print("refused", exc)
        views = store.visualizations({ref!r})  # what the UI's artifact page computes
        print("views", [v.name for v in views])
        print("grew", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    assert "refused" in out and "VALUES_PER_BYTE" in out and "views ['files']" in out
    assert int(out.split("grew")[1]) < 64  # MiB


def test_a_compressed_body_is_refused_before_it_inflates(local_store: cas.Store) -> None:
    table = pa.table({"x": pa.array(np.zeros(1 << 20, dtype=np.int64))})
    bomb = ipc(table, compression="zstd")
    assert len(bomb) < 10_000  # 8 MiB once inflated
    with pytest.raises(cas.CorruptObjectError, match="compressed"):
        local_store.get(plant_frame(local_store, bomb))


def test_run_end_encoded_and_struct_columns_count_by_logical_length(local_store: cas.Store) -> None:
    ree = pa.RunEndEncodedArray.from_arrays(pa.array([2**30], pa.int32()), pa.array([1.0]))
    empty_structs = pa.Array.from_buffers(pa.struct([]), 2**27, [None])
    for table in (pa.table({"r": ree}), pa.table({"s": empty_structs})):
        with pytest.raises(cas.DeclaredSizeError):
            local_store.get(plant_frame(local_store, ipc(table), "cas.arrow"))


def string_views(count: int, length: int) -> pa.Array:
    """``count`` views of the same ``length`` stored bytes."""
    views = b"".join(struct.pack("<i4sii", length, b"aaaa", 0, 0) for _ in range(count))
    return pa.Array.from_buffers(pa.string_view(), count, [None, pa.py_buffer(views), pa.py_buffer(b"a" * length)])


def test_overlapping_views_are_refused_before_conversion(local_store: cas.Store) -> None:
    # 1,000 string views of one stored MiB (1 GiB as Python strings); 1,000 list
    # views of one stored MiB of floats (8 GiB as numpy arrays).
    child = pa.array(np.zeros(1 << 20))
    lists = pa.ListViewArray.from_arrays(
        pa.array([0] * 1000, pa.int32()), pa.array([1 << 20] * 1000, pa.int32()), child
    )
    for column in (string_views(1000, 1 << 20), lists):
        tracemalloc.start()
        try:
            with pytest.raises(cas.DeclaredSizeError, match="views"):
                local_store.get(plant_frame(local_store, ipc(pa.table({"v": column}))))
            assert tracemalloc.get_traced_memory()[1] < 64 << 20
        finally:
            tracemalloc.stop()


def test_offsets_out_of_bounds_are_refused_not_a_crash(local_store: cas.Store) -> None:
    # pyarrow reads these without complaint, and to_pandas then reads 1 GiB past the buffer: a segfault.
    offsets = struct.pack("<3i", 0, 1 << 30, 5)
    column = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(offsets), pa.py_buffer(b"hello")])
    with pytest.raises(cas.CorruptObjectError, match="out of bounds"):
        local_store.get(plant_frame(local_store, ipc(pa.table({"s": column}))))


def test_mangled_arrow_files_only_raise_typed_errors(local_store: cas.Store) -> None:
    # In a child process: before the checks, some of these crashed the interpreter (bad offsets).
    out = run_python(f"""
        import random, numpy as np, pandas as pd, pyarrow as pa, cas
        from tests.test_trust_materializers import ipc, plant_frame
        store = cas.open({local_store.url!r}, create=False)
        lists = pa.ListViewArray.from_arrays(pa.array([0, 1] * 10, pa.int32()), pa.array([2, 1] * 10, pa.int32()),
                                             pa.array([1.0, 2.0, 3.0]))
        seeds = [
            ipc(pa.Table.from_pandas(pd.DataFrame({{"a": np.arange(20), "s": [f"v{{i}}" for i in range(20)],
                                                    "n": [None] * 20}}))),
            ipc(pa.table({{"d": pa.array(["x", "y"] * 10).dictionary_encode(), "l": pa.array([[1, 2], [3]] * 10),
                          "st": pa.array([{{"a": 1, "b": "x"}}] * 20)}})),
            ipc(pa.table({{"sv": pa.array(["abc" * 10, None] * 10, pa.string_view()), "lv": lists}})),
        ]
        rng = random.Random(15)
        for _ in range(600):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                store.get(plant_frame(store, bytes(data)))
            except cas.CasError:
                pass
        print("done")
    """)
    assert "done" in out


# -- Arrow: metadata and types pandas can not take -------------------------------------


def test_column_names_that_literal_eval_rejects_are_corrupt(local_store: cas.Store) -> None:
    frame = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    table = pa.Table.from_pandas(frame)
    for names in (["(", "x"], ["1" * 5000, "2"], ["(" * 300 + ")" * 300, "y"], ["f'{" + "0," * 1000 + "}'", "z"]):
        hostile = table.rename_columns(names).replace_schema_metadata(table.schema.metadata)  # two column levels
        with pytest.raises(cas.CorruptObjectError, match="convert to pandas|not a label"):
            local_store.get(plant_frame(local_store, ipc(hostile)))


def test_a_column_name_that_parses_into_gigabytes_is_refused(local_store: cas.Store) -> None:
    # 5 MiB of "0," is a tuple of 2.5 million items: literal_eval's syntax tree took 2.3 GiB.
    frame = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    table = pa.Table.from_pandas(frame)
    hostile = table.rename_columns(["(" + "0," * 2_500_000 + ")", "x"]).replace_schema_metadata(table.schema.metadata)
    ref = plant_frame(local_store, ipc(hostile))
    tracemalloc.start()
    try:
        with pytest.raises(cas.CorruptObjectError, match="not a label"):
            local_store.get(ref)
        assert tracemalloc.get_traced_memory()[1] < 256 << 20
    finally:
        tracemalloc.stop()
    long_labels = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a, b (c)" * 300, 1), ("b", 2.5)]))
    pd.testing.assert_frame_equal(local_store.get(local_store.put(long_labels)), long_labels)


def test_a_union_column_is_corrupt_for_pandas_and_fine_for_arrow(local_store: cas.Store) -> None:
    union = pa.UnionArray.from_sparse(pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])])
    data = ipc(pa.table({"u": union}))
    with pytest.raises(cas.CorruptObjectError, match="ArrowNotImplementedError"):
        local_store.get(plant_frame(local_store, data))
    assert local_store.get(plant_frame(local_store, data, "cas.arrow")).column("u").to_pylist() == [1, "b"]


def test_stored_labels_that_do_not_fit_the_columns_are_corrupt(local_store: cas.Store) -> None:
    data = ipc(pa.Table.from_pandas(pd.DataFrame({"0": [1], "1": [2]})))
    for facts in ({"series": False, "name": None, "labels": [1]}, {"series": False, "name": None, "labels": 5},
                  {"series": True, "name": None, "labels": None}):  # fmt: skip
        ref = plant(local_store, {"table.arrow": data, "pandas.msgpack": valuecodec.encode(facts)}, "cas.pandas",
                    "pandas.DataFrame")  # fmt: skip
        with pytest.raises(cas.CorruptObjectError):
            local_store.get(ref)


# -- Arrow: what real users store still loads (above the 1 MiB chunking threshold) ------------


def test_real_frames_still_round_trip(local_store: cas.Store) -> None:
    wide = pd.DataFrame(np.random.default_rng(1).random((200_000, 10)), columns=[f"c{i}" for i in range(10)])
    mostly_null = pd.DataFrame({"id": np.arange(10**6), "empty": pd.Series([None] * 10**6, dtype=object)})
    labelled = pd.DataFrame(np.ones((100_000, 4)), columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1),
                                                                                         ("b", 2)]))  # fmt: skip
    for frame in (wide, mostly_null, labelled):
        ref = local_store.put(frame)
        assert local_store.info(ref).size > 1 << 20  # chunked: crosses the 1 MiB threshold
        pd.testing.assert_frame_equal(local_store.get(ref), frame)
    table = pa.table({"s": pa.array([f"value {i}" for i in range(200_000)], pa.string_view()),
                      "d": pa.array(["x", "y"] * 100_000).dictionary_encode(), "n": pa.nulls(200_000)})  # fmt: skip
    assert local_store.get(local_store.put(table)).equals(table)


# -- dataclasses and pydantic: no import through a lazy module __getattr__ ---------------------


@pytest.mark.parametrize("kind", ["cas.dataclass", "cas.pydantic"])
def test_a_qualname_never_reaches_a_modules_getattr(local_store: cas.Store, kind: str) -> None:
    files = {"fields.msgpack": valuecodec.encode({})} if kind == "cas.dataclass" else {"model.json": b"{}"}
    ref = plant(local_store, files, kind, "numpy.f2py.x", {"module": "numpy", "qualname": "f2py.x"})
    out = run_python(f"""
        import sys, numpy, pydantic, cas
        assert "numpy.f2py" not in sys.modules
        store = cas.open({local_store.url!r}, create=False)
        try:
            store.get({ref!r})
        except cas.IncompatibleArtifactError as exc:
            print("refused", exc)
        print("imported" if "numpy.f2py" in sys.modules else "not imported")
    """)
    assert "refused" in out and "not imported" in out


def test_stored_type_and_materializer_names_import_nothing(local_store: cas.Store) -> None:
    meta = valuecodec.encode({"descr": "<f8", "shape": [1], "order": "C", "scalar": False, "subclass": False})
    refs = [
        plant(local_store, {"meta": meta, "data": bytes(8)}, "cas.numpy", "numpy.f2py.Foo"),
        plant(local_store, {"value.msgpack": valuecodec.encode(1)}, "cas.value", "numpy.f2py.Foo"),
        plant(local_store, {"x": b""}, "numpy.f2py", "numpy.f2py.Foo"),
        plant(local_store, {"x": b""}, "materializers.pydantic_model", "pydantic.BaseModel"),
    ]
    out = run_python(f"""
        import sys, numpy, cas
        store = cas.open({local_store.url!r}, create=False)
        for ref in {refs!r}:
            try:
                print(repr(store.get(ref)))
            except cas.LoadError as exc:  # names a materializer this process has not registered
                print("refused", exc)
        print(sorted(m for m in sys.modules if m.startswith(("numpy.f2py", "pydantic", "materializers.pyd"))))
    """)
    assert out.count("refused") == 2 and out.rstrip().endswith("[]"), out


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


def test_stored_fields_the_dataclass_lacks_are_refused(local_store: cas.Store) -> None:
    facts = {"module": __name__, "qualname": "Point"}
    # Setting ``__class__`` from stored data would turn the object into another class.
    for fields in ({"x": 1, "__class__": "Other"}, {"x": 1, "z": 2}):
        ref = plant(local_store, {"fields.msgpack": valuecodec.encode(fields)}, "cas.dataclass",
                    f"{__name__}.Point", facts)  # fmt: skip
        with pytest.raises(cas.IncompatibleArtifactError, match="not fields"):
            local_store.get(ref)
    assert local_store.get(local_store.put(Point(1, 2))) == Point(1, 2)


def test_tuples_nested_past_the_limit_are_corrupt_not_a_crash(local_store: cas.Store) -> None:
    # 100,000 nested tuples in 0.5 MiB: each a msgpack decode inside the last, which overflowed the C stack.
    data = msgpack.packb(1)
    for _ in range(100_000):
        data = msgpack.packb(msgpack.ExtType(valuecodec.EXT_TUPLE, data))
    fields = msgpack.packb({"x": msgpack.ExtType(valuecodec.EXT_TUPLE, data)})
    ref = plant(local_store, {"fields.msgpack": fields}, "cas.dataclass", "__main__.Point",
                {"module": "__main__", "qualname": "Point"})  # fmt: skip
    out = run_python(f"""
        import dataclasses, threading, cas

        @dataclasses.dataclass
        class Point:
            x: object

        store = cas.open({local_store.url!r}, create=False)
        def get():
            try:
                store.get({ref!r})
            except cas.CorruptObjectError as exc:
                print("refused", exc)
        threading.stack_size(512 * 1024)  # small, as some platforms give threads
        thread = threading.Thread(target=get)
        thread.start()
        thread.join()
    """)
    assert "nested deeper" in out


# -- numpy: the declared shape against the stored bytes, before allocating ----------------------


def test_an_array_shape_larger_than_its_data_is_refused_before_allocating(local_store: cas.Store) -> None:
    for shape in ([2**27], [2**31, 2**31], [True, 8], [1] * 65, [-1]):
        meta = {"descr": "<f8", "shape": shape, "order": "C", "scalar": False, "subclass": False}
        ref = plant(local_store, {"meta": valuecodec.encode(meta), "data": bytes(8)}, "cas.numpy", "numpy.ndarray")
        tracemalloc.start()
        try:
            with pytest.raises(cas.CorruptObjectError):
                local_store.get(ref)
            assert tracemalloc.get_traced_memory()[1] < 16 << 20
        finally:
            tracemalloc.stop()
    meta = {"descr": "<f8", "shape": [4], "order": "C", "scalar": False, "subclass": False}
    ref = plant(local_store, {"meta": valuecodec.encode(meta), "data": np.arange(4.0).tobytes()}, "cas.numpy",
                "numpy.ndarray")  # fmt: skip
    assert local_store.get(ref).tolist() == [0.0, 1.0, 2.0, 3.0]


# -- pickles (trusted on purpose) still fail with typed errors ------------------------------------


def test_a_bad_trusted_pickle_raises_typed_errors(local_store: cas.Store) -> None:
    missing = pickle.dumps(Point(1), protocol=0).replace(__name__.encode(), b"no_such_module_xyz")
    for data, error in ((b"\x80\x05garbage", cas.CorruptObjectError), (missing, cas.IncompatibleArtifactError)):
        from materializers.pickled import _python

        ref = plant(local_store, {"object.pkl": data}, "cas.pickle", "builtins.object", {"python": _python()})
        with pytest.raises(error):
            local_store.get(ref, trust_pickle=True)

"""Verified bytes that do not load here are LoadError, naming what to do; damaged bytes stay CorruptObjectError.

Artifacts are planted the way another writer would make them: another process
with a custom materializer or a module this one lacks, another library
version (its record written through the store's own encoders), or hash-valid
bytes that no version of the materializer writes. No threshold is crossed on
purpose: these are about which error a load reports, at any size.
"""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import planting
import pyarrow as pa
import pytest

import cas
from materializers import valuecodec

ROOT = Path(__file__).resolve().parents[1]
NUMPY = importlib.metadata.version("numpy")
PYARROW = importlib.metadata.version("pyarrow")


plant = planting.plant  # hash-valid objects, as another writer of the store could put them


def run_python(code: str, *paths: Path) -> str:
    """Run ``code`` in a fresh interpreter that sees cas and ``paths``; return its stdout."""
    pythonpath = os.pathsep.join([str(ROOT), *map(str, paths)])
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


NUMPY_META = {"descr": "<f8", "shape": [4], "order": "C", "scalar": False, "subclass": False}


# -- a materializer or module this process does not have ------------------------------------------------


CUSTOM = """
import cas

class Reading:
    def __init__(self, value):
        self.value = value

class ReadingMaterializer(cas.Materializer):
    name = "lab.reading"
    version = "1"
    types = (Reading,)
    packages = ("numpy",)

    def save(self, obj, writer):
        writer.write_bytes("value.txt", repr(obj.value).encode())

    def load(self, reader, type_):
        return type_(float(reader.read_bytes("value.txt")))
"""


def test_an_unregistered_custom_materializer_names_the_module_to_import(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "lab_readings_xyz.py").write_text(CUSTOM)
    url = str(tmp_path / "store")
    ref = run_python(f"""
        import cas, lab_readings_xyz
        print(cas.open({url!r}).put(lab_readings_xyz.Reading(2.5), "reading").hash)
    """, tmp_path / "mods").strip()  # fmt: skip
    # A reader that has not imported the module: a LoadError naming it; cas imports nothing.
    out = run_python(f"""
        import sys, cas
        store = cas.open({url!r}, create=False)
        try:
            store.get("reading")
        except cas.LoadError as exc:
            print(type(exc).__name__, exc.module, exc.materializer, exc.recorded == {{"numpy": {NUMPY!r}}})
            print(exc)
        print("lab_readings_xyz" in sys.modules)
    """, tmp_path / "mods")  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "LoadError lab_readings_xyz lab.reading True", out
    assert "reading@1" in lines[1] and "import lab_readings_xyz" in lines[1] and f"numpy {NUMPY}" in lines[1]
    assert lines[-1] == "False", out
    # Once the reader imports it, the same artifact loads.
    out = run_python(f"""
        import cas, lab_readings_xyz
        print(cas.open({url!r}, create=False).get({ref!r}).value)
    """, tmp_path / "mods")  # fmt: skip
    assert out.strip() == "2.5"


def test_a_pickle_of_a_class_the_reader_lacks_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "lab_models_xyz.py").write_text("class Model:\n    def __init__(self):\n        self.w = 3\n")
    url = str(tmp_path / "store")
    run_python(f"""
        import cas, lab_models_xyz
        cas.open({url!r}, allow_pickle=True).put(lab_models_xyz.Model(), "model")
    """, tmp_path / "mods")  # fmt: skip
    with cas.open(url, create=False) as store, pytest.raises(cas.LoadError) as info:
        store.get("model", trust_pickle=True)  # this process can not import lab_models_xyz
    error = info.value
    assert isinstance(error, cas.IncompatibleArtifactError) and not isinstance(error, cas.IntegrityError)
    assert error.module == "lab_models_xyz" and error.materializer == "cas.pickle"
    cloudpickle = importlib.metadata.version("cloudpickle")
    assert error.recorded["cloudpickle"] == cloudpickle == error.installed["cloudpickle"]
    assert "model@1" in str(error) and "lab_models_xyz" in str(error) and f"cloudpickle {cloudpickle}" in str(error)


def test_a_materializer_missing_entirely_from_an_old_artifact_says_so(local_store: cas.Store) -> None:
    ref = plant(local_store, {"x": b"1"}, "lab.gone", "lab.Thing")  # written before cas recorded modules
    with pytest.raises(cas.LoadError, match="lab.gone 1 is not registered") as info:
        local_store.get(ref)
    assert info.value.module is None and "does not record which" in str(info.value)


def test_a_composite_leaf_whose_materializer_is_missing_is_a_load_error(local_store: cas.Store) -> None:
    files = local_store.reader(local_store.put({"weights": np.arange(3.0)}))
    stored = {p: files.read_bytes(p) for p in files.paths()}
    assert stored["composite.msgpack"].count(b"cas.numpy") == 1
    stored["composite.msgpack"] = stored["composite.msgpack"].replace(b"cas.numpy", b"lab.gone1")  # same length
    ref = plant(local_store, stored, "cas.value", "builtins.dict")
    with pytest.raises(cas.LoadError, match="lab.gone1") as info:
        local_store.get(ref)
    assert info.value.materializer == "cas.value" and ref in str(info.value)


def test_a_dataclass_whose_module_is_not_imported_is_a_load_error(local_store: cas.Store) -> None:
    fields = valuecodec.encode({"x": 1})
    ref = plant(local_store, {"fields.msgpack": fields}, "cas.dataclass", "lab_absent_xyz.Point",
                {"module": "lab_absent_xyz", "qualname": "Point"})  # fmt: skip
    with pytest.raises(cas.LoadError, match="import lab_absent_xyz before loading") as info:
        local_store.get(ref)
    assert info.value.materializer == "cas.dataclass" and str(info.value).startswith(f"cannot load {ref}")


# -- another library version ----------------------------------------------------------------------------


def test_numpy_bytes_another_numpy_wrote_are_a_load_error(local_store: cas.Store) -> None:
    meta = valuecodec.encode({**NUMPY_META, "descr": "<f8 from the future"})
    ref = plant(local_store, {"meta": meta, "data": bytes(32)}, "cas.numpy", "numpy.ndarray",
                {"cas.writer": {"packages": {"numpy": "99.0.0"}}})  # fmt: skip
    with pytest.raises(cas.LoadError) as info:
        local_store.get(ref)
    error = info.value
    assert error.recorded == {"numpy": "99.0.0"} and error.installed == {"numpy": NUMPY}
    assert error.materializer == "cas.numpy" and error.materializer_version == "1"
    text = str(error)
    assert "numpy 99.0.0" in text and f"numpy {NUMPY}" in text and "numpy==99.0.0" in text and ref in text


def test_arrow_bytes_another_pyarrow_wrote_are_a_load_error(local_store: cas.Store) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, pa.schema([("x", pa.int64())])) as ipc:
        ipc.write_table(pa.table({"x": [1, 2, 3]}))
    arrow = bytearray(sink.getvalue().to_pybytes())
    arrow[len(arrow) // 2 : len(arrow) // 2 + 16] = b"\xff" * 16  # what this pyarrow can not read
    ref = plant(local_store, {"table.arrow": bytes(arrow)}, "cas.arrow", "pyarrow.lib.Table",
                {"cas.writer": {"packages": {"pyarrow": "99.0.0"}}})  # fmt: skip
    with pytest.raises(cas.LoadError) as info:
        local_store.get(ref)
    assert info.value.recorded == {"pyarrow": "99.0.0"} and info.value.installed == {"pyarrow": PYARROW}
    assert f"pyarrow {PYARROW}" in str(info.value) and "pyarrow==99.0.0" in str(info.value)


class Marker:
    pass


def test_a_missing_library_is_a_load_error_with_both_versions(local_store: cas.Store) -> None:
    store_bytes = pickle.dumps(Marker, protocol=0).replace(__name__.encode(), b"absent_lib_xyz")
    ref = plant(local_store, {"object.pkl": store_bytes}, "cas.pickle", "builtins.object",
                {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                 "library": {"name": "absent_lib_xyz", "version": "1.2"}})  # fmt: skip
    with pytest.raises(cas.LoadError) as info:
        local_store.get(ref, trust_pickle=True)
    assert info.value.module == "absent_lib_xyz"
    assert info.value.recorded["absent_lib_xyz"] == "1.2" and info.value.installed["absent_lib_xyz"] is None
    assert "absent_lib_xyz 1.2" in str(info.value) and "no absent_lib_xyz" in str(info.value)


# -- a pickle that could never be loaded is refused at put ----------------------------------------------


def _refuse() -> None:
    raise RuntimeError("this object can not be rebuilt (a float8 tensor, say)")


class NeverLoads:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _refuse, ()


def test_a_pickle_that_can_not_be_unpickled_is_refused_at_put(local_store: cas.Store) -> None:
    with pytest.raises(cas.UnsupportedTypeError, match="can be pickled but not unpickled") as info:
        local_store.put(NeverLoads(), "never", allow_pickle=True)
    assert "float8" in str(info.value)
    assert not local_store.exists("never")


# -- what stays as it was --------------------------------------------------------------------------------


def test_an_artifact_written_without_the_record_still_loads(local_store: cas.Store) -> None:
    meta = valuecodec.encode(NUMPY_META)
    old = plant(local_store, {"meta": meta, "data": np.arange(4.0).tobytes()}, "cas.numpy", "numpy.ndarray")
    assert local_store.get(old).tolist() == [0.0, 1.0, 2.0, 3.0]
    # New artifacts carry the record only for a custom materializer: cas's own formats do not
    # depend on library versions, so the same array keeps one hash under every numpy.
    assert "cas.writer" not in local_store.info(local_store.put(np.arange(4.0))).metadata
    assert "cas.writer" not in local_store.info(local_store.put({"a": [1, 2]})).metadata
    assert "cas.writer" not in local_store.info(local_store.put(b"bytes")).metadata


def test_damaged_bytes_with_the_same_versions_are_still_corruption(local_store: cas.Store) -> None:
    meta = valuecodec.encode({**NUMPY_META, "descr": "<f8 damaged"})
    record = {"cas.writer": {"packages": {"numpy": NUMPY}}}
    ref = plant(local_store, {"meta": meta, "data": bytes(32)}, "cas.numpy", "numpy.ndarray", record)
    with pytest.raises(cas.CorruptObjectError, match="stored array description is invalid") as info:
        local_store.get(ref)
    assert not isinstance(info.value, cas.LoadError)
    assert f"written with numpy {NUMPY}; this process has numpy {NUMPY}" in str(info.value)
    data = b"\x80\x05 not a pickle"  # a pickle damaged the same way: the versions that wrote it can't read it
    ref = plant(local_store, {"object.pkl": data}, "cas.pickle", "builtins.object",
                {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"})  # fmt: skip
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(ref, trust_pickle=True)
    # A library error on bytes the installed versions wrote is corruption, and says both versions.
    arrow = b"ARROW1\x00\x00" + bytes(64) + b"ARROW1"
    ref = plant(local_store, {"table.arrow": arrow}, "cas.arrow", "pyarrow.lib.Table",
                {"cas.writer": {"packages": {"pyarrow": PYARROW}}})  # fmt: skip
    with pytest.raises(cas.CorruptObjectError) as info:
        local_store.get(ref)
    assert not isinstance(info.value, cas.LoadError) and f"pyarrow {PYARROW}; this process" in str(info.value)


def test_a_malformed_record_is_read_as_none(local_store: cas.Store) -> None:
    meta = valuecodec.encode({**NUMPY_META, "descr": "<f8 damaged"})
    hostile = {"cas.writer": {"module": "os; rm -rf /", "packages": {"numpy\n": "1", "x": ["list"]}}}
    ref = plant(local_store, {"meta": meta, "data": bytes(32)}, "cas.numpy", "numpy.ndarray", hostile)
    with pytest.raises(cas.CorruptObjectError) as info:
        local_store.get(ref)
    assert "rm -rf" not in str(info.value) and "\n" not in str(info.value)
    assert f"the artifact records no library versions (this process has numpy {NUMPY})" in str(info.value)

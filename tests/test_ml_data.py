"""Data types of the ML ecosystem (issue 18): polars, scipy.sparse, PIL images, xarray, matplotlib, datasets.

Each type round-trips exactly in this process, and once in a fresh one
(``test_fresh_process``: the child imports only cas and the library, so the
materializer is found through the registry's lazy maps). Hostile stores are
planted as another writer could (hash-valid files through cas's TreeWriter)
and must give typed errors only.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter
from materializers import valuecodec

ROOT = Path(__file__).resolve().parent.parent


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


def files_of(store: cas.Store, ref: Any, tmp: Path) -> dict[str, bytes]:
    """The files of a stored artifact, to tamper with and plant again."""
    out = store.export(ref, tmp / "files")
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


# -- values, and how to compare them -----------------------------------------------------------------------


def polars_values() -> dict[str, Any]:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({
        "i": [1, 2, None],
        "u8": pl.Series([1, 2, 3], dtype=pl.UInt8),
        "f": [0.5, float("nan"), None],
        "s": ["a", None, "ü"],
        "cat": pl.Series(["x", "y", "x"], dtype=pl.Categorical),
        "enum": pl.Series(["lo", "hi", "lo"], dtype=pl.Enum(["lo", "hi", "mid"])),
        "t": pl.Series([dt.datetime(2020, 1, 1, 12)] * 3).dt.replace_time_zone("Europe/Paris"),
        "d": [dt.date(2020, 1, 1), None, dt.date(1, 1, 1)],
        "dur": pl.Series([dt.timedelta(days=1, microseconds=3)] * 3),
        "dec": pl.Series(["1.50", "2.25", None]).cast(pl.Decimal(10, 2)),
        "lst": [[1, 2], [], None],
        "arr": pl.Series([[1, 2], [3, 4], [5, 6]], dtype=pl.Array(pl.Int64, 2)),
        "st": [{"x": 1, "y": "a"}, {"x": 2, "y": None}, None],
        "bin": [b"a", b"", None],
        "null": [None, None, None],
    })  # fmt: skip
    return {
        "polars_frame": frame,
        "polars_series": frame["enum"].alias("level"),
        "polars_empty": pl.DataFrame(),
        "polars_lazy": frame.lazy().filter(pl.col("i") > 1).select("i", "enum", "t"),
    }


def same_polars(a: Any, b: Any) -> None:
    import polars as pl
    from polars.testing import assert_frame_equal, assert_series_equal

    assert type(a) is type(b)
    if isinstance(a, pl.LazyFrame):
        assert_frame_equal(a.collect(), b.collect())
        assert a.explain(optimized=False) == b.explain(optimized=False)
    elif isinstance(a, pl.Series):
        assert_series_equal(a, b)
    else:
        assert a.schema == b.schema
        assert_frame_equal(a, b)


def sparse_values() -> dict[str, Any]:
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(18)
    base = sp.random_array((60, 40), density=0.1, format="csr", rng=rng, dtype=np.float64)
    found: dict[str, Any] = {}
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        for kind in ("matrix", "array"):
            cls = getattr(sp, f"{fmt}_{kind}")
            value = base.tobsr(blocksize=(3, 4)) if fmt == "bsr" else base.asformat(fmt)
            found[f"sparse_{fmt}_{kind}"] = cls(value)
    unsorted = sp.csr_array((np.array([1.0, 2.0, 3.0], np.float32), np.array([2, 0, 1]), np.array([0, 2, 3])),
                            shape=(2, 3))  # fmt: skip
    unsorted.indices = unsorted.indices.astype(np.int64)  # kept as int64, not narrowed to int32
    unsorted.indptr = unsorted.indptr.astype(np.int64)
    found["sparse_unsorted_int64"] = unsorted
    found["sparse_coo_duplicates"] = sp.coo_array(([1 + 2j, 3j, 5], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    found["sparse_coo_3d"] = sp.coo_array((np.array([1, 2], np.int8), ([0, 1], [2, 0], [3, 4])), shape=(2, 3, 5))
    found["sparse_empty"] = sp.csr_matrix((0, 0), dtype=np.int16)
    found["sparse_bool"] = sp.csc_array(base.toarray() > 0.5)
    return found


def same_sparse(a: Any, b: Any) -> None:
    from materializers.sparse import _components

    assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype and a.nnz == b.nnz
    if a.format in ("lil", "dok"):
        a, b = a.tocsr(), b.tocsr()
    for name, x in _components(a, a.format).items():
        y = _components(b, b.format)[name]
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name


def image_values() -> dict[str, Any]:
    pytest.importorskip("PIL")
    from PIL import Image

    rng = np.random.default_rng(18)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    found = {"image_rgb": photo, "image_palette": photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)}
    for i, mode in enumerate(("1", "L", "LA", "RGBA", "I;16", "I;16B", "I", "CMYK", "YCbCr", "LAB", "HSV", "RGBX",
                              "La")):  # fmt: skip
        img = Image.new(mode, (9, 7))
        img.frombytes(rng.integers(0, 256, len(img.tobytes()), dtype=np.uint8).tobytes())
        found[f"image_mode{i}"] = img  # names differing in case only ("LA", "La") are refused
    found["image_F"] = Image.fromarray(rng.standard_normal((7, 9)).astype(np.float32))
    found["image_empty"] = Image.new("RGB", (0, 3))
    photo.info = {"Title": "une fenêtre ✓", "dpi": (300.0, 300.0), "frames": 3, "raw": b"\x00\xff"}
    found["image_info"] = photo
    return found


def same_image(a: Any, b: Any) -> None:
    from PIL import Image

    assert type(b) is Image.Image and a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()
    assert a.info == b.info and a.getpalette(None) == b.getpalette(None)


def xarray_values() -> dict[str, Any]:
    xr = pytest.importorskip("xarray")
    import pandas as pd

    rng = np.random.default_rng(18)
    ds = xr.Dataset(
        {"temp": (("time", "x"), rng.random((5, 3)), {"units": "K", "scale": (1, 2), "_FillValue": np.float32(-1),
                                                      "valid_range": np.array([0.0, 1.0])}),
         "mask": (("x",), np.array([True, False, True])),
         "grid": (("y", "x"), np.asfortranarray(rng.random((4, 3)).astype(np.float32)))},
        coords={"time": pd.date_range("2020-01-01", periods=5, tz=None), "x": ["a", "b", "c"],
                "lat": (("y", "x"), rng.random((4, 3))), "label": (("x",), np.array(["u", "vv", None], dtype=object)),
                "when": dt.datetime(2020, 1, 1)},
        attrs={"title": "a run", "history": ["one", "two"], "n": 3, "seed": np.int64(18)},
    )  # fmt: skip
    return {
        "xarray_dataset": ds,
        "xarray_data_array": ds["temp"],
        "xarray_coordinate": ds["time"],  # a DataArray named as its own coordinate
        "xarray_unnamed": xr.DataArray(rng.random((2, 2)), dims=("a", "b")),
        "xarray_scalar": xr.DataArray(np.int16(5)),
        "xarray_empty": xr.Dataset(),
    }


def same_xarray(a: Any, b: Any) -> None:
    import xarray as xr

    assert type(a) is type(b)
    xr.testing.assert_identical(a, b)
    variables = a.variables if isinstance(a, xr.Dataset) else {None: a.variable, **a.coords.variables}
    other = b.variables if isinstance(b, xr.Dataset) else {None: b.variable, **b.coords.variables}
    assert list(variables) == list(other)
    for x, y in [(a.attrs, b.attrs), *((v.attrs, other[n].attrs) for n, v in variables.items())]:
        assert list(x) == list(y) and all(type(x[k]) is type(y[k]) for k in x)
    for name, variable in variables.items():
        assert variable.dtype == other[name].dtype and variable.dims == other[name].dims, name


def figure_values() -> dict[str, Any]:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    line = Figure(figsize=(4, 3), dpi=50)
    ax = line.add_subplot()
    ax.plot([1, 3, 2], label="loss")
    ax.set_title("training")
    ax.legend()
    heat = Figure(figsize=(2, 2), dpi=40)
    heat.add_subplot().imshow(np.random.default_rng(18).random((8, 8)))
    return {"figure_line": line, "figure_heat": heat}


def same_figure(fig: Any, image: Any) -> None:
    import io

    from PIL import Image

    from materializers.figures import _draw

    png, svg = _draw(fig)  # drawing again (here or in another process) gives the same bytes
    assert type(image) is Image.Image and image.mode == "RGBA"
    assert image.tobytes() == Image.open(io.BytesIO(png)).tobytes()
    assert image.info["svg"] == svg.decode()


def dataset_values() -> dict[str, Any]:
    hd = pytest.importorskip("datasets")
    features = hd.Features({
        "id": hd.Value("int32"),
        "text": hd.Value("string"),
        "label": hd.ClassLabel(names=["neg", "pos"]),
        "tokens": hd.List(hd.Value("int64")),
        "pixels": hd.Array2D((2, 2), "float32"),
        "meta": {"source": hd.Value("string"), "score": hd.Value("float64")},
    })  # fmt: skip
    rows = {
        "id": list(range(6)),
        "text": ["good", "bad", "fine", "", None, "ünïcode"],
        "label": [1, 0, 1, 0, 1, 0],
        "tokens": [[1, 2], [], [3], [4, 5, 6], [7], [8]],
        "pixels": [[[i, 0.5], [0.25, -i]] for i in range(6)],
        "meta": [{"source": "web", "score": i / 3} for i in range(6)],
    }
    info = hd.DatasetInfo(description="reviews", license="cc0", features=features)
    full = hd.Dataset.from_dict(rows, info=info, split="train")
    splits = hd.DatasetDict({
        "train": full.select(range(4)),
        "validation": full.shuffle(seed=18).select([0, 1]),  # an indices mapping: its rows, not its cache's
        "test": full.select([4, 5]).with_format("numpy", columns=["id", "pixels"]),
    })  # fmt: skip
    return {"dataset": full, "dataset_dict": splits}


def same_dataset(a: Any, b: Any) -> None:
    import datasets as hd

    assert type(a) is type(b)
    pairs = [(a, b)] if isinstance(a, hd.Dataset) else [(a[n], b[n]) for n in a]
    assert isinstance(a, hd.Dataset) or list(a) == list(b)
    for x, y in pairs:
        assert x.features == y.features and x.format == y.format and x.split == y.split
        assert x.info.description == y.info.description and x.info.license == y.info.license
        assert x.with_format(None).to_dict() == y.with_format(None).to_dict()


#: name -> (values, compare); the fresh-process test rebuilds the values from these.
KINDS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[Any, Any], None]]] = {
    "polars": (polars_values, same_polars),
    "sparse": (sparse_values, same_sparse),
    "images": (image_values, same_image),
    "xarray": (xarray_values, same_xarray),
    "figures": (figure_values, same_figure),
    "datasets": (dataset_values, same_dataset),
}


def values_of(kind: str) -> dict[str, Any]:
    return KINDS[kind][0]()


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip(local_store: cas.Store, kind: str) -> None:
    build, same = KINDS[kind]
    for label, value in build().items():
        back = local_store.get(local_store.put(value, label))
        same(value, back)
        local_store.visualizations(label)  # drawn without error


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_fresh_process(local_store: cas.Store, kind: str) -> None:
    values = values_of(kind)
    labels = list(values)
    for label, value in values.items():
        local_store.put(value, label)
    local_store.close()  # everything written before the child reads it
    code = f"""
        import sys
        import cas
        store = cas.open({str(local_store.url)!r}, create=False)
        loaded = {{label: store.get(label) for label in {labels!r}}}
        assert not any(m.startswith("tests") for m in sys.modules)
        from tests.test_ml_data import KINDS
        build, same = KINDS[{kind!r}]
        for label, value in build().items():
            same(value, loaded[label])
        print("ok")
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


# -- polars --------------------------------------------------------------------------------------------------


def test_polars_lazy_frame_with_a_python_function_is_refused(local_store: cas.Store) -> None:
    pl = pytest.importorskip("polars")
    lazy = pl.LazyFrame({"a": [1]}).with_columns(pl.col("a").map_elements(lambda x: x, return_dtype=pl.Int64))
    with pytest.raises(cas.UnsupportedTypeError, match="Python function"):
        local_store.put(lazy)


def test_polars_lazy_frame_records_the_polars_version(local_store: cas.Store) -> None:
    pl = pytest.importorskip("polars")
    ref = local_store.put(pl.LazyFrame({"a": [1]}))
    assert local_store.info(ref).metadata["polars"] == pl.__version__


def test_hostile_polars_plan_with_a_pickled_function_is_refused_before_polars_reads_it(local_store: cas.Store) -> None:
    pl = pytest.importorskip("polars")
    import json
    import pickle
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = json.loads(pl.LazyFrame({"a": [1]}).serialize(format="json"))
    # What polars writes for a Python function: its magic, then a pickle (this one would run os.system).
    payload = list(b"PLPYFN" + pickle.dumps(print))
    plan = {"HStack": {"input": plan, "exprs": [{"AnonymousFunction": {"input": [], "function": payload}}]}}
    for hostile in (plan, {"x": {"df": list(pickle.dumps(print))}}):
        ref = plant(local_store, {"plan.json": json.dumps(hostile).encode()}, "cas.polars.lazy",
                    "polars.lazyframe.frame.LazyFrame", {"polars": pl.__version__})  # fmt: skip
        with pytest.raises(cas.CorruptObjectError, match="refused"):
            local_store.get(ref)
    ref = plant(local_store, {"plan.json": b"[" * 100_000}, "cas.polars.lazy", "polars.lazyframe.frame.LazyFrame")
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(ref)


def test_hostile_polars_table_goes_through_the_arrow_checks(local_store: cas.Store, tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    sink = pa.BufferOutputStream()
    table = pa.table({"x": pa.nulls(2**27)})
    with pa.ipc.new_file(sink, table.schema) as ipc:
        ipc.write_table(table)
    facts = valuecodec.encode({"series": False, "name": None})
    ref = plant(local_store, {"table.arrow": sink.getvalue().to_pybytes(), "polars.msgpack": facts}, "cas.polars",
                "polars.dataframe.frame.DataFrame")  # fmt: skip
    with pytest.raises(cas.DeclaredSizeError):
        local_store.get(ref)
    series = valuecodec.encode({"series": True, "name": None})
    good = local_store.put(pl.DataFrame({"a": [1], "b": [2]}))
    arrow = files_of(local_store, good, tmp_path)["table.arrow"]
    enum = pl.DataFrame({"e": pl.Series(["lo", "hi"], dtype=pl.Enum(["lo", "hi"]))}).to_arrow()
    field = enum.schema.field(0).with_metadata({b"_PL_ENUM_VALUES2": b"2;lo999999999999;hi"})  # polars panics
    lying = pa.table([enum.column(0)], schema=pa.schema([field]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, lying.schema) as ipc:
        ipc.write_table(lying)
    for files in ({"table.arrow": sink.getvalue().to_pybytes(), "polars.msgpack": facts},
                  {"table.arrow": b"ARROW1" + b"\0" * 30 + b"ARROW1", "polars.msgpack": facts},
                  {"table.arrow": arrow, "polars.msgpack": series},
                  {"table.arrow": arrow, "polars.msgpack": valuecodec.encode([1])}):  # fmt: skip
        ref = plant(local_store, files, "cas.polars", "polars.dataframe.frame.DataFrame")
        with pytest.raises(cas.CorruptObjectError):
            local_store.get(ref)


# -- scipy.sparse --------------------------------------------------------------------------------------------


def disk_usage(store: cas.Store) -> int:
    return sum(p.stat().st_size for p in Path(store.url).rglob("*") if p.is_file())


def sparse_files(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    from numpy.lib import format as npy_format

    described = {n: {"descr": npy_format.dtype_to_descr(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()}
    files = {n: a.tobytes() for n, a in arrays.items()}
    return {"sparse.msgpack": valuecodec.encode({"components": described, **meta}), **files}


CSR = {"format": "csr", "array": True, "shape": [2, 3]}
GOOD = {"data": np.array([1.0, 2.0]), "indices": np.array([0, 2], np.int32), "indptr": np.array([0, 1, 2], np.int32)}


def test_sparse_components_dedup_with_numpy_arrays(local_store: cas.Store) -> None:
    sp = pytest.importorskip("scipy.sparse")
    data = np.random.default_rng(0).random(1 << 18)  # 2 MiB: past the 1 MiB chunking threshold
    first = sp.csr_array((data, np.arange(data.size) % 1000, np.arange(data.size + 1)), shape=(data.size, 1000))
    local_store.put(first, "m")
    before = disk_usage(local_store)
    second = first.copy()
    second.data = second.data * 2  # the indices and indptr (3 MiB) are unchanged
    local_store.put(second, "m")
    local_store.put(data, "plain")  # the same bytes as the first matrix's data
    assert disk_usage(local_store) - before < 1.2 * data.nbytes  # only the new data
    same_sparse(second, local_store.get("m"))


@pytest.mark.parametrize(
    "meta, arrays, match",
    [
        (CSR, {**GOOD, "indices": np.array([0, 3], np.int32)}, "outside"),  # column 3 of a 3-column matrix
        (CSR, {**GOOD, "indices": np.array([0, -1], np.int32)}, "outside"),
        (CSR, {**GOOD, "indptr": np.array([0, 2, 1], np.int32)}, "span"),
        (CSR, {**GOOD, "indptr": np.array([0, 2, 0, 2], np.int32)}, "entries"),
        ({**CSR, "shape": [3, 3]}, {**GOOD, "indptr": np.array([0, 2, 1, 2], np.int32)}, "monotone"),
        ({**CSR, "shape": [2, 3], "format": "csc"}, {**GOOD, "indptr": np.array([0, 1, 2], np.int32)}, "entries"),
        (CSR, {**GOOD, "indices": np.array([0.0, 2.0])}, "not integers"),
        (CSR, {**GOOD, "data": np.array([1.0])}, "span"),
        ({**CSR, "shape": [-1, 3]}, GOOD, "shape"),
        ({**CSR, "format": "pickle"}, GOOD, "format"),
        (
            {"format": "coo", "array": True, "shape": [2, 3]},
            {"data": np.array([1.0]), "coords/0": np.array([1]), "coords/1": np.array([7])},
            "outside",
        ),
        (
            {"format": "coo", "array": True, "shape": [2, 3]},
            {"data": np.array([1.0, 2.0]), "coords/0": np.array([1]), "coords/1": np.array([0])},
            "length",
        ),
        (
            {"format": "bsr", "array": True, "shape": [4, 4]},
            {"data": np.ones((1, 3, 2)), "indices": np.array([0], np.int32), "indptr": np.array([0, 1], np.int32)},
            "tile",
        ),
        (
            {"format": "dia", "array": True, "shape": [3, 3]},
            {"data": np.ones((2, 3)), "offsets": np.array([1, 1], np.int32)},
            "repeat",
        ),
        ({"format": "dia", "array": True, "shape": [3, 3]}, {"data": np.ones((2, 3))}, "components"),
    ],
)
def test_hostile_sparse_components_are_refused(local_store: cas.Store, meta: dict[str, Any],
                                               arrays: dict[str, np.ndarray], match: str) -> None:  # fmt: skip
    pytest.importorskip("scipy.sparse")
    ref = plant(local_store, sparse_files(meta, arrays), "cas.scipy.sparse", "scipy.sparse._csr.csr_array")
    with pytest.raises(cas.CorruptObjectError, match=match):
        local_store.get(ref)


def test_hostile_sparse_sizes_lie(local_store: cas.Store) -> None:
    pytest.importorskip("scipy.sparse")
    files = sparse_files(CSR, GOOD)
    files["data"] = files["data"][:8]  # one float64 where the description says two
    with pytest.raises(cas.CorruptObjectError, match="bytes"):
        local_store.get(plant(local_store, files, "cas.scipy.sparse", "scipy.sparse._csr.csr_array"))
    # a huge declared shape with an indptr sized for it is refused by its stored size, never allocated
    files = sparse_files({**CSR, "shape": [2**40, 3]}, GOOD)
    with pytest.raises(cas.CorruptObjectError, match="entries"):
        local_store.get(plant(local_store, files, "cas.scipy.sparse", "scipy.sparse._csr.csr_array"))


# -- PIL images ----------------------------------------------------------------------------------------------


def png_header(width: int, height: int, mode_bits: bytes = b"\x08\x00") -> bytes:
    """A PNG signature and IHDR declaring ``width`` x ``height`` (8-bit gray), and a tiny IDAT: no pixels behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">II", width, height) + mode_bits + b"\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")  # fmt: skip


def image_meta(fmt: str, mode: str, size: list[int]) -> bytes:
    return valuecodec.encode({"format": fmt, "mode": mode, "size": size, "info": {}})


@pytest.mark.parametrize(
    "files, error, match",
    [
        # the description and the PNG agree on 30,000 x 30,000 pixels: refused before decoding
        (
            {"image.msgpack": image_meta("png", "L", [30_000, 30_000]), "image.png": png_header(30_000, 30_000)},
            cas.DeclaredSizeError,
            "MAX_IMAGE_PIXELS",
        ),
        # the description says 8 x 8, the PNG's header 20,000 x 4,000: refused before decoding
        (
            {"image.msgpack": image_meta("png", "L", [8, 8]), "image.png": png_header(20_000, 4_000)},
            cas.CorruptObjectError,
            "description says",
        ),
        (
            {"image.msgpack": image_meta("png", "RGB", [8, 8]), "image.png": png_header(8, 8)},
            cas.CorruptObjectError,
            "description says",
        ),
        (
            {"image.msgpack": image_meta("png", "L", [8, 8]), "image.png": png_header(8, 8)[:40]},
            cas.CorruptObjectError,
            "decode",
        ),
        (
            {"image.msgpack": image_meta("png", "L", [8, 8]), "image.png": b"GIF89a" + b"\0" * 40},
            cas.CorruptObjectError,
            "decode",
        ),
        (
            {"image.msgpack": image_meta("raw", "F", [100, 100]), "image.raw": b"\0" * 400},
            cas.CorruptObjectError,
            "bytes",
        ),
        ({"image.msgpack": image_meta("raw", "F", [2**31, 0]), "image.raw": b""}, cas.DeclaredSizeError, "MAX"),
        ({"image.msgpack": image_meta("raw", "XYZ", [1, 1]), "image.raw": b"\0"}, cas.CorruptObjectError, "mode"),
        ({"image.msgpack": image_meta("raw", "L", [-1, 1]), "image.raw": b""}, cas.CorruptObjectError, "size"),
        ({"image.msgpack": image_meta("tiff", "L", [1, 1]), "image.raw": b"\0"}, cas.CorruptObjectError, "format"),
    ],
)
def test_hostile_images_are_refused_before_decoding(local_store: cas.Store, files: dict[str, bytes],
                                                    error: type[Exception], match: str) -> None:  # fmt: skip
    pytest.importorskip("PIL")
    ref = plant(local_store, files, "cas.pil", "PIL.Image.Image")
    with pytest.raises(error, match=match):
        local_store.get(ref)


def test_an_image_mode_png_can_not_hold_is_stored_raw(local_store: cas.Store) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    for mode, file in (("RGB", "image.png"), ("F", "image.raw"), ("I;16B", "image.raw")):
        info = local_store.info(local_store.put(Image.new(mode, (4, 4))))
        assert file in [f.path for f in info.files]


# -- xarray --------------------------------------------------------------------------------------------------


def xarray_files(variables: list[dict[str, Any]], arrays: dict[str, bytes], kind: str = "Dataset") -> dict[str, bytes]:
    meta = {"kind": kind, "name": None, "attrs": {}, "numpy_attrs": {}, "variables": variables}
    return {"xarray.msgpack": valuecodec.encode(meta), **arrays}


def variable(name: str, dims: list[str], shape: list[int], **more: Any) -> dict[str, Any]:
    return {"name": name, "dims": dims, "attrs": {}, "numpy_attrs": {}, "coord": False, "shape": shape, "descr": "<f8",
            "order": "C",
            **more}  # fmt: skip


@pytest.mark.parametrize(
    "variables, arrays, match",
    [
        ([variable("v", ["x"], [2, 2])], {"variables/0": bytes(32)}, "dims name"),  # shape mismatching dims
        ([variable("v", ["x", "x"], [2, 2])], {"variables/0": bytes(32)}, "dims name"),
        (
            [variable("v", ["x"], [3]), variable("w", ["x"], [4])],
            {"variables/0": bytes(24), "variables/1": bytes(32)},
            "sizes",
        ),
        ([variable("v", ["x"], [2**40])], {"variables/0": bytes(16)}, "bytes"),  # a size lie, never allocated
        ([variable("v", ["x"], [2], descr="|O")], {"variables/0": bytes(16)}, "dtype"),
        ([variable("v", ["x"], [2], descr=[["a", "<f8"]] * 2)], {"variables/0": bytes(16)}, "dtype"),
        ([variable("v", ["x"], [3], values=[1, 2])], {}, "fill"),
        (
            [variable("v", ["x"], [2]), variable("v", ["x"], [2])],
            {"variables/0": bytes(16), "variables/1": bytes(16)},
            "twice",
        ),
        ([{"name": "v", "dims": ["x"]}], {}, "described"),
        (
            [variable("v", ["x"], [2], attrs={"f": None}, numpy_attrs={"f": ["<f8", [2**30], b"\0" * 8, False]})],
            {"variables/0": bytes(16)},
            "bytes do not match",
        ),  # a numpy attribute lying about its size
        (
            [variable("v", ["x"], [2], numpy_attrs={"g": ["<f8", [], b"\0" * 8, True]})],
            {"variables/0": bytes(16)},
            "attributes",
        ),
        (
            [variable("v", ["x"], [2]), variable("w", ["x"], [2])],
            {"variables/0": bytes(16), "variables/1": bytes(16)},
            "exactly one",
        ),
    ],
)
def test_hostile_xarray_variables_are_refused(local_store: cas.Store, variables: list[dict[str, Any]],
                                              arrays: dict[str, bytes], match: str) -> None:  # fmt: skip
    pytest.importorskip("xarray")
    kind = "DataArray" if match == "exactly one" else "Dataset"
    ref = plant(local_store, xarray_files(variables, arrays, kind), "cas.xarray", f"xarray.core.dataset.{kind}")
    with pytest.raises(cas.CorruptObjectError, match=match):
        local_store.get(ref)


def test_xarray_multi_index_is_refused_at_put(local_store: cas.Store) -> None:
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset({"v": (("a", "b"), np.zeros((2, 2)))}, coords={"a": [1, 2], "b": [3, 4]}).stack(z=("a", "b"))
    with pytest.raises(cas.UnsupportedTypeError, match="PandasMultiIndex"):
        local_store.put(ds)


# -- matplotlib ----------------------------------------------------------------------------------------------


def test_a_figure_is_stored_as_png_and_svg_and_shown_as_both(local_store: cas.Store) -> None:
    pytest.importorskip("matplotlib")
    fig = figure_values()["figure_line"]
    ref = local_store.put(fig, "fig")
    assert sorted(f.path for f in local_store.info(ref).files) == ["figure.msgpack", "figure.png", "figure.svg"]
    assert local_store.put(fig, "fig").hash == ref.hash  # drawn again: the same bytes
    kinds = [v.media_type for v in local_store.visualizations(ref)]  # computed from the loaded image
    assert "image/png" in kinds and "image/svg+xml" in kinds


def test_a_figure_object_round_trips_only_with_pickle_consent(local_store: cas.Store) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = figure_values()["figure_line"]
    ref = local_store.put(fig, materializer="cas.pickle", allow_pickle=True)
    with pytest.raises(cas.CasError):
        local_store.get(ref)  # no trust, no code run
    back = local_store.get(ref, trust_pickle=True)
    assert isinstance(back, Figure) and back.axes[0].get_title() == "training"


@pytest.mark.parametrize(
    "files, error, match",
    [
        (
            {
                "figure.msgpack": valuecodec.encode({"size": [8, 8]}),
                "figure.png": png_header(9000, 9000),
                "figure.svg": b"<svg/>",
            },
            cas.CorruptObjectError,
            "description says",
        ),
        (
            {
                "figure.msgpack": valuecodec.encode({"size": [50_000, 50_000]}),
                "figure.png": png_header(50_000, 50_000),
                "figure.svg": b"<svg/>",
            },
            cas.DeclaredSizeError,
            "MAX_IMAGE_PIXELS",
        ),
        (
            {"figure.msgpack": valuecodec.encode({"size": "big"}), "figure.png": b"", "figure.svg": b""},
            cas.CorruptObjectError,
            "size",
        ),
        (
            {
                "figure.msgpack": valuecodec.encode({"size": [8, 8]}),
                "figure.png": png_header(8, 8, b"\x08\x06"),
                "figure.svg": b"\xff\xfe",
            },
            cas.CorruptObjectError,
            "decode|UTF-8",
        ),
    ],
)
def test_hostile_figures_are_refused(local_store: cas.Store, files: dict[str, bytes], error: type[Exception],
                                     match: str) -> None:  # fmt: skip
    pytest.importorskip("matplotlib")
    ref = plant(local_store, files, "cas.matplotlib.figure", "matplotlib.figure.Figure")
    with pytest.raises(error, match=match):
        local_store.get(ref)


# -- Hugging Face datasets -----------------------------------------------------------------------------------


def test_a_disk_backed_dataset_is_stored_as_data(local_store: cas.Store, tmp_path: Path) -> None:
    hd = pytest.importorskip("datasets")
    import shutil

    source = dataset_values()["dataset"]
    source.save_to_disk(str(tmp_path / "cache"))
    mapped = hd.load_from_disk(str(tmp_path / "cache"))  # memory-mapped from the cache files
    assert mapped.cache_files
    ref = local_store.put(mapped)
    files = files_of(local_store, ref, tmp_path / "out")
    assert not any(str(tmp_path).encode() in data for data in files.values())  # no path to the cache
    shutil.rmtree(tmp_path / "cache")
    back = local_store.get(ref)
    assert not back.cache_files
    assert back.to_dict() == source.to_dict() and back.features == source.features


def test_a_dataset_with_media_features_is_refused_at_put(local_store: cas.Store) -> None:
    hd = pytest.importorskip("datasets")
    ds = hd.Dataset.from_dict({"img": [None]}, features=hd.Features({"img": hd.Image()}))
    with pytest.raises(cas.UnsupportedTypeError, match="media"):
        local_store.put(ds)


def dataset_files(tmp_path: Path, local_store: cas.Store, **change: Any) -> dict[str, bytes]:
    files = files_of(local_store, local_store.put(dataset_values()["dataset"]), tmp_path)
    meta = valuecodec.decode(files["dataset.msgpack"])
    facts = meta["splits"]["data"]
    for key, value in change.items():
        if key == "splits":
            meta["splits"] = value
        else:
            facts[key] = value
    return {**files, "dataset.msgpack": valuecodec.encode(meta)}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"features": {"id": {"_type": "Image"}}}, "not a data feature"),  # would open paths named in rows
        ({"features": {"id": {"_type": "Value", "dtype": "string"}}}, "match|not load"),  # features lie about the table
        ({"features": {"id": {"_type": "os.system"}}}, "not a data feature"),
        ({"format": {"type": "custom", "columns": None, "output_all_columns": False, "format_kwargs": {}}}, "custom"),
        ({"split": "../../etc"}, "split name"),
        ({"info": {"description": 3}}, "info"),
        ({"splits": {"../x": {}}}, "split names"),
    ],
)
def test_hostile_dataset_descriptions_are_refused(local_store: cas.Store, tmp_path: Path, change: dict[str, Any],
                                                  match: str) -> None:  # fmt: skip
    pytest.importorskip("datasets")
    ref = plant(local_store, dataset_files(tmp_path, local_store, **change), "cas.datasets",
                "datasets.arrow_dataset.Dataset")  # fmt: skip
    with pytest.raises(cas.CorruptObjectError, match=match):
        local_store.get(ref)


def test_hostile_dataset_table_goes_through_the_arrow_checks(local_store: cas.Store, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    sink = pa.BufferOutputStream()
    table = pa.table({"id": pa.nulls(2**27)})  # 2^27 rows in a few hundred bytes
    with pa.ipc.new_file(sink, table.schema) as ipc:
        ipc.write_table(table)
    files = dataset_files(tmp_path, local_store)
    files["data/table.arrow"] = sink.getvalue().to_pybytes()
    with pytest.raises(cas.DeclaredSizeError):
        local_store.get(plant(local_store, files, "cas.datasets", "datasets.arrow_dataset.Dataset"))

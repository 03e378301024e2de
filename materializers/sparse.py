"""scipy.sparse matrices and arrays, as their component arrays.

Each component (``data``, ``indices``, ``indptr``, a COO's ``coords/<i>``,
a DIA's ``offsets``) is one file of raw bytes, written as the numpy
materializer writes an array's ``data`` (so a component that did not change,
or equals a stored numpy array, dedups chunk for chunk). ``sparse.msgpack``
records the format, whether it is a ``*_array`` or a ``*_matrix``, the
shape, and each component's dtype (as ``.npy`` spells it) and shape. LIL and
DOK have no arrays of their own: they are stored as CSR and converted back.

Loading checks everything scipy would trust before constructing: each
component's size against its description, index dtypes, ``indptr`` starting
at 0, monotone and ending at the number of stored values, every index within
the shape. The components are then set as they were stored, so index dtypes
(int32 or int64) and unsorted or duplicate entries come back unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.lib import format as npy_format

from cas.errors import CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.numpy_array import _descr_in, _read_array, _write_array
from materializers.visuals import Visualization

_FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
#: (format, is a sparray) -> class; nothing else is stored or rebuilt.
_CLASSES: dict[tuple[str, bool], type] = {
    (f, array): getattr(sp, f"{f}_{'array' if array else 'matrix'}") for f in _FORMATS for array in (False, True)
}
_KEYS = {cls: key for key, cls in _CLASSES.items()}
_STORED_AS: dict[str, str] = {"lil": "csr", "dok": "csr"}
#: Largest number of dimensions a stored (COO) array may declare.
_MAX_NDIM = 64


def _components(m: Any, fmt: str) -> dict[str, np.ndarray]:
    if fmt in ("csr", "csc", "bsr"):
        return {"data": m.data, "indices": m.indices, "indptr": m.indptr}
    if fmt == "coo":
        return {"data": m.data, **{f"coords/{i}": c for i, c in enumerate(m.coords)}}
    return {"data": m.data, "offsets": m.offsets}  # dia


class SparseMaterializer(Materializer):
    """scipy.sparse csr, csc, coo, bsr, dia, lil and dok, as matrices (spmatrix) and arrays (sparray)."""

    name = "cas.scipy.sparse"
    version = "1"
    packages = ("scipy", "numpy")
    # DOK classes are dicts too, and dict comes before spmatrix/sparray in their MRO
    types = (sp.spmatrix, sp.sparray, sp.dok_matrix, sp.dok_array)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        key = _KEYS.get(type(obj))
        if key is None:
            raise UnsupportedTypeError(
                f"{type(obj).__module__}.{type(obj).__qualname__} is not a scipy.sparse class cas restores; "
                "convert it (e.g. .tocsr()) or store it with allow_pickle=True"
            )
        fmt, array = key
        stored = _STORED_AS.get(fmt, fmt)
        m = obj
        if stored != fmt:
            try:
                m = obj.tocsr()
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise UnsupportedTypeError(
                    f"a scipy {fmt} with shape {obj.shape} does not convert to CSR: {exc}"
                ) from None
        parts = {name: np.asarray(a) for name, a in _components(m, stored).items()}
        for name, a in parts.items():
            if a.dtype.hasobject:
                raise UnsupportedTypeError(f"scipy sparse {name} of Python objects: store it with allow_pickle=True")
        meta = {
            "format": fmt,
            "array": array,
            "shape": [int(n) for n in obj.shape],
            "components": {
                name: {"descr": npy_format.dtype_to_descr(a.dtype), "shape": list(a.shape)} for name, a in parts.items()
            },
        }
        writer.write_bytes("sparse.msgpack", valuecodec.encode(meta))
        for name, a in parts.items():
            _write_array(writer, name, np.ascontiguousarray(a))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta = valuecodec.decode(reader.read_bytes("sparse.msgpack"))
        if not isinstance(meta, dict) or set(meta) != {"format", "array", "shape", "components"}:
            raise CorruptObjectError("stored sparse description is not one cas writes")
        fmt, array, shape, described = meta["format"], meta["array"], meta["shape"], meta["components"]
        if not isinstance(fmt, str) or fmt not in _FORMATS or type(array) is not bool:
            raise CorruptObjectError("stored sparse format is not one cas writes")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= _MAX_NDIM
                or not all(type(n) is int and n >= 0 for n in shape)):  # fmt: skip
            raise CorruptObjectError("stored sparse shape is invalid")
        stored = _STORED_AS.get(fmt, fmt)
        if len(shape) != 2 and (stored != "coo" or not array):
            raise CorruptObjectError(f"a stored {fmt} has {len(shape)} dimensions")
        expected = {"data", "offsets"} if stored == "dia" else {"data", "indices", "indptr"}
        if stored == "coo":
            expected = {"data", *(f"coords/{i}" for i in range(len(shape)))}
        if not isinstance(described, dict) or set(described) != expected:
            raise CorruptObjectError(f"stored {fmt} components are not the ones it has")
        parts = {name: self._component(reader, name, info) for name, info in described.items()}
        m = _build(stored, array, tuple(shape), parts)
        if stored != fmt:
            m = m.tolil() if fmt == "lil" else m.todok()
        return m

    @staticmethod
    def _component(reader: ArtifactReader, name: str, info: Any) -> np.ndarray:
        if not isinstance(info, dict) or set(info) != {"descr", "shape"}:
            raise CorruptObjectError(f"stored sparse component {name} has no valid description")
        try:
            dtype = npy_format.descr_to_dtype(_descr_in(info["descr"]))
            shape = tuple(info["shape"])
        except (TypeError, ValueError, RecursionError) as exc:
            raise CorruptObjectError(f"stored sparse component {name} has an invalid dtype: {exc}") from None
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise CorruptObjectError(f"stored sparse component {name} has the dtype {dtype}")
        if name != "data" and dtype.kind not in "iu":
            raise CorruptObjectError(f"stored sparse {name} is {dtype}, not integers")
        if not 1 <= len(shape) <= 3 or not all(type(n) is int and n >= 0 for n in shape):
            raise CorruptObjectError(f"stored sparse component {name} has an invalid shape")
        if name != "data" and len(shape) != 1:
            raise CorruptObjectError(f"stored sparse {name} is not one-dimensional")
        arr: np.ndarray = _read_array(reader, name, dtype, shape, "C")
        return arr

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"format": obj.format, "shape": [int(n) for n in obj.shape], "dtype": str(obj.dtype), "nnz": obj.nnz}

    def visualize(self, obj: Any) -> list[Visualization]:
        cells = math.prod(obj.shape)
        facts: list[tuple[str, Any]] = [
            ("type", type(obj).__name__), ("shape", obj.shape), ("dtype", str(obj.dtype)),
            ("stored values", f"{obj.nnz:,}"), ("density", f"{obj.nnz / cells:.3g}" if cells else "-"),
        ]  # fmt: skip
        found = [visuals.summary(facts)]
        if obj.ndim == 2 and obj.nnz and min(obj.shape) >= 2:
            coo = obj.tocoo()
            bins = (min(obj.shape[0], 256), min(obj.shape[1], 256))
            counts, _, _ = np.histogram2d(coo.coords[0], coo.coords[1], bins=bins,
                                          range=[[0, obj.shape[0]], [0, obj.shape[1]]])  # fmt: skip
            image = visuals.png_image(counts > 0)
            if image is not None:
                found.append(Visualization("pattern", "image/png", image.data))
        return found


def _check_range(name: str, values: np.ndarray, bound: int) -> None:
    if values.size and (int(values.min()) < 0 or int(values.max()) >= bound):
        raise CorruptObjectError(f"stored sparse {name} holds an index outside 0..{bound - 1}")


def _check_compressed(parts: dict[str, np.ndarray], major: int, minor: int) -> None:
    data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
    if len(indptr) != major + 1:
        raise CorruptObjectError(f"stored sparse indptr has {len(indptr)} entries, the shape needs {major + 1}")
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(indices) or len(indices) != len(data):
        raise CorruptObjectError("stored sparse indptr does not span the stored values")
    if indptr.size > 1 and bool(np.any(np.diff(indptr.astype(np.int64)) < 0)):
        raise CorruptObjectError("stored sparse indptr is not monotone")
    _check_range("indices", indices, minor)


def _build(fmt: str, array: bool, shape: tuple[int, ...], parts: dict[str, np.ndarray]) -> Any:
    """The sparse object of ``parts``, every index checked first; CorruptObjectError if they do not fit."""
    cls = _CLASSES[(fmt, array)]
    data = parts["data"]
    if fmt in ("csr", "csc"):
        if data.ndim != 1:
            raise CorruptObjectError(f"stored {fmt} data is not one-dimensional")
        major, minor = shape if fmt == "csr" else shape[::-1]
        _check_compressed(parts, major, minor)
        m = cls((data, parts["indices"], parts["indptr"]), shape=shape)
    elif fmt == "bsr":
        if data.ndim != 3 or 0 in data.shape[1:] or shape[0] % data.shape[1] or shape[1] % data.shape[2]:
            raise CorruptObjectError("stored bsr blocks do not tile its shape")
        r, c = data.shape[1:]
        _check_compressed({**parts, "data": data[:, 0, 0]}, shape[0] // r, shape[1] // c)
        m = cls((data, parts["indices"], parts["indptr"]), shape=shape, blocksize=(r, c))
    elif fmt == "coo":
        coords = tuple(parts[f"coords/{i}"] for i in range(len(shape)))
        if data.ndim != 1 or any(len(c) != len(data) for c in coords):
            raise CorruptObjectError("stored coo coordinates and values differ in length")
        for i, c in enumerate(coords):
            _check_range(f"coords/{i}", c, shape[i])
        m = cls((data, coords), shape=shape)
        m.coords = coords
        return m
    else:  # dia
        offsets = parts["offsets"]
        if data.ndim != 2 or data.shape[0] != len(offsets):
            raise CorruptObjectError("stored dia data does not have one row per offset")
        if len(np.unique(offsets)) != len(offsets):
            raise CorruptObjectError("stored dia offsets repeat")
        m = cls((data, offsets), shape=shape)
        m.data, m.offsets = data, offsets
        return m
    m.data, m.indices, m.indptr = data, parts["indices"], parts["indptr"]  # as stored: index dtypes kept
    return m

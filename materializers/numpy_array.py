"""numpy arrays and scalars: the raw buffer as one file, zero-copy both ways.

The array's bytes go to the chunker as they lie in memory (C order; a
Fortran-ordered array as its transpose; other views are made contiguous
first), and loading allocates the result and reads straight into it. dtype,
shape and order are kept in a small ``meta`` file, with the dtype spelled as
numpy's ``.npy`` header spells it (byte order included). Object arrays hold
Python objects and go through pickle only.

Subclasses come back as themselves or are refused: ``np.matrix`` and
``np.recarray`` are the same bytes with ``subclass`` naming the class;
masked arrays have their own materializer, ``cas.numpy.masked`` (data and
mask as separate files, so the data dedups with the same unmasked array; a
cas that does not know it refuses the artifact rather than drop the mask).
Any other subclass is refused (UnsupportedTypeError, so ``allow_pickle`` can
take over), except ``np.memmap``, whose value is its data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from cas.errors import CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization


def _descr_in(value: Any) -> Any:
    """The .npy descr made of lists (as stored) back into numpy's tuples."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise CorruptObjectError("bad dtype description")
    fields = []
    for field in value:
        if not isinstance(field, (list, tuple)) or len(field) not in (2, 3):
            raise CorruptObjectError("bad dtype field")
        name = tuple(field[0]) if isinstance(field[0], (list, tuple)) else field[0]
        parts: list[Any] = [name, _descr_in(field[1])]
        if len(field) == 3:
            parts.append(tuple(field[2]))
        fields.append(tuple(parts))
    return fields


def _bytes_view(arr: np.ndarray) -> memoryview:
    return memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


# The subclasses stored as ``cas.numpy`` that come back as themselves, by the
# name written in ``subclass``. Older artifacts hold a bool there (or None) and
# load as a plain ndarray, as they always did.
_SUBCLASSES: dict[str, type[np.ndarray]] = {"matrix": np.matrix, "recarray": np.recarray}
_SUBCLASS_NAMES = {cls: name for name, cls in _SUBCLASSES.items()}


def _layout(arr: np.ndarray) -> tuple[str, np.ndarray]:
    """The order to record and the array whose C-order bytes are stored."""
    if arr.flags.c_contiguous:
        return "C", arr
    if arr.flags.f_contiguous:
        return "F", arr.T
    return "C", np.ascontiguousarray(arr)


def _write_array(writer: ArtifactWriter, path: str, flat: np.ndarray) -> None:
    writer.write_bytes(path, _bytes_view(flat) if flat.size else b"")


def _read_array(reader: ArtifactReader, path: str, dtype: np.dtype[Any], shape: tuple[int, ...], order: str) -> Any:
    """Allocate and fill an array from ``path``, its stored size checked first."""
    # The declared size, in Python ints (no overflow), against the stored
    # size before anything is allocated.
    nbytes = dtype.itemsize * math.prod(shape)
    stored = reader.size(path)
    if stored != nbytes:
        raise CorruptObjectError(f"array {path} is {stored} bytes, its description says {nbytes}")
    try:
        arr = np.empty(shape, dtype=dtype, order=order)  # type: ignore[call-overload]
    except ValueError as exc:  # too many dimensions, and the like
        raise CorruptObjectError(f"stored array description is invalid: {exc}") from None
    if arr.size:
        reader.read_into(path, _bytes_view(arr.T if order == "F" else arr))
    return arr


def _read_meta(reader: ArtifactReader) -> tuple[dict[str, Any], np.dtype[Any], tuple[int, ...], str]:
    meta = valuecodec.decode(reader.read_bytes("meta"))
    if not isinstance(meta, dict):
        raise CorruptObjectError("stored array description is not a map")
    try:
        dtype = npy_format.descr_to_dtype(_descr_in(meta["descr"]))
        shape = tuple(meta["shape"])
        order = meta["order"]
        if order not in ("C", "F") or dtype.hasobject or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError("bad array description")
    except CorruptObjectError:
        raise
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CorruptObjectError(f"stored array description is invalid: {exc}") from None
    return meta, dtype, shape, order


class NumpyMaterializer(Materializer):
    """numpy.ndarray of any non-object dtype and shape, and numpy scalars."""

    name = "cas.numpy"
    version = "1"
    packages = ("numpy",)
    types = (np.ndarray, np.generic)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        scalar = isinstance(obj, np.generic)
        subclass: str | bool = False
        if not scalar and type(obj) is not np.ndarray and type(obj) is not np.memmap:
            name = _SUBCLASS_NAMES.get(type(obj))
            if name is None:
                raise UnsupportedTypeError(
                    f"{type(obj).__module__}.{type(obj).__qualname__} is a numpy array subclass cas can not "
                    "restore as itself; store it with allow_pickle=True, or convert it with np.asarray"
                )
            subclass = name
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise UnsupportedTypeError("arrays of Python objects can only be stored with allow_pickle=True")
        order, flat = _layout(arr)
        meta = {
            "descr": npy_format.dtype_to_descr(arr.dtype),
            "shape": list(arr.shape),
            "order": order,
            "scalar": scalar,
            "subclass": subclass,
        }
        writer.write_bytes("meta", valuecodec.encode(meta))
        _write_array(writer, "data", flat)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta, dtype, shape, order = _read_meta(reader)
        subclass = meta.get("subclass")
        # bool or None: written before subclasses were kept; a plain ndarray, as then.
        if subclass is not None and type(subclass) is not bool and subclass not in _SUBCLASSES:
            raise CorruptObjectError(f"stored array subclass {subclass!r} is not one cas writes")
        if subclass == "matrix" and len(shape) != 2:
            raise CorruptObjectError(f"a stored matrix has {len(shape)} dimensions")
        arr = _read_array(reader, "data", dtype, shape, order)
        if meta.get("scalar"):
            return arr[()]
        if isinstance(subclass, str):
            return arr.view(_SUBCLASSES[subclass])
        return arr

    def visualize(self, obj: Any) -> list[Visualization]:
        arr = np.asarray(obj)
        facts: list[tuple[str, Any]] = [("shape", arr.shape), ("dtype", str(arr.dtype)),
                                        ("size", visuals.nice_size(arr.nbytes))]  # fmt: skip
        facts += visuals.finite_stats(arr)
        found = [visuals.summary(facts)]
        if arr.ndim == 1 and arr.dtype.kind in "biufc" and arr.size:
            found.append(visuals.svg_histogram(arr))
        if arr.dtype.kind in "biuf" and visuals.is_image_like(arr.shape):
            image = visuals.png_image(arr)
            if image is not None:
                found.append(image)
        if arr.ndim <= 2 and arr.size:
            rows = arr[:20] if arr.ndim == 2 else arr[:20, None]
            found.append(Visualization("head", "text/csv", "\n".join(
                ",".join(str(v) for v in row[:20]) for row in rows.tolist()).encode()))  # fmt: skip
        return found

    def metadata(self, obj: Any) -> dict[str, Any]:
        arr = np.asarray(obj)
        return {"shape": list(arr.shape), "dtype": str(arr.dtype), "nbytes": int(arr.nbytes)}

"""numpy arrays and scalars: the raw buffer as one file, zero-copy both ways.

The array's bytes go to the chunker as they lie in memory (C order; a
Fortran-ordered array as its transpose; other views are made contiguous
first), and loading allocates the result and reads straight into it. dtype,
shape and order are kept in a small ``meta`` file, with the dtype spelled as
numpy's ``.npy`` header spells it (byte order included). Object arrays hold
Python objects and go through pickle only.
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


class NumpyMaterializer(Materializer):
    """numpy.ndarray of any non-object dtype and shape, and numpy scalars."""

    name = "cas.numpy"
    version = "1"
    packages = ("numpy",)
    types = (np.ndarray, np.generic)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        scalar = isinstance(obj, np.generic)
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise UnsupportedTypeError("arrays of Python objects can only be stored with allow_pickle=True")
        if arr.flags.c_contiguous:
            order, flat = "C", arr
        elif arr.flags.f_contiguous:
            order, flat = "F", arr.T
        else:
            order, flat = "C", np.ascontiguousarray(arr)
        meta = {
            "descr": npy_format.dtype_to_descr(arr.dtype),
            "shape": list(arr.shape),
            "order": order,
            "scalar": scalar,
            "subclass": type(obj) is not np.ndarray and not scalar,
        }
        writer.write_bytes("meta", valuecodec.encode(meta))
        writer.write_bytes("data", _bytes_view(flat) if arr.size else b"")

    def load(self, reader: ArtifactReader, type_: type) -> Any:
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
        # The declared size, in Python ints (no overflow), against the stored
        # size before anything is allocated.
        nbytes = dtype.itemsize * math.prod(shape)
        if reader.size("data") != nbytes:
            raise CorruptObjectError(f"array data is {reader.size('data')} bytes, its description says {nbytes}")
        try:
            arr = np.empty(shape, dtype=dtype, order=order)
        except ValueError as exc:  # too many dimensions, and the like
            raise CorruptObjectError(f"stored array description is invalid: {exc}") from None
        if arr.size:
            reader.read_into("data", _bytes_view(arr.T if order == "F" else arr))
        return arr[()] if meta.get("scalar") else arr

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

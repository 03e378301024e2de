"""numpy masked arrays: data and mask as separate files, so the data dedups with the same unmasked array.

Its own module (not beside ``cas.numpy``): importing ``numpy.ma`` costs about
20 ms, which the first get of a plain array in a process need not pay. A cas
that does not know this materializer refuses the artifact rather than drop
the mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from cas.errors import CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.numpy_array import NumpyMaterializer, _bytes_view, _layout, _read_array, _read_meta, _write_array
from materializers.visuals import Visualization


class MaskedArrayMaterializer(Materializer):
    """numpy.ma.MaskedArray: data, mask, fill value and hardness of the mask."""

    name = "cas.numpy.masked"
    version = "1"
    packages = ("numpy",)
    types = (np.ma.MaskedArray,)
    subclasses = False  # a subclass (mrecords, ...) falls to cas.numpy, which refuses it

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        data = np.ma.getdata(obj)
        if data.dtype.hasobject:
            raise UnsupportedTypeError("arrays of Python objects can only be stored with allow_pickle=True")
        if type(data) is not np.ndarray and type(data) is not np.memmap:
            raise UnsupportedTypeError(f"a masked {type(data).__name__} can only be stored with allow_pickle=True")
        order, flat = _layout(data)
        mask = obj.mask
        nomask = mask is np.ma.nomask
        fill = obj._fill_value  # None: never set, numpy's default for the dtype
        meta = {
            "descr": npy_format.dtype_to_descr(data.dtype),
            "shape": list(data.shape),
            "order": order,
            "nomask": nomask,
            "hard_mask": bool(obj.hardmask),
            "fill_value": None if fill is None else np.asarray(fill, dtype=data.dtype).tobytes(),
        }
        writer.write_bytes("meta", valuecodec.encode(meta))
        _write_array(writer, "data", flat)
        if not nomask:
            mask = np.asarray(mask, dtype=np.ma.make_mask_descr(data.dtype))
            _write_array(writer, "mask", mask.T if order == "F" else np.ascontiguousarray(mask))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta, dtype, shape, order = _read_meta(reader)
        nomask, hard, fill = meta.get("nomask"), meta.get("hard_mask"), meta.get("fill_value")
        if type(nomask) is not bool or type(hard) is not bool:
            raise CorruptObjectError("stored masked array description is invalid")
        if fill is not None and (type(fill) is not bytes or len(fill) != dtype.itemsize):
            raise CorruptObjectError("stored fill value does not match the array's dtype")
        if nomask == ("mask" in reader.paths()):
            raise CorruptObjectError("stored masked array's mask file disagrees with its description")
        data = _read_array(reader, "data", dtype, shape, order)
        mask: Any = np.ma.nomask
        if not nomask:
            mask = _read_array(reader, "mask", np.ma.make_mask_descr(dtype), shape, order)
            raw = np.frombuffer(_bytes_view(mask.T if order == "F" else mask), np.uint8)
            if raw.size and int(raw.max()) > 1:
                raise CorruptObjectError("stored mask holds bytes other than 0 and 1")
        fill_value = None if fill is None else np.frombuffer(fill, dtype=dtype)[0]
        return np.ma.MaskedArray(data, mask=mask, fill_value=fill_value, hard_mask=hard, copy=False, shrink=False)

    def visualize(self, obj: Any) -> list[Visualization]:
        return NumpyMaterializer().visualize(np.ma.filled(obj))

    def metadata(self, obj: Any) -> dict[str, Any]:
        data = np.ma.getdata(obj)
        # Elements with any field masked; a structured mask has no sum.
        mask = np.ascontiguousarray(np.ma.getmaskarray(obj)).reshape(-1)
        masked = int(np.count_nonzero(mask.view(np.uint8).reshape(mask.size, -1).any(axis=1))) if mask.size else 0
        return {"shape": list(data.shape), "dtype": str(data.dtype), "nbytes": int(data.nbytes), "masked": masked}

"""xarray DataArrays and Datasets: each variable's values as a numpy file, the rest as values.

Every variable (data variables and coordinates) is one file, ``variables/<i>``,
holding its values as the numpy materializer holds an array's ``data`` (so an
unchanged variable dedups, also with the same numpy array stored alone).
``xarray.msgpack`` records the kind, the name and attributes of the whole,
and for each variable its name, dims, attributes, dtype, shape and memory
order, and whether it is a coordinate. A variable of Python objects (strings,
as pandas gives them) is kept in ``xarray.msgpack`` as a list of values.

What is not the value is not stored: ``encoding`` (how a file was written)
and lazy backends (a variable read from a file or a dask array is stored as
its data). Indexes other than xarray's default one per dimension coordinate
(a MultiIndex, a custom index) are refused with UnsupportedTypeError.

Loading checks every declared dtype, shape and size against the stored files,
and each variable's dims against its shape and the other variables', before
xarray sees them.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import xarray as xr
from numpy.lib import format as npy_format

from cas.errors import CasError, CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.numpy_array import _descr_in, _layout, _read_array, _write_array
from materializers.visuals import Visualization

_KINDS = ("DataArray", "Dataset")
_VARIABLE_KEYS = {"name", "dims", "attrs", "numpy_attrs", "coord", "descr", "shape", "order", "values"}
_MAX_NDIM = 64


def _variables(obj: Any) -> list[tuple[Any, Any, bool]]:
    """(name, variable, is a coordinate) of every variable, data first, in xarray's order."""
    if isinstance(obj, xr.DataArray):
        data = [(obj.name, obj.variable, False)]
    else:
        data = [(name, obj.variables[name], False) for name in obj.data_vars]
    return data + [(name, obj.coords[name].variable, True) for name in obj.coords]


def _check_indexes(obj: Any) -> None:
    for name, index in obj.xindexes.items():
        if type(index) is not xr.indexes.PandasIndex or obj.coords[name].dims != (name,):
            raise UnsupportedTypeError(
                f"xarray coordinate {name!r} has a {type(index).__name__}, not the default index of a dimension "
                "coordinate; cas stores only those (reset_index it, or store with allow_pickle=True)"
            )


def _attrs_out(attrs: dict[Any, Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Attributes as values, numpy ones (netCDF's ``_FillValue``, ``valid_range``...) apart as [descr, shape, bytes, scalar]."""
    plain: dict[Any, Any] = {}
    arrays: dict[Any, Any] = {}
    for key, value in attrs.items():
        if (
            isinstance(value, (np.ndarray, np.generic))
            and not value.dtype.hasobject
            and (type(value) is np.ndarray or isinstance(value, np.generic))
        ):
            a = np.asarray(value)
            plain[key] = None  # keeps its place among the attributes
            arrays[key] = [npy_format.dtype_to_descr(a.dtype), list(a.shape), np.ascontiguousarray(a).tobytes(),
                           isinstance(value, np.generic)]  # fmt: skip
        else:
            plain[key] = value
    return plain, arrays


def _attrs_in(plain: Any, arrays: Any) -> dict[Any, Any]:
    if not isinstance(plain, dict) or not isinstance(arrays, dict) or not set(arrays) <= set(plain):
        raise CorruptObjectError("stored xarray attributes are not described as cas writes")
    attrs = dict(plain)
    for key, item in arrays.items():
        if not (isinstance(item, list) and len(item) == 4 and isinstance(item[1], list) and len(item[1]) <= _MAX_NDIM
                and all(type(n) is int and n >= 0 for n in item[1]) and type(item[2]) is bytes
                and type(item[3]) is bool):  # fmt: skip
            raise CorruptObjectError("a stored numpy attribute is not described as cas writes")
        try:
            dtype = npy_format.descr_to_dtype(_descr_in(item[0]))
        except (TypeError, ValueError, RecursionError) as exc:
            raise CorruptObjectError(f"a stored numpy attribute has an invalid dtype: {exc}") from None
        if dtype.hasobject or dtype.itemsize * math.prod(item[1]) != len(item[2]) or (item[3] and item[1]):
            raise CorruptObjectError("a stored numpy attribute's bytes do not match its dtype and shape")
        value = np.frombuffer(item[2], dtype=dtype).reshape(item[1]).copy()
        attrs[key] = value[()] if item[3] else value
    return attrs


class XarrayMaterializer(Materializer):
    """xarray.DataArray and xarray.Dataset, variable by variable."""

    name = "cas.xarray"
    version = "1"
    packages = ("xarray", "numpy")
    types = (xr.DataArray, xr.Dataset)
    subclasses = False

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        _check_indexes(obj)
        described, files = [], []
        for i, (name, variable, coord) in enumerate(_variables(obj)):
            values = np.asarray(variable.values)
            attrs, arrays = _attrs_out(variable.attrs)
            entry: dict[str, Any] = {"name": name, "dims": list(variable.dims), "attrs": attrs, "numpy_attrs": arrays,
                                     "coord": coord, "shape": list(values.shape)}  # fmt: skip
            if values.dtype.hasobject:
                entry["values"] = values.reshape(-1).tolist()
            else:
                order, flat = _layout(values)
                entry.update(descr=npy_format.dtype_to_descr(values.dtype), order=order)
                files.append((f"variables/{i}", flat))
            described.append(entry)
        attrs, arrays = _attrs_out(obj.attrs)
        meta = {"kind": type(obj).__name__, "name": obj.name if isinstance(obj, xr.DataArray) else None,
                "attrs": attrs, "numpy_attrs": arrays, "variables": described}  # fmt: skip
        try:
            encoded = valuecodec.encode(meta)
        except CasError as exc:
            raise UnsupportedTypeError(
                f"xarray names, attributes or object values are not values cas encodes: {exc}"
            ) from None
        writer.write_bytes("xarray.msgpack", encoded)
        for path, flat in files:
            _write_array(writer, path, flat)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta = valuecodec.decode(reader.read_bytes("xarray.msgpack"))
        if not isinstance(meta, dict) or set(meta) != {"kind", "name", "attrs", "numpy_attrs", "variables"}:
            raise CorruptObjectError("stored xarray description is not one cas writes")
        kind, described = meta["kind"], meta["variables"]
        if kind not in _KINDS or not isinstance(meta["attrs"], dict) or not isinstance(described, list):
            raise CorruptObjectError("stored xarray description is invalid")
        sizes: dict[Any, int] = {}
        data: dict[Any, Any] = {}
        coords: dict[Any, Any] = {}
        for i, entry in enumerate(described):
            name, variable, coord = self._variable(reader, i, entry, sizes)
            target = coords if coord else data
            if name in target or (kind == "Dataset" and name in (data if coord else coords)):
                raise CorruptObjectError(f"stored xarray variable {str(name)[:80]!r} appears twice")
            target[name] = variable
        if kind == "Dataset":
            return xr.Dataset(data, coords=coords, attrs=_attrs_in(meta["attrs"], meta["numpy_attrs"]))
        if len(data) != 1:
            raise CorruptObjectError("a stored DataArray does not have exactly one data variable")
        ((name, variable),) = data.items()
        if name != meta["name"]:
            raise CorruptObjectError("a stored DataArray's name disagrees with its variable's")
        return xr.DataArray(variable, coords=coords, name=name)

    @staticmethod
    def _variable(reader: ArtifactReader, i: int, entry: Any, sizes: dict[Any, int]) -> tuple[Any, Any, bool]:
        if not isinstance(entry, dict) or not {"name", "dims", "attrs", "numpy_attrs", "coord", "shape"} <= set(
            entry
        ) <= (_VARIABLE_KEYS):
            raise CorruptObjectError(f"stored xarray variable {i} is not described as cas writes")
        dims, shape, attrs, coord = entry["dims"], entry["shape"], entry["attrs"], entry["coord"]
        if not isinstance(dims, list) or not isinstance(shape, list) or len(shape) > _MAX_NDIM:
            raise CorruptObjectError(f"stored xarray variable {i} has invalid dims or shape")
        if not all(type(n) is int and n >= 0 for n in shape) or not isinstance(attrs, dict) or type(coord) is not bool:
            raise CorruptObjectError(f"stored xarray variable {i} has an invalid description")
        if len(dims) != len(shape) or len(set(map(repr, dims))) != len(dims):
            raise CorruptObjectError(
                f"stored xarray variable {i} has {len(shape)} dimensions, its dims name {len(dims)}"
            )
        for dim, n in zip(dims, shape, strict=True):
            if sizes.setdefault(dim, n) != n:
                raise CorruptObjectError(f"stored xarray dimension {str(dim)[:80]!r} has sizes {sizes[dim]} and {n}")
        if "values" in entry:
            items = entry["values"]
            if not isinstance(items, list) or len(items) != math.prod(shape) or "descr" in entry:
                raise CorruptObjectError(f"stored xarray variable {i}'s values do not fill its shape")
            flat = np.empty(len(items), dtype=object)
            for j, item in enumerate(items):  # one by one: a list item stays one object
                flat[j] = item
            values: np.ndarray = flat.reshape(shape)
        else:
            try:
                dtype = npy_format.descr_to_dtype(_descr_in(entry["descr"]))
            except (KeyError, TypeError, ValueError, RecursionError) as exc:
                raise CorruptObjectError(f"stored xarray variable {i} has an invalid dtype: {exc}") from None
            order = entry.get("order")
            if dtype.hasobject or order not in ("C", "F"):
                raise CorruptObjectError(f"stored xarray variable {i} has an invalid dtype or order")
            values = _read_array(reader, f"variables/{i}", dtype, tuple(shape), order)
        return entry["name"], xr.Variable(dims, values, attrs=_attrs_in(attrs, entry["numpy_attrs"])), coord

    def metadata(self, obj: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"dims": {str(k): int(v) for k, v in list(obj.sizes.items())[:100]}}
        if isinstance(obj, xr.DataArray):
            found["dtype"] = str(obj.dtype)
        else:
            found["data_vars"] = [str(k) for k in list(obj.data_vars)[:100]]
        found["coords"] = [str(k) for k in list(obj.coords)[:100]]
        return found

    def visualize(self, obj: Any) -> list[Visualization]:
        rows = [(str(name), "coordinate" if coord else "data", ", ".join(map(str, v.dims)), str(v.dtype),
                 " x ".join(map(str, v.shape)), len(v.attrs))
                for name, v, coord in _variables(obj)[:200]]  # fmt: skip
        dims = ", ".join(f"{k}: {v}" for k, v in list(obj.sizes.items())[:50])
        found = [Visualization("summary", "text/html", visuals.html_doc(
            f"<p>{type(obj).__name__} ({html.escape(dims)})</p>",
            visuals.html_table(rows, ["variable", "kind", "dims", "dtype", "shape", "attrs"]),
            visuals.html_table([(str(k), visuals.brief(v)) for k, v in list(obj.attrs.items())[:50]],
                               ["attribute", "value"])))]  # fmt: skip
        if isinstance(obj, xr.DataArray) and obj.dtype.kind in "biuf" and visuals.is_image_like(obj.shape):
            image = visuals.png_image(obj.values)
            if image is not None:
                found.append(image)
        return found

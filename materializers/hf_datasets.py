"""Hugging Face ``datasets.Dataset`` and ``DatasetDict``: an Arrow table per split, features and info as values.

Each split's rows (after any ``select``/``shuffle``/``filter``: the rows the
dataset shows, not its cache's) are written as ``<split>/table.arrow`` by
:mod:`materializers.arrow`'s IPC writer and read back by its checked reader.
A dataset backed by memory-mapped cache files is stored as its data: no path
to a cache file is kept. ``dataset.msgpack`` records the kind and, per
split, the features (``Features.to_dict()``), the text fields of its
``DatasetInfo``, its split name and its format (``set_format``).

Features are rebuilt only from the plain data feature types (Value,
ClassLabel, List, Sequence, ArrayND, Translation...): media features
(Image, Audio, Video, Pdf...) decode files or URLs named in the rows when a
row is read, so a stored dataset could make its reader open any path; they
are refused at put (UnsupportedTypeError) and at get (CorruptObjectError).
"""

from __future__ import annotations

import html
import re
from typing import Any

import datasets
from datasets.table import InMemoryTable

from cas.errors import CasError, CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.arrow import _read_table, _write_table
from materializers.base import ArtifactReader, ArtifactWriter, Buffer, Materializer
from materializers.visuals import Visualization

#: Feature types rebuilt from a store: data only, nothing that opens a file or URL when a row is read.
_DATA_FEATURES = frozenset({"Value", "ClassLabel", "List", "LargeList", "Sequence", "Array2D", "Array3D", "Array4D",
                            "Array5D", "Translation", "TranslationVariableLanguages"})  # fmt: skip
_INFO_FIELDS = ("description", "citation", "homepage", "license", "builder_name", "dataset_name", "config_name")
_FORMATS = frozenset({None, "numpy", "np", "pandas", "pd", "arrow", "pa", "python", "torch", "pt", "tensorflow", "tf",
                      "jax", "polars", "pl", "custom"})  # fmt: skip
_SPLIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_MAX_DEPTH = 64


class _Prefixed:
    """A writer or reader whose paths are below ``prefix``: each split's files have the Arrow path's names."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self._inner, self._prefix = inner, prefix

    def write_bytes(self, path: str, data: Buffer) -> None:
        self._inner.write_bytes(self._prefix + path, data)

    def read_bytes(self, path: str) -> bytes:
        data: bytes = self._inner.read_bytes(self._prefix + path)
        return data


def _check_features(node: Any, depth: int = 0) -> None:
    """Refuse feature types that are not plain data (see the module docstring); ValueError."""
    if depth > _MAX_DEPTH:
        raise ValueError("features are nested too deeply")
    if isinstance(node, list):
        for item in node:
            _check_features(item, depth + 1)
    elif isinstance(node, dict):
        kind = node.get("_type")
        if kind is not None and kind not in _DATA_FEATURES:
            raise ValueError(f"feature type {str(kind)[:40]!r} is not a data feature cas rebuilds")
        for value in node.values():
            _check_features(value, depth + 1)


def _split_facts(ds: Any) -> dict[str, Any]:
    features = ds.features.to_dict()
    try:
        _check_features(features)
    except ValueError as exc:
        raise UnsupportedTypeError(f"datasets {exc}: media features read files when rows are read") from None
    fmt = ds.format
    if fmt["type"] == "custom":
        raise UnsupportedTypeError("a dataset with a custom (Python function) format: reset_format() it first")
    return {
        "features": features,
        "info": {f: getattr(ds.info, f) for f in _INFO_FIELDS if getattr(ds.info, f, None)},
        "split": None if ds.split is None else str(ds.split),
        "format": {
            "type": fmt["type"],
            "columns": fmt["columns"],
            "output_all_columns": fmt["output_all_columns"],
            "format_kwargs": fmt["format_kwargs"],
        },  # fmt: skip
    }


def _save_split(ds: Any, writer: Any) -> None:
    # Every row the dataset shows (its indices mapping applied), copied out of any memory-mapped cache file.
    _write_table(ds.with_format("arrow")[:], writer)


def _load_split(facts: Any, reader: Any) -> Any:
    if not isinstance(facts, dict) or set(facts) != {"features", "info", "split", "format"}:
        raise CorruptObjectError("stored dataset split description is not one cas writes")
    info, split, fmt = facts["info"], facts["split"], facts["format"]
    if (
        not isinstance(info, dict)
        or not set(info) <= set(_INFO_FIELDS)
        or not all(isinstance(v, str) for v in info.values())
    ):
        raise CorruptObjectError("stored dataset info is not one cas writes")
    if split is not None and not (isinstance(split, str) and _SPLIT.fullmatch(split)):
        raise CorruptObjectError("stored dataset split name is invalid")
    if (
        not isinstance(fmt, dict)
        or set(fmt) != {"type", "columns", "output_all_columns", "format_kwargs"}
        or (fmt["type"] not in _FORMATS or not isinstance(fmt["format_kwargs"], dict))
    ):
        raise CorruptObjectError("stored dataset format is not one cas writes")
    if fmt["type"] == "custom":
        raise CorruptObjectError("stored dataset has a custom (Python function) format")
    try:
        _check_features(facts["features"])
    except ValueError as exc:
        raise CorruptObjectError(f"stored dataset is refused: {exc}") from None
    features = datasets.Features.from_dict(facts["features"])
    table = _read_table(reader)
    ds = datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features, **info), split=split)
    if fmt["type"] is not None or (fmt["columns"] is not None and fmt["columns"] != ds.column_names):
        ds = ds.with_format(fmt["type"], columns=fmt["columns"], output_all_columns=fmt["output_all_columns"],
                            **fmt["format_kwargs"])  # fmt: skip
    return ds


class DatasetMaterializer(Materializer):
    """datasets.Dataset and datasets.DatasetDict, a checked Arrow table per split."""

    name = "cas.datasets"
    version = "1"
    packages = ("datasets", "pyarrow")
    types = (datasets.Dataset, datasets.DatasetDict)
    subclasses = False

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        if isinstance(obj, datasets.DatasetDict):
            names = list(obj)
            bad = [n for n in names if not (isinstance(n, str) and _SPLIT.fullmatch(n))]
            if bad:
                raise UnsupportedTypeError(f"DatasetDict split names {bad[:5]!r} are not ones cas stores")
            meta: dict[str, Any] = {"kind": "DatasetDict", "splits": {n: _split_facts(obj[n]) for n in names}}
        else:
            meta = {"kind": "Dataset", "splits": {"data": _split_facts(obj)}}
        try:
            encoded = valuecodec.encode(meta)
        except CasError as exc:
            raise UnsupportedTypeError(f"dataset features, info or format are not values cas encodes: {exc}") from None
        writer.write_bytes("dataset.msgpack", encoded)
        for name in meta["splits"]:
            _save_split(obj if meta["kind"] == "Dataset" else obj[name], _Prefixed(writer, f"{name}/"))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta = valuecodec.decode(reader.read_bytes("dataset.msgpack"))
        if not isinstance(meta, dict) or set(meta) != {"kind", "splits"} or not isinstance(meta["splits"], dict):
            raise CorruptObjectError("stored dataset description is not one cas writes")
        splits = meta["splits"]
        if not all(isinstance(n, str) and _SPLIT.fullmatch(n) for n in splits):
            raise CorruptObjectError("stored dataset split names are invalid")
        if meta["kind"] == "Dataset":
            if list(splits) != ["data"]:
                raise CorruptObjectError("a stored Dataset does not have exactly one table")
            return _load_split(splits["data"], _Prefixed(reader, "data/"))
        if meta["kind"] != "DatasetDict":
            raise CorruptObjectError("stored dataset kind is not one cas writes")
        return datasets.DatasetDict({n: _load_split(facts, _Prefixed(reader, f"{n}/")) for n, facts in splits.items()})

    def metadata(self, obj: Any) -> dict[str, Any]:
        parts = obj.items() if isinstance(obj, datasets.DatasetDict) else [("data", obj)]
        return {"splits": {str(n): {"rows": d.num_rows, "columns": d.column_names[:100]} for n, d in list(parts)[:50]}}

    def visualize(self, obj: Any) -> list[Visualization]:
        parts = list(obj.items()) if isinstance(obj, datasets.DatasetDict) else [(obj.split or "data", obj)]
        body = []
        for name, ds in parts[:20]:
            body.append(f"<h3>{html.escape(str(name))}: {ds.num_rows:,} rows</h3>")
            body.append(visuals.html_table([(k, visuals.brief(v, 120)) for k, v in list(ds.features.items())[:100]],
                                           ["feature", "type"]))  # fmt: skip
            head = ds.with_format("arrow")[:10].to_pylist()
            body.append(visuals.html_table([[visuals.brief(row.get(c), 80) for c in ds.column_names[:30]]
                                            for row in head], ds.column_names[:30]))  # fmt: skip
        return [Visualization("dataset", "text/html", visuals.html_doc(*body))]

"""pandas DataFrames and Series, and pyarrow Tables, as Arrow IPC files.

pandas goes through pyarrow, whose pandas metadata restores the index (also a
MultiIndex; a RangeIndex as its start, stop and step), categoricals, tz-aware
datetimes and nullable dtypes. Column labels that Arrow would turn into
strings (ints mixed with strs, tuples, duplicates) are replaced by their
positions for the trip and kept, with their types, in the artifact. What Arrow
does not keep is kept in ``pandas.msgpack`` (version 2): the exact string
dtype (``string[python]``, ``string[pyarrow]``, ``str``) and ``object`` of each
column and of a one-level index, the index's ``freq``, ``flags`` and ``attrs``.
What would not come back as it was (sparse columns, object columns mixing
types or holding other objects, complex numbers, nested pyarrow dtypes) is
refused with UnsupportedTypeError, so ``allow_pickle`` can take it.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cas.errors import CasError, CorruptObjectError, UnsupportedTypeError
from materializers import arrow_ipc, valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization

_SERIES_COLUMN = "__cas_series__"


def _write_table(table: pa.Table, writer: ArtifactWriter) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as ipc:
        ipc.write_table(table)
    # pyarrow's buffers export signed chars; the chunker takes unsigned bytes.
    writer.write_bytes("table.arrow", memoryview(sink.getvalue()).cast("B"))


def _read_table(reader: ArtifactReader) -> pa.Table:
    """The stored table, checked (declared sizes, then every offset) before anything uses it.

    pyarrow's reader trusts the lengths and offsets it reads: a length needs no
    bytes behind it and a bad offset crashes the process on first use, so the
    file is checked by arrow_ipc first and fully validated after (zero-copy).
    Raises DeclaredSizeError, CorruptObjectError.
    """
    data = reader.read_bytes("table.arrow")
    arrow_ipc.check_declared(data)
    try:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
        table.validate(full=True)
    # pyarrow's errors, and what an extension type's deserializer raises on bad stored parameters
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        raise CorruptObjectError(f"stored Arrow table does not decode: {type(exc).__name__}: {exc}") from None
    arrow_ipc.check_views(table, len(data))
    return table


# A stored name up to this long parses to a syntax tree small enough not to matter.
_SHORT_NAME = 1024
# Punctuation and spaces outside string literals a longer name may have per level ("('a', 1)" has 4).
_MARKS_PER_LEVEL = 8
_STRING_LITERAL = re.compile(r"'(?:[^'\\\n]|\\.)*'" + r'|"(?:[^"\\\n]|\\.)*"')


def _check_column_names(table: pa.Table) -> None:
    """Refuse column names that pyarrow would ``literal_eval`` into more than a tuple of scalars.

    With several column levels, pyarrow rebuilds each column's labels with
    ``ast.literal_eval`` of its stored name, whose syntax tree costs hundreds
    of bytes per token (5 MiB of ``0,`` took 2.3 GiB). A legitimate name is a
    tuple with one literal per level: few marks outside its string literals,
    and no f-strings (whose braces hold expressions).
    """
    raw = (table.schema.metadata or {}).get(b"pandas")
    if raw is None or b"column_indexes" not in raw:
        return
    try:  # costs what pyarrow's own parse of it does (a few microseconds per column)
        facts = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptObjectError(f"stored pandas metadata is not JSON: {exc}") from None
    levels = facts.get("column_indexes") if isinstance(facts, dict) else None
    if not isinstance(levels, list) or len(levels) <= 1:
        return
    names = list(table.column_names)
    columns = facts.get("columns")
    if isinstance(columns, list):
        names += [c["name"] for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str)]
    limit = _MARKS_PER_LEVEL * len(levels) + 8
    for name in names:
        if len(name) <= _SHORT_NAME:
            continue
        bare = _STRING_LITERAL.sub("\0", name)
        prefixes = re.findall(r"(\w+)\0", bare)
        if any(p.lower() not in ("b", "u") for p in prefixes) or len(re.findall(r"[^\w\0]", bare)) > limit:
            raise CorruptObjectError(f"stored column name {name[:40]!r}... is not a label of {len(levels)} levels")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a frame; stored pandas metadata that pyarrow can not apply is CorruptObjectError.

    pyarrow reads column names back with ``ast.literal_eval`` (SyntaxError on a
    bad one) and knows no pandas type for a union: neither is a frame cas wrote.
    """
    _check_column_names(table)
    try:
        return table.to_pandas()
    except (pa.ArrowException, SyntaxError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RecursionError, MemoryError, OverflowError) as exc:  # fmt: skip
        raise CorruptObjectError(
            f"stored Arrow table does not convert to pandas: {type(exc).__name__}: {exc}"
        ) from None


def _plain_labels(columns: pd.Index) -> bool:
    """Labels Arrow keeps as they are: unique, and all str (or all int)."""
    if isinstance(columns, pd.MultiIndex):
        return columns.is_unique
    kinds = {type(c) for c in columns}
    return columns.is_unique and (kinds <= {str} or kinds <= {int})


def _with_freq(index: pd.Index, freq: Any) -> pd.Index:
    """``index`` with the stored frequency ``freq``, checked against every value; else CorruptObjectError."""
    offset = _parse_freq(freq)
    if not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        raise CorruptObjectError("a stored index frequency is recorded for an index without one")
    try:
        return type(index)(index, freq=offset)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptObjectError(f"stored index does not follow its recorded frequency: {exc}") from None


def _column_range(columns: pd.Index, stored: Any) -> pd.RangeIndex:
    """The RangeIndex ``stored`` as [start, stop, step], if it holds exactly ``columns``; else CorruptObjectError."""
    if not (isinstance(stored, list) and len(stored) == 3 and all(type(n) is int for n in stored) and stored[2]):
        raise CorruptObjectError("stored column range is not [start, stop, step]")
    try:
        found = range(*stored)
        if len(found) != len(columns) or (len(found) and not (columns == pd.RangeIndex(found)).all()):
            raise CorruptObjectError("stored column range does not match the stored columns")
    except (OverflowError, TypeError, ValueError) as exc:
        raise CorruptObjectError(f"stored column range does not match the stored columns: {exc}") from None
    return pd.RangeIndex(found, name=columns.name)


def _apply_facts(frame: pd.DataFrame, table: pa.Table, facts: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with the dtypes, index frequency, flags and attrs recorded in ``facts`` (version 2)."""
    width = frame.shape[1]
    columns = facts.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or len(columns) != width or table.num_columns < width:
            raise CorruptObjectError("stored column dtypes do not match the stored columns")
        for i, fixup in enumerate(columns):
            if fixup is not None:
                frame.isetitem(i, _restore(frame.iloc[:, i], fixup, table.column(i)))
    if "columns_index" in facts:
        frame.columns = _restore(frame.columns, facts["columns_index"], None)
    levels = facts.get("levels")
    if levels is not None:
        index = frame.index
        if not isinstance(index, pd.MultiIndex) or not isinstance(levels, list) or len(levels) != index.nlevels:
            raise CorruptObjectError("stored index levels do not match the stored index")
        for i, level in enumerate(levels):
            if not isinstance(level, dict) or set(level) != {"dtype", "freq"}:
                raise CorruptObjectError("a stored index level fact is not one cas writes")
            restored = _restore(index.levels[i], level["dtype"], None)
            if level["freq"] is not None:
                restored = _with_freq(restored, level["freq"])
            index = index.set_levels(restored, level=i)
        frame.index = index
    names = facts.get("names")
    if names is not None:
        if (not isinstance(names, dict) or set(names) != {"index", "columns"} or not isinstance(names["index"], list)
                or len(names["index"]) != frame.index.nlevels or not isinstance(names["columns"], list)
                or len(names["columns"]) != frame.columns.nlevels):  # fmt: skip
            raise CorruptObjectError("stored axis names do not match the stored axes")
        frame.index = frame.index.set_names(names["index"])
        frame.columns = frame.columns.set_names(names["columns"])
    if "column_range" in facts:
        frame.columns = _column_range(frame.columns, facts["column_range"])
    if "index" in facts:
        if isinstance(frame.index, (pd.RangeIndex, pd.MultiIndex)) or table.num_columns != width + 1:
            raise CorruptObjectError("a stored index dtype is recorded for an index that was not stored as a column")
        frame.index = _restore(frame.index, facts["index"], table.column(width))
    if "freq" in facts:
        frame.index = _with_freq(frame.index, facts["freq"])
    flags = facts.get("flags")
    if flags is not None:
        if flags != {"allows_duplicate_labels": False}:
            raise CorruptObjectError("stored pandas flags are not ones cas writes")
        try:
            frame = frame.set_flags(allows_duplicate_labels=False)
        except ValueError as exc:  # pandas' DuplicateLabelError
            raise CorruptObjectError(f"stored frame has duplicate labels yet refuses them: {exc}") from None
    attrs = facts.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, dict):
            raise CorruptObjectError("stored pandas attrs are not a map")
        frame.attrs = attrs
    return frame


class ArrowTableMaterializer(Materializer):
    """pyarrow.Table, as an Arrow IPC file."""

    name = "cas.arrow"
    version = "1"
    packages = ("pyarrow",)
    types = (pa.Table,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        _write_table(obj, writer)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        return _read_table(reader)

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {
            "rows": obj.num_rows,
            "columns": obj.column_names[:100],
            "dtypes": [str(t) for t in obj.schema.types][:100],
        }


# Python types an object column may hold (one of them, and None) that Arrow gives back exactly.
_OBJECT_KINDS = frozenset({str, bytes, bool, int, decimal.Decimal, datetime.date, datetime.time})
_NONE = type(None)
# numpy dtype kinds Arrow gives back as they were: bool, ints, floats, datetime64, timedelta64.
_PLAIN_KINDS = frozenset("biufmM")
# A pandas frequency string ("2h", "W-SUN", "BQE-DEC") is short; a longer stored one is not cas's.
_MAX_FREQ = 64


def _fixup(values: Any, where: str) -> Any:
    """What Arrow alone would not restore about a column's (or index's) dtype; UnsupportedTypeError if it can't."""
    dtype = values.dtype
    if isinstance(dtype, pd.SparseDtype):
        raise UnsupportedTypeError(f"pandas {where} is sparse ({dtype}), which Arrow does not store")
    if isinstance(dtype, pd.StringDtype):
        return ["string", dtype.storage, dtype.na_value is not pd.NA]
    if isinstance(dtype, pd.ArrowDtype):
        try:
            same = pd.api.types.pandas_dtype(str(dtype)) == dtype
        except (TypeError, ValueError):
            same = False
        if not same:
            raise UnsupportedTypeError(f"pandas {where} has the pyarrow dtype {dtype}, which pandas can not read back")
        return None
    if isinstance(dtype, pd.CategoricalDtype):
        inner = _fixup(dtype.categories, f"{where} categories")
        return None if inner is None else ["category", inner]
    if dtype.kind == "c":
        raise UnsupportedTypeError(f"pandas {where} is complex ({dtype}), which Arrow does not store")
    if not (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        return None
    kinds = set(map(type, np.asarray(values, dtype=object))) - {_NONE}
    if len(kinds) > 1:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise UnsupportedTypeError(f"pandas {where} is an object column mixing types ({names})")
    if kinds and not kinds <= _OBJECT_KINDS:
        raise UnsupportedTypeError(
            f"pandas {where} is an object column of {next(iter(kinds)).__name__}, which Arrow does not give back"
        )
    return "object"


def _describe(label: Any) -> str:
    text = repr(label)
    return text if len(text) <= 80 else text[:77] + "..."


def _restore(values: Any, fixup: Any, arrow: pa.ChunkedArray | None) -> Any:
    """``values`` (a column or a one-level index) with the dtype ``fixup`` recorded; CorruptObjectError if bad."""
    if fixup is None:
        return values
    if isinstance(fixup, list) and len(fixup) == 2 and fixup[0] == "category":
        if not isinstance(values.dtype, pd.CategoricalDtype):
            raise CorruptObjectError(f"a stored {values.dtype} column is recorded as categorical")
        categories = _restore(values.dtype.categories, fixup[1], None)
        dtype = pd.CategoricalDtype(categories, ordered=values.dtype.ordered)
        cat = pd.Categorical.from_codes(
            values.cat.codes if isinstance(values, pd.Series) else values.codes, dtype=dtype
        )
        if isinstance(values, pd.Index):
            return pd.CategoricalIndex(cat, name=values.name)
        return pd.Series(cat, index=values.index, name=values.name)
    if fixup == "object":
        if values.dtype == object:
            return values
        if arrow is None and isinstance(values, pd.Index) and not values.hasnans:  # labels and categories
            return values.astype(object)
        if arrow is None or len(arrow) != len(values):
            raise CorruptObjectError("a stored object column has no Arrow column to restore it from")
        if pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type) or pa.types.is_binary(arrow.type):
            items = arrow.to_numpy(zero_copy_only=False)
        else:
            items = np.empty(len(arrow), dtype=object)
            items[:] = arrow.to_pylist()
        if isinstance(values, pd.Index):
            return pd.Index(items, dtype=object, name=values.name)
        return pd.Series(items, dtype=object, index=values.index, name=values.name)
    if (not isinstance(fixup, list) or len(fixup) != 3 or fixup[0] != "string" or fixup[1] not in ("python", "pyarrow")
            or not isinstance(fixup[2], bool)):  # fmt: skip
        raise CorruptObjectError(f"stored pandas dtype fact {str(fixup)[:80]} is not one cas writes")
    dtype = pd.StringDtype(fixup[1], na_value=np.nan if fixup[2] else pd.NA)
    if values.dtype == dtype:
        return values
    if not isinstance(values.dtype, pd.StringDtype) and values.dtype != object:
        raise CorruptObjectError(f"a stored {values.dtype} column is recorded as {dtype}")
    return values.astype(dtype)


def _parse_freq(freq: Any) -> Any:
    """A stored frequency string as a pandas offset, parsed (never evaluated); CorruptObjectError if not one."""
    if not isinstance(freq, str) or len(freq) > _MAX_FREQ:
        raise CorruptObjectError("stored index frequency is not a short string")
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptObjectError(f"stored index frequency {freq!r} is not a pandas frequency: {exc}") from None


class PandasMaterializer(Materializer):
    """pandas.DataFrame and pandas.Series, through Arrow."""

    name = "cas.pandas"
    version = "2"
    packages = ("pandas", "pyarrow")
    types = (pd.DataFrame, pd.Series)

    def can_load(self, version: str) -> bool:
        return version in ("1", "2")  # 1: no pandas facts beyond labels, the index always stored as columns

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        series = isinstance(obj, pd.Series)
        kind = "Series" if series else "DataFrame"
        frame = obj.to_frame(name=_SERIES_COLUMN) if series else obj
        facts: dict[str, Any] = {"series": series, "name": obj.name if series else None}
        columns = [
            None
            if isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_KINDS  # numeric frames: no column touched
            else _fixup(frame.iloc[:, i], "Series" if series else f"column {_describe(frame.columns[i])}")
            for i, dtype in enumerate(frame.dtypes)
        ]
        if any(f is not None for f in columns):
            facts["columns"] = columns
        index = frame.index
        if not isinstance(index, (pd.RangeIndex, pd.MultiIndex)):
            fixup = _fixup(index, f"{kind} index")
            if fixup is not None:
                facts["index"] = fixup
        freq = getattr(index, "freqstr", None)
        if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and freq is not None:
            facts["freq"] = freq
        if not obj.flags.allows_duplicate_labels:
            facts["flags"] = {"allows_duplicate_labels": False}
        names = {"index": list(index.names), "columns": list(frame.columns.names)}
        if any(n is not None and type(n) is not str for n in [*names["index"], *names["columns"]]):
            facts["names"] = names
        if isinstance(index, pd.MultiIndex):
            levels = [_fixup(level, f"{kind} index level {_describe(level.name)}") for level in index.levels]
            freqs = [getattr(level, "freqstr", None) for level in index.levels]
            if any(f is not None for f in levels) or any(f is not None for f in freqs):
                facts["levels"] = [{"dtype": d, "freq": f} for d, f in zip(levels, freqs, strict=True)]
        if not isinstance(frame.columns, (pd.RangeIndex, pd.MultiIndex)) and _plain_labels(frame.columns):
            fixup = _fixup(frame.columns, f"{kind} column labels")
            if fixup is not None:
                facts["columns_index"] = fixup
        if isinstance(frame.columns, pd.RangeIndex):
            facts["column_range"] = [frame.columns.start, frame.columns.stop, frame.columns.step]
        labels = None
        if not _plain_labels(frame.columns):
            labels = list(frame.columns)
            frame = frame.set_axis(pd.Index([str(i) for i in range(len(labels))], name=frame.columns.name), axis=1)
        facts["labels"] = labels
        try:
            if obj.attrs:
                facts["attrs"] = dict(obj.attrs)
            encoded = valuecodec.encode(facts)
        except CasError as exc:
            raise UnsupportedTypeError(f"pandas {kind} attrs or labels are not values cas encodes: {exc}") from None
        try:
            # preserve_index=None: a RangeIndex is kept as its start, stop and step, not as a column.
            with warnings.catch_warnings():  # attrs and non-str names it warns about are kept in pandas.msgpack
                warnings.simplefilter("ignore", UserWarning)
                table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError) as exc:
            raise UnsupportedTypeError(
                f"pandas {kind} does not convert to Arrow: {type(exc).__name__}: {exc}"
            ) from None
        writer.write_bytes("pandas.msgpack", encoded)
        _write_table(table, writer)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        facts = valuecodec.decode(reader.read_bytes("pandas.msgpack"))
        if not isinstance(facts, dict):
            raise CorruptObjectError("pandas facts are not a map")
        table = _read_table(reader)
        frame = _to_pandas(table)
        labels = facts.get("labels")
        if labels is not None:
            if not isinstance(labels, list) or len(labels) != len(frame.columns):
                raise CorruptObjectError("stored column labels do not match the stored columns")
            if labels:
                frame.columns = pd.Index(labels, tupleize_cols=False, name=frame.columns.name)
        frame = _apply_facts(frame, table, facts)
        if facts.get("series"):
            if frame.shape[1] != 1:
                raise CorruptObjectError("a stored Series does not hold exactly one column")
            series = frame.iloc[:, 0]
            series.name = facts.get("name")
            series.attrs = frame.attrs
            return series if frame.flags.allows_duplicate_labels else series.set_flags(allows_duplicate_labels=False)
        return frame

    def visualize(self, obj: Any) -> list[Visualization]:
        frame = obj.to_frame() if isinstance(obj, pd.Series) else obj
        schema = [(str(c), str(t), int(frame[c].isna().sum()) if frame[c].ndim == 1 else "")
                  for c, t in zip(frame.columns[:100], frame.dtypes[:100], strict=True)]  # fmt: skip
        found = [Visualization("schema", "text/html", visuals.html_doc(
            f"<p>{len(frame):,} rows, {len(frame.columns):,} columns</p>",
            visuals.html_table(schema, ["column", "dtype", "missing"])))]  # fmt: skip
        head = frame.head(20)
        found.append(Visualization("head", "text/html", visuals.html_doc(visuals.html_table(
            [[str(i), *(str(v) for v in row)] for i, row in zip(head.index, head.itertuples(index=False), strict=True)],
            ["", *(str(c) for c in head.columns)]))))  # fmt: skip
        try:
            described = frame.describe()
        except (ValueError, TypeError):
            return found
        found.append(Visualization("describe", "text/html", visuals.html_doc(visuals.html_table(
            [[str(i), *(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row)]
             for i, row in zip(described.index, described.itertuples(index=False), strict=True)],
            ["", *(str(c) for c in described.columns)]))))  # fmt: skip
        return found

    def metadata(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, pd.Series):
            return {"rows": len(obj), "dtype": str(obj.dtype)}
        return {
            "rows": len(obj),
            "columns": [str(c) for c in obj.columns[:100]],
            "dtypes": [str(t) for t in obj.dtypes[:100]],
        }

"""pandas DataFrames and Series, and pyarrow Tables, as Arrow IPC files.

pandas goes through pyarrow, whose pandas metadata restores the index (also a
MultiIndex), categoricals, tz-aware datetimes and nullable dtypes. Column
labels that Arrow would turn into strings (ints mixed with strs, tuples,
duplicates) are replaced by their positions for the trip and kept, with their
types, in the artifact.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
import pyarrow as pa

from cas.errors import CorruptObjectError
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
            RecursionError, MemoryError) as exc:  # fmt: skip
        raise CorruptObjectError(
            f"stored Arrow table does not convert to pandas: {type(exc).__name__}: {exc}"
        ) from None


def _plain_labels(columns: pd.Index) -> bool:
    """Labels Arrow keeps as they are: unique, and all str (or all int)."""
    if isinstance(columns, pd.MultiIndex):
        return columns.is_unique
    kinds = {type(c) for c in columns}
    return columns.is_unique and (kinds <= {str} or kinds <= {int})


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


class PandasMaterializer(Materializer):
    """pandas.DataFrame and pandas.Series, through Arrow."""

    name = "cas.pandas"
    version = "1"
    packages = ("pandas", "pyarrow")
    types = (pd.DataFrame, pd.Series)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        series = isinstance(obj, pd.Series)
        frame = obj.to_frame(name=_SERIES_COLUMN) if series else obj
        labels = None
        if not _plain_labels(frame.columns):
            labels = list(frame.columns)
            frame = frame.set_axis([str(i) for i in range(len(labels))], axis=1)
        table = pa.Table.from_pandas(frame, preserve_index=True)
        writer.write_bytes(
            "pandas.msgpack",
            valuecodec.encode({"series": series, "name": obj.name if series else None, "labels": labels}),
        )
        _write_table(table, writer)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        facts = valuecodec.decode(reader.read_bytes("pandas.msgpack"))
        if not isinstance(facts, dict):
            raise CorruptObjectError("pandas facts are not a map")
        frame = _to_pandas(_read_table(reader))
        labels = facts.get("labels")
        if labels is not None:
            if not isinstance(labels, list) or len(labels) != len(frame.columns):
                raise CorruptObjectError("stored column labels do not match the stored columns")
            frame.columns = pd.Index(labels, tupleize_cols=False) if labels else frame.columns
        if facts.get("series"):
            if frame.shape[1] != 1:
                raise CorruptObjectError("a stored Series does not hold exactly one column")
            series = frame.iloc[:, 0]
            series.name = facts.get("name")
            return series
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

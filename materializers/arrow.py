"""pandas DataFrames and Series, and pyarrow Tables, as Arrow IPC files.

pandas goes through pyarrow, whose pandas metadata restores the index (also a
MultiIndex), categoricals, tz-aware datetimes and nullable dtypes. Column
labels that Arrow would turn into strings (ints mixed with strs, tuples,
duplicates) are replaced by their positions for the trip and kept, with their
types, in the artifact.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from cas.errors import CorruptObjectError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization

_SERIES_COLUMN = "__cas_series__"


def _write_table(table: pa.Table, writer: ArtifactWriter) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as ipc:
        ipc.write_table(table)
    writer.write_bytes("table.arrow", memoryview(sink.getvalue()))


def _read_table(reader: ArtifactReader) -> pa.Table:
    data = reader.read_bytes("table.arrow")
    try:
        return pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise CorruptObjectError(f"stored Arrow table does not decode: {exc}") from None


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
        frame = _read_table(reader).to_pandas()
        labels = facts.get("labels")
        if labels is not None:
            frame.columns = pd.Index(labels, tupleize_cols=False) if labels else frame.columns
        if facts.get("series"):
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

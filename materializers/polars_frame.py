"""polars DataFrames and Series through the Arrow path; LazyFrames as polars' own JSON plan.

A DataFrame (a Series as a one-column frame) becomes a pyarrow Table with
``to_arrow`` and is written and read back by :mod:`materializers.arrow`'s
IPC writer and checked reader (declared sizes, full validation, views).
polars keeps what Arrow alone would lose (Categorical, Enum categories) in
field metadata, so the dtypes come back as they were, nested ones included.

A LazyFrame is its logical plan, serialized by polars as JSON; the plan
format changes between polars versions, so the version that wrote it is
recorded (and named when another one can not read it). polars serializes a
Python function in a plan with pickle and unpickles it when reading the plan
back, so a plan is checked before polars sees it: the only byte strings it
may hold are Arrow IPC streams that polars decodes in Rust (the in-memory
frames it scans, an Enum's categories), under the keys polars writes them. A LazyFrame using a Python function
(``map_elements``, ``map_batches``, a Python scan...) is refused at put.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import polars as pl

from cas.errors import CorruptObjectError, UnsupportedTypeError
from materializers import valuecodec
from materializers.arrow import _read_table, _write_table
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization, html_doc, html_table

_SERIES_COLUMN = "__cas_series__"
#: Keys under which a stored plan may hold bytes: an Arrow IPC stream polars decodes itself (a frame, an Enum's
#: categories), which starts with the stream's continuation marker (a pickle never does).
_BYTES_KEYS = frozenset({"df", "strings"})
_IPC_STREAM = [255, 255, 255, 255]
#: How polars' pickled Python objects start ("PLPYFN", "PLPYUDF"...).
_PYTHON_MAGIC = list(b"PLPY")
#: Lists of ints shorter than this are a dtype's parameters (a Decimal's precision and scale, an Array's
#: shape), not bytes: no pickle that does anything fits in them with polars' magic.
_SHORT_INTS = 16
#: Nesting of a stored plan walked at most (json's parser recurses too).
_MAX_DEPTH = 400


class PolarsMaterializer(Materializer):
    """polars.DataFrame and polars.Series, as an Arrow IPC file."""

    name = "cas.polars"
    version = "1"
    packages = ("polars", "pyarrow")
    types = (pl.DataFrame, pl.Series)
    subclasses = False  # a subclass would come back as a plain DataFrame

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        series = isinstance(obj, pl.Series)
        frame = obj.to_frame(_SERIES_COLUMN) if series else obj
        try:
            table = frame.to_arrow()
        except Exception as exc:  # noqa: BLE001  polars' own errors (Object columns, ...) have no common base
            raise UnsupportedTypeError(f"polars {type(obj).__name__} does not convert to Arrow: {exc}") from None
        if any(dtype == pl.Object for dtype in frame.schema.values()):
            raise UnsupportedTypeError("polars Object columns hold Python objects: store them with allow_pickle=True")
        writer.write_bytes(
            "polars.msgpack", valuecodec.encode({"series": series, "name": obj.name if series else None})
        )
        _write_table(table, writer)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        facts = valuecodec.decode(reader.read_bytes("polars.msgpack"))
        if not isinstance(facts, dict) or set(facts) != {"series", "name"} or type(facts["series"]) is not bool:
            raise CorruptObjectError("stored polars facts are not ones cas writes")
        table = _read_table(reader)
        try:  # polars reads its own field metadata (Enum categories...) from the table, and panics on bad ones
            frame = pl.from_arrow(table, rechunk=False)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:  # a panic is no Exception
            raise CorruptObjectError(f"stored table is not a polars frame: {type(exc).__name__}: {exc}") from None
        if not isinstance(frame, pl.DataFrame):
            raise CorruptObjectError("stored polars table did not give a DataFrame")
        if not facts["series"]:
            return frame
        if frame.width != 1 or not isinstance(facts["name"], str):
            raise CorruptObjectError("a stored polars Series does not hold exactly one named column")
        return frame.to_series(0).alias(facts["name"])

    def metadata(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, pl.Series):
            return {"rows": len(obj), "dtype": str(obj.dtype)}
        return {"rows": obj.height, "columns": obj.columns[:100], "dtypes": [str(t) for t in obj.dtypes[:100]]}

    def visualize(self, obj: Any) -> list[Visualization]:
        frame = obj.to_frame() if isinstance(obj, pl.Series) else obj
        schema = [(c, str(t), frame[c].null_count()) for c, t in list(frame.schema.items())[:100]]
        found = [Visualization("schema", "text/html", html_doc(
            f"<p>{frame.height:,} rows, {frame.width:,} columns</p>",
            html_table(schema, ["column", "dtype", "missing"])))]  # fmt: skip
        head = frame.head(20)
        found.append(Visualization("head", "text/html", html_doc(html_table(
            [[str(v) for v in row] for row in head.iter_rows()], head.columns))))  # fmt: skip
        return found


def _check_plan(node: Any) -> None:
    """Refuse a plan holding bytes anywhere but an in-memory frame (a pickled Python function); ValueError."""
    stack = [(node, 0, "")]
    while stack:
        value, level, key = stack.pop()
        if level > _MAX_DEPTH:
            raise ValueError("the plan is nested too deeply")
        if isinstance(value, dict):
            stack.extend((v, level + 1, k) for k, v in value.items())
        elif isinstance(value, list):
            if value[:4] == _PYTHON_MAGIC:
                raise ValueError("the plan calls a Python function (polars would unpickle it)")
            if len(value) >= _SHORT_INTS and all(type(v) is int for v in value) and \
                    (key not in _BYTES_KEYS or value[:4] != _IPC_STREAM):  # fmt: skip
                raise ValueError(f"the plan holds bytes under {key[:40]!r} (only in-memory frames may be bytes)")
            stack.extend((v, level + 1, key) for v in value)


class PolarsLazyMaterializer(Materializer):
    """polars.LazyFrame, as polars' JSON logical plan; the polars version is recorded."""

    name = "cas.polars.lazy"
    version = "1"
    packages = ("polars",)
    types = (pl.LazyFrame,)
    subclasses = False

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        try:
            with warnings.catch_warnings():  # the JSON format is deprecated, but is the one cas can check
                warnings.simplefilter("ignore")
                plan = obj.serialize(format="json")
            _check_plan(json.loads(plan))
        except Exception as exc:  # noqa: BLE001  polars' errors have no common base
            raise UnsupportedTypeError(
                f"polars LazyFrame can not be stored as a plan ({exc}); collect() it, or allow_pickle=True"
            ) from None
        writer.write_bytes("plan.json", plan.encode())

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        text = reader.read_bytes("plan.json")
        try:
            _check_plan(json.loads(text))
        except (ValueError, RecursionError) as exc:
            raise CorruptObjectError(f"stored polars plan is refused: {exc}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pl.LazyFrame.deserialize(text, format="json")
            except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:  # a panic is no Exception
                raise ValueError(f"polars can not read the plan: {exc}") from None

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"polars": pl.__version__}

    def recorded_versions(self, metadata: dict[str, Any]) -> dict[str, str]:
        version = metadata.get("polars") if isinstance(metadata, dict) else None
        if isinstance(version, str) and len(version) <= 40 and version.replace(".", "").isalnum():
            return {"polars": version}
        return {}

    def visualize(self, obj: Any) -> list[Visualization]:
        try:
            text = obj.explain(optimized=False)
        except Exception:  # noqa: BLE001  a plan that can not be explained is shown without it
            return []
        return [Visualization("plan", "text/plain", text.encode())]

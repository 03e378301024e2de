"""Values at real sizes for tests/test_real_data.py, their exact fingerprints, the steps, and the child side.

Every generator is deterministic (fixed seeds, vectorized numpy, no Python
loop over rows), so a fresh process rebuilds exactly the value the test put
and checks what it loads against it. Run as a script, it is that fresh process:

    python tests/real_data_worker.py get STORE REF KIND       load REF, check it exactly, print its fingerprint
    python tests/real_data_worker.py step STORE KIND FOLDER   call KIND's step (CAS_STORE=STORE), check, print

Each prints one JSON line: {"fingerprint": ..., "status": ...}.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import blake3
import numpy as np

import cas

#: Sizes used by the test module (the defaults are the real-pipeline sizes).
FRAME_ROWS = 3_300_000  # about 200 MB in memory (memory_usage(deep=True))
ARRAY_ITEMS = 1 << 28  # float32: 1 GiB
SMALL_FRAME_ROWS = 330_000  # about 20 MB
SMALL_ARRAY_ITEMS = 50 << 18  # float32: 50 MiB
BLOB_BYTES = 48 << 20
TEXT_CHARS = 6 << 20

SEED = 16


# -- the values -------------------------------------------------------------------------------------------
def make_frame(rows: int = FRAME_ROWS, seed: int = SEED) -> Any:
    """Mixed dtypes: float64 (with NaN), int64, bool, categorical, str (with NA), tz-aware datetimes, Int64 with NA."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(rows)
    x[rng.integers(0, rows, rows // 100)] = np.nan
    cities = pd.Index([f"city-{i:03d}" for i in range(120)], dtype="str")
    users = np.array([f"user-{i:07d}" for i in range(50_000)], dtype=object)
    notes = users[rng.integers(0, len(users), rows)]
    notes[rng.random(rows) < 0.05] = None
    seconds = rng.integers(1_600_000_000, 1_800_000_000, rows) * 1_000_000_000 + rng.integers(0, 1000, rows) * 1000
    when = pd.DatetimeIndex(seconds.astype("datetime64[ns]")).tz_localize("UTC").tz_convert("Europe/Paris")
    counts = rng.integers(0, 1000, rows)
    return pd.DataFrame(
        {
            "x": x,
            "score": rng.random(rows),
            "n": rng.integers(-(2**40), 2**40, rows, dtype=np.int64),
            "flag": rng.random(rows) < 0.3,
            "city": pd.Categorical.from_codes(rng.integers(0, len(cities), rows).astype(np.int8), categories=cities),
            "user": pd.array(notes, dtype="str"),
            "when": when,
            "items": pd.arrays.IntegerArray(counts, rng.random(rows) < 0.1),
        }
    )


def make_array(items: int = ARRAY_ITEMS, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).random(items, dtype=np.float32)


def make_metrics(seed: int = SEED) -> dict[str, Any]:
    """What a training loop logs: nested dicts and lists with datetimes (naive, UTC, zoneinfo), Decimals, floats."""
    import zoneinfo

    rng = np.random.default_rng(seed)
    start = datetime.datetime(2026, 11, 28, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    epochs = [
        {
            "epoch": i,
            "loss": float(loss),
            "accuracy": float(acc),
            "finished": start + datetime.timedelta(minutes=7 * i, microseconds=int(us)),
            "lr": Decimal("0.001") * (Decimal("0.9") ** i),
        }
        for i, (loss, acc, us) in enumerate(
            zip(rng.random(200) * 2, rng.random(200), rng.integers(0, 10**6, 200), strict=True)
        )
    ]
    return {
        "run": {"started": start, "host": "ci", "logged": datetime.datetime(2026, 11, 28, 8, 59, 59)},
        "epochs": epochs,
        "best": {"epoch": 117, "accuracy": 0.9731, "cost_usd": Decimal("12.37")},
        "duration": datetime.timedelta(hours=23, seconds=1),
        "day": datetime.date(2026, 11, 28),
        "tags": ["baseline", "float32"],
        "nan": float("nan"),
        "finished_utc": datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.timezone.utc),
    }


def model_data(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((20_000, 20))
    labels = (features[:, 0] + 0.5 * features[:, 1] * features[:, 2] + 0.3 * rng.standard_normal(20_000) > 0).astype(
        np.int64
    )
    return features, labels


def train_model(features: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=30, max_depth=12, random_state=0, n_jobs=1).fit(features, labels)


def make_model(seed: int = SEED) -> Any:
    return train_model(*model_data(seed))


def make_blob(size: int = BLOB_BYTES, seed: int = SEED) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def make_text(chars: int = TEXT_CHARS, seed: int = SEED) -> str:
    """A log-like text, non-ASCII included."""
    words = np.array(["epoch", "loss", "überprüft", "ok", "名前", "0.25", "\n", "val", "🚀", "step"], dtype=object)
    picks = words[np.random.default_rng(seed).integers(0, len(words), chars // 4)]
    return " ".join(picks.tolist())


def make_folder(root: Path, seed: int = SEED) -> Path:
    """A data folder: 300 small files (inline), 40 of a few hundred KiB (loose), two large ones (chunked)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(300):
        sub = root / "labels" / f"{i % 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:04d}.json").write_text(json.dumps({"id": i, "label": int(rng.integers(0, 10))}))
    (root / "images").mkdir(exist_ok=True)
    for i in range(40):
        (root / "images" / f"{i:03d}.raw").write_bytes(rng.integers(0, 256, 200_000 + i, dtype=np.uint8).tobytes())
    (root / "shards").mkdir(exist_ok=True)
    (root / "shards" / "train.bin").write_bytes(rng.integers(0, 256, 24 << 20, dtype=np.uint8).tobytes())
    (root / "shards" / "valid.bin").write_bytes(rng.integers(0, 256, 6 << 20, dtype=np.uint8).tobytes())
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho train\n")
    run.chmod(0o755)
    return root


# -- exact fingerprints -------------------------------------------------------------------------------------
def fingerprint(value: Any) -> str:
    """A digest of everything equality (and fidelity) depends on: types, dtypes, index kinds, and every value."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    _feed(h, value)
    return h.hexdigest()


def _tag(h: Any, *parts: Any) -> None:
    h.update(repr(parts).encode("utf-8", "surrogatepass") + b"\0")


def _feed(h: Any, value: Any) -> None:
    t = type(value)
    _tag(h, t.__module__, t.__qualname__)
    if isinstance(value, np.ndarray):
        _tag(h, value.dtype.str, value.shape)
        h.update(memoryview(np.ascontiguousarray(value)).cast("B"))
        return
    if isinstance(value, (bytes, str)):
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        _tag(h, len(data))
        h.update(data)
        return
    if isinstance(value, Path):
        _feed_folder(h, value)
        return
    if isinstance(value, dict):
        _tag(h, len(value))
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
        return
    if isinstance(value, (list, tuple)):
        _tag(h, len(value))
        for v in value:
            _feed(h, v)
        return
    module = t.__module__.split(".")[0]
    if module == "pandas":
        _feed_pandas(h, value)
        return
    if module == "sklearn":
        _feed_model(h, value)
        return
    if isinstance(value, float) and value != value:
        _tag(h, "nan")
        return
    _tag(h, repr(value))  # exact for int, float, Decimal, datetime (with its tzinfo), date, timedelta, None


def _feed_pandas(h: Any, value: Any) -> None:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        _tag(h, value.shape, value.attrs, value.flags.allows_duplicate_labels)
        _feed_pandas(h, value.columns)
        _feed_pandas(h, value.index)
        for i in range(value.shape[1]):
            _feed_pandas(h, value.iloc[:, i])
        return
    if isinstance(value, pd.RangeIndex):
        _tag(h, value.name, value.start, value.stop, value.step)
        return
    if isinstance(value, pd.Index):
        _tag(h, value.name, repr(value.dtype), getattr(value, "freqstr", None))
        _feed_values(h, pd.Series(value, copy=False))
        return
    if isinstance(value, pd.Series):
        _tag(h, value.name, repr(value.dtype))
        _feed_pandas(h, value.index)
        _feed_values(h, value)
        return
    raise TypeError(f"no fingerprint for {type(value)}")


def _feed_values(h: Any, series: Any) -> None:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        h.update(memoryview(np.ascontiguousarray(series.to_numpy())).cast("B"))
    elif isinstance(dtype, pd.CategoricalDtype):
        h.update(np.ascontiguousarray(series.cat.codes.to_numpy()).tobytes())  # categories are in repr(dtype)
    elif isinstance(dtype, pd.DatetimeTZDtype):
        h.update(series.array.asi8.tobytes())
    else:  # str, nullable ints: one 64-bit hash of each value, NA included
        h.update(pd.util.hash_pandas_object(series, index=False, categorize=False).to_numpy().tobytes())
        h.update(np.asarray(series.isna()).tobytes())


def _feed_model(h: Any, model: Any) -> None:
    _tag(h, sorted((k, repr(v)) for k, v in model.get_params().items()))
    h.update(np.ascontiguousarray(model.classes_).tobytes())
    for tree in getattr(model, "estimators_", ()):
        state = tree.tree_.__getstate__()
        for field in state["nodes"].dtype.names:  # field by field: the struct's padding bytes are not data
            h.update(state["nodes"][field].tobytes())
        h.update(state["values"].tobytes())
    probe = np.random.default_rng(99).standard_normal((500, model.n_features_in_))
    h.update(model.predict_proba(probe).tobytes())


def _feed_folder(h: Any, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        _tag(h, path.relative_to(root).as_posix(), len(data), bool(path.stat().st_mode & 0o100))
        h.update(data)


# -- exact equality -------------------------------------------------------------------------------------------
def assert_same(expected: Any, got: Any) -> None:
    """Equal value and type, checked exactly (no tolerance, index and column kinds included)."""
    assert type(got) is type(expected), (type(got), type(expected))
    if isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=True)
    elif type(expected).__module__.split(".")[0] == "pandas":
        import pandas as pd

        pd.testing.assert_frame_equal(
            got, expected, check_exact=True, check_index_type=True, check_column_type=True, check_freq=True,
            check_flags=True, check_categorical=True,
        )  # fmt: skip
        assert type(got.index) is type(expected.index) and list(got.dtypes) == list(expected.dtypes)
    else:  # models, folders, dicts, bytes, str: every field, tree node, file and type is in the fingerprint
        assert fingerprint(got) == fingerprint(expected)
        if not _has_nan(expected) and not isinstance(expected, Path) and not hasattr(expected, "get_params"):
            assert got == expected


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False


def make(kind: str, folder: Path | None = None) -> Any:
    """The value of one kind, at the size the test module uses."""
    if kind == "folder":
        assert folder is not None
        return folder if folder.exists() else make_folder(folder)
    return {
        "frame": make_frame,
        "array": make_array,
        "metrics": make_metrics,
        "model": make_model,
        "blob": make_blob,
        "text": make_text,
    }[kind]()


# -- steps ------------------------------------------------------------------------------------------------
# Each takes the value as an input (hashed and stored by content, the path that broke on 1 MiB frames)
# and returns a value the child can check exactly.
@cas.step
def clean_frame(frame: Any) -> Any:
    return frame.copy()


@cas.step
def head_array(array: np.ndarray, ratio: float) -> np.ndarray:
    """The first part, as a train split is: its chunks are the input's own, but for the last."""
    return array[: int(len(array) * ratio)]


@cas.step
def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"best": metrics["best"], "last": metrics["epochs"][-1], "duration": metrics["duration"]}


@cas.step
def compress_blob(blob: bytes) -> bytes:
    return blob[::2]


@cas.step
def upper_text(text: str) -> str:
    return text.upper()


@cas.step
def index_folder(folder: Path) -> dict[str, Any]:
    return {"files": [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]}


def _fit(features: np.ndarray, labels: np.ndarray) -> Any:
    return train_model(features, labels)


#: ``@cas.step(allow_pickle=True)``: a step that trusts the pickles it stored itself (issue 16 item 5).
STEP_PICKLE = "allow_pickle" in inspect.signature(cas.step).parameters
fit_model = cas.step(allow_pickle=True, name="real_data_worker.fit_model")(_fit) if STEP_PICKLE else None


def step_call(kind: str, folder: Path | None) -> tuple[Any, Any, Any]:
    """(expected result, step result, run) for KIND's step, called on the value built here."""
    if kind == "model":
        assert fit_model is not None, "this cas has no @cas.step(allow_pickle=True)"
        features, labels = model_data()
        result, run = fit_model.call(features, labels)
        return None, result, run  # not trained twice: the test compares the fingerprint with its own model's
    value = make(kind, folder)
    step, expected, args = {
        "frame": (clean_frame, lambda: value, ()),
        "array": (head_array, lambda: value[: int(len(value) * 0.9)], (0.9,)),
        "metrics": (summarize, lambda: summarize.fn(value), ()),
        "blob": (compress_blob, lambda: value[::2], ()),
        "text": (upper_text, lambda: value.upper(), ()),
        "folder": (index_folder, lambda: index_folder.fn(value), ()),
    }[kind]
    result, run = step.call(value, *args)
    return expected(), result, run


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "get":
        url, ref, kind, folder = argv[1:5]
        with cas.open(url, create=False, trust_pickle=kind == "model") as store:
            if kind == "folder":
                got: Any = store.get(ref, path=Path(folder) / "restored")
                expected = make_folder(Path(folder) / "expected")
            else:
                got = store.get(ref)
                expected = None if kind == "model" else make(kind)  # a model is compared by fingerprint
            if kind != "model":
                assert_same(expected, got)
            print(json.dumps({"fingerprint": fingerprint(got), "status": "loaded"}))
    elif command == "step":
        url, kind, folder = argv[1:4]
        os.environ["CAS_STORE"] = url
        expected, result, run = step_call(kind, Path(folder))
        if kind != "model":
            assert_same(expected, result)
        print(json.dumps({"fingerprint": fingerprint(result), "status": run.status, "step": run.step}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_data_worker  # the steps' names are real_data_worker.<function>, as when the tests import it

    real_data_worker.main(sys.argv[1:])

"""Named small objects (issue 20): 2,000 small dicts, each put under its own name and read back by name.

Beside one pickle file per name and one joblib file per name, in the same run,
sides alternating, medians. Gets are measured by the latest version
(``name``), by number (``name@1``) and from a Store opened afresh (nothing
remembered: what a new process pays). The same again in a store that already
holds 100,000 names (written straight to disk, as ``cas put`` would leave
them, so it builds in seconds). On S3 (SeaweedFS): ``cas ls`` of 1,000 names
and ``cas log`` of a name with 1,000 versions, with the requests they send.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cas
from benchmarks.harness import Row, median, pickle_dump, pickle_load, remove
from cas import history
from cas.keys import names_key, version_key
from cas.objects import RefRecord
from cas.refs import _encode

PUT_TARGET = 2000.0
GET_TARGET = 20000.0


def _values(count: int) -> list[dict[str, Any]]:
    return [{"step": i, "loss": 1.0 / (i + 1), "name": f"run-{i}", "tags": ["train", "v2"]} for i in range(count)]


def _rate(count: int, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def _cas_side(store_dir: Path, values: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    count = len(values)
    names = [f"{prefix}{i}" for i in range(count)]
    rates = {}
    with cas.open(store_dir) as store:
        rates["put"] = _rate(count, lambda: [store.put(v, n) for v, n in zip(values, names, strict=True)])
        rates["get"] = _rate(count, lambda: [store.get(n) for n in names])
        rates["get@N"] = _rate(count, lambda: [store.get(f"{n}@1") for n in names])
        assert store.get(names[-1]) == values[-1]
    with cas.open(store_dir) as fresh:  # nothing remembered
        rates["cold get"] = _rate(count, lambda: [fresh.get(n) for n in names])
    return rates


def _file_side(folder: Path, values: list[dict[str, Any]], prefix: str, dump: Any, load: Any) -> dict[str, float]:
    count = len(values)
    paths = [folder / f"{prefix}{i}.pkl" for i in range(count)]
    folder.mkdir(parents=True, exist_ok=True)
    rates = {"put": _rate(count, lambda: [dump(v, p) for v, p in zip(values, paths, strict=True)])}
    rates["get"] = _rate(count, lambda: [load(p) for p in paths])
    rates["get@N"] = rates["get"]  # one file per name: no versions
    rates["cold get"] = _rate(count, lambda: [load(p) for p in paths])
    assert load(paths[-1]) == values[-1]
    return rates


def _sides() -> dict[str, tuple[Any, Any]]:
    sides: dict[str, tuple[Any, Any]] = {"pickle files": (pickle_dump, pickle_load)}
    try:
        import joblib
    except ImportError:  # pip install joblib
        return sides
    sides["joblib"] = (lambda v, p: joblib.dump(v, p), joblib.load)
    return sides


def _measure(work: Path, count: int, repeats: int, label: str, prepare: Callable[[Path], None]) -> list[Row]:
    values = _values(count)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, dict[str, list[float]]] = {}
    store_dir, files = work / "store", work / "files"
    prepare(work)
    sides = _sides()
    for i in range(repeats):
        prefix = f"r{i}-item-"
        order = ["cas", *sides] if i % 2 == 0 else [*reversed(sides), "cas"]
        for side in order:
            if side == "cas":
                got = _cas_side(store_dir, values, prefix)
                for k, v in got.items():
                    ours.setdefault(k, []).append(v)
            else:
                dump, load = sides[side]
                got = _file_side(files / side, values, prefix, dump, load)
                for k, v in got.items():
                    theirs.setdefault(side, {}).setdefault(k, []).append(v)
    remove(store_dir)
    remove(files)
    rows = []
    for metric, target in (("put", PUT_TARGET), ("get", GET_TARGET), ("get@N", GET_TARGET), ("cold get", None)):
        value = median(ours[metric])
        for side, rates in theirs.items():
            ref_value = median(rates[metric])
            rows.append(
                Row(
                    f"named {metric} {count:,} small dicts{label}",
                    value,
                    "op/s",
                    min(ours[metric]),
                    max(ours[metric]),
                    side,
                    ref_value,
                    value / ref_value,
                    f">= {target:,.0f}/s" if target else "",
                    value >= target if target else None,
                )
            )
    return rows


def named_small(work: Path, size: int, repeats: int) -> list[Row]:
    """2,000 named small puts and gets by name in a fresh store, vs pickle and joblib files."""
    count = 2000 if repeats > 2 else 200
    return _measure(work, count, repeats, "", lambda _: None)


def named_small_big_store(work: Path, size: int, repeats: int) -> list[Row]:
    """The same in a store (and folders of files) already holding 100,000 names."""
    count = 2000 if repeats > 2 else 200
    existing = 100_000 if repeats > 2 else 1_000

    def prepare(work: Path) -> None:
        started = time.perf_counter()
        fill_names(work / "store", existing)
        for side, (dump, _load) in _sides().items():
            folder = work / "files" / side
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(existing):
                dump({"old": i}, folder / f"old-{i}.pkl")
        print(f"  (built {existing:,} names per side in {time.perf_counter() - started:.0f} s)")

    return _measure(work, count, repeats, f" (store of {existing:,} names)", prepare)


def fill_names(store_dir: Path, count: int) -> None:
    """A store with ``count`` names, each with one version of one small artifact (written straight to disk).

    The version files are those a put writes; the reverse index (``names/``,
    a writer's SHOULD) is left out to build in seconds.
    """
    with cas.open(store_dir) as store:
        target = bytes.fromhex(store.put({"filler": True}).hash)
    now = time.time()
    for i in range(count):
        name = f"old-{i}"
        key = version_key(name, 1)
        path = store_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_encode(RefRecord(target, now, 1, None)))


# -- S3: ls and log, with the requests they send -------------------------------------------------
def s3_listing(work: Path, size: int, repeats: int) -> list[Row]:
    """``cas ls`` of 1,000 names and ``cas log`` of 1,000 versions on SeaweedFS: seconds and requests."""
    from benchmarks.seaweed import KEY, SECRET, shared_server

    count = 1000 if repeats > 2 else 100
    server = shared_server()
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": server.endpoint}}
    prefix = f"bench/{uuid.uuid4().hex}"
    url = f"s3://{prefix}"
    fs = server.filesystem()
    with cas.open(url, storage_options=options) as store:
        target = bytes.fromhex(store.put({"small": True}).hash)
    now = time.time()
    files = {f"{prefix}/{version_key(f'n{i:04d}', 1)}": _encode(RefRecord(target, now, 1, None)) for i in range(count)}
    files |= {f"{prefix}/{version_key('m', n)}": _encode(RefRecord(target, now, n, None)) for n in range(1, count + 1)}
    # and the reverse index a put writes beside each version
    files |= {f"{prefix}/{names_key(target, f'n{i:04d}', 1)}": b"" for i in range(count)}
    files |= {f"{prefix}/{names_key(target, 'm', n)}": b"" for n in range(1, count + 1)}
    fs.pipe(files)
    rows = []
    for label, action in (
        (f"S3 ls {count:,} names", lambda repo: history.names_page(repo)),
        (f"S3 log, page of 20 of {count:,} versions", lambda repo: history.version_history(repo, "m", limit=20)),
        (f"S3 log, all {count:,} versions", lambda repo: history.version_history(repo, "m")),
    ):
        times, calls = [], Counter[str]()
        for _ in range(repeats):
            with cas.open(url, storage_options=options) as store:
                counted = _count_calls(store.backend)
                start = time.perf_counter()
                found = action(store.repository)
                times.append(time.perf_counter() - start)
                calls = counted
            assert len(found) == (20 if "page" in label else count + ("ls" in label))  # (ls: and "m")
        value = median(times)
        paged = "all" not in label  # `cas log` shows a page; reading every version has no target
        rows.append(
            Row(label, value, "s", min(times), max(times), "under 1 s", 1.0, 1.0 / value,
                "< 1 s" if paged else "", value < 1.0 if paged else None, notes={"backend calls": dict(calls)})
        )  # fmt: skip
    return rows


def _count_calls(backend: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    for method in ("read", "list", "exists", "write", "create", "delete"):
        original = getattr(backend, method)

        def counting(*args: Any, _original: Any = original, _name: str = method, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(backend, method, counting)
    return calls


WORKLOADS = {"named": named_small, "named-100k": named_small_big_store, "named-s3": s3_listing}

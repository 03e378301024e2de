"""Large reads: get of an array and of bytes, and export to a path, each beside the plain way in the same run.

One float64 array of random values (incompressible, 256 MiB by default,
``--size``, 32 MiB with ``--quick``) is stored once in cas and once each as
a ``.npy`` file, a pickle file (protocol 5) and a joblib file; the same bytes
are stored as ``bytes`` and as a file (``cas.path``). Then, alternating the
sides (the order flips each round), medians reported:

- get of the array through a fresh ``cas.open`` (as a new process would see it:
  nothing decoded yet) vs ``np.load``, ``joblib.load`` and ``pickle.load``;
- get of the bytes vs ``open().read()``;
- ``store.export`` of the file to a path vs ``read()`` then ``write()`` in Python;
- decoding the array's tree (its chunk list), in ms per GiB of file, vs
  ``msgpack.unpackb`` of the same bytes.

Every side runs once untimed first, so both read from a warm page cache: the
rows measure the work of reading (copies, hashing, decoding), not the disk.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

import cas
from benchmarks.harness import Row, alternate, median, remove, throughput_row
from cas.objects import Tree

MAX_SIZE = 256 << 20


def _read_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _copy_in_python(source: Path, target: Path) -> None:
    data = _read_file(source)
    with open(target, "wb") as f:
        f.write(data)


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def large_reads(work: Path, size: int, repeats: int) -> list[Row]:
    """get of a large array and bytes, export of a large file, each against the plain way."""
    import joblib

    size = min(size, MAX_SIZE)
    arr = np.random.default_rng(0).random(size // 8)
    nbytes = arr.nbytes
    data = arr.tobytes()
    store_dir = work / "reads-store"
    npy, pkl, jl, raw = work / "a.npy", work / "a.pkl", work / "a.joblib", work / "a.bin"
    np.save(npy, arr)
    with open(pkl, "wb") as f:
        pickle.dump(arr, f, protocol=5)
    joblib.dump(arr, jl)
    raw.write_bytes(data)
    with cas.open(store_dir) as store:
        store.put(arr, "array")
        store.put(data, "bytes")
        store.put(raw, "file")
    del data

    def get(name: str) -> Any:
        with cas.open(store_dir) as store:
            return store.get(name)

    assert np.array_equal(get("array"), arr), "get of the array returned something else"
    del arr
    sides: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
        "cas": (lambda: get("array"), None),
        "np.load": (lambda: np.load(npy), None),
        "joblib.load": (lambda: joblib.load(jl), None),
        "pickle.load": (lambda: _load_pickle(pkl), None),
    }
    for action, _ in sides.values():
        action()  # warm the page cache for every side
    times = alternate(sides, repeats)
    rows = [
        throughput_row("get float64 array (fresh open)", nbytes, times["cas"], times["np.load"], "np.load", 0.8),
        throughput_row(
            "get float64 array (fresh open)", nbytes, times["cas"], times["joblib.load"], "joblib.load", 1.0
        ),
        throughput_row(
            "get float64 array (fresh open)", nbytes, times["cas"], times["pickle.load"], "pickle.load", None
        ),
    ]

    rows.append(_chunk_list_row(store_dir, nbytes, repeats))

    assert get("bytes") == _read_file(raw), "get of the bytes returned something else"
    times = alternate({"cas": (lambda: get("bytes"), None), "plain": (lambda: _read_file(raw), None)}, repeats)
    rows.append(throughput_row("get bytes (fresh open)", nbytes, times["cas"], times["plain"], "open().read()", 0.8))

    out, copy = work / "exported.bin", work / "copied.bin"

    def export() -> None:
        with cas.open(store_dir) as store:
            store.export("file", out)

    export()
    assert _read_file(out) == _read_file(raw), "export wrote something else"
    remove(out)
    _copy_in_python(raw, copy)
    remove(copy)
    times = alternate(
        {"cas": (export, lambda: remove(out)), "plain": (lambda: _copy_in_python(raw, copy), lambda: remove(copy))},
        repeats,
    )
    rows.append(throughput_row("export file to a path", nbytes, times["cas"], times["plain"], "read()+write()", 0.8))
    for path in (store_dir, npy, pkl, jl, raw):
        remove(path)
    return rows


def _chunk_list_row(store_dir: Path, nbytes: int, repeats: int) -> Row:
    """Decoding the array's tree (its chunk list, every field checked, canonical form too), in ms per GiB stored.

    Beside ``msgpack.unpackb`` of the same bytes, which checks nothing: what
    reading any msgpack chunk list costs at least. Each sample decodes 20 times
    (the garbage collector on, as in a get).
    """
    from cas import artifacts

    with cas.open(store_dir) as store:
        tree_id = artifacts.artifact(store.repository, store.resolve("array")).tree
        data = store.objects.get_object(tree_id)
    per_gib = (1 << 30) / nbytes

    def decode_20(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(20):
                fn()

        return run

    times = alternate(
        {
            "cas": (decode_20(lambda: Tree.from_bytes(data)), None),
            "msgpack": (decode_20(lambda: msgpack.unpackb(data, raw=False, use_list=False)), None),
        },
        max(repeats, 5),
    )
    ms = [t / 20 * 1e3 * per_gib for t in times["cas"]]
    ref = median([t / 20 * 1e3 * per_gib for t in times["msgpack"]])
    value = median(ms)
    return Row(
        "decode a chunk list, per GiB of file", value, "ms", min(ms), max(ms), "msgpack.unpackb alone", ref,
        value / ref, "<= 5 ms per GiB", value <= 5,
    )  # fmt: skip


WORKLOADS = {"reads": large_reads}

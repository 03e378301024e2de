"""Storage engine workloads: bytes and files in and out, re-puts, small edits."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cas
from benchmarks.harness import Row, alternate, median, put_get_rows, remove, throughput_row, tree_size


def _random_bytes(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _write_plain(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _read_plain(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def bytes_put_get(work: Path, size: int, repeats: int) -> list[Row]:
    """put/get of incompressible bytes vs writing/reading a plain file."""
    data = _random_bytes(size)
    return put_get_rows(
        work, data, size, label="bytes (incompressible)", plain_name="plain.bin",
        save_plain=lambda p: _write_plain(p, data), load_plain=_read_plain, same=lambda got: got == data,
        references=("file write", "file read"), repeats=repeats,
    )  # fmt: skip


def file_put_get(work: Path, size: int, repeats: int, *, compressible: bool = False) -> list[Row]:
    """put/get of a file on disk vs copying the file."""
    source = work / "source.bin"
    if compressible:
        _write_plain(source, _csv_like(size))
        label = "CSV-like text file"
    else:
        _write_plain(source, _random_bytes(size, seed=1))
        label = "file (incompressible)"
    copy = work / "copy.bin"
    out = work / "restored.bin"
    store_dir = work / "store"

    def cas_put() -> None:
        with cas.open(store_dir) as store:
            store.put(source, "file")

    times = alternate(
        {
            "cas": (cas_put, lambda: remove(store_dir)),
            "plain": (lambda: shutil.copyfile(source, copy), lambda: remove(copy)),
        },
        repeats,
    )
    rows = [throughput_row(f"put {label}", size, times["cas"], times["plain"], "file copy", 0.8)]
    with cas.open(store_dir) as store:
        store.put(source, "file")
        rows[0].stored_bytes = tree_size(store_dir)
        get_times = alternate(
            {
                "cas": (lambda: store.export("file", out), lambda: remove(out)),
                "plain": (lambda: shutil.copyfile(source, copy), lambda: remove(copy)),
            },
            repeats,
        )
        store.export("file", out)
        assert _same_file(out, source), "restored file differs"
    rows.append(
        throughput_row(f"get {label} (to a path)", size, get_times["cas"], get_times["plain"], "file copy", 0.8)
    )
    for p in (store_dir, source, out):
        remove(p)
    return rows


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(16 << 20), fb.read(16 << 20)
            if x != y:
                return False
            if not x:
                return True


def _csv_like(size: int) -> bytes:
    """``size`` bytes of CSV text: an id and four random columns per line (made by numpy, not line by line)."""
    rng = np.random.default_rng(2)
    rows = size // 41 + 1  # each line is 41 bytes
    columns = [
        _digits(np.arange(rows), 8),
        _decimal(rng.normal(size=rows), 6),
        _decimal(rng.normal(size=rows), 6),
        _decimal(rng.normal(size=rows), 4),
        np.where(rng.normal(size=rows)[:, None] > 0, np.frombuffer(b"yes", np.uint8), np.frombuffer(b" no", np.uint8)),
    ]
    comma = np.full((rows, 1), ord(","), np.uint8)
    parts = [p for column in columns for p in (column, comma)][:-1] + [np.full((rows, 1), ord("\n"), np.uint8)]
    return np.hstack(parts).tobytes()[:size]


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as ``width`` ASCII digits each (zero-padded), one row per value."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values.astype(np.int64)[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def _decimal(values: np.ndarray, decimals: int) -> np.ndarray:
    """Values in (-10, 10) as sign, one digit, a point and ``decimals`` digits."""
    clipped = np.clip(values, -9.999999, 9.999999)
    scaled = np.rint(np.abs(clipped) * 10**decimals).astype(np.int64)
    sign = np.where(clipped < 0, ord("-"), ord("+")).astype(np.uint8)[:, None]
    whole = _digits(scaled // 10**decimals, 1)
    point = np.full((len(values), 1), ord("."), np.uint8)
    return np.hstack([sign, whole, point, _digits(scaled % 10**decimals, decimals)])


def reput_and_edits(work: Path, size: int, repeats: int) -> list[Row]:
    """Re-put of identical data, 1% scattered edits, a 100-byte insertion: time and new bytes."""
    data = _random_bytes(size, seed=3)
    store_dir = work / "store"
    rows = []
    firsts, seconds, new_bytes = [], [], []
    for _ in range(repeats):
        remove(store_dir)
        with cas.open(store_dir) as store:
            firsts.append(_t(lambda: store.put(data, "x")))
            before = tree_size(store_dir)
            seconds.append(_t(lambda: store.put(data, "x")))
            new_bytes.append(tree_size(store_dir) - before - _ref_bytes(store_dir))
    speedups = [f / s for f, s in zip(firsts, seconds, strict=False)]
    rows.append(
        Row(
            "re-put identical (speed-up over first put)",
            median(speedups),
            "x",
            min(speedups),
            max(speedups),
            "first put",
            1.0,
            median(speedups),
            ">= 4x",
            median(speedups) >= 4,
            stored_bytes=max(new_bytes),
        )
    )
    rows.append(
        Row(
            "re-put identical: new bytes stored",
            float(max(new_bytes)),
            "B",
            float(min(new_bytes)),
            float(max(new_bytes)),
            "",
            None,
            None,
            "0",
            max(new_bytes) == 0,
            stored_bytes=max(new_bytes),
        )
    )

    edited = bytearray(data)
    rng = np.random.default_rng(4)
    run = size // 100 // 64
    for start in sorted(rng.choice(size - run, 64, replace=False)):
        edited[start : start + run] = _random_bytes(run, seed=int(start))
    inserted = data[: size // 2] + _random_bytes(100, seed=5) + data[size // 2 :]
    for label, variant, limit in (
        ("1% changed in 64 runs", bytes(edited), 0.03),
        ("100 bytes inserted mid-way", inserted, 0.02),
    ):
        with cas.open(store_dir) as store:
            before = tree_size(store_dir)
            store.put(variant, "x")
            assert store.get("x") == variant
            added = tree_size(store_dir) - before - _ref_bytes(store_dir)
        share = added / size
        rows.append(
            Row(
                f"{label}: new bytes / size",
                share * 100,
                "%",
                share * 100,
                share * 100,
                "",
                None,
                None,
                f"<= {limit * 100:g}%",
                share <= limit,
                stored_bytes=added,
            )
        )
    remove(store_dir)
    return rows


def _ref_bytes(store_dir: Path) -> int:
    """Bytes of the newest version file: a ref, not stored data."""
    versions = sorted((store_dir / "refs" / "x" / "@v").iterdir(), key=lambda p: int(p.name))
    return versions[-1].stat().st_size


def _t(fn: object) -> float:
    import time

    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


WORKLOADS = {
    "bytes": bytes_put_get,
    "file": file_put_get,
    "csv": lambda work, size, repeats: file_put_get(work, size, repeats, compressible=True),
    "edits": reput_and_edits,
}


#: Workloads that use the shared SeaweedFS server (started in the background when one is run).
S3_WORKLOADS = {"s3", "sync", "requests-s3", "named-s3"}


def run(names: list[str], size: int, repeats: int) -> list[Row]:
    from benchmarks import maintenance, runs, s3, sync, torch_checkpoint, values

    workloads = {**WORKLOADS, **values.WORKLOADS, **runs.WORKLOADS, **maintenance.WORKLOADS, **s3.WORKLOADS}
    workloads.update(sync.WORKLOADS)
    workloads.update(torch_checkpoint.WORKLOADS)
    if any(name in S3_WORKLOADS for name in names):
        from benchmarks.seaweed import start_shared_server_in_background

        start_shared_server_in_background()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cas-bench-", dir=os.environ.get("CAS_BENCH_DIR")) as tmp:
        for name in names:
            started = time.perf_counter()
            # What earlier workloads imported (torch, s3fs: about 200,000 objects) is set aside, so that the
            # full collection before each timed sample walks only this workload's objects (1-100 ms).
            gc.collect()
            gc.freeze()
            try:
                rows += workloads[name](Path(tmp), size, repeats)
            finally:
                gc.unfreeze()
            print(f"[{name}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)
    return rows


def hashing(work: Path, size: int, repeats: int) -> list[Row]:
    """cas's hashing vs the blake3 library on the same buffer: the limit for re-puts."""
    import blake3

    from cas.hashing import digest

    data = _random_bytes(size, seed=9)
    times = alternate(
        {
            "cas": (lambda: digest(data), None),
            "plain": (lambda: blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest(), None),
        },
        repeats,
    )
    return [throughput_row("hash (BLAKE3)", size, times["cas"], times["plain"], "blake3 library", 0.95)]


MEMORY_PROBE = r"""
import sys, cas, pathlib
def hwm():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
def reset():
    open("/proc/self/clear_refs", "w").write("5")
store = cas.open(sys.argv[2])
reset(); base = hwm(); store.put(pathlib.Path(sys.argv[1]), "big"); put = hwm() - base
reset(); base = hwm(); store.export("big", sys.argv[3]); get = hwm() - base
print(put, get)
"""


def memory(work: Path, size: int, repeats: int) -> list[Row]:
    """Peak RSS growth of putting and getting a large file, in a fresh process."""
    import subprocess
    import sys

    source = work / "big.bin"
    block = _random_bytes(1 << 20, seed=11)
    with open(source, "wb") as f:
        for i in range(max(1, size >> 20)):
            f.write(block[i % 4096 :] + block[: i % 4096])
    puts, gets = [], []
    for attempt in range(max(1, repeats // 2)):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(source), str(work / f"mstore{attempt}"), str(work / "out.bin")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        put, get = map(int, out.stdout.split())
        puts.append(put / 2**20)
        gets.append(get / 2**20)
        remove(work / f"mstore{attempt}")
    remove(source)
    remove(work / "out.bin")
    label = f"{size >> 20} MiB file"
    return [
        Row(f"peak RSS growth, put of a {label}", median(puts), "MiB", min(puts), max(puts), "", None, None,
            "< 256 MiB", median(puts) < 256),
        Row(f"peak RSS growth, get of a {label}", median(gets), "MiB", min(gets), max(gets), "", None, None,
            "< 256 MiB", median(gets) < 256),
    ]  # fmt: skip


WORKLOADS.update({"hash": hashing, "memory": memory})

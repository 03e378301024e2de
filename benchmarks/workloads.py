"""What users do with a large array: put, get, re-put it identical and 1% changed, beside the usual ways to save it.

One float64 array of random values (incompressible), 256 MiB (``--size``, at
most 256 MiB; 32 MiB with ``--quick``), goes through cas and, in the same run,
through ``np.save``/``np.load``, a pickle file and ``joblib.dump``/``joblib.load``.
Every measurement alternates the sides (the order flips each round), writes
into a fresh folder, and reports medians. Each put row carries the CPU-seconds
per GiB of both sides (all threads of the process), and a row of its own gives
cas's figure against the target of at most 1 CPU-second per GiB.

Re-puts go into a store that holds the array already, through a new handle
(as a new process would: the chunk map is verified again), and count the bytes
the store grew by; the other sides write a whole new file, their reference.

The put and get rows also compare with a *floor*: the chunker, BLAKE3 and
the writes alone (for a get: the reads and BLAKE3 of each chunk, cut where
the store cuts it, alone), without a store, on two threads: what any
content-addressed, verified store must spend.

The scaling row runs the put in child processes pinned with ``taskset`` to
one core, then two, alternated: the target is at least 1.8x. Two machine rows
give the same ratio for a memory copy and for BLAKE3 alone.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import cas
from benchmarks.harness import Row, median, pickle_dump, pickle_load, remove, throughput_row, tree_size
from cas.chunking import ChunkParams

MAX_SIZE = 256 << 20
GIB = 1 << 30
_Save = Callable[[Path], Any]


def _array(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(size // 8)


def _joblib() -> Any:
    try:
        import joblib
    except ImportError:  # pip install cas-store[bench]
        return None
    return joblib


def _cas_put(value: Any, path: Path) -> None:
    with cas.open(path) as store:
        store.put(value, "array")


def _cas_get(path: Path) -> Any:
    with cas.open(path) as store:
        return store.get("array")


def _savers(arr: np.ndarray) -> dict[str, _Save]:
    """name -> save ``arr`` into a folder; cas first."""
    sides: dict[str, _Save] = {
        "cas": lambda folder: _cas_put(arr, folder / "store"),
        "np.save": lambda folder: np.save(folder / "a.npy", arr),
        "pickle": lambda folder: pickle_dump(arr, folder / "a.pkl"),
    }
    joblib = _joblib()
    if joblib is not None:
        sides["joblib"] = lambda folder: joblib.dump(arr, folder / "a.joblib")
    return sides


_FLOOR_REGION = 4 << 20


def _floor_put(arr: np.ndarray, path: Path) -> None:
    """The least a content-addressed put must do, by the same libraries without a store: the floor.

    Regions of 4 MiB on two threads: each cut with the store's chunker
    settings, each chunk hashed with BLAKE3, then the region written to one
    file with one call (no index, no headers, no stitching of the regions'
    cuts, no dedup lookups).
    """
    import blake3

    params = ChunkParams()
    view = memoryview(arr).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def region(start: int) -> None:
        end = min(start + _FLOOR_REGION, len(view))
        for chunk in params.cutter().cut_buf(view[start:end]):
            blake3.blake3(view[start + chunk.offset : start + chunk.offset + chunk.length]).digest()
        os.pwrite(fd, view[start:end], start)

    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(region, range(0, len(view), _FLOOR_REGION)))
    finally:
        os.close(fd)


def _chunk_runs(arr: np.ndarray) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """Where a store cuts the array: runs of whole chunks of at most 1 MiB, grouped into regions of about
    4 MiB (each run a (start, stop) pair), and the end of every chunk."""
    view = memoryview(arr).cast("B")
    ends = [chunk.offset + chunk.length for chunk in ChunkParams().cutter().cut_buf(view)]
    regions: list[list[tuple[int, int]]] = []
    runs: list[tuple[int, int]] = []
    region_start = run_start = previous = 0
    for end in ends:
        if end - run_start > 1 << 20 and previous > run_start:
            runs.append((run_start, previous))
            run_start = previous
            if run_start - region_start >= _FLOOR_REGION:
                regions.append(runs)
                runs, region_start = [], run_start
        previous = end
    runs.append((run_start, len(view)))
    regions.append(runs)
    return regions, ends


def _floor_get(path: Path, regions: list[list[tuple[int, int]]], ends: list[int]) -> np.ndarray:
    """The least a verified read must do, without a store: the floor of a get.

    The array's bytes (a ``.npy`` file, past its header) read into a new
    array by runs of whole chunks of at most 1 MiB, each chunk (cut where the
    store cuts it) hashed with BLAKE3 right after its run's read, on two
    threads, regions of about 4 MiB at a time (no index, no headers, no plan).
    """
    import bisect

    import blake3

    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        offset = f.tell()
        arr = np.empty(shape, dtype)
        view = memoryview(arr).cast("B")
        fd = f.fileno()

        def region(runs: list[tuple[int, int]]) -> None:
            for start, stop in runs:
                os.preadv(fd, [view[start:stop]], offset + start)
                first = bisect.bisect_right(ends, start)
                for end in ends[first : bisect.bisect_right(ends, stop)]:
                    blake3.blake3(view[start:end]).digest()
                    start = end

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(region, regions))
    return arr


def _loaders() -> dict[str, Callable[[Path], Any]]:
    loaders: dict[str, Callable[[Path], Any]] = {
        "cas": lambda folder: _cas_get(folder / "store"),
        "np.load": lambda folder: np.load(folder / "a.npy"),
        "pickle": lambda folder: pickle_load(folder / "a.pkl"),
    }
    joblib = _joblib()
    if joblib is not None:
        loaders["joblib"] = lambda folder: joblib.load(folder / "a.joblib")
    return loaders


def _measure(action: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (every thread of this process) of one action."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _rounds(
    work: Path, sides: dict[str, _Save], repeats: int, prepare: Callable[[str, Path], None] | None = None
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Run each side ``repeats`` times, alternating, each in a fresh folder: wall times, CPU times, bytes added."""
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    added: dict[str, int] = {}
    for i in range(repeats):
        for name in list(sides) if i % 2 == 0 else list(reversed(sides)):
            folder = work / f"run-{name}"
            remove(folder)
            folder.mkdir(parents=True)
            if prepare is not None:
                prepare(name, folder)
            before = tree_size(folder)
            save = sides[name]
            wall, cpu = _measure(lambda: save(folder))  # noqa: B023 (called at once)
            walls[name].append(wall)
            cpus[name].append(cpu)
            added[name] = max(added.get(name, 0), tree_size(folder) - before)
            remove(folder)
    return walls, cpus, added


def _vs(
    label: str,
    nbytes: int,
    walls: dict[str, list[float]],
    cpus: dict[str, list[float]] | None,
    added: dict[str, int] | None,
    targets: dict[str, float],
) -> list[Row]:
    """One throughput row per reference side, with both sides' CPU-seconds per GiB in its notes."""
    rows = []
    for ref in walls:
        if ref == "cas":
            continue
        row = throughput_row(label, nbytes, walls["cas"], walls[ref], ref, targets.get(ref))
        if cpus is not None:
            row.notes["cpu_s_per_gib"] = round(median(cpus["cas"]) * GIB / nbytes, 3)
            row.notes["ref_cpu_s_per_gib"] = round(median(cpus[ref]) * GIB / nbytes, 3)
            row.workload = (
                f"{label} [{row.notes['cpu_s_per_gib']:.2f} vs {row.notes['ref_cpu_s_per_gib']:.2f} CPU-s/GiB]"
            )
        if added is not None:
            row.stored_bytes = added["cas"]
            row.notes["ref_bytes_added"] = added[ref]
        rows.append(row)
    return rows


def _cpu_row(label: str, nbytes: int, cpus: dict[str, list[float]], target: float) -> Row:
    per_gib = [c * GIB / nbytes for c in cpus["cas"]]
    ref = median(cpus["np.save"]) * GIB / nbytes
    value = median(per_gib)
    return Row(
        f"{label}: CPU-seconds per GiB", value, "s/GiB", min(per_gib), max(per_gib), "np.save", ref,
        value / ref, f"<= {target:g} s/GiB", value <= target,
    )  # fmt: skip


def array_workload(work: Path, size: int, repeats: int) -> list[Row]:
    """put, get, identical and 1%-changed re-put of a float64 array, beside np.save, pickle and joblib."""
    size = min(size, MAX_SIZE)
    arr = _array(size)
    nbytes = arr.nbytes
    label = f"float64 array {nbytes >> 20} MiB"
    rows: list[Row] = []

    # put: each side writes a fresh folder
    sides = {**_savers(arr), "floor (cut+BLAKE3+write)": lambda folder: _floor_put(arr, folder / "floor.bin")}
    walls, cpus, _ = _rounds(work, sides, repeats)
    rows += _vs(f"put {label}", nbytes, walls, cpus, None, {"np.save": 0.5, "joblib": 1.0})
    rows.append(_cpu_row(f"put {label}", nbytes, cpus, 1.0))

    # get: every side's file written once, read alternately
    rows += _gets(work, arr, label, repeats)

    # re-puts into a store holding the array (the other sides: write the whole file again)
    edited = _edit(arr)
    stored = work / "original"
    remove(stored)
    _cas_put(arr, stored)

    def holding_original(name: str, folder: Path) -> None:
        if name == "cas":
            shutil.copytree(stored, folder / "store")

    for what, value in (("re-put identical", arr), ("1%-changed re-put", edited)):
        walls, cpus, added = _rounds(work, _savers(value), repeats, holding_original)
        rows += _vs(f"{what} {label}", nbytes, walls, cpus, added, {})
    remove(stored)

    rows.append(_scaling(work, size, repeats))
    rows += _ceilings(size, repeats)
    return rows


def _gets(work: Path, arr: np.ndarray, label: str, repeats: int) -> list[Row]:
    folder = work / "get"
    remove(folder)
    folder.mkdir(parents=True)
    for save in _savers(arr).values():
        save(folder)
    regions, ends = _chunk_runs(arr)
    loaders = {**_loaders(), "floor (read+BLAKE3)": lambda folder: _floor_get(folder / "a.npy", regions, ends)}
    walls: dict[str, list[float]] = {name: [] for name in loaders}
    for i in range(repeats):
        for name in list(loaders) if i % 2 == 0 else list(reversed(loaders)):
            got: list[Any] = []
            wall, _ = _measure(lambda: got.append(loaders[name](folder)))  # noqa: B023 (called at once)
            walls[name].append(wall)
            assert np.array_equal(got[0], arr), f"{name} read back something else"
    remove(folder)
    return _vs(f"get {label}", arr.nbytes, walls, None, None, {"np.load": 0.8, "joblib": 1.0})


def _edit(arr: np.ndarray) -> np.ndarray:
    """1% of the bytes changed, in 64 runs at random places."""
    data = bytearray(arr.tobytes())
    rng = np.random.default_rng(4)
    run = max(1, len(data) // 100 // 64)
    for start in sorted(rng.choice(len(data) - run, 64, replace=False).tolist()):
        data[start : start + run] = rng.integers(0, 256, run, dtype=np.uint8).tobytes()
    return np.frombuffer(bytes(data), dtype=arr.dtype)


_CHILD = r"""
import json, shutil, sys, time
import numpy as np
import cas
size, folder, puts = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
arr = np.random.default_rng(0).random(size // 8)
walls = []
for i in range(puts):
    target = f"{folder}/store-{i}"
    start = time.perf_counter()
    with cas.open(target) as store:
        store.put(arr, "array")
    walls.append(time.perf_counter() - start)
    shutil.rmtree(target)
print(json.dumps(walls))
"""


def _scaling(work: Path, size: int, repeats: int) -> Row:
    """Put speed on two cores over one, in child processes pinned with taskset, alternated."""
    label = f"put {size >> 20} MiB array: 2 cores / 1 core"
    taskset = shutil.which("taskset")
    if taskset is None or len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        return Row(f"{label} (needs taskset and cores 0, 1)", 0.0, "x", 0.0, 0.0)
    times: dict[str, list[float]] = {"0": [], "0,1": []}
    rounds = repeats if size > 32 << 20 else 1  # --quick: one child process per side
    for i in range(rounds):
        for cores in list(times) if i % 2 == 0 else list(reversed(times)):
            folder = work / "scaling"
            remove(folder)
            folder.mkdir(parents=True)
            out = subprocess.run(
                [taskset, "-c", cores, sys.executable, "-c", _CHILD, str(size), str(folder), "2"],
                capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
            times[cores] += json.loads(out.stdout)
            remove(folder)
    one, two = median(times["0"]), median(times["0,1"])
    speedups = sorted(a / b for a in times["0"] for b in times["0,1"])
    return Row(
        label, one / two, "x", speedups[0], speedups[-1], "one core", 1.0, one / two, ">= 1.8x", one / two >= 1.8,
        notes={"one_core_gbps": round(size / one / 1e9, 3), "two_core_gbps": round(size / two / 1e9, 3)},
    )  # fmt: skip


_CEILING_CHILD = r"""
import json, sys, threading, time
import blake3
import numpy as np
size = int(sys.argv[1])
src = np.random.default_rng(0).random(size // 8)
dst = np.empty_like(src)
raw = memoryview(src).cast("B")
def copy(lo, hi):  # 1 MiB at a time, as a put writes its packs
    for s in range(lo, hi, 1 << 17):
        dst[s : min(s + (1 << 17), hi)] = src[s : min(s + (1 << 17), hi)]
def blake(lo, hi):  # 80 KiB at a time, as a put hashes its chunks
    for s in range(lo * 8, hi * 8, 80 << 10):
        blake3.blake3(raw[s : min(s + (80 << 10), hi * 8)]).digest()
out = {}
for name, work in (("copy", copy), ("blake3", blake)):
    work(0, len(src))  # every page touched once before timing
    walls = []
    for _ in range(3):
        half = len(src) // 2
        threads = [threading.Thread(target=work, args=(0, half)), threading.Thread(target=work, args=(half, len(src)))]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        walls.append(time.perf_counter() - start)
    out[name] = sorted(walls)[1]
print(json.dumps(out))
"""


def _ceilings(size: int, repeats: int) -> list[Row]:
    """What two cores give over one on this machine for the put's two heaviest parts, alone.

    Two threads copy memory (as writes to the page cache do), then hash 80 KiB
    pieces with BLAKE3, pinned with taskset to one core, then two, alternated:
    the 2-core/1-core ratio of a put can not exceed what these reach.
    """
    taskset = shutil.which("taskset")
    if taskset is None or not {0, 1} <= os.sched_getaffinity(0):
        return []
    times: dict[str, dict[str, list[float]]] = {"0": {}, "0,1": {}}
    for i in range(max(1, repeats if size > 32 << 20 else 1)):
        for cores in list(times) if i % 2 == 0 else list(reversed(times)):
            out = subprocess.run(
                [taskset, "-c", cores, sys.executable, "-c", _CEILING_CHILD, str(size)],
                capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
            for name, wall in json.loads(out.stdout).items():
                times[cores].setdefault(name, []).append(wall)
    rows = []
    for name, what in (("copy", "memory copy"), ("blake3", "BLAKE3 of 80 KiB pieces")):
        one, two = times["0"][name], times["0,1"][name]
        speedups = sorted(a / b for a in one for b in two)
        rows.append(
            Row(
                f"machine: {what}, 2 cores / 1 core",
                median(one) / median(two),
                "x",
                speedups[0],
                speedups[-1],
                "one core",
                1.0,
                median(one) / median(two),
                notes={
                    "one_core_gbps": round(size / median(one) / 1e9, 3),
                    "two_core_gbps": round(size / median(two) / 1e9, 3),
                },
            )  # fmt: skip
        )
    return rows


WORKLOADS = {"array": array_workload}

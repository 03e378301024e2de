"""Materializer workloads: a large float64 array, and many small values."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import cas
from benchmarks import workloads
from benchmarks.harness import Row, median, put_get_rows, remove


def numpy_array(work: Path, size: int, repeats: int) -> list[Row]:
    """put/get of an incompressible float64 array vs np.save/np.load of a plain .npy file."""
    arr = np.random.default_rng(0).random(size // 8)
    return put_get_rows(
        work, arr, arr.nbytes, label="float64 array", plain_name="plain.npy",
        save_plain=lambda p: np.save(p, arr), load_plain=np.load, same=lambda got: np.array_equal(got, arr),
        references=("np.save", "np.load"), repeats=repeats,
    )  # fmt: skip


def small_values(work: Path, size: int, repeats: int, count: int = 2000) -> list[Row]:
    """2,000 small dicts: puts and gets per second, vs one small JSON file each."""
    values = [{"step": i, "loss": 1.0 / (i + 1), "name": f"run-{i}", "tags": ["train", "v2"]} for i in range(count)]
    store_dir = work / "store"
    files = work / "files"
    put_rates, get_rates, file_put_rates, file_get_rates = [], [], [], []
    for _ in range(repeats):
        remove(store_dir)
        remove(files)
        files.mkdir()
        with cas.open(store_dir) as store:
            start = time.perf_counter()
            refs = [store.put(v) for v in values]
            put_rates.append(count / (time.perf_counter() - start))
            start = time.perf_counter()
            for ref in refs:
                store.get(ref)
            get_rates.append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for i, v in enumerate(values):
            (files / f"{i}.json").write_text(json.dumps(v))
        file_put_rates.append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(count):
            json.loads((files / f"{i}.json").read_text())
        file_get_rates.append(count / (time.perf_counter() - start))
    remove(store_dir)
    remove(files)
    rows = []
    for label, ours, theirs, target in (
        ("small dict puts", put_rates, file_put_rates, 2000),
        ("small dict gets", get_rates, file_get_rates, 5000),
    ):
        value, ref_value = median(ours), median(theirs)
        rows.append(
            Row(
                f"{label} ({count})",
                value,
                "op/s",
                min(ours),
                max(ours),
                "json files",
                ref_value,
                value / ref_value,
                f">= {target}/s",
                value >= target,
            )
        )
    return rows


# The array workload lives in benchmarks/workloads.py; listed here, it runs wherever these do.
WORKLOADS = {"numpy": numpy_array, "small": small_values, **workloads.WORKLOADS}

"""Measuring fairly on a noisy machine: alternate the sides, repeat, report medians."""

from __future__ import annotations

import gc
import os
import pickle
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    value: float  # median
    unit: str
    low: float
    high: float
    reference: str = ""
    ref_value: float | None = None
    ratio: float | None = None  # value / ref_value (higher is better for throughput)
    target: str = ""
    passed: bool | None = None
    stored_bytes: int | None = None
    peak_rss_mib: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(
    sides: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]], repeats: int
) -> dict[str, list[float]]:
    """Run each side's action ``repeats`` times, interleaved, calling its cleanup after each run."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(repeats):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            action, cleanup = sides[name]
            times[name].append(timed(action))
            if cleanup is not None:
                cleanup()
    return times


def drop_caches() -> bool:
    """Empty the kernel's page cache, so the next reads come from the disk (root only)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def median(values: list[float]) -> float:
    return statistics.median(values)


def throughput_row(
    workload: str, nbytes: int, ours: list[float], ref: list[float], reference: str, target: float | None
) -> Row:
    """Throughput in GB/s of both sides, from their times; the ratio compares medians."""
    gbps = [nbytes / t / 1e9 for t in ours]
    ref_gbps = [nbytes / t / 1e9 for t in ref]
    value, ref_value = median(gbps), median(ref_gbps)
    ratio = value / ref_value
    return Row(
        workload,
        value,
        "GB/s",
        min(gbps),
        max(gbps),
        reference,
        ref_value,
        ratio,
        f">= {target}x" if target is not None else "",
        ratio >= target if target is not None else None,
    )


def put_get_rows(
    work: Path,
    value: Any,
    nbytes: int,
    *,
    label: str,
    plain_name: str,
    save_plain: Callable[[Path], Any],
    load_plain: Callable[[Path], Any],
    same: Callable[[Any], bool],
    references: tuple[str, str],
    repeats: int,
    target: float = 0.8,
) -> list[Row]:
    """put vs saving a plain file, then get vs loading it, alternated, each on the same value."""
    import cas

    plain = work / plain_name
    store_dir = work / "store"

    def cas_put() -> None:
        with cas.open(store_dir) as store:
            store.put(value, "value")

    times = alternate(
        {"cas": (cas_put, lambda: remove(store_dir)), "plain": (lambda: save_plain(plain), lambda: remove(plain))},
        repeats,
    )
    rows = [throughput_row(f"put {label}", nbytes, times["cas"], times["plain"], references[0], target)]
    save_plain(plain)
    with cas.open(store_dir) as store:
        store.put(value, "value")
        rows[0].stored_bytes = tree_size(store_dir)
        get_times = alternate(
            {"cas": (lambda: store.get("value"), None), "plain": (lambda: load_plain(plain), None)}, repeats
        )
        assert same(store.get("value")), f"get of {label} returned something else"
    rows.append(throughput_row(f"get {label}", nbytes, get_times["cas"], get_times["plain"], references[1], target))
    remove(store_dir)
    remove(plain)
    return rows


def tree_size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'workload':44} {'median':>10} {'min..max':>17} {'reference':>26} {'ratio':>7} {'target':>9} {'stored':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = f"{r.ref_value:.3g} {r.unit} {r.reference}" if r.ref_value is not None else r.reference
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        flag = "" if r.passed is None else (" ok" if r.passed else " MISS")
        stored = f"{r.stored_bytes:,}" if r.stored_bytes is not None else ""
        print(
            f"{r.workload:44} {r.value:>7.3g} {r.unit:<3}{r.low:>8.3g}..{r.high:<8.3g} {ref[:26]:>26} "
            f"{ratio:>7} {r.target + flag:>9} {stored:>12}"
        )


def pickle_dump(value: Any, path: Path) -> None:
    """The plain-pickle reference side: one file per value."""
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)


def pickle_load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301  (our own file)

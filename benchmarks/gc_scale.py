"""gc at scale (issue 19): unreachable small objects removed per second, against plain unlinks of the same files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cas
from benchmarks.harness import Row, alternate, median, remove

OBJECTS = 20_000
QUICK_OBJECTS = 4_000  # --quick: the rate is the same, the template builds in a fifth of the time
TARGET = 10_000  # objects per second, locally


def _template(path: Path, n: int) -> None:
    """A local store holding ``n`` unreachable loose objects, and one named value.

    Each unnamed put of a small value stores an artifact and a tree (both loose, about 150 bytes).
    """
    remove(path)
    with cas.open(path) as store:
        store.put({"kept": True}, "kept")
        for i in range(n // 2):
            store.put({"unreachable": i})


def _unlink_all(folder: Path) -> int:
    """The reference: remove every file below ``folder`` with one ``os.unlink`` each."""
    removed = 0
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def gc_objects_per_second(work: Path, size: int, repeats: int) -> list[Row]:
    """gc(grace=0) of a store with 20,000 unreachable small objects vs unlinking the same files."""
    objects = OBJECTS if repeats > 2 else QUICK_OBJECTS
    template = work / "gc-template"
    _template(template, objects)
    ours, plain = work / "gc-ours", work / "gc-plain"
    state: dict[str, object] = {}

    def fresh_ours() -> None:
        store = state.pop("store", None)
        if isinstance(store, cas.Store):
            store.close()
        remove(ours)
        shutil.copytree(template, ours, symlinks=True)
        state["store"] = cas.open(ours)  # opening is not timed: only the pass

    def fresh_plain() -> None:
        remove(plain)
        shutil.copytree(template, plain, symlinks=True)

    def collect() -> None:
        store = state["store"]
        assert isinstance(store, cas.Store)
        report = store.gc(grace=0)
        assert report.removed["object"] == objects, str(report)

    fresh_ours()
    fresh_plain()
    times = alternate({"cas": (collect, fresh_ours), "plain": (lambda: _unlink_all(plain / "objects"), fresh_plain)},
                      repeats)  # fmt: skip
    store = state.pop("store")
    assert isinstance(store, cas.Store) and store.get("kept") == {"kept": True}
    store.close()
    for path in (template, ours, plain):
        remove(path)
    rates = [objects / t for t in times["cas"]]
    ref = [objects / t for t in times["plain"]]
    value, ref_value = median(rates), median(ref)
    return [
        Row(f"gc: {objects:,} unreachable small objects removed", value, "objects/s", min(rates), max(rates),
            "os.unlink of each file", ref_value, value / ref_value, f">= {TARGET:,}/s", value >= TARGET,
            notes={"seconds": median(times["cas"])}),
    ]  # fmt: skip


WORKLOADS = {"gc-scale": gc_objects_per_second}

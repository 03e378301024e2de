"""Scale: stores of 10^4..10^6 chunks and 100..50,000 packs, generated fast, measured in fresh processes.

A case is (chunks, packs). Two series:

- chunks at 100 packs: 10^4, 10^5, 10^6 (memory of a get must stay flat);
- packs of 20 chunks: 100, 5,000, 50,000 packs (2,000 .. 10^6 chunks), a store
  used with many small batches (the first get must stay within 2x of 100 packs).

The generator writes packs of random 64-byte chunks with ``ObjectStore.write_pack``
(no put per chunk), makes every chunk reachable through named artifacts of
100,000 chunks each (``bulk-NNNN``), then adds what the operations use: a
chunked artifact ``chunked`` (4 MiB), ``small``, 50 runs of a step, and a
mirror store (hard links) for the no-change push. Each store is made once and
kept in ``CAS_SCALE_CACHE`` (default /tmp/cas-scale-cache), keyed by case and
generator version and consolidation mode; ``cas.consolidate.consolidate(repository)``
runs on it when that function exists (see ``consolidate_mode``).

Measured per case, each in a new process: the first chunked get (and its
peak RSS growth), the first chunked put (new data, unnamed), then in one
process a named small get, a step cache hit, ``log`` first page, a no-change
push, fsck and gc (each on a store opened for it).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Row, median

GENERATOR_VERSION = 1
CHUNK = 64  # raw bytes per synthetic chunk: the index cost is per chunk, not per byte
PER_BULK = 100_000  # chunks per bulk artifact (its tree is ~4 MB)
RUNS = 50
CHUNKED_SIZE = 4 << 20


@dataclass(frozen=True)
class Case:
    chunks: int
    packs: int

    @property
    def label(self) -> str:
        return f"{self.chunks:,} chunks in {self.packs:,} packs"

    @property
    def key(self) -> str:
        return f"c{self.chunks}-p{self.packs}"


CASES = [
    Case(2_000, 100), Case(10_000, 100), Case(100_000, 100), Case(100_000, 5_000),
    Case(1_000_000, 100), Case(1_000_000, 50_000),
]  # fmt: skip
#: Set by ``python -m benchmarks --scale-max N`` (largest chunk count; default 10^5, ~1 minute).
SCALE_MAX = 100_000
QUICK = False


def configure(*, scale_max: int | None = None, quick: bool = False) -> None:
    """Options from the command line: the largest case (in chunks), quick mode (the smallest case only)."""
    global SCALE_MAX, QUICK
    if scale_max is not None:
        SCALE_MAX = scale_max
    QUICK = quick


def cache_root() -> Path:
    return Path(os.environ.get("CAS_SCALE_CACHE", "/tmp/cas-scale-cache"))


def _scale_step(x: int) -> dict[str, int]:
    """The step whose runs fill the log and whose cache is looked up (module level: a stable cache key)."""
    return {"x": x, "square": x * x}


# -- generating -----------------------------------------------------------------------
def consolidate_mode() -> str:
    """``CAS_SCALE_CONSOLIDATE``: ``index`` (default: every index file into tables, packs kept, so a case keeps
    its pack count), ``auto`` (only what gc's thresholds would merge), ``packs`` (also merge small packs), ``0`` (none).
    """
    mode = os.environ.get("CAS_SCALE_CONSOLIDATE", "index")
    return "none" if mode in ("0", "none") or consolidate_function() is None else mode


def consolidate_function() -> Any:
    """``cas.consolidate.consolidate`` once the merged chunk index has landed, else None."""
    try:
        from cas import consolidate as module  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return getattr(module, "consolidate", None)


def consolidate_hook(store: Any) -> str:
    """Consolidate the generated store as ``consolidate_mode()`` says; what was done, for the notes."""
    mode = consolidate_mode()
    if mode == "none":
        return "none"
    fn = consolidate_function()
    wanted = {"force": mode != "auto", "merge_packs": mode == "packs"}
    accepted = inspect.signature(fn).parameters
    report = fn(store.repository, **{k: v for k, v in wanted.items() if k in accepted})  # CONSOLIDATE CALL SITE
    return f"{mode}: {report}"


def generate(case: Case, root: Path | None = None) -> Path:
    """The folder of the case's store (``store``) and mirror (``mirror``), generated unless cached."""
    mode = consolidate_mode()
    suffix = "" if mode == "none" else f"-consolidated-{mode}"
    folder = (root or cache_root()) / f"v{GENERATOR_VERSION}-{case.key}{suffix}"
    if (folder / "ready.json").exists():
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info = _generate_into(case, tmp)
    (tmp / "ready.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _generate_into(case: Case, folder: Path) -> dict[str, Any]:
    import cas
    from cas import codec
    from cas.hashing import digest
    from cas.objects import Artifact, FileEntry, Tree

    started = time.perf_counter()
    rng = np.random.default_rng(case.chunks * 7 + case.packs)
    header = codec.pack_header(codec.CODEC_RAW, CHUNK)
    with cas.open(folder / "store") as store:
        objects = store.objects
        per_pack, extra = divmod(case.chunks, case.packs)
        file_digests: list[bytes] = []
        file_raw: list[bytes] = []
        bulk = 0

        def flush_bulk() -> None:
            nonlocal bulk
            if not file_digests:
                return
            data = b"".join(file_raw)
            entry = FileEntry("data", len(data), tuple((d, CHUNK) for d in file_digests), hash=digest(data))
            tree = Tree((entry,))
            tree_digest = objects.put_object(tree.to_bytes())
            art = Artifact(tree_digest, "builtins.bytes", "cas.bytes", "1", len(data), {"length": len(data)}, {})
            store.refs.create_version(f"bulk-{bulk:04d}", objects.put_object(art.to_bytes()))
            bulk += 1
            file_digests.clear()
            file_raw.clear()

        for p in range(case.packs):
            n = per_pack + (1 if p < extra else 0)
            block = rng.bytes(n * CHUNK)
            items = []
            for i in range(n):
                raw = block[i * CHUNK : (i + 1) * CHUNK]
                d = digest(raw)
                items.append((d, [header, raw], CHUNK, codec.CODEC_RAW))
                file_digests.append(d)
                file_raw.append(raw)
                if len(file_digests) == PER_BULK:
                    objects.write_pack(items, register=False)  # the tree's chunks are stored before it
                    items = []
                    flush_bulk()
            if items:
                objects.write_pack(items, register=False)
        flush_bulk()
        written = time.perf_counter() - started
        store.put(rng.bytes(CHUNKED_SIZE), "chunked")
        store.put({"small": True, "loss": 0.125}, "small")
        step = store.step(_scale_step)
        for x in range(RUNS):
            step(x)
        consolidated = consolidate_hook(store)
    # The mirror: a remote that already holds everything (hard links: stored files are never rewritten in place).
    shutil.copytree(folder / "store", folder / "mirror", copy_function=os.link)
    return {"case": case.key, "chunks": case.chunks, "packs": case.packs, "bulk_artifacts": bulk,
            "seconds_packs": round(written, 2), "seconds_total": round(time.perf_counter() - started, 2),
            "consolidated": consolidated}  # fmt: skip


# -- measuring (in child processes) -----------------------------------------------------
def _hwm() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) * 1024


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(op: str, folder: Path) -> dict[str, Any]:
    """One measurement in this (fresh) process; returns seconds (and peak RSS growth) as JSON-able values."""
    import cas

    store_dir = folder / "store"
    out: dict[str, Any] = {}
    if op == "get":
        with cas.open(store_dir) as store:
            _reset_hwm()
            base = _hwm()
            start = time.perf_counter()
            value = store.get("chunked")
            out["seconds"] = time.perf_counter() - start
            out["rss_growth"] = _hwm() - base
            assert len(value) == CHUNKED_SIZE
    elif op == "put":
        data = np.random.default_rng().bytes(CHUNKED_SIZE)  # new chunks every time, stored unnamed
        with cas.open(store_dir) as store:
            start = time.perf_counter()
            store.put(data)
            out["seconds"] = time.perf_counter() - start
    elif op == "ops":
        with cas.open(store_dir) as store:  # bring the mirror up to date (earlier runs' cached runs), untimed
            store.push(folder / "mirror")
        actions = {
            "named small get": lambda s: s.get("small"),
            "step cache hit": lambda s: s.step(_scale_step)(0),
            "log first page": lambda s: list(s.log(limit=20)),
            "no-change push": lambda s: s.push(folder / "mirror"),
            "gc": lambda s: s.gc(),
            "fsck": lambda s: s.fsck(),
        }
        for name, action in actions.items():
            with cas.open(store_dir) as store:
                start = time.perf_counter()
                action(store)
                out[name] = time.perf_counter() - start
            print(json.dumps(out), flush=True)  # what is done so far, for a parent that times out
    else:
        raise SystemExit(f"unknown operation {op!r}")
    return out


def _run_child(op: str, folder: Path) -> dict[str, Any]:
    """Run one child; on timeout (``CAS_SCALE_OP_TIMEOUT`` seconds, default 3600) what it reported so far."""
    timeout = float(os.environ.get("CAS_SCALE_OP_TIMEOUT", "3600"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "child", op, str(folder)],
            capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines = output.strip().splitlines()
        partial: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        partial["timed_out_after"] = timeout
        return partial
    if done.returncode != 0:
        raise RuntimeError(f"scale child {op} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def selected_cases() -> list[Case]:
    if QUICK:
        return [min(CASES, key=lambda c: (c.chunks, c.packs))]
    return [c for c in CASES if c.chunks <= SCALE_MAX]


def scale(work: Path, size: int, repeats: int) -> list[Row]:
    """The scale workload: every selected case, get and put alternated across cases, medians."""
    cases = selected_cases()
    folders = {}
    gen_seconds = {}
    for case in cases:
        start = time.perf_counter()
        folders[case] = generate(case)
        gen_seconds[case] = time.perf_counter() - start
    samples: dict[Case, dict[str, list[float]]] = {c: {"get": [], "put": [], "rss": []} for c in cases}
    for i in range(repeats if not QUICK else 1):
        order = cases if i % 2 == 0 else list(reversed(cases))
        for case in order:
            got = _run_child("get", folders[case])
            samples[case]["get"].append(got["seconds"])
            samples[case]["rss"].append(got["rss_growth"] / 2**20)
            samples[case]["put"].append(_run_child("put", folders[case])["seconds"])
    ops = {case: _run_child("ops", folders[case]) for case in cases}
    rows: list[Row] = []
    for case in cases:
        s = samples[case]
        info = json.loads((folders[case] / "ready.json").read_text())
        notes = {**info, "seconds_this_run": round(gen_seconds[case], 2)}
        for label, key, unit in (("first chunked get (fresh process)", "get", "s"),
                                 ("first chunked put (fresh process)", "put", "s"),
                                 ("peak RSS growth of the get", "rss", "MiB")):  # fmt: skip
            values = s[key]
            rows.append(Row(f"scale {case.label}: {label}", median(values), unit, min(values), max(values),
                            notes=notes))  # fmt: skip
        timed_out = ops[case].pop("timed_out_after", None)
        for name, seconds in ops[case].items():
            rows.append(Row(f"scale {case.label}: {name}", seconds, "s", seconds, seconds))
        if timed_out is not None:
            rows.append(Row(f"scale {case.label}: ops after {', '.join(ops[case]) or 'none'}: timed out",
                            timed_out, "s", timed_out, timed_out, target="finishes", passed=False))  # fmt: skip
    rows += _ratio_rows(cases, samples)
    return rows


def _ratio_rows(cases: list[Case], samples: dict[Case, dict[str, list[float]]]) -> list[Row]:
    """The targets, as ratios between cases measured in the same run."""
    rows = []
    by = {(c.chunks, c.packs): c for c in cases}

    def ratio(label: str, key: str, ours: tuple[int, int], ref: tuple[int, int], target: float) -> None:
        if ours not in by or ref not in by:
            return
        value, ref_value = median(samples[by[ours]][key]), median(samples[by[ref]][key])
        r = value / ref_value if ref_value else float("inf")
        rows.append(Row(label, value, "MiB" if key == "rss" else "s", value, value, by[ref].label, ref_value, r,
                        f"<= {target:g}x", r <= target))  # fmt: skip

    ratio("scale: first get, 50,000 packs vs 100 packs (20 chunks each)", "get", (1_000_000, 50_000), (2_000, 100), 2)
    ratio("scale: first get, 5,000 packs vs 100 packs (20 chunks each)", "get", (100_000, 5_000), (2_000, 100), 2)
    ratio("scale: first get, 10^6 chunks: 50,000 vs 100 packs", "get", (1_000_000, 50_000), (1_000_000, 100), 2)
    ratio("scale: first get, 10^6 vs 10^4 chunks (100 packs)", "get", (1_000_000, 100), (10_000, 100), 2)
    ratio("scale: first get, 10^5 vs 10^4 chunks (100 packs)", "get", (100_000, 100), (10_000, 100), 2)
    ratio("scale: peak RSS of a get, 10^6 vs 10^4 chunks", "rss", (1_000_000, 100), (10_000, 100), 1.5)
    ratio("scale: peak RSS of a get, 10^5 vs 10^4 chunks", "rss", (100_000, 100), (10_000, 100), 1.5)
    ratio("scale: peak RSS of a get, 50,000 vs 100 packs", "rss", (1_000_000, 50_000), (2_000, 100), 1.5)
    return rows


WORKLOADS = {"scale": scale}


def main(argv: list[str]) -> int:
    """``python -m benchmarks.scale child OP FOLDER`` (internal) or ``generate [MAX_CHUNKS]``."""
    if argv[:1] == ["child"]:
        print(json.dumps(child(argv[1], Path(argv[2]))))
        return 0
    if argv[:1] == ["generate"]:
        limit = int(float(argv[1])) if len(argv) > 1 else SCALE_MAX
        for case in CASES:
            if case.chunks <= limit:
                start = time.perf_counter()
                folder = generate(case)
                print(f"{case.label}: {folder} ({time.perf_counter() - start:.1f} s)", flush=True)
        return 0
    print(main.__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

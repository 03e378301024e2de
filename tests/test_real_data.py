"""Real data at real sizes: what ML pipelines store, through every path a value takes (issue 16).

The values (built by ``tests/real_data_worker.py``, deterministic, generated once per module):

=========  ===============================================================================================
frame      a 200 MB DataFrame (3.3 M rows): float64 with NaN, int64, bool, categorical, str with NA,
           datetimes in Europe/Paris, Int64 with NA; RangeIndex
array      a 1 GiB float32 array
metrics    a nested metrics dict: 200 epochs with zoneinfo datetimes, Decimals, a timedelta, a date, NaN
model      a RandomForestClassifier (30 trees) trained on 20,000 x 20 synthetic rows: skops files (cas.sklearn)
blob       48 MiB of random bytes
text       a 7 MB str, non-ASCII included
folder     a pathlib.Path folder: 300 small JSON files, 40 files of ~200 KB, 24 MiB and 6 MiB shards,
           an executable script
=========  ===============================================================================================

The thresholds they cross, from the code (``cas/objects.py``, ``cas/trees.py``,
``cas/backends/``, ``cas/config.py``; FORMAT.md, *Where bytes go*), each asserted below:

- **inline**: a file of at most ``INLINE_MAX`` = 4 KiB is kept inside the tree (no chunk):
  the folder's JSON files, the arrays' small ``meta`` files;
- **loose**: up to ``SMALL_MAX`` = 1 MiB a file is one loose object (one chunk, its own hash):
  the folder's 200 KB files, the metrics dict;
- **chunked**: above 1 MiB a file is cut by FastCDC (min 48 KiB, avg ~79 KiB, max 256 KiB):
  the frame, the array (~13,000 chunks), the blob, the text, the shards (the model, stored natively
  since issue 18, is a schema and one small file per array: loose objects);
- **several packs**: new chunks are written into packs of ``pack_target`` = 64 MiB on the local disk
  and 16 MiB on fsspec backends (memory://, S3): the main store's 1.3 GB fill more than 16 local packs,
  the 50 MiB array of the memory:// and S3 round trips at least 3;
- **parameters vs inputs**: a step argument of more than 64 KiB (``PARAM_MAX_BYTES``) or not plain
  is an input artifact, hashed by content: every step below takes its value as such an input;
- **expansion allowance**: the 1 GiB array is above the 512 MiB a tree may declare whatever its
  chunk re-use (``EXPANSION_ALLOWANCE``); it loads because its chunks are distinct (the other bound is
  256x the distinct bytes). Its whole-file hash runs in 16 windows of 64 MiB (``_HASH_WINDOW``).

Each value goes (1) through put here and get in a fresh process that checks it exactly and prints
its fingerprint, (2) through a ``@cas.step`` whose first call runs and whose second call, in another
fresh process, is a cache hit (status "cached" in the log) returning an equal value, (3) through push
to a second store and clone into a third, then get there. The smaller ones also make a same-process
round trip on memory:// and on S3 (SeaweedFS). A 1%-changed re-put of the array must store only a
few percent of new bytes, and fsck is clean on every store at the end.

Whole module: about 2-3 minutes on the 2-core CI machine; memory peaks near three copies of 1 GiB.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cas
from cas.objects import INLINE_MAX
from cas.trees import SMALL_MAX

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data_worker as worker  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "real_data_worker.py"
KINDS = ["frame", "array", "metrics", "model", "blob", "text", "folder"]
LOCAL_PACK = 64 << 20
FSSPEC_PACK = 16 << 20

pytestmark = pytest.mark.slow  # gigabytes through child processes: about two minutes


@dataclass
class Stored:
    """The module's main local store, with every value put once under ``real/<kind>``."""

    url: str
    folder: Path
    values: dict[str, Any]
    fingerprints: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    extra_stores: list[str] = field(default_factory=list)
    #: Folders removed when the module is done (several GB: pytest would keep them for three runs).
    scratch: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    base = tmp_path_factory.mktemp("real")
    folder = worker.make_folder(base / "data")
    values = {kind: worker.make(kind, folder) for kind in KINDS}
    found = Stored(str(base / "store"), folder, values, {k: worker.fingerprint(v) for k, v in values.items()})
    found.scratch.append(base)
    with cas.open(found.url) as store:
        for kind, value in values.items():
            ref = store.put(value, f"real/{kind}", allow_pickle=kind == "model")
            found.refs[kind] = ref.hash
    yield found
    values.clear()
    gc.collect()
    for path in found.scratch:
        shutil.rmtree(path, ignore_errors=True)


def run_worker(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the worker in a fresh interpreter; its last stdout line is JSON."""
    result = subprocess.run(
        [sys.executable, str(WORKER), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert result.returncode == 0, f"worker {args[:1]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def pack_count(store_root: str | Path) -> int:
    return sum(len(files) for _, _, files in os.walk(Path(store_root) / "packs"))


# -- thresholds -------------------------------------------------------------------------------------------
def test_every_threshold_is_crossed(stored: Stored) -> None:
    with cas.open(stored.url, create=False) as store:
        info = {kind: store.info(f"real/{kind}") for kind in KINDS}
    folder_files = {f.path: f for f in info["folder"].files}
    # inline: small files carry no chunk (their bytes are in the tree)
    small = [f for p, f in folder_files.items() if p.startswith("labels/")]
    assert len(small) == 300 and all(f.size <= INLINE_MAX and f.chunks == 0 for f in small)
    # loose: files between 4 KiB and 1 MiB are one object
    loose = [f for p, f in folder_files.items() if p.startswith("images/")]
    assert len(loose) == 40 and all(INLINE_MAX < f.size <= SMALL_MAX and f.chunks == 1 for f in loose)
    assert any(INLINE_MAX < f.size <= SMALL_MAX and f.chunks == 1 for f in info["metrics"].files), info["metrics"]
    # chunked: every big value is cut into content-defined chunks of at most 256 KiB
    for kind in ("frame", "array", "blob", "text"):
        big = max(info[kind].files, key=lambda f: f.size)
        assert big.size > SMALL_MAX and big.chunks >= big.size // (256 << 10), (kind, big)
    assert folder_files["shards/train.bin"].chunks >= (24 << 20) // (256 << 10)
    assert info["frame"].size > 150_000_000 and max(f.size for f in info["array"].files) == 1 << 30
    assert info["array"].chunks > 10_000
    # several packs: 1.3 GB of new chunks (the array's ~0.96 GB compressed) fill more than 16 packs of 64 MiB
    assert pack_count(stored.url) >= (1 << 30) // LOCAL_PACK


# -- (1) put here, get in a fresh process ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_get_in_a_fresh_process(stored: Stored, kind: str, tmp_path: Path) -> None:
    out = run_worker("get", stored.url, f"real/{kind}", kind, str(tmp_path))
    assert out["fingerprint"] == stored.fingerprints[kind]


# -- (2) a step, and its cache hit in a fresh process ----------------------------------------------------------
@pytest.fixture(scope="module")
def step_store(tmp_path_factory: pytest.TempPathFactory, stored: Stored) -> str:
    base = tmp_path_factory.mktemp("steps")
    url = str(base / "store")
    stored.extra_stores.append(url)
    stored.scratch.append(base)
    return url


@pytest.mark.parametrize("kind", KINDS)
def test_step_is_a_cache_hit_in_a_fresh_process(step_store: str, stored: Stored, kind: str, tmp_path: Path) -> None:
    if kind == "model" and not worker.STEP_PICKLE:
        pytest.skip("this cas has no @cas.step(allow_pickle=True) yet (issue 16 item 5)")
    folder = str(stored.folder) if kind == "folder" else str(tmp_path)
    first = run_worker("step", step_store, kind, folder)
    second = run_worker("step", step_store, kind, folder)
    assert (first["status"], second["status"]) == ("completed", "cached")
    assert second["fingerprint"] == first["fingerprint"]
    if kind == "model":  # trained on the same data with the same seed: the module's own model, exactly
        assert second["fingerprint"] == stored.fingerprints["model"]
    with cas.open(step_store, create=False) as store:
        runs = store.log(step=first["step"])
        assert [r.status for r in runs] == ["cached", "completed"]
        assert runs[0].cached_from == runs[1].hash and runs[0].outputs == runs[1].outputs
        assert runs[0].inputs == runs[1].inputs  # the same content, hashed again in another process


# -- (3) push, clone, get there ---------------------------------------------------------------------------------
def test_push_then_clone_then_get_there(stored: Stored, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("remotes")
    stored.scratch.append(base)
    second, third = str(base / "second"), str(base / "third")
    # The clone reads every object of the second store verified (a bad one would be in its report's
    # skipped); fsck at the end checks the clone, which saves fscking 1.3 GiB twice.
    stored.extra_stores.append(third)
    with cas.open(stored.url, create=False) as store:
        pushed = store.push(second, [f"real/{kind}" for kind in KINDS])
    assert not pushed.skipped and not pushed.conflicts
    assert pushed.bytes > 1 << 30 and pushed.packs >= (1 << 30) // LOCAL_PACK
    reports: list[cas.TransferReport] = []
    with cas.clone(second, third, on_report=reports.append) as clone:
        assert reports and not any(r.skipped or r.conflicts for r in reports), reports
        for kind in KINDS:
            assert clone.resolve(f"real/{kind}").hash == stored.refs[kind]
            if kind == "folder":
                got: Any = clone.get(f"real/{kind}", path=base / "restored")
            else:
                got = clone.get(f"real/{kind}", trust_pickle=kind == "model")
            worker.assert_same(stored.values[kind], got)
            del got
            gc.collect()
    assert pack_count(third) >= (1 << 30) // LOCAL_PACK


# -- a 1% edit of the big array --------------------------------------------------------------------------------
def test_a_one_percent_edit_stores_a_few_percent(stored: Stored) -> None:
    edited = stored.values["array"].copy()
    rng = np.random.default_rng(1)
    runs, length = 16, edited.size // 100 // 16  # 1% of the array, in 16 scattered runs of 671 KB
    for start in rng.choice(edited.size // length - 1, runs, replace=False) * length:
        edited[start : start + length] = rng.random(length, dtype=np.float32)
    with cas.open(stored.url, create=False) as store:
        before = store.du().stored_bytes
        ref = store.put(edited, "real/array-edited")
        added = store.du().stored_bytes - before
        assert max(f.size for f in store.info(ref).files) == 1 << 30
    del edited
    gc.collect()
    # each run costs its own bytes plus about a chunk (~79 KiB) on either side, and a new tree
    assert added < 0.03 * (1 << 30), f"a 1% edit stored {added:,} new bytes ({added / (1 << 30):.2%})"


# -- same-process round trips on memory:// and S3 --------------------------------------------------------------
@pytest.fixture(params=["memory", "s3"])
def other_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "s3":
        request.getfixturevalue("seaweed")
        yield f"s3://cas-tests/{uuid.uuid4().hex}"
        return
    url = f"memory://cas-real-{uuid.uuid4().hex}"
    yield url
    import fsspec

    fs = fsspec.filesystem("memory")
    if fs.exists(url[len("memory://") :]):
        fs.rm(url[len("memory://") :], recursive=True)


def test_moderate_values_round_trip_on_memory_and_s3(other_url: str, stored: Stored) -> None:
    values = {
        "metrics": stored.values["metrics"],
        "model": stored.values["model"],
        "frame": worker.make_frame(worker.SMALL_FRAME_ROWS),
        "array": worker.make_array(worker.SMALL_ARRAY_ITEMS),
    }
    with cas.open(other_url) as store:
        for kind, value in values.items():
            store.put(value, f"real/{kind}", allow_pickle=kind == "model")
        for kind, value in values.items():
            worker.assert_same(value, store.get(f"real/{kind}", trust_pickle=kind == "model"))
        # 50 MiB of new chunks go into packs of 16 MiB on fsspec backends
        assert len(list(store.backend.list("packs/"))) >= (50 << 20) // FSSPEC_PACK
        assert store.info("real/frame").chunks > 1 and store.fsck().ok


# -- at the end: every store is clean ------------------------------------------------------------------------
def test_fsck_is_clean_on_every_store(stored: Stored) -> None:
    for url in [stored.url, *stored.extra_stores]:
        with cas.open(url, create=False) as store:
            report = store.fsck()
            assert report.ok, f"{url}: {report}"
            assert not report.unchecked, f"{url}: {report}"

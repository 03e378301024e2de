"""Remotes, push, pull, clone and read-through: local <-> local, memory and SeaweedFS S3."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKENDS, _cleanup, _needs_server, make_url
from pipeline_helpers import executed, run_example

import cas
from cas.backends import LocalBackend
from cas.backends.base import Buffer, Sink
from cas.transfer import ASK_LIMIT, present_keys


@pytest.fixture(params=BACKENDS)
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the remote lives: another local folder, memory://, or a bucket on SeaweedFS."""
    _needs_server(request)
    url = make_url(request.param, tmp_path / "remote")
    yield url
    _cleanup(url)


def fill(store: cas.Store) -> dict[str, bytes]:
    """A few named artifacts sharing chunks, with a version label and a tag."""
    shared = np.random.default_rng(0).bytes(5 << 19)  # 2.5 MiB: chunked
    payloads = {"alpha": shared + b"a", "beta": shared + b"b", "gamma": b"small gamma"}
    for name, data in payloads.items():
        store.put(data, name)
    store.put(b"alpha two", "alpha", version="v2", tags=["prod"])
    return payloads


def test_push_then_pull_copies_everything_and_a_second_push_nothing(tmp_path: Path, remote_url: str) -> None:
    with cas.open(tmp_path / "here") as here:
        payloads = fill(here)
        here.remotes.add("origin", remote_url)
        first = here.push()
        assert first.objects > 0 and len(first.refs) == 6 and not first.conflicts
        again = here.push()
        assert not again.changed and again.objects == 0 and again.unchanged == 6
        assert "up to date" in str(again)
    with cas.open(remote_url, create=False) as there:
        for name, data in payloads.items():
            assert there.get(f"{name}@1") == data
        assert there.get("alpha@prod") == there.get("alpha@v2") == b"alpha two"
        assert there.versions("alpha")[-1].version == "v2"
        assert there.fsck().ok
    with cas.open(tmp_path / "elsewhere") as elsewhere:
        pulled = elsewhere.pull(remote_url)
        assert len(pulled.refs) == 6
        assert elsewhere.get("beta") == payloads["beta"]
        assert not elsewhere.pull(remote_url).changed


def test_a_named_push_sends_that_name_and_nothing_else(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        fill(here)
        report = here.push(there, ["gamma"])
        assert report.refs == ["gamma@1"]
        assert list(there.names()) == ["gamma"]
        assert report.objects == 2  # the artifact and its tree (the data is inline)
        assert not there.exists(here.resolve("alpha@1").hash)
        report = here.push(there, ["alpha@prod"])  # a tag brings the version it names
        assert sorted(report.refs) == ["alpha@2", "alpha@prod"]
        assert there.get("alpha@prod") == b"alpha two"
        assert not there.exists("alpha@1")


def test_shared_chunks_are_sent_once(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        fill(here)
        first = here.push(there, ["alpha@1"])
        second = here.push(there, ["beta"])
        # beta shares all but its last chunk with alpha: one chunk, not 2.5 MiB again
        assert second.bytes < first.bytes / 4
        assert there.get("beta")[-1:] == b"b"


def test_pulled_pipeline_steps_are_cache_hits_on_the_other_side(tmp_path: Path, remote_url: str) -> None:
    here, trace = tmp_path / "here", tmp_path / "trace"
    result = run_example(here, trace)
    assert executed(trace) == ["make_data", "split", "standardize", "evaluate"]
    with cas.open(here) as store:
        store.push(remote_url)
    with cas.open(tmp_path / "clone") as fresh:
        fresh.remotes.add("team", remote_url, trust_cache=True)  # pulled runs answer lookups only if trusted
        fresh.pull("team")
        assert len(fresh.log()) == 4
    assert run_example(tmp_path / "clone", trace) == result
    assert executed(trace) == []  # every step was a cache hit on the pulled store


def test_a_named_push_brings_the_runs_in_its_history(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:

        @here.step
        def make(n: int) -> np.ndarray:
            return np.arange(float(n))

        @here.step
        def scale(x: np.ndarray, k: float) -> np.ndarray:
            return x * k

        @here.step
        def unrelated() -> int:
            return 7

        here.put(scale(make(10), 3.0), "scaled")
        unrelated()
        report = here.push(there, ["scaled"])
        assert report.runs == 2  # make and scale; not the unrelated run
        assert [r.step.rsplit(".", 1)[-1] for r in there.runs()] == ["scale", "make"]
        graph = there.lineage("scaled")
        assert len(graph.runs()) == 2
        # The upstream artifacts came along, so the runs' inputs load there.
        make_run = next(r for r in there.runs() if r.step.endswith("make"))
        assert there.get(make_run.outputs["output"].hex()).tolist() == list(range(10))


def test_conflicts_fail_by_default_then_skip_or_rename(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        here.put(b"common", "data")
        here.push(there)
        here.put(b"ours", "data")  # data@2 here
        there.put(b"theirs", "data")  # data@2 there
        here.put(b"new", "other")
        objects_before = sorted(there.backend.list("objects/")) + sorted(there.backend.list("packs/"))
        with pytest.raises(cas.RefConflictError) as caught:
            here.push(there)
        assert [c.ref for c in caught.value.conflicts] == ["data@2"]
        assert sorted(there.backend.list("objects/")) + sorted(there.backend.list("packs/")) == objects_before
        assert not there.exists("other")  # nothing was copied
        skipped = here.push(there, on_conflict="skip")
        assert skipped.refs == ["other@1"] and [c.ref for c in skipped.conflicts] == ["data@2"]
        assert there.get("data@2") == b"theirs"
        renamed = here.push(there, on_conflict="rename")
        assert renamed.renamed == ["data@2 -> data@3"]
        assert there.get("data@3") == b"ours" and there.get("data@2") == b"theirs"


def test_a_version_deleted_on_the_remote_is_a_conflict(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        here.put(b"one", "data")
        here.push(there)
        there.delete("data@1")
        with pytest.raises(cas.RefConflictError, match="deleted there"):
            here.push(there)
        assert not there.exists("data@1")


def test_tags_move_to_the_newer_side(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        here.put(b"one", "m")
        here.put(b"two", "m")
        here.tag("m@1", "prod")
        here.push(there)
        here.tag("m@2", "prod")  # moved here, later
        assert here.push(there).refs == ["m@prod"]
        assert there.get("m@prod") == b"two"
        there.tag("m@1", "prod")  # moved there, later still
        report = here.push(there)
        assert report.stale_tags == ["m@prod"] and there.get("m@prod") == b"one"


class _FailingSink(Sink):
    def __init__(self, inner: Sink, backend: _FailAfter) -> None:
        self.inner, self.backend = inner, backend

    def pwrite(self, offset: int, buffers: list[Buffer]) -> None:  # type: ignore[override]
        self.inner.pwrite(offset, buffers)

    def commit(self, key: str) -> None:
        self.backend.tick()
        self.inner.commit(key)

    def abort(self) -> None:
        self.inner.abort()


class _FailAfter(LocalBackend):
    """A local backend whose pack commits start failing after ``budget`` of them (a dropped link)."""

    budget = 10**9

    def tick(self) -> None:
        if self.budget <= 0:
            raise OSError("connection lost")
        self.budget -= 1

    def open_sink(self) -> Sink:
        return _FailingSink(super().open_sink(), self)


def test_an_interrupted_push_resumes_with_what_is_still_missing(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here:
        rng = np.random.default_rng(1)
        for i in range(6):
            here.put(rng.bytes(3 << 20), f"blob{i}")
        backend = _FailAfter(str(tmp_path / "there"))
        backend.pack_target = 4 << 20  # about one artifact per pack
        there = cas.Store(backend)
        backend.budget = 3
        with pytest.raises(cas.BackendError):
            here.push(there)
        assert list(there.names()) == []  # refs come last: none written
        packs_after_failure = len(list(backend.list("packs/")))
        assert packs_after_failure == 3
        backend.budget = 10**9
        resumed = here.push(there)
        assert resumed.packs < 6 + 1 and len(resumed.refs) == 6
        total = sum(len(list(backend.list(p))) for p in ("packs/",))
        assert total == resumed.packs + packs_after_failure
        for i in range(6):
            assert len(there.get(f"blob{i}")) == 3 << 20
        assert there.fsck().ok
        there.close()


def _push_own_name(local: str, remote: str, worker: int) -> None:
    with cas.open(local) as store:
        for i in range(3):
            store.put(os.urandom(200_000) + bytes([worker, i]), f"worker{worker}")
        store.push(remote)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_pushes_of_different_names_to_one_remote(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "s3":
        request.getfixturevalue("seaweed")
    remote = make_url(kind, tmp_path / "remote")
    cas.open(remote).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_push_own_name, args=(str(tmp_path / f"w{w}"), remote, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with cas.open(remote, create=False) as there:
        assert sorted(there.names()) == [f"worker{w}" for w in range(4)]
        for w in range(4):
            assert [there.get(f"worker{w}@{i + 1}")[-2:] for i in range(3)] == [bytes([w, i]) for i in range(3)]
        assert there.fsck().ok


def test_clone_copies_settings_history_and_names_origin(tmp_path: Path, remote_url: str) -> None:
    with cas.open(remote_url) as there:
        payloads = fill(there)
    with cas.clone(remote_url, tmp_path / "copy") as copy:
        assert copy.get("alpha@1") == payloads["alpha"]
        assert copy.remotes.get().url == remote_url
        assert copy.config.chunking == there.config.chunking
    with cas.clone(remote_url, tmp_path / "copy") as again:  # run again: a clone completes itself (a pull)
        assert again.get("alpha@1") == payloads["alpha"]
    with cas.open(tmp_path / "another") as another:
        another.put(b"its own", "own")
    with pytest.raises(cas.RefExistsError):  # (StoreExistsError) a store that is no clone of it
        cas.clone(remote_url, tmp_path / "another")
    with pytest.raises(cas.StoreNotFoundError):
        cas.clone(str(tmp_path / "nothing-here"), tmp_path / "copy2")


def test_read_through_fetches_only_the_chunks_a_get_needs(tmp_path: Path, remote_url: str) -> None:
    with cas.open(remote_url) as there:
        payloads = fill(there)
        big = np.random.default_rng(5).bytes(3 << 20)
        there.put(big, "big")
    with cas.open(tmp_path / "here") as here:
        here.remotes.add("origin", remote_url, read_through=True)
        assert here.exists("big") and here.exists("alpha@prod")
        assert here.get("big") == big
        assert here.get("alpha@1") == payloads["alpha"]
        info = here.du()
        # big and alpha's chunks are here now; beta's last chunk (its own) never came
        assert info.stored_bytes < len(big) + len(payloads["alpha"]) + (200 << 10)
    with cas.open(tmp_path / "here", read_through=False) as offline:
        assert offline.get(here.resolve("big").hash) == big  # kept: readable without the remote
        with pytest.raises(cas.RefNotFoundError):
            offline.get("big")  # refs stay the remote's


def test_read_through_refuses_what_the_remote_lacks_too(tmp_path: Path) -> None:
    with cas.open(tmp_path / "remote") as there:
        there.put(b"x")
    with cas.open(tmp_path / "here") as here:
        here.remotes.add("origin", str(tmp_path / "remote"), read_through=True)
        with pytest.raises(cas.RefNotFoundError):
            here.get("nothing")
        with pytest.raises(cas.ObjectNotFoundError):
            here.get("ab" * 32)


def test_remotes_are_listed_replaced_and_removed(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here:
        with pytest.raises(cas.RefNotFoundError, match="no remotes"):
            here.push()
        here.remotes.add("team", "s3://bucket/cas")
        here.remotes.add("backup", "relative/dir", read_through=True)
        assert here.remotes.get("backup").url == str(Path("relative/dir").resolve())
        with pytest.raises(cas.InvalidArgumentError, match="several remotes"):
            here.remotes.get()
        here.remotes.add("team", "s3://bucket/other", read_through=True)  # replaces; takes read-through
        assert {r.name: r.read_through for r in here.remotes.all().values()} == {"team": True, "backup": False}
        here.remotes.remove("backup")
        assert list(here.remotes.all()) == ["team"] and here.remotes.get().url == "s3://bucket/other"
        with pytest.raises(cas.InvalidNameError):
            here.remotes.add("../x", "y")
        with pytest.raises(cas.RefNotFoundError):
            here.remotes.remove("nope")


def test_corrupt_source_objects_are_never_sent(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        here.put(np.random.default_rng(2).bytes(2 << 20), "data")
        pack = next(iter(here.backend.list("packs/")))
        path = tmp_path / "here" / pack
        raw = bytearray(path.read_bytes())
        raw[1000] ^= 0x40
        path.write_bytes(bytes(raw))
        report = here.push(there)  # the damaged chunk's ref is left out and reported; the rest would go on
        assert [s.what for s in report.skipped] == ["data@1"] and "chunk" in report.skipped[0].why
        assert list(there.names()) == [] and there.fsck().ok


class _Counting(LocalBackend):
    """Counts existence checks and listings, and pretends they are requests."""

    cheap_exists = False

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()

    def exists(self, key: str) -> bool:
        self.calls["exists"] += 1
        return super().exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.calls["list"] += 1
        return super().list(prefix)


def test_presence_is_asked_in_batches(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend = _Counting(str(tmp_path / "b"))
    keys = [f"objects/{i:02x}/{'0' * 62}" for i in range(256)]
    for key in keys[::2]:
        backend.write(key, b"x")
    with ThreadPoolExecutor(4) as pool:
        few = keys[:ASK_LIMIT]
        assert present_keys(backend, few, pool) == set(few[::2])
        assert backend.calls == Counter(exists=ASK_LIMIT)
        backend.calls.clear()
        assert present_keys(backend, keys, pool, fanout="objects/") == set(keys[::2])
        assert backend.calls == Counter(list=2)  # one folder to estimate, then the whole fan-out
        backend.calls.clear()
        assert present_keys(backend, keys[:100], pool, whole="objects/") == set(keys[:100:2])
        assert backend.calls == Counter(list=1)
    backend.close()


def test_visualizations_travel_with_their_artifacts(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here, cas.open(tmp_path / "there") as there:
        here.put(np.arange(100.0), "series", visualize=True)
        here.put(np.arange(5.0), "plain")
        assert here.push(there).refs == ["plain@1", "series@1"]
        names = [v.name for v in here.visualizations("series")]
        assert "histogram" in names
        assert there.backend.exists(
            f"visualizations/{there.resolve('series').hash[:2]}/{there.resolve('series').hash[2:]}"
        )
        assert [v.name for v in there.visualizations("series")] == names  # stored: not recomputed
        plain = there.resolve("plain").hash
        assert not there.backend.exists(f"visualizations/{plain[:2]}/{plain[2:]}")
        assert there.fsck().ok
        assert not here.push(there).changed

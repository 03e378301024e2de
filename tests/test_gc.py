"""Deleting refs, gc, fsck and du."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from conftest import StoreFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cas
from cas.objects import Artifact, Tree
from cas.objectstore import object_key


def all_keys(store: cas.Store) -> set[str]:
    return set(store.backend.list(""))


def test_delete_versions_names_and_tags(store: cas.Store) -> None:
    store.put(b"one", "m")
    store.put(b"two", "m", version="v2", tags=["prod"])
    store.put(b"three", "m", tags=["latest"])
    assert store.delete("m@v2") == ["m@2", "m@v2", "m@prod"]
    with pytest.raises(cas.RefNotFoundError):
        store.get("m@2")
    with pytest.raises(cas.RefNotFoundError):
        store.get("m@prod")
    store.untag("m@latest")
    with pytest.raises(cas.RefNotFoundError):
        store.get("m@latest")
    with pytest.raises(cas.InvalidNameError, match="untag"):
        store.tag("m@3", "t") and store.delete("m@t")
    assert store.get("m") == b"three"
    assert store.put(b"four", "m").number == 4
    store.delete("m@4")
    assert store.put(b"five", "m").number == 5  # a deleted number is never handed out again
    with cas.open(store.url) as other:  # nor by another process that has no memory of it
        assert other.put(b"six", "m").number == 6
    store.delete("m")
    assert not store.exists("m") and list(store.names()) == []
    with pytest.raises(cas.RefNotFoundError):
        store.delete("m")


def test_gc_removes_only_unreachable_and_old(store: cas.Store) -> None:
    keep = os.urandom(3 << 20)
    drop = os.urandom(3 << 20)
    store.put(keep, "keep")
    store.put(drop, "drop")
    store.put({"unnamed": 1})  # a dangling artifact
    store.delete("drop")
    young = store.gc()  # default grace: everything is too young
    assert young.objects == 0 and young.kept_young > 0
    before = all_keys(store)
    dry = store.gc(grace=0, dry_run=True)
    assert dry.objects > 0 and dry.bytes >= len(drop) and all_keys(store) == before
    report = store.gc(grace=0)
    assert report.removed == dry.removed and report.bytes == dry.bytes
    # gc no longer reads what it deletes to name its kind: 2 artifacts and their 2 trees are "object"s.
    assert report.removed["pack"] == 1 and report.removed["object"] == 4
    assert store.get("keep") == keep
    assert store.fsck().ok
    assert store.gc(grace=0).objects == 0  # nothing left to do


def test_repack_keeps_live_chunks(local_store: cas.Store) -> None:
    a = os.urandom(4 << 20)
    b = os.urandom(1 << 20) + a[: 2 << 20]
    local_store.put(a + b, "both")  # one pack holding both halves
    local_store.put(b + b"!" * 5000, "b-only")  # reuses b's chunks
    local_store.delete("both")
    report = local_store.gc(grace=0)
    assert report.repacked == 1
    assert local_store.get("b-only") == b + b"!" * 5000
    with cas.open(local_store.url) as fresh:
        assert fresh.get("b-only") == b + b"!" * 5000
        assert fresh.fsck().ok


def test_gc_keeps_run_inputs_outputs_and_prunes_cache(local_store: cas.Store) -> None:
    calls = []

    @local_store.step
    def square(xs: list[int]) -> list[int]:
        calls.append(1)
        return [x * x for x in xs]

    assert square(list(range(1000))) == [x * x for x in range(1000)]
    local_store.gc(grace=0)
    assert square(list(range(1000)))[:3] == [0, 1, 4] and len(calls) == 1  # still a hit
    first = local_store.log()[-1]
    # A run that left the log by other means (a crash mid-prune): gc drops its cache entry.
    for key in list(local_store.backend.list("runlog/")):
        local_store.backend.delete(key)
    report = local_store.gc(grace=0)
    assert report.removed["cache entry"] == 1
    assert local_store.run_index.cached(first.cache_key) is None
    square(list(range(1000)))
    assert len(calls) == 2  # no hit on a run gc no longer protects
    assert local_store.prune_runs(older_than=0) == 1
    report = local_store.gc(grace=0)
    assert report.removed["object"] >= 1 and local_store.run_index.cached(first.cache_key) is None  # the run, ...


def test_prune_runs_keep_last(local_store: cas.Store) -> None:
    @local_store.step(cache=False)
    def tick(i: int) -> int:
        return i

    for i in range(5):
        tick(i)
    assert local_store.prune_runs(keep_last=2) == 3
    assert [r.params["i"] for r in local_store.log()] == [4, 3]
    with pytest.raises(cas.InvalidArgumentError):
        local_store.prune_runs()


def test_crash_leftovers_are_collected(local_store: cas.Store) -> None:
    backend = local_store.backend
    backend.write("tmp/partial-write", b"half")
    backend.write("packs/ab/" + "ab" * 32, b"a pack whose index was never written")
    report = local_store.gc(grace=0)
    assert report.removed["tmp"] == 1 and report.removed["unindexed pack"] == 1


def test_fsck_finds_and_repairs_corruption(store: cas.Store) -> None:
    ref = store.put(b"y" * 10_000, "loose")
    store.put(os.urandom(3 << 20), "packed")
    assert store.fsck().ok
    key = object_key(bytes.fromhex(ref.hash))
    data = bytearray(store.backend.read(key))
    data[-1] ^= 1
    store.backend.write(key, bytes(data))
    (pack,) = list(store.backend.list("packs/"))
    pdata = bytearray(store.backend.read(pack))
    pdata[100] ^= 1
    store.backend.write(pack, bytes(pdata))
    report = store.fsck()
    assert not report.ok and len(report.corrupt) >= 2
    assert any("chunk" in c for c in report.corrupt)
    repaired = store.fsck(repair=True)
    assert repaired.repaired and any("loose" in m or ref.hash[:12] in m for m in repaired.missing)
    assert "loose" in set(store.names())  # refs are never removed
    with pytest.raises(cas.ObjectNotFoundError):
        store.get("loose")


def test_du(store: cas.Store) -> None:
    data = os.urandom(2 << 20)
    store.put(data, "a")
    store.put(data, "a", new_version=True)  # two versions of one artifact
    store.put(("x," * 200_000).encode(), "text")
    usage = store.du()
    assert usage.counts["artifact"] == 2 and usage.counts["pack"] >= 1
    assert usage.logical_bytes == 2 * len(data) + 400_000
    assert usage.dedup_ratio > 1.3 and usage.compression_ratio > 1.0
    assert usage.largest[0][0] == "a" and usage.largest[0][1] == 2
    assert "dedup" in str(usage)


def test_gc_refuses_when_a_ref_is_unreadable(local_store: cas.Store) -> None:
    local_store.put(b"x", "r")
    local_store.backend.write("refs/r/@v/1", b"garbage")
    with pytest.raises(cas.IntegrityError, match="fsck"):
        local_store.gc(grace=0)


def test_writer_reusing_old_chunks_while_gc_runs(local_store: cas.Store) -> None:
    data = os.urandom(3 << 20)
    local_store.put(data, "old")
    local_store.delete("old")
    time.sleep(1.2)  # the pack is now unreachable and older than the grace period
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            with cas.open(local_store.url) as w:
                for i in range(15):
                    w.put(data, "reborn")  # dedups against the old pack, which it freshens
                    w.put(os.urandom(200_000) + data[:100_000], f"other{i % 3}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    with cas.open(local_store.url) as collector:
        while not done.is_set():
            collector.gc(grace=1.0)
    thread.join()
    assert not errors
    with cas.open(local_store.url) as check:
        for ref in check.versions("reborn"):
            assert check.get(ref) == data
        assert check.fsck().ok


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b", "c"]), st.integers(1, 4)),
        st.tuples(st.just("step"), st.sampled_from(["a", "b", "c"]), st.integers(0, 3)),
        st.tuples(st.just("prune"), st.just(""), st.integers(0, 2)),
        st.tuples(st.just("gc"), st.just(""), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_nothing_reachable_is_ever_collected(new_store: StoreFactory, sequence: list[tuple[str, str, int]]) -> None:
    payloads = {i: os.urandom(1500 * (i + 1)) + bytes(range(256)) * (i * 3000) for i in range(6)}
    expected: dict[tuple[str, int], bytes] = {}  # (name, number) -> what was put, for the versions still named
    with new_store() as store:  # one store per example: each sequence starts from an empty store

        @store.step(name="transform")
        def transform(data: bytes, salt: int) -> bytes:
            return data[::-1] + bytes([salt])

        for op, name, n in sequence:
            if op == "put":
                expected[name, store.put(payloads[n], name).number] = payloads[n]
            elif op == "delete":
                try:
                    store.delete(f"{name}@{n}")
                except cas.RefNotFoundError:
                    assert (name, n) not in expected
                else:
                    del expected[name, n]
            elif op == "step":
                if store.exists(name):
                    transform(store.get(name), n)
            elif op == "prune":
                store.prune_runs(keep_last=n)
            else:
                store.gc(grace=0)
        store.gc(grace=0)
        with cas.open(store.url) as fresh:
            kept = {(ref.name, ref.number): fresh.get(ref) for name in fresh.names() for ref in fresh.versions(name)}
            assert kept == expected  # every version still named, each with its own bytes, and nothing else
            inputs = set(payloads.values())
            for run in fresh.log():
                if run.status == "completed":
                    assert (
                        fresh.cached_run(run.cache_key) is not None or fresh.run_index.cached(run.cache_key) != run.hash
                    )
                    for h in run.outputs.values():
                        output = fresh.get(h.hex())  # transform's: a payload reversed, then the salt
                        assert output[:-1][::-1] in inputs and output[-1] < 4
            assert fresh.fsck().ok


def test_a_put_between_mark_and_sweep_keeps_what_it_reuses(
    local_store: cas.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cas.gc

    data = os.urandom(3 << 20)
    local_store.put(data, "old")
    local_store.delete("old")
    time.sleep(1.1)  # unreachable, and older than the grace period below
    writer = cas.open(local_store.url)
    writer.objects.ensure_index()  # the writer knows the old pack
    real_mark = cas.gc.mark

    def mark_then_put(*args, **kwargs):  # type: ignore[no-untyped-def]
        marks = real_mark(*args, **kwargs)  # gc has decided the old pack is garbage...
        writer.put(data, "reborn")  # ...when a writer reuses its chunks and names them
        return marks

    monkeypatch.setattr(cas.gc, "mark", mark_then_put)
    local_store.gc(grace=1.0)
    monkeypatch.setattr(cas.gc, "mark", real_mark)
    with cas.open(local_store.url) as fresh:
        assert fresh.get("reborn") == data  # the writer freshened the pack, so the sweep kept it
    writer.close()


@pytest.mark.parametrize("keep_chunkmap", [False, True])
def test_a_writer_with_a_stale_index_stores_collected_chunks_again(tmp_path: Path, keep_chunkmap: bool) -> None:
    """Another process's gc removed a pack this writer still has in its index: reusing it would lose data."""
    data = os.urandom(3 << 20)
    url = str(tmp_path / "store")
    with cas.open(url) as first:
        first.put(data, "old")
        first.delete("old")
    with cas.open(url) as writer, cas.open(url) as collector:
        writer.objects.ensure_index()  # knows the old pack
        maps = {k: writer.backend.read(k) for k in writer.backend.list("chunkmaps/")}
        report = collector.gc(grace=0)
        assert report.removed["pack"] == 1
        if keep_chunkmap:  # as if gc had not reached the chunk map yet
            for key, value in maps.items():
                writer.backend.write(key, value)
        writer.put(data, "reborn")
        assert writer.get("reborn") == data
        assert collector.fsck().ok


def test_a_loose_object_collected_between_exists_and_refresh_is_written_again(
    local_store: cas.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(100_000)
    ref = local_store.put(data)
    backend = local_store.backend
    real_touch = backend.touch

    def gc_strikes_first(key: str) -> None:
        backend.delete(key)  # gc removed it after put_object saw it exist
        real_touch(key)

    monkeypatch.setattr(backend, "touch", gc_strikes_first)
    assert local_store.put(data, "again").hash == ref.hash
    monkeypatch.setattr(backend, "touch", real_touch)
    assert local_store.get("again") == data


def test_an_index_left_by_an_interrupted_gc_is_a_leftover_unless_its_chunks_are_needed(local_store: cas.Store) -> None:
    data = os.urandom(3 << 20)
    local_store.put(data, "doomed")
    local_store.put(os.urandom(3 << 20), "kept")
    doomed_pack = local_store.objects.locate(Tree.from_bytes(local_store.objects.get_object(
        Artifact.from_bytes(local_store.objects.get_object(bytes.fromhex(local_store.resolve("doomed").hash))).tree
    )).entries[0].chunks[0][0]).pack  # fmt: skip
    local_store.delete("doomed")
    local_store.backend.delete(f"packs/{doomed_pack.hex()[:2]}/{doomed_pack.hex()}")  # gc died before the index
    report = local_store.fsck()
    assert report.ok and any("removed pack" in d for d in report.dangling)
    local_store.gc(grace=0)
    assert not local_store.backend.exists(f"index/{doomed_pack.hex()}")
    assert local_store.fsck().ok and local_store.get("kept")
    # The same damage to a pack that something still needs is reported.
    kept = local_store.objects.locate(Tree.from_bytes(local_store.objects.get_object(
        Artifact.from_bytes(local_store.objects.get_object(bytes.fromhex(local_store.resolve("kept").hash))).tree
    )).entries[0].chunks[0][0]).pack  # fmt: skip
    local_store.backend.delete(f"packs/{kept.hex()[:2]}/{kept.hex()}")
    report = local_store.fsck()
    assert not report.ok and any("still needed" in m for m in report.missing)


def test_a_chunked_value_put_again_after_gc_removed_it_comes_back_whole(store: cas.Store) -> None:
    """Found by hypothesis on memory://: fsspec's touch created an empty object where gc had removed one."""
    data = os.urandom(2_000_000)  # chunked: its chunks are freshened, not rewritten, when they seem present
    store.put(data, "c")
    store.delete("c@1")
    store.gc(grace=0)
    store.put(data, "a")
    assert store.get("a") == data
    assert store.fsck().ok

"""Version numbers, labels and tags under real concurrent processes (issue 21 items 1, 2 and 5).

Each race runs in spawned processes that start at one agreed moment, on the
local disk and on S3 (SeaweedFS). The invariants checked after each race:
one label names one version; a number is never handed out twice, and never
after its deletion; no tag names a deleted version; ``RefStore.problems``
(what fsck reports about refs) finds nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET

import cas
from cas.keys import gone_key, label_key, version_key
from cas.objects import RefRecord
from cas.refs import _encode, newer_tag, tag_moved_at

LABELS = 12
WRITERS = 4


def _url(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "store") if kind == "local" else f"s3://{BUCKET}/{uuid.uuid4().hex}"


def _wait_until(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def _run(workers: list[tuple[Any, tuple[Any, ...]]], timeout: float = 240) -> list[Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=fn, args=(*args, queue)) for fn, args in workers]
    for p in procs:
        p.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


# -- one label, one version ------------------------------------------------------------
def _label_writer(url: str, start: float, queue: Any) -> None:
    got = []
    with cas.open(url) as store:
        _wait_until(start)
        for i in range(LABELS):
            ref = store.put({"output": i}, "model", version=f"run-{i}")
            got.append((i, ref.number))
    queue.put(got)


def _one_label_one_version(url: str) -> None:
    cas.open(url).close()
    start = time.time() + 4.0  # every process imported and opened by then
    results = _run([(_label_writer, (url, start)) for _ in range(WRITERS)])
    numbers: dict[int, set[int]] = {}
    for got in results:
        for i, number in got:
            numbers.setdefault(i, set()).add(number)
    assert all(len(found) == 1 for found in numbers.values()), numbers  # every writer got the same version
    with cas.open(url) as store:
        versions = store.versions("model")
        assert len(versions) == LABELS  # before the fix most labels got two or more
        assert {store.resolve(f"model@run-{i}").number for i in range(LABELS)} == {v.number for v in versions}
        assert store.refs.problems() == []
        assert store.fsck().ok


def test_one_label_one_version_local(tmp_path: Path) -> None:
    _one_label_one_version(_url("local", tmp_path))


@pytest.mark.slow
def test_one_label_one_version_s3(seaweed: object, tmp_path: Path) -> None:
    _one_label_one_version(_url("s3", tmp_path))


def test_fsck_problems_flag_a_label_split(local_store: cas.Store) -> None:
    ref = local_store.put(b"a", "m", version="v1")
    digest = bytes.fromhex(ref.hash)
    # What two racing writers of an older cas left: a second version carrying the label.
    local_store.backend.create(version_key("m", 2), _encode(RefRecord(digest, time.time(), 2, "v1")))
    (line,) = local_store.refs.problems()
    assert "label split" in line and "m@v1" in line and "1, 2" in line


def test_a_label_claimed_by_a_stopped_writer_is_adopted(
    local_store: cas.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = local_store.put(b"x", "m")
    # A writer claimed the label, then stopped before making its version (no number in the label file).
    local_store.backend.create(label_key("m", "v1"), _encode(RefRecord(bytes.fromhex(ref.hash), 1.0, None, "v1")))
    monkeypatch.setattr("cas.refs._LABEL_WAIT", 0.2)
    made = local_store.put(b"x", "m", version="v1")
    assert made.number == 2 and local_store.resolve("m@v1").number == 2


# -- a deleted number is never reused ---------------------------------------------------------
def _putter(url: str, start: float, worker: int, queue: Any) -> None:
    made = []
    with cas.open(url) as store:
        _wait_until(start)
        for i in range(30):
            ref = store.put(f"{worker}-{i}".encode(), "ckpt")
            made.append((ref.number, ref.hash))
    queue.put(("put", made))


def _remover(url: str, start: float, queue: Any) -> None:
    removed = []
    with cas.open(url) as store:
        _wait_until(start)
        deadline = time.time() + 20
        while len(removed) < 20 and time.time() < deadline:
            try:
                ref = store.resolve("ckpt")
                store.delete(f"ckpt@{ref.number}")
                removed.append((ref.number, ref.hash))
            except cas.RefNotFoundError:
                time.sleep(0.001)
    queue.put(("rm", removed))


def _numbers_never_reused(url: str) -> None:
    cas.open(url).close()
    start = time.time() + 4.0
    results = _run([(_putter, (url, start, 0)), (_putter, (url, start, 1)), (_remover, (url, start))])
    made = [item for kind, items in results if kind == "put" for item in items]
    removed = [item for kind, items in results if kind == "rm" for item in items]
    numbers = [n for n, _ in made]
    assert len(numbers) == len(set(numbers)), "a version number was handed out twice"
    with cas.open(url) as store:
        for number, digest in removed:
            # (an rm can catch a version in the moment between its create and its writer's tombstone
            # check: the writer then gives that number up and returns a later one for the same data)
            assert digest in {d for _, d in made}
            with pytest.raises(cas.RefNotFoundError):
                store.resolve(f"ckpt@{number}")
        for number, digest in made:
            if (number, digest) not in removed:
                assert store.resolve(f"ckpt@{number}").hash == digest  # name@N never names other data
        for number in set(numbers):
            both = store.backend.exists(version_key("ckpt", number)) and store.backend.exists(gone_key("ckpt", number))
            assert not both, f"ckpt@{number} has a version file and a tombstone"
        assert store.refs.problems() == []


def test_deleted_numbers_are_never_reused_local(tmp_path: Path) -> None:
    _numbers_never_reused(_url("local", tmp_path))


@pytest.mark.slow
def test_deleted_numbers_are_never_reused_s3(seaweed: object, tmp_path: Path) -> None:
    _numbers_never_reused(_url("s3", tmp_path))


def test_a_cached_next_number_skips_a_number_deleted_since(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    with cas.open(url) as a, cas.open(url) as b:
        assert a.put(b"1", "ckpt").number == 1  # a now expects 2 next
        assert b.put(b"2", "ckpt").number == 2
        b.delete("ckpt@2")
        assert a.put(b"3", "ckpt").number == 3  # not 2: it was deleted
        with pytest.raises(cas.RefNotFoundError):
            a.resolve("ckpt@2")


def test_a_version_file_beside_its_tombstone_is_deleted(local_store: cas.Store) -> None:
    local_store.put(b"1", "m")
    local_store.put(b"2", "m")
    # A writer created @v/2 after an rm of an earlier @v/2, then stopped before giving it up.
    local_store.backend.write(gone_key("m", 2), b"")
    assert local_store.resolve("m").number == 1
    with pytest.raises(cas.RefNotFoundError):
        local_store.resolve("m@2")
    assert local_store.put(b"3", "m").number == 3
    (leftover,) = local_store.refs.leftovers()
    assert leftover[0] == version_key("m", 2) and "tombstone" in leftover[1]
    report = local_store.fsck()
    assert report.ok and any("tombstone" in line for line in report.leftovers)  # an interrupted rm: no problem
    repaired = local_store.fsck(repair=True)
    assert repaired.repaired and not local_store.backend.exists(version_key("m", 2))
    assert local_store.refs.leftovers() == [] and local_store.resolve("m").number == 3


# -- tags ------------------------------------------------------------------------------------
def _tagger(url: str, start: float, queue: Any) -> None:
    with cas.open(url) as store:
        _wait_until(start)
        for i in range(TAG_RACES):
            ref = store.put(f"t{i}".encode(), f"m{i}")
            try:
                store.tag(f"m{i}@{ref.number}", "prod")
            except cas.RefNotFoundError:
                pass  # deleted under us: the tag was taken back
    queue.put("tagged")


def _deleter(url: str, start: float, queue: Any) -> None:
    with cas.open(url) as store:
        _wait_until(start)
        for i in range(TAG_RACES):
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    store.delete(f"m{i}@1")  # as soon as it exists: while the tagger moves the tag to it
                    break
                except cas.RefNotFoundError:
                    time.sleep(0.0002)
    queue.put("deleted")


TAG_RACES = 60


def _tag_on_deleted(store: cas.Store, name: str) -> bool:
    tag = store.refs.tags(name).get("prod")
    return tag is not None and tag.number not in store.refs.version_numbers(name)


def test_no_tag_is_left_on_a_deleted_version(tmp_path: Path) -> None:
    url = _url("local", tmp_path)
    cas.open(url).close()
    start = time.time() + 4.0
    _run([(_tagger, (url, start)), (_deleter, (url, start))])
    with cas.open(url) as store:
        # (a put whose number was deleted under it made the next one: a tag on that one is right)
        left = [i for i in range(TAG_RACES) if _tag_on_deleted(store, f"m{i}")]
        assert left == [], f"tags left on deleted versions of m{left}"
        assert store.refs.problems() == []


def test_a_tag_on_a_deleted_version_does_not_resolve(local_store: cas.Store) -> None:
    local_store.put(b"1", "m", tags=["prod"])
    local_store.put(b"2", "m")
    local_store.backend.write(gone_key("m", 1), b"")  # an rm stopped after its first step
    with pytest.raises(cas.RefNotFoundError):
        local_store.resolve("m@prod")


def test_a_tag_move_sorts_after_the_value_it_replaced_whatever_the_clocks(tmp_path: Path) -> None:
    ahead = RefRecord(bytes(32), time.time() + 3600, 1, None)  # moved by a machine an hour ahead
    later = tag_moved_at(ahead, time.time())  # moved here afterwards, by a machine on time
    assert later > ahead.created
    assert newer_tag(RefRecord(b"\1" * 32, later, 2, None), ahead)
    assert not newer_tag(ahead, RefRecord(b"\1" * 32, later, 2, None))
    assert tag_moved_at(RefRecord(bytes(32), time.time() + 10 * 86_400, 1, None), 5.0) == 5.0  # planted: ignored
    with cas.open(tmp_path / "store") as store:
        store.put(b"1", "m")
        store.put(b"2", "m")
        store.backend.write(
            "refs/m/@tag/prod", _encode(RefRecord(bytes.fromhex(store.resolve("m@1").hash), ahead.created, 1, None))
        )
        store.tag("m@2", "prod")
        assert store.refs.tags("m")["prod"].created > ahead.created


def test_fsck_reports_a_version_beside_its_tombstone_as_a_leftover(tmp_path: Path) -> None:
    from cas.keys import gone_key

    with cas.open(tmp_path / "s") as store:
        store.put(1, "m")
        store.put(2, "m")
        assert store.fsck().ok
        store.backend.write(gone_key("m", 2), b"")  # what an rm racing a put could leave
    with cas.open(tmp_path / "s") as fresh:
        report = fresh.fsck()
        # an interrupted rm: the version counts as deleted, so this is a leftover, not damage
        assert report.ok and any("m@2" in line and "tombstone" in line for line in report.leftovers)
        assert "interrupted" in str(report)

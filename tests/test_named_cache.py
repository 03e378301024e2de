"""Gets by name from a process that remembers what it read (issue 20), and pages of names and versions (issue 21).

What a process keeps (version files, decoded artifacts and trees) never
changes while it exists; what can change (the latest version of a name, a
version deleted) must be seen at once. "Another process" here is a second
Store on the same folder: it has caches of its own, and every step is
sequential, so a second Store shows what a second process sees.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cas
from cas import artifacts, history


def test_the_latest_version_made_elsewhere_is_seen_at_once(tmp_path: Path) -> None:
    url = tmp_path / "store"
    with cas.open(url) as here, cas.open(url) as there:
        here.put({"v": 1}, "model")
        assert here.get("model") == {"v": 1}  # now remembered here
        there.put({"v": 2}, "model")
        assert here.get("model") == {"v": 2}
        assert here.resolve("model").number == 2
        there.put({"v": 3}, "model")
        there.delete("model@3")
        there.put({"v": 4}, "model")  # number 4: after a deleted number
        assert here.resolve("model").number == 4
        there.delete("model@4")
        assert here.resolve("model").number == 2  # the latest deleted: the one before


def test_a_version_deleted_elsewhere_is_gone_here(tmp_path: Path) -> None:
    url = tmp_path / "store"
    with cas.open(url) as here, cas.open(url) as there:
        here.put(b"one", "m")
        here.put(b"two", "m")
        assert here.get("m@1") == b"one"
        there.delete("m@1")
        with pytest.raises(cas.RefNotFoundError):
            here.get("m@1")
        there.delete("m")
        with pytest.raises(cas.RefNotFoundError):
            here.get("m")


def test_a_get_after_a_put_reads_only_what_may_have_changed(local_store: cas.Store) -> None:
    local_store.put({"a": 1}, "n")
    reads: Counter[str] = Counter()
    backend = local_store.backend
    original = backend.read

    def counting(key: str) -> bytes:
        reads[key.split("/")[0]] += 1
        return original(key)

    backend.read = counting  # type: ignore[method-assign]
    for _ in range(3):
        assert local_store.get("n") == {"a": 1}
        assert local_store.get("n@1") == {"a": 1}
    assert reads["objects"] == 0 and reads["refs"] == 0, reads  # the ref, artifact and tree are remembered


def test_what_is_remembered_equals_what_is_read(tmp_path: Path) -> None:
    with cas.open(tmp_path / "store") as store:
        ref = store.put({"x": [1, 2.5, "s"], "y": b"\0" * 3_000_000}, "n")  # 3 MB: beyond one chunk
        here = artifacts.artifact(store.repository, ref)
        tree = artifacts.tree(store.repository, here)
    with cas.open(tmp_path / "store") as fresh:
        assert artifacts.artifact(fresh.repository, ref) == here
        assert artifacts.tree(fresh.repository, here) == tree


def test_names_page(local_store: cas.Store) -> None:
    for i in range(25):
        local_store.put(i, f"n{i:02d}")
    local_store.put(100, "n03")
    page = history.names_page(local_store.repository, offset=2, limit=3)
    assert [(e.name, e.latest.number, e.versions) for e in page] == [("n02", 1, 1), ("n03", 2, 2), ("n04", 1, 1)]
    assert page[1].latest.hash == local_store.resolve("n03").hash
    assert len(history.names_page(local_store.repository)) == 25
    with pytest.raises(cas.InvalidArgumentError):
        history.names_page(local_store.repository, offset=-1)


@settings(max_examples=15, deadline=None)
@given(count=st.integers(0, 30), offset=st.integers(0, 35), limit=st.one_of(st.none(), st.integers(0, 35)))
def test_version_history_pages_are_slices_of_the_whole(tmp_path_factory: pytest.TempPathFactory, count: int,
                                                       offset: int, limit: int | None) -> None:  # fmt: skip
    with cas.open(tmp_path_factory.mktemp("s") / "store") as store:
        for i in range(count):
            store.put(i, "m", new_version=True)
        if count:
            store.delete("m@1")
        whole = [v.ref.number for v in history.version_history(store.repository, "m")] if count else []
        assert whole == list(range(count, 1, -1))
        page = history.version_history(store.repository, "m", offset=offset, limit=limit) if count else []
        end = None if limit is None else offset + limit
        assert [v.ref.number for v in page] == whole[offset:end]


def test_a_page_of_versions_reads_only_its_versions(local_store: cas.Store) -> None:
    for i in range(200):
        local_store.put(i, "m", new_version=True)
    with cas.open(local_store.url) as fresh:
        reads: Counter[str] = Counter()
        original = fresh.backend.read

        def counting(key: str) -> bytes:
            if key.startswith("refs/"):
                reads["refs"] += 1
            return original(key)

        fresh.backend.read = counting  # type: ignore[method-assign]
        page = history.version_history(fresh.repository, "m", offset=10, limit=5)
        assert [v.ref.number for v in page] == [190, 189, 188, 187, 186]
        assert reads["refs"] == 5


@pytest.mark.slow
def test_names_page_on_s3_takes_hashes_from_the_reverse_index(seaweed: object) -> None:
    import uuid

    from conftest import BUCKET

    from cas.keys import names_key

    with cas.open(f"s3://{BUCKET}/{uuid.uuid4().hex}") as store:
        with store.batch():
            refs = [store.put(i, f"n{i:02d}") for i in range(20)]
        store.put("labelled", "n05", version="v1")  # a label: its file is read for the label
        store.backend.delete(names_key(bytes.fromhex(refs[7].hash), "n07", 1))  # a missing index entry: read
    with cas.open(store.url) as fresh:  # remembers no version file
        reads: Counter[str] = Counter()
        original = fresh.backend.read

        def counting(key: str) -> bytes:
            reads[key.split("/")[0]] += 1
            return original(key)

        fresh.backend.read = counting  # type: ignore[method-assign]
        page = history.names_page(fresh.repository)
        assert reads["refs"] == 2  # n05 (labelled) and n07 (not indexed); the 18 others from names/
        assert [e.name for e in page] == [f"n{i:02d}" for i in range(20)]
        for entry in page:
            assert entry.latest.hash == fresh.resolve(entry.name).hash
            assert str(entry.latest) == str(fresh.resolve(entry.name))
        assert str(page[5].latest) == "n05@v1"

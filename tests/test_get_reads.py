"""Large reads (cas.restore): runs of chunks read with one vectored read each, every chunk still verified.

The files here are 3-6 MiB, over the 1 MiB threshold above which a file is cut
into packed chunks (48-256 KiB); ``RUN_BYTES`` and ``SPAN_BYTES`` are made small
so that a file spans many runs and tasks, as a 256 MiB one does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import cas
from cas import restore
from cas.consolidate import consolidate
from cas.errors import CorruptObjectError, IntegrityError, ObjectNotFoundError
from cas.hashing import from_hex
from cas.keys import object_key, pack_key
from cas.objects import FileEntry, Tree
from cas.objectstore import ObjectStore
from cas.trees import TreeReader


@pytest.fixture(autouse=True)
def _small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore, "RUN_BYTES", 300 << 10)
    monkeypatch.setattr(restore, "SPAN_BYTES", 1 << 20)


def _entry(store: cas.Store, ref: cas.Ref, path: str) -> FileEntry:
    from cas import artifacts

    art = artifacts.artifact(store.repository, ref)
    tree = Tree.from_bytes(store.objects.get_object(art.tree))
    return next(e for e in tree.entries if e.path == path)


def _runs(objects: ObjectStore, entry: FileEntry) -> list[list[restore._Run]]:
    """The file's runs, span by span, as a read plans them."""
    return list(restore._planned_spans(objects, entry))


def _pack_path(store: cas.Store) -> Path:
    (key,) = [k for k in store.backend.list("packs/")]
    return Path(store.backend.root) / key  # type: ignore[attr-defined]


def _damage(store: cas.Store, entry: FileEntry, which: int, where: int) -> None:
    """Flip one byte of chunk ``which`` of ``entry``: at ``where`` bytes after its header's start."""
    loc = store.objects.locate(entry.chunks[which][0])
    assert loc is not None
    path = _pack_path(store)
    data = bytearray(path.read_bytes())
    data[loc.entry.offset + where] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def big(local_store: cas.Store) -> tuple[cas.Store, bytes, cas.Ref]:
    data = os.urandom(5 << 20)
    ref = local_store.put(data, "big")
    return local_store, data, ref


def test_runs_cover_the_file_in_order_and_respect_the_limits(big: tuple[cas.Store, bytes, cas.Ref]) -> None:
    store, data, ref = big
    entry = _entry(store, ref, "data")
    spans = _runs(store.objects, entry)
    runs = [run for span in spans for run in span]
    assert len(runs) > 10 and len(spans) >= 5
    assert all(sum(run.size for run in span[:-1]) < restore.SPAN_BYTES for span in spans)
    offset = 0
    for run in runs:
        assert run.offset == offset
        assert run.size == sum(size for _, size, _ in run.chunks)
        assert run.size <= restore.RUN_BYTES or len(run.chunks) == 1
        offset += run.size
    assert offset == len(data)
    assert [d for run in runs for d, _, _ in run.chunks] == [d for d, _ in entry.chunks]


def test_get_bytes_array_and_export_give_the_stored_bytes(local_store: cas.Store, tmp_path: Path) -> None:
    arr = np.random.default_rng(1).random((6 << 20) // 8).reshape(-1, 64)
    local_store.put(arr, "arr")
    assert np.array_equal(local_store.get("arr"), arr)
    data = arr.tobytes()
    local_store.put(data, "raw")  # same bytes, same chunks: read again through the bytes path (huge pages hint)
    assert local_store.get("raw") == data
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    local_store.put(source, "file")
    out = local_store.export("file", tmp_path / "out.bin")
    assert out.read_bytes() == data


def test_compressible_chunks_are_read_run_by_run(local_store: cas.Store) -> None:
    data = b"".join(b"%08d,%08d,text that repeats\n" % (i, i * 7 % 1000) for i in range(150_000))
    assert len(data) > (3 << 20)
    ref = local_store.put(data, "csv")
    entry = _entry(local_store, ref, "data")
    runs = [run for span in _runs(local_store.objects, entry) for run in span]
    assert {run.codec for run in runs} == {1}  # zstd
    assert local_store.get(ref) == data


@pytest.mark.parametrize("where", [0, 5, 15, 16, 1000])  # magic, codec byte, size field, first and a later payload byte
def test_a_damaged_chunk_in_a_run_is_refused_everywhere(
    big: tuple[cas.Store, bytes, cas.Ref], tmp_path: Path, where: int
) -> None:
    store, _, ref = big
    entry = _entry(store, ref, "data")
    _damage(store, entry, len(entry.chunks) // 2, where)
    with cas.open(store.url) as fresh:
        with pytest.raises((IntegrityError, CorruptObjectError)):
            fresh.get(ref)
        target = tmp_path / "out" / "x.bin"
        target.parent.mkdir()
        with pytest.raises((IntegrityError, CorruptObjectError)):
            fresh.export(ref, target)
        assert list(target.parent.iterdir()) == []  # neither the file nor its temporary


def test_a_damaged_payload_names_its_chunk(big: tuple[cas.Store, bytes, cas.Ref]) -> None:
    store, _, ref = big
    entry = _entry(store, ref, "data")
    _damage(store, entry, 3, 100)
    with cas.open(store.url) as fresh, pytest.raises(IntegrityError, match=entry.chunks[3][0].hex()[:12]):
        fresh.get(ref)


def test_a_truncated_pack_is_corrupt_not_short(big: tuple[cas.Store, bytes, cas.Ref]) -> None:
    store, _, ref = big
    path = _pack_path(store)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index/ copy still lists every chunk
    with cas.open(store.url) as fresh, pytest.raises(CorruptObjectError, match="truncated"):
        fresh.get(ref)


def test_a_tree_size_the_pack_index_contradicts_is_refused_before_reading(
    big: tuple[cas.Store, bytes, cas.Ref],
) -> None:
    store, _, ref = big
    entry = _entry(store, ref, "data")
    (d0, n0), (d1, n1) = entry.chunks[:2]
    lying = FileEntry("data", entry.size, ((d0, n0 + 1), (d1, n1 - 1), *entry.chunks[2:]), hash=entry.hash)
    with pytest.raises(CorruptObjectError, match="pack entry"):
        _runs(store.objects, lying)
    with pytest.raises(CorruptObjectError, match="pack index"):
        TreeReader(store.objects, Tree((lying,)))  # (what a get makes first: before it allocates or reads)


def test_loose_and_packed_chunks_mix_in_one_file(local_store: cas.Store) -> None:
    objects: ObjectStore = local_store.objects
    loose = os.urandom(200_000)
    d_loose = objects.put_object(loose, loose=True)
    packed = os.urandom(3 << 20)
    ref = local_store.put(packed, "p")
    entry = _entry(local_store, ref, "data")
    mixed = FileEntry(
        "data", len(loose) * 2 + len(packed), ((d_loose, len(loose)), *entry.chunks, (d_loose, len(loose))), hash=None
    )
    runs = [run for span in _runs(objects, mixed) for run in span]
    assert runs[0].pack is None and runs[-1].pack is None
    assert restore.read_bytes(objects, mixed) == loose + packed + loose
    out = bytearray(mixed.size)
    restore.read_into(objects, mixed, memoryview(out))
    assert out == loose + packed + loose


def test_a_missing_chunk_is_not_found(local_store: cas.Store) -> None:
    ref = local_store.put(os.urandom(3 << 20), "p")
    entry = _entry(local_store, ref, "data")
    absent = from_hex("ab" * 32)
    broken = FileEntry("data", entry.size + 10, (*entry.chunks, (absent, 10)), hash=None)
    with pytest.raises(ObjectNotFoundError, match="abababababab"):
        restore.read_bytes(local_store.objects, broken)


def test_the_huge_page_hint_leaves_the_bytes_usable() -> None:
    from cas.buffers import filled_bytes

    def fill(view: memoryview) -> None:
        restore._prefer_huge_pages(view)
        view[:] = b"\x07" * len(view)

    result = filled_bytes(16 << 20, fill)
    assert len(result) == 16 << 20 and result[:1] == result[-1:] == b"\x07"


def test_a_packed_object_read_first_falls_back_to_a_whole_loose_copy(tmp_path: Path) -> None:
    """Objects known to be packed are read from their pack first; a damaged pack copy is not the last word."""
    with cas.open(tmp_path / "s") as store:
        with store.batch():
            ref = store.put({"packed": True})
        d = bytes.fromhex(ref.hash)
        raw = store.objects.get_object(d)
        loc = store.objects.locate(d)
        assert loc is not None  # packed by the batch
        assert store.objects.put_object(raw, loose=True) == d  # and loose as well
        pack = tmp_path / "s" / pack_key(loc.pack)
        data = bytearray(pack.read_bytes())
        data[loc.entry.offset + loc.entry.stored - 1] ^= 1  # the packed copy's last byte
        pack.write_bytes(bytes(data))
    with cas.open(tmp_path / "s") as fresh:
        fresh.objects.ensure_index()
        assert fresh.objects.get_object(d) == raw
        assert fresh.get(ref) == {"packed": True}
        (tmp_path / "s" / object_key(d)).unlink()  # without the loose copy, the damage is an error
    with cas.open(tmp_path / "s") as again:
        again.objects.ensure_index()
        with pytest.raises(cas.IntegrityError):
            again.objects.get_object(d)


def test_a_get_plans_with_the_locations_its_size_check_found(
    big: tuple[cas.Store, bytes, cas.Ref], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, data, ref = big
    asked: list[int] = []
    locate_many = ObjectStore.locate_many

    def counting(self: ObjectStore, digests: object) -> object:
        found = locate_many(self, digests)  # type: ignore[arg-type]
        asked.append(len(found))
        return found

    monkeypatch.setattr(ObjectStore, "locate_many", counting)
    with cas.open(store.url) as fresh:
        assert fresh.get(ref) == data
    assert asked == [len(_entry(store, ref, "data").chunks)]  # once, by check_expansion


def test_a_reader_whose_chunks_moved_since_it_located_them_reads_them_where_they_are(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    first, second = os.urandom(5 << 20), os.urandom(3 << 20)
    with cas.open(url) as store:
        ref = store.put(first, "first")
        store.put(second, "second")
        packs_before = set(store.backend.list("packs/"))
        assert len(packs_before) == 2
    with cas.open(url) as reader_store:
        entry = _entry(reader_store, ref, "data")
        reader = TreeReader(reader_store.objects, Tree((entry,)))  # locates every chunk now
        with cas.open(url) as other:
            consolidate(other.repository, force=True)  # merges both packs into a new one, removes them
            assert not packs_before & set(other.backend.list("packs/"))
        assert reader.read_bytes("data") == first
        out = tmp_path / "out.bin"
        reader.restore_file("data", out)
        assert out.read_bytes() == first

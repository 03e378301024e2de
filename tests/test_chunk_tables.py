"""Chunk tables (midx/) and consolidation: lookups in O(1) reads, safe merging, hostile tables refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cas
from cas import chunktables
from cas.backends.fsspec_backend import FsspecBackend
from cas.chunktables import ChunkTable
from cas.config import StoreConfig
from cas.consolidate import consolidate
from cas.errors import UnsupportedFormatError
from cas.hashing import digest
from cas.keys import table_key
from cas.objects import PackEntry


def _entries(seed: int, n: int) -> list[PackEntry]:
    rng = np.random.default_rng(seed)
    return [PackEntry(rng.bytes(32), 100 * i, 90, 80 + i, i % 2) for i in range(n)]


def _table(backend: FsspecBackend, packs: dict[bytes, tuple[int, list[PackEntry]]]) -> ChunkTable:
    data = chunktables.build(packs)
    table_id = digest(data)
    backend.write(table_key(table_id), data)
    return ChunkTable(backend, table_id)


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "read-by-ranges"])
@given(counts=st.lists(st.integers(0, 300), min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_every_row_is_found_and_nothing_else(whole: bool, counts: list[int], seed: int) -> None:
    backend = FsspecBackend(f"memory://tables-{seed}-{whole}")
    packs = {bytes([i]) * 32: (1000 + i, _entries(seed + i, n)) for i, n in enumerate(counts)}
    old = chunktables.READ_WHOLE, chunktables.KEEP_FANOUT
    try:
        if not whole:
            chunktables.READ_WHOLE = chunktables.KEEP_FANOUT = 0
        table = _table(backend, packs)
        expected = {e.digest: (pack, e) for pack, (_, es) in packs.items() for e in es}
        absent = [np.random.default_rng(~seed & 0xFFFF).bytes(32) for _ in range(20)]
        for d, (pack, entry) in expected.items():
            found = table.lookup(d)
            assert found is not None and found.pack == pack and found.entry == entry
        for d in absent:
            assert table.lookup(d) is None
        many = table.lookup_many([*expected, *absent])
        assert {d: (loc.pack, loc.entry) for d, loc in many.items()} == expected
        table.verify()
        assert {p: s for p, s in table.pack_list()} == {p: s for p, (s, _) in packs.items()}
        assert table.entries_by_pack() == {p: sorted(es, key=lambda e: e.offset) for p, (_, es) in packs.items()}
        if expected:
            some = next(iter(expected))
            assert some in table.find_prefix(some.hex()[:6])
    finally:
        chunktables.READ_WHOLE, chunktables.KEEP_FANOUT = old


def test_a_lookup_reads_two_small_ranges_of_a_large_table() -> None:
    backend = FsspecBackend("memory://tables-large")
    entries = _entries(7, 200_000)
    table = _table(backend, {b"\x01" * 32: (1 << 30, entries)})
    assert table.size > chunktables.READ_WHOLE  # read by ranges
    reads: list[int] = []
    original = backend.read_range

    def counting(key: str, offset: int, length: int) -> bytes:
        reads.append(length)
        return original(key, offset, length)

    backend.read_range = counting  # type: ignore[method-assign]
    for e in entries[:50]:
        found = table.lookup(e.digest)
        assert found is not None and found.entry == e
    # The fan-out is read once (and kept); then one bucket per lookup and the pack's row once.
    assert len(reads) <= 2 + 50
    assert sorted(reads)[-2] <= 64 * chunktables.MAX_BUCKET


def _fill(store: cas.Store, batches: int, per_batch: int = 3) -> dict[str, bytes]:
    values = {}
    for i in range(batches):
        with store.batch():
            for j in range(per_batch):
                values[f"v{i}-{j}"] = os.urandom(5000 + 7 * i + j)
                store.put(values[f"v{i}-{j}"], f"v{i}-{j}")
    values["big"] = os.urandom(3 << 20)
    store.put(values["big"], "big")
    return values


def _check(url: str, values: dict[str, bytes]) -> None:
    with cas.open(url) as store:
        for name, value in values.items():
            assert store.get(name) == value, name


def test_consolidation_folds_every_index_file_into_one_table(store_url: str) -> None:
    with cas.open(store_url) as store:
        values = _fill(store, 20)
        assert store.repository.config.format == 1  # a new store stays readable by older cas
        report = consolidate(store.repository, merge_packs=False)
        assert report.tables_written == 1 and report.index_files_merged >= 20
        backend = store.backend
        assert list(backend.list("index/")) == []
        assert len(list(backend.list("midx/"))) == 1
        assert json.loads(backend.read("config"))["format"] == 2
    _check(store_url, values)
    with cas.open(store_url) as store:
        assert store.fsck().ok


def test_tables_stay_geometric(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    values: dict[str, bytes] = {}
    with cas.open(url) as store:
        for round_ in range(12):
            for i in range(3):
                values[f"r{round_}-{i}"] = os.urandom(70_000 + 100 * round_ + i)
                store.put(values[f"r{round_}-{i}"], f"r{round_}-{i}")
            consolidate(store.repository, force=True, merge_packs=False)
            tables = store.objects.tables()
            sizes = [t.entry_count for t in tables]
            # each table holds more than twice the rows of all smaller ones together
            for k in range(1, len(sizes)):
                assert sizes[k] > 2 * sum(sizes[:k]) or sizes[k] >= sizes[k - 1], sizes
            assert len(tables) <= 4
    _check(url, values)


def test_small_packs_are_merged_and_everything_reads_back(store_url: str) -> None:
    with cas.open(store_url) as store:
        values = _fill(store, 15)
        before = len(list(store.backend.list("packs/")))
        report = consolidate(store.repository, force=True)
        after = len(list(store.backend.list("packs/")))
        assert report.packs_merged >= 15 and after < before
    _check(store_url, values)
    with cas.open(store_url) as store:
        assert store.fsck().ok


def test_gc_after_consolidation_keeps_every_reachable_pack(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        values = _fill(store, 10)
        garbage = os.urandom(2 << 20)
        store.put(garbage)
        consolidate(store.repository, force=True, merge_packs=False)
        store.gc(grace=0)
        assert store.fsck().ok
    _check(url, values)


def test_a_reader_that_loaded_a_table_follows_a_repack(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        values = _fill(store, 6)
        consolidate(store.repository, force=True, merge_packs=False)
    with cas.open(url) as reader:
        assert reader.get("v0-0") == values["v0-0"]  # tables listed, locations known
        with cas.open(url) as other:
            consolidate(other.repository, force=True)  # moves every small object to a new pack
        for name, value in values.items():
            assert reader.get(name) == value


def test_a_store_with_a_newer_format_is_refused() -> None:
    config = json.loads(StoreConfig().to_bytes())
    config["format"] = 3
    with pytest.raises(UnsupportedFormatError):
        StoreConfig.from_bytes(json.dumps(config).encode())


def _plant_table(store: cas.Store, rows_for: dict[bytes, tuple[int, list[PackEntry]]]) -> None:
    data = chunktables.build(rows_for)
    store.backend.write(table_key(digest(data)), data)


def _pack_of_big(store: cas.Store) -> tuple[bytes, list[PackEntry]]:
    (pack_id, entries), *_ = sorted(store.objects.pack_entries().items(), key=lambda kv: -len(kv[1]))
    return pack_id, entries


@pytest.mark.parametrize("lie", ["offset", "stored", "raw_size", "pack", "codec"])
def test_a_lying_table_never_yields_other_bytes(tmp_path: Path, lie: str) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        big = os.urandom(2 << 20)
        store.put(big, "big")
        consolidate(store.repository, force=True, merge_packs=False)
        pack_id, entries = _pack_of_big(store)
        size = dict(store.objects.tables()[0].pack_list())[pack_id]
        for key in list(store.backend.list("midx/")):
            store.backend.delete(key)
        forged = []
        for e in entries:
            if lie == "offset":
                e = PackEntry(e.digest, e.offset + 16, e.stored, e.raw_size, e.codec)
            elif lie == "stored":
                e = PackEntry(e.digest, e.offset, 1 << 40, e.raw_size, e.codec)
            elif lie == "raw_size":
                e = PackEntry(e.digest, e.offset, e.stored, e.raw_size + 1, e.codec)
            elif lie == "codec":
                e = PackEntry(e.digest, e.offset, e.stored, e.raw_size, 1 - e.codec)
            forged.append(e)
        packs = {pack_id: (size, forged)}
        if lie == "pack":
            packs = {b"\x07" * 32: (size, forged)}
        _plant_table(store, packs)
    with cas.open(url) as store:
        with pytest.raises(cas.CasError):
            got = store.get("big")
            assert got == big  # a lie may also be harmless; never other bytes
            raise cas.CasError("read back intact")
        report = store.fsck(repair=True)
        assert not report.ok or lie == "pack"
    with cas.open(url) as store:
        if lie != "pack":
            assert store.get("big") == big  # repaired: the index files came back from the trailers


def test_a_damaged_table_is_reported_and_repaired(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        values = _fill(store, 5)
        consolidate(store.repository, force=True, merge_packs=False)
        (key,) = store.backend.list("midx/")
        data = bytearray(store.backend.read(key))
        data[-1] ^= 0xFF
        store.backend.write(key, bytes(data))
    with cas.open(url) as store:
        report = store.fsck(repair=True)
        assert any("chunk table" in c for c in report.corrupt)
        assert any("index/" in r for r in report.repaired)
    _check(url, values)
    with cas.open(url) as store:
        assert store.fsck().ok


@pytest.mark.parametrize("header", [b"", b"CASMIDX1" + b"\xff" * 24, b"NOTATABL" + bytes(24)])
def test_a_table_with_a_bad_header_is_set_aside(tmp_path: Path, header: bytes) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        values = _fill(store, 3)
        store.backend.write(table_key(digest(header)), header)
    _check(url, values)  # the index files still serve
    with cas.open(url) as store:
        assert not store.fsck().ok


_READER = textwrap.dedent(
    """
    import json, sys, cas
    url, names = sys.argv[1], json.loads(sys.argv[2])
    for _ in range(15):
        with cas.open(url) as s:
            for name, size in names.items():
                assert len(s.get(name)) == size, name
    """
)


@pytest.mark.slow
def test_readers_in_other_processes_survive_consolidations(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        values = _fill(store, 12)
    names = json.dumps({k: len(v) for k, v in values.items()})
    reader = subprocess.Popen([sys.executable, "-c", _READER, url, names], stderr=subprocess.PIPE, text=True)
    with cas.open(url) as store:
        while reader.poll() is None:
            for i in range(3):
                store.put(os.urandom(60_000), f"more{i}")
            consolidate(store.repository, force=True)
    assert reader.returncode == 0, reader.stderr.read()
    _check(url, values)


def test_a_writer_folds_many_index_files_once_the_store_has_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cas.objectstore

    monkeypatch.setattr(cas.objectstore, "AUTO_CONSOLIDATE", 8)
    url = str(tmp_path / "s")
    with cas.open(url) as store:
        first = _fill(store, 12)  # format 1: nothing is folded automatically
        assert len(list(store.backend.list("index/"))) > 8 and not list(store.backend.list("midx/"))
        consolidate(store.repository, merge_packs=False)  # format 2 from here
        more = _fill(store, 30)
        store.objects.refresh_index()
        assert len(list(store.backend.list("index/"))) <= 9
        assert store.repository.config.format == 2
    _check(url, {**first, **more})


def test_a_long_lived_store_lists_the_index_once_for_another_writers_pack(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with cas.open(url) as reader, cas.open(url) as writer:
        reader.put(b"warm", "w")  # the reader has listed the index
        data = os.urandom(8 << 20)
        writer.put(data, "new")  # a pack the reader has not seen
        calls: list[str] = []
        backend = reader.backend
        original = backend.exists

        def exists(key: str) -> bool:
            calls.append(key)
            return original(key)

        backend.exists = exists  # type: ignore[method-assign]
        assert reader.get("new") == data
        assert len(calls) < 5, calls  # not one per chunk (about 100 here)

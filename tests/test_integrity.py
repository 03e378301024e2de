"""Damaged stores: a flipped bit, a truncation or garbage is detected, never returned."""

import os
import random

import pytest

import cas
from cas import objectstore
from cas.backends import Backend
from cas.hashing import digest
from cas.keys import chunkmap_key
from cas.objectstore import object_key


def _fill(url: str) -> dict[str, bytes]:
    payloads = {
        "small": b"tiny",
        "loose": os.urandom(200_000),
        "text": ("a,b,c\n1,2,3\n" * 50_000).encode(),
        "packed": os.urandom(3 << 20),
    }
    with cas.open(url) as s:
        for name, data in payloads.items():
            s.put(data, name)
    return payloads


def _flip(backend: Backend, key: str, pos: int) -> bytes:
    data = bytearray(backend.read(key))
    original = bytes(data)
    data[pos] ^= 1 << random.randrange(8)
    backend.write(key, bytes(data))
    return original


def _read_all(url: str, payloads: dict[str, bytes]) -> None:
    with cas.open(url) as s:
        for name, data in payloads.items():
            assert s.get(name) == data


def test_every_flip_in_loose_objects_is_detected(store_url: str) -> None:
    payloads = _fill(store_url)
    with cas.open(store_url) as s:
        keys = list(s.backend.list("objects/"))
        backend = s.backend
        rng = random.Random(1)
        for key in keys:
            size = len(backend.read(key))
            for pos in {0, 4, 5, 8, 15, 16, size - 1, *rng.sample(range(size), min(size, 6))}:
                original = _flip(backend, key, pos)
                with pytest.raises(cas.IntegrityError):
                    _read_all(store_url, payloads)
                backend.write(key, original)
    _read_all(store_url, payloads)


def test_flips_in_pack_entries_are_detected(store_url: str) -> None:
    payloads = _fill(store_url)
    with cas.open(store_url) as s:
        backend = s.backend
        (pack,) = list(backend.list("packs/"))
        entries = [e for es in s.objects.pack_entries().values() for e in es]
    rng = random.Random(2)
    for entry in rng.sample(entries, 10):
        for pos in (entry.offset, entry.offset + 5, entry.offset + 16, entry.offset + entry.stored - 1):
            original = _flip(backend, pack, pos)
            with pytest.raises(cas.IntegrityError):
                _read_all(store_url, payloads)
            backend.write(pack, original)
    _read_all(store_url, payloads)


def test_truncations_are_detected(store_url: str) -> None:
    payloads = _fill(store_url)
    with cas.open(store_url) as s:
        backend = s.backend
        keys = [k for k in backend.list("") if k.startswith(("objects/", "packs/", "refs/"))]
    for key in keys:
        original = backend.read(key)
        # A pack's last bytes are its own copy of the index, not read by get (fsck checks it).
        cuts = (
            (0, 10, len(original) // 2) if key.startswith("packs/") else (0, 10, len(original) // 2, len(original) - 1)
        )
        for cut in cuts:
            backend.write(key, original[:cut])
            with pytest.raises(cas.CorruptObjectError):
                _read_all(store_url, payloads)
        backend.write(key, original)
    _read_all(store_url, payloads)


def test_garbage_objects_are_corrupt(store: cas.Store) -> None:
    ref = store.put(b"x" * 10_000, "g")
    store.backend.write(object_key(bytes.fromhex(ref.hash)), os.urandom(100))
    with cas.open(store.url) as fresh, pytest.raises(cas.CorruptObjectError):  # this process verified it once
        fresh.get("g")


def test_swapped_objects_are_detected(store: cas.Store) -> None:
    a = store.put(os.urandom(10_000), "a")
    b = store.put(os.urandom(10_000), "b")
    ka, kb = object_key(bytes.fromhex(a.hash)), object_key(bytes.fromhex(b.hash))
    da, db = store.backend.read(ka), store.backend.read(kb)
    store.backend.write(ka, db)
    store.backend.write(kb, da)
    with cas.open(store.url) as fresh, pytest.raises(cas.IntegrityError, match="expected"):
        fresh.get("a")


def test_damaged_pack_index_falls_back_to_the_pack_trailer(store_url: str) -> None:
    payloads = _fill(store_url)
    with cas.open(store_url) as s:
        (key,) = list(s.backend.list("index/"))
        s.backend.write(key, b"garbage")
    _read_all(store_url, payloads)
    with cas.open(store_url) as s:
        (pack,) = list(s.backend.list("packs/"))
        data = s.backend.read(pack)
        s.backend.write(pack, data[:-3] + b"XYZ")  # and the trailer too
    # This process still holds the index it verified from the trailer: the chunks read back right.
    _read_all(store_url, payloads)
    objectstore._verified.clear()  # a new process has no index to go by
    with cas.open(store_url) as s, pytest.raises(cas.IntegrityError, match="packindex|index"):
        s.get("packed")


def test_a_store_opened_again_reads_no_pack_index_again(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pack ids are the digests of their indexes: one verified in this process serves every later handle.
    payloads = _fill(store_url)
    _read_all(store_url, payloads)
    reads: list[str] = []
    with cas.open(store_url) as s:
        real = s.backend.read
        monkeypatch.setattr(s.backend, "read", lambda key, *a, **k: reads.append(key) or real(key, *a, **k))
        assert s.get("packed") == payloads["packed"]
    assert not [k for k in reads if k.startswith("index/")]
    objectstore._verified.clear()
    with cas.open(store_url) as s:
        real = s.backend.read
        monkeypatch.setattr(s.backend, "read", lambda key, *a, **k: reads.append(key) or real(key, *a, **k))
        assert s.get("packed") == payloads["packed"]
    assert [k for k in reads if k.startswith("index/")]  # the test can fail: a new process reads them


def test_damaged_ref_is_corrupt(store: cas.Store) -> None:
    store.put(b"x", "r")
    key = "refs/r/@v/1"
    data = bytearray(store.backend.read(key))
    data[20] ^= 0xFF
    store.backend.write(key, bytes(data))
    with cas.open(store.url) as fresh, pytest.raises(cas.CorruptObjectError):
        fresh.get("r")


def test_a_damaged_chunkmap_an_older_cas_left_changes_nothing(store: cas.Store) -> None:
    data = os.urandom(3 << 20)
    store.put(data, "x")
    store.backend.write(chunkmap_key(digest(data)), b"junk")  # a put no longer reads chunk maps
    ref = store.put(data, "x", new_version=True)
    assert store.get(ref) == data

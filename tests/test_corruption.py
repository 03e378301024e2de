"""Damage to every kind of stored file: reads never return wrong bytes, and fsck reports every flip.

Byte flips (every byte of small files, a sample of large ones) and
truncations of loose objects, packs, pack index copies, refs, chunk maps,
run objects and cache entries. A read either returns the right bytes (a
damaged index copy, chunk map or cache entry is only a cache: the pack's own
index, a re-cut or a rerun stand in) or raises IntegrityError; fsck reports
the damage either way.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import cas
from cas import codec
from cas.hashing import digest
from cas.keys import chunkmap_key
from cas.objects import ChunkMap

FLIPS_PER_LARGE_FILE = 40
FOLDERS = ("objects/", "packs/", "index/", "refs/", "chunkmaps/", "cache/")


def _fill(url: str) -> tuple[dict[str, bytes], str]:
    payloads = {"small": b"tiny", "loose": os.urandom(200_000), "packed": os.urandom(3 << 20),
                "text": ("a,b,c\n1,2,3\n" * 30_000).encode()}  # fmt: skip
    with cas.open(url) as store:
        for name, data in payloads.items():
            store.put(data, name)
        run = store.record_run(step="s", inputs={"x": "small"}, outputs={"y": "loose"})
        # A chunk map, as cas wrote one per chunked file before tree version 2 (stores may hold them).
        (entry,) = store._tree(store._artifact(store.resolve("packed"))).entries
        chunkmap = ChunkMap(digest(payloads["packed"]), entry.size, entry.chunks)
        store.backend.write(chunkmap_key(chunkmap.hash), codec.seal(chunkmap.to_bytes()))
    return payloads, run.id


def _check(url: str, payloads: dict[str, bytes], run_id: str) -> tuple[bool, bool]:
    """(every read returned the right bytes, some read raised IntegrityError); wrong bytes fail the test."""
    right, refused = True, False
    with cas.open(url) as store:
        for name, data in payloads.items():
            try:
                got = store.get(name)
            except cas.IntegrityError:
                right, refused = False, True
                continue
            assert got == data, f"wrong bytes returned for {name}"
        try:
            run = store.run(run_id)
            assert run.outputs["y"].hex() == store.resolve("loose").hash
            store.cached_run(run.cache_key)
        except cas.IntegrityError:
            right, refused = False, True
        except cas.ObjectNotFoundError:
            right = False  # a damaged run object no longer names a run
    return right, refused


def _fsck_reports(url: str) -> bool:
    with cas.open(url) as store:
        report = store.fsck()
    return not report.ok


@pytest.mark.slow  # thousands of damaged copies, each read back and fsck'd: half a minute
def test_every_flip_and_truncation_is_refused_or_harmless_and_fsck_reports_it(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    payloads, run_id = _fill(url)
    root = tmp_path / "store"
    files = sorted(str(p.relative_to(root)) for folder in FOLDERS for p in (root / folder).rglob("*") if p.is_file())
    assert {f.split("/")[0] for f in files} == {f.rstrip("/") for f in FOLDERS}
    rng = random.Random(3)
    flips = truncations = harmless = 0
    for key in files:
        path = root / key
        original = path.read_bytes()
        positions = range(len(original)) if len(original) <= 300 else sorted(
            {0, 4, 5, 8, 15, 16, len(original) - 1, *rng.sample(range(len(original)), FLIPS_PER_LARGE_FILE)}
        )  # fmt: skip
        damaged = [bytes(original[:p]) + bytes([original[p] ^ (1 << rng.randrange(8))]) + original[p + 1 :]
                   for p in positions]  # fmt: skip
        damaged += [original[:cut] for cut in {0, 1, 15, len(original) // 2, len(original) - 1}]
        for i, data in enumerate(damaged):
            path.write_bytes(data)
            right, refused = _check(url, payloads, run_id)
            if key.startswith(("objects/", "refs/")) or (key.startswith("packs/") and i < len(positions)):
                # The objects and refs reads need: refused, never wrong (a pack's trailer is only its index copy).
                assert refused or not right or _only_trailer(key, positions, i, original), (key, i)
            if not _fsck_reports(url):
                # Some bits of a zstd frame change no decoded byte: the content still hashes right.
                assert _decodes_unchanged(key, data, original), f"fsck missed damage to {key} (damage {i})"
                harmless += 1
            flips += i < len(positions)
            truncations += i >= len(positions)
        path.write_bytes(original)
    assert _check(url, payloads, run_id) == (True, False)
    assert harmless <= flips // 50
    print(
        f"\n{len(files)} files, {flips} byte flips, {truncations} truncations: none returned wrong data; "
        f"fsck reported all but {harmless} flips inside zstd frames that left the content unchanged"
    )


def _decodes_unchanged(key: str, damaged: bytes, original: bytes) -> bool:
    """A damaged compressed object that still decodes to exactly its original content."""
    if len(damaged) != len(original) or damaged[codec.CODEC_BYTE] != 1:
        return False
    try:
        return bytes(codec.decode(damaged, key=key)) == bytes(codec.decode(original, key=key))
    except cas.CasError:
        return False


def _only_trailer(key: str, positions: range | list[int], i: int, original: bytes) -> bool:
    """A flip in a pack's trailer (its copy of the index) leaves every chunk readable."""
    index_length = int.from_bytes(original[-12:-8], "little")
    return i < len(positions) and positions[i] >= len(original) - 12 - index_length


@pytest.mark.parametrize("kind", ["flip", "cut"])
def test_damaged_run_objects_are_never_read_as_runs(tmp_path: Path, kind: str) -> None:
    url = str(tmp_path / "store")
    _, run_id = _fill(url)
    with cas.open(url) as store:
        key = f"objects/{run_id[:2]}/{run_id[2:]}"
        data = bytearray(store.backend.read(key))
        if kind == "flip":
            data[len(data) // 2] ^= 0x10
        else:
            del data[len(data) // 2 :]
        store.backend.write(key, bytes(data))
    with cas.open(url) as store:
        with pytest.raises(cas.IntegrityError):
            store.run(run_id)
        assert [r.id for r in store.runs()] == []  # the log skips what it can not read
        assert not store.fsck().ok

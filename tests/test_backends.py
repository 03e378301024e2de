"""One set of behaviours, checked on every backend."""

import threading
import time
from pathlib import Path

import pytest

from cas.backends import Backend, LocalBackend


def test_write_read_and_ranges(backend: Backend) -> None:
    backend.write("objects/ab/cd", b"0123456789")
    assert backend.read("objects/ab/cd") == b"0123456789"
    assert backend.read_range("objects/ab/cd", 2, 3) == b"234"
    assert backend.size("objects/ab/cd") == 10
    bufs = [memoryview(bytearray(3)), memoryview(bytearray(4))]
    assert backend.readv("objects/ab/cd", 1, bufs) == 7
    assert bytes(bufs[0]) + bytes(bufs[1]) == b"1234567"
    backend.write("objects/ab/cd", b"new")
    assert backend.read("objects/ab/cd") == b"new"


def test_missing_keys(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.read("nope/x")
    with pytest.raises(FileNotFoundError):
        backend.delete("nope/x")
    assert not backend.exists("nope/x")
    assert list(backend.list("nope/")) == []
    with pytest.raises(FileNotFoundError):  # a freshen of what gc removed must say so, never create it
        backend.touch("nope/x")
    assert not backend.exists("nope/x")


def test_create_is_exclusive(backend: Backend) -> None:
    assert backend.create("refs/x/@v/1", b"first")
    assert not backend.create("refs/x/@v/1", b"second")
    assert backend.read("refs/x/@v/1") == b"first"


def test_create_race_has_one_winner(backend: Backend) -> None:
    wins = []

    def attempt(i: int) -> None:
        if backend.create("refs/race/@v/1", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert backend.read("refs/race/@v/1") == str(wins[0]).encode()


def test_list_is_recursive_and_relative(backend: Backend) -> None:
    for key in ("refs/a/@v/1", "refs/a/@v/2", "refs/b/c/@v/1", "objects/00/11"):
        backend.write(key, b"x")
    assert sorted(backend.list("refs/")) == ["refs/a/@v/1", "refs/a/@v/2", "refs/b/c/@v/1"]
    assert sorted(backend.list("refs/a/@v")) == ["refs/a/@v/1", "refs/a/@v/2"]


def test_delete_touch_mtime(backend: Backend) -> None:
    backend.write("k/v", b"x")
    first = backend.mtime("k/v")
    time.sleep(1.1)  # S3 keeps whole seconds
    backend.touch("k/v")
    assert backend.mtime("k/v") > first
    assert backend.read("k/v") == b"x"
    backend.delete("k/v")
    assert not backend.exists("k/v")


def test_sink_is_invisible_until_commit(backend: Backend) -> None:
    sink = backend.open_sink()
    sink.pwrite(5, [b"world"])
    sink.pwrite(0, [b"hel", memoryview(b"lo")])
    assert not backend.exists("packs/aa/p")
    sink.commit("packs/aa/p")
    assert backend.read("packs/aa/p") == b"helloworld"


def test_aborted_sink_leaves_nothing(backend: Backend) -> None:
    sink = backend.open_sink()
    sink.pwrite(0, [b"partial"])
    sink.abort()
    assert not backend.exists("packs/aa/p")
    assert [k for k in backend.list("") if not k.startswith("tmp/")] == []


def test_keys_cannot_escape(backend: Backend) -> None:
    with pytest.raises(ValueError):
        backend.write("../escape", b"x")
    with pytest.raises(ValueError):
        backend.read("/etc/passwd")


def test_concurrent_range_reads_of_many_files_never_mix_them_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many more files than the descriptor cache holds, read from 16 threads: each read gets its own file's bytes."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from cas.backends import local

    monkeypatch.setattr(local, "_MAX_OPEN", 4)  # evictions all the time
    backend = LocalBackend(str(tmp_path / "b"))
    keys = [f"packs/{i:03d}" for i in range(100)]
    for i, key in enumerate(keys):
        backend.write(key, bytes([i % 256]) * 4096)

    def reads(seed: int) -> int:
        rng = random.Random(seed)
        wrong = 0
        for _ in range(3000):
            i = rng.randrange(len(keys))
            try:
                wrong += backend.read_range(keys[i], rng.randrange(4000), 64) != bytes([i % 256]) * 64
            except OSError:  # a closed descriptor
                wrong += 1
        return wrong

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(reads, range(16))) == 0
    backend.close()


def test_list_hex_lists_what_list_does(backend: Backend) -> None:
    keys = {f"names/{d}{'0' * 63}/model/@v/{i}" for i, d in enumerate("0123456789abcdef")}
    for key in keys:
        backend.write(key, b"")
    backend.write("namesake/0", b"")  # a neighbour with the same prefix is not listed
    assert set(backend.list_hex("names/")) == set(backend.list("names/")) == keys
    assert list(backend.list_hex("nothing/")) == []


def test_delete_if_old_keeps_what_was_refreshed(backend: Backend) -> None:
    backend.write("packs/ab/old", b"x" * 100)
    backend.write("packs/ab/young", b"y" * 100)
    cutoff = time.time() + 0.5  # everything written so far is older than this...
    assert backend.delete_if_old("packs/ab/old", cutoff)
    assert not backend.exists("packs/ab/old")
    time.sleep(2.1)  # object stores keep whole seconds
    backend.touch("packs/ab/young")  # ...unless a writer refreshed it after gc looked
    assert not backend.delete_if_old("packs/ab/young", cutoff)
    assert backend.read("packs/ab/young") == b"y" * 100
    with pytest.raises(FileNotFoundError):
        backend.delete_if_old("packs/ab/gone", cutoff)
    if isinstance(backend, LocalBackend):
        assert list(backend.list("tmp/")) == []  # nothing left aside


def test_delete_many_if_old_says_per_key_what_it_did(backend: Backend) -> None:
    for name in ("a", "b", "c"):
        backend.write(f"objects/ab/{name}", name.encode())
    cutoff = time.time() + 0.5
    time.sleep(2.1)  # object stores keep whole seconds
    backend.touch("objects/ab/b")  # refreshed after gc looked: kept
    got = backend.delete_many_if_old(["objects/ab/a", "objects/ab/b", "objects/ab/gone", "objects/ab/c"], cutoff)
    assert got == [True, False, None, True]
    assert sorted(backend.list("objects/")) == ["objects/ab/b"] and backend.read("objects/ab/b") == b"b"
    if isinstance(backend, LocalBackend):
        assert list(backend.list("tmp/")) == []  # nothing left aside

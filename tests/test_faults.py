"""Storage that fails: a disk that fills up part-way through a write, a store that is read-only."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import fsspec
import numpy as np
import pytest

import cas
from cas.backends import local


@contextmanager
def disk_full_at(call: int) -> Iterator[list[int]]:
    """The ``call``-th write to disk (counting from 0) writes half its bytes, then fails with ENOSPC."""
    real = local._write_all
    seen = [0]

    def failing(fd: int, buffers: Sequence[local.Buffer], offset: int) -> None:
        n = seen[0]
        seen[0] += 1
        if n == call:
            data = b"".join(bytes(b) for b in buffers)
            real(fd, [data[: len(data) // 2]], offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, buffers, offset)

    local._write_all = failing
    try:
        yield seen
    finally:
        local._write_all = real


def _work(store: cas.Store, data: bytes) -> None:
    """A put of chunked data under a name, a small batch, and a run."""
    ref = store.put(data, "new", tags=["prod"])
    with store.batch():
        for i in range(3):
            store.put({"i": i})
    store.record_run(step="s", inputs={"x": ref}, outputs={"y": "old"})


def test_a_disk_filling_up_at_any_write_leaves_no_partial_object(tmp_path: Path) -> None:
    template = tmp_path / "template"
    old = os.urandom(2 << 20)
    new = np.random.default_rng(4).bytes(3 << 20) + old[: 1 << 20]
    with cas.open(template) as store:
        store.put(old, "old")
    shutil.copytree(template, tmp_path / "dry-run")
    with disk_full_at(-1) as seen, cas.open(tmp_path / "dry-run") as dry:  # count the job's writes
        _work(dry, new)
    writes = seen[0]
    assert writes >= 8
    for call in range(writes):
        url = tmp_path / f"store{call}"
        shutil.copytree(template, url)
        with disk_full_at(call), cas.open(url) as store:
            with pytest.raises(cas.BackendError, match="No space left"):
                _work(store, new)
        with cas.open(url) as store:
            assert store.get("old") == old
            try:
                assert store.get("new") == new  # the failure came after its ref: it is whole
            except cas.RefNotFoundError:
                pass
            report = store.fsck()
            assert report.ok, f"write {call}: {report}"
            store.gc(grace=0)
            assert list(store.backend.list("tmp/")) == []  # half-written temp files go with gc
            assert store.get("old") == old and store.fsck().ok


def test_a_failing_object_store_write_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "memory://faults-store"
    with cas.open(url) as store:
        store.put(b"kept", "old")
        fs = fsspec.filesystem("memory")
        real = fs.pipe_file
        calls = [0]

        def failing(path: str, value: bytes, *args: object, **kwargs: object) -> None:
            calls[0] += 1
            if calls[0] == 2:
                raise PermissionError(errno.EACCES, "Access Denied")
            real(path, value, *args, **kwargs)

        monkeypatch.setattr(fs, "pipe_file", failing)
        with pytest.raises(cas.BackendError, match="Access Denied"):
            store.put(os.urandom(3 << 20), "new")
        monkeypatch.setattr(fs, "pipe_file", real)
        assert store.get("old") == b"kept"
        assert not store.exists("new")
        assert store.fsck().ok
        fs.rm("/faults-store", recursive=True)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """No process may change anything below ``path``: chmod, or for root (who ignores modes) chattr +i."""
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p in [path, *path.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "-R", "+i", str(path)]).returncode != 0:
        pytest.skip("running as root without chattr +i: nothing can make the store read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


@pytest.mark.skipif(sys.platform != "linux", reason="file permissions and attributes as on Linux")
def test_a_read_only_store_can_be_read(tmp_path: Path) -> None:
    url = tmp_path / "store"
    with cas.open(url) as store:
        store.put(b"precious" * 1000, "data")
        store.put(os.urandom(3 << 20), "big")
        store.record_run(step="s", inputs={"x": "data"}, outputs={"y": "big"})
    with read_only(url), cas.open(url, create=False) as store:
        assert store.get("data") == b"precious" * 1000
        assert len(store.get("big")) == 3 << 20
        assert [r.step for r in store.log()] == ["s"]
        assert store.info("big").size == 3 << 20
        assert store.fsck().ok
        with pytest.raises(cas.BackendError, match="not permitted|Permission denied|Read-only"):
            store.put(b"more", "data")
        assert store.gc(grace=0, dry_run=True).objects == 0
    with cas.open(url) as store:
        assert store.get("data") == b"precious" * 1000 and store.fsck().ok

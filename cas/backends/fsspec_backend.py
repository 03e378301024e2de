"""A backend over any fsspec filesystem (``memory://``, ``s3://``, ...)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from cas.backends.base import Backend, Buffer, Sink


class _MemorySink(Sink):
    """Collects pieces in memory; the whole value goes out in one write on commit."""

    def __init__(self, backend: FsspecBackend) -> None:
        self._backend = backend
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def pwrite(self, offset: int, buffers: Sequence[Buffer]) -> None:
        data = b"".join(buffers)
        with self._lock:
            self._pieces[offset] = data

    def commit(self, key: str) -> None:
        with self._lock:
            ordered = [self._pieces[k] for k in sorted(self._pieces)]
            self._pieces = {}
        self._backend.write(key, b"".join(ordered))

    def abort(self) -> None:
        with self._lock:
            self._pieces = {}


class FsspecBackend(Backend):
    """Keys are paths below ``root`` on an fsspec filesystem."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        # create() must be atomic; fsspec's memory filesystem checks at open,
        # so creates from threads of this process are serialized here.
        self._create_lock = threading.Lock()
        if "memory" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            self.pack_target = 16 << 20

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad key {key!r}")
        return f"{self.root}/{key}"

    def read(self, key: str) -> bytes:
        return self.fs.cat_file(self._path(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.fs.cat_file(self._path(key), start=offset, end=offset + length)

    def write(self, key: str, data: Buffer) -> None:
        self.fs.pipe_file(self._path(key), bytes(data))

    def create(self, key: str, data: Buffer) -> bool:
        path = self._path(key)
        with self._create_lock:
            try:
                with self.fs.open(path, "xb") as f:
                    f.write(bytes(data))
            except FileExistsError:
                return False
        return True

    def open_sink(self) -> Sink:
        return _MemorySink(self)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return
        head = self.root + "/"
        for path in found:
            if path.startswith(head):
                yield path[len(head) :]

    def delete(self, key: str) -> None:
        self.fs.rm_file(self._path(key))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def touch(self, key: str) -> None:
        path = self._path(key)
        try:
            self.fs.touch(path, truncate=False)
        except (NotImplementedError, ValueError):
            # No in-place timestamp update: rewrite the (immutable) bytes.
            self.fs.pipe_file(path, self.fs.cat_file(path))

    def mtime(self, key: str) -> float:
        return self.fs.modified(self._path(key)).timestamp()

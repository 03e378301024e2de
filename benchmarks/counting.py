"""A request-counting Backend: every call goes to an inner backend, and is counted by S3 request kind.

Kinds follow what one call costs on an object store: GET (whole object), RANGE
(ranged GET), PUT (write, create-if-absent, a pack's commit), LIST, HEAD
(exists, size, mtime), DELETE, COPY (touch: a server-side copy onto itself),
OTHER (the create-if-absent probe at open). The counts are backend *calls*
weighted as the S3 backend issues them: a ``delete_many`` of n keys is
ceil(n / 1000) DELETEs, a listing of n keys ceil(n / 1000) LISTs (at least
one; sharded ``list_hex`` at least one per shard), ``delete`` and
``delete_if_old`` a HEAD and a DELETE. Per-method call counts are kept too.

Open a store on it with :func:`open_counting` (``cas.Store`` takes any Backend,
so nothing is patched), or wrap an existing backend and build a Store around it.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from cas.backends.base import Backend, Buffer, ListedKey, Sink

KINDS = ("GET", "RANGE", "PUT", "LIST", "HEAD", "DELETE", "COPY", "OTHER")
#: Keys per page of an S3 listing, and per multi-object delete.
PAGE = 1000


class Counts:
    """Thread-safe counters: requests by kind, calls by method, keys listed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.listed_keys = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def add(self, method: str, **kinds: int) -> None:
        with self._lock:
            self.calls[method] += 1
            for kind, n in kinds.items():
                self.requests[kind] += n

    def add_bytes(self, *, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written

    def add_listed(self, keys: int, shards: int) -> None:
        """A finished listing of ``keys`` keys over ``shards`` prefixes: its pages beyond the first of each shard."""
        with self._lock:
            self.listed_keys += keys
            self.requests["LIST"] += max(0, math.ceil(keys / PAGE) - shards)

    def total(self) -> int:
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {k: self.requests[k] for k in KINDS if self.requests[k]},
                "total": sum(self.requests.values()),
                "calls": dict(sorted(self.calls.items())),
                "listed_keys": self.listed_keys,
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self.listed_keys = self.bytes_read = self.bytes_written = 0


class _CountingSink(Sink):
    def __init__(self, inner: Sink, counts: Counts) -> None:
        self.inner = inner
        self.counts = counts
        self.size = 0

    def pwrite(self, offset: int, buffers: Sequence[Buffer]) -> None:
        self.inner.pwrite(offset, buffers)
        with self.counts._lock:
            self.size = max(self.size, offset + sum(len(b) for b in buffers))

    def commit(self, key: str) -> None:
        self.counts.add("sink.commit", PUT=1)  # one upload (a multipart one counts as one here)
        self.counts.add_bytes(written=self.size)
        self.inner.commit(key)

    def abort(self) -> None:
        self.inner.abort()


class CountingBackend(Backend):
    """Delegates every Backend method to ``inner`` and counts it (see the module docstring)."""

    def __init__(self, inner: Backend, counts: Counts | None = None) -> None:
        self.inner = inner
        self.counts = counts if counts is not None else Counts()
        self.url = inner.url
        self.pack_target = inner.pack_target
        self.cheap_exists = inner.cheap_exists
        self.detail_in_shards = inner.detail_in_shards
        # list_hex on S3 lists 16 prefixes side by side (see FsspecBackend.list_hex).
        self._hex_shards = 16 if inner.url.split("://", 1)[0].startswith("s3") else 1

    def __getattr__(self, name: str) -> Any:
        # Attributes a concrete backend adds (fs, root, durable...): read through, uncounted.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def read(self, key: str) -> bytes:
        self.counts.add("read", GET=1)
        data = self.inner.read(key)
        self.counts.add_bytes(read=len(data))
        return data

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self.counts.add("read_range", RANGE=1)
        data = self.inner.read_range(key, offset, length)
        self.counts.add_bytes(read=len(data))
        return data

    def readv(self, key: str, offset: int, buffers: Sequence[memoryview]) -> int:
        self.counts.add("readv", RANGE=1)
        n = self.inner.readv(key, offset, buffers)
        self.counts.add_bytes(read=n)
        return n

    def write(self, key: str, data: Buffer) -> None:
        self.counts.add("write", PUT=1)
        self.counts.add_bytes(written=len(data))
        self.inner.write(key, data)

    def create(self, key: str, data: Buffer) -> bool:
        self.counts.add("create", PUT=1)
        self.counts.add_bytes(written=len(data))
        return self.inner.create(key, data)

    def open_sink(self) -> Sink:
        return _CountingSink(self.inner.open_sink(), self.counts)

    def exists(self, key: str) -> bool:
        self.counts.add("exists", HEAD=1)
        return self.inner.exists(key)

    def _listing(self, method: str, keys: Iterator[str], shards: int) -> Iterator[str]:
        self.counts.add(method, LIST=shards)
        n = 0
        try:
            for key in keys:
                n += 1
                yield key
        finally:
            self.counts.add_listed(n, shards)

    def list(self, prefix: str) -> Iterator[str]:
        return self._listing("list", iter(self.inner.list(prefix)), 1)

    def list_detailed(self, prefix: str, start: str = "") -> list[ListedKey]:
        found = self.inner.list_detailed(prefix, start)
        self.counts.add("list_detailed", LIST=1)
        self.counts.add_listed(len(found), 1)
        return found

    def list_hex(self, prefix: str) -> Iterator[str]:
        return self._listing("list_hex", iter(self.inner.list_hex(prefix)), self._hex_shards)

    def delete(self, key: str) -> None:
        self.counts.add("delete", HEAD=1, DELETE=1)  # S3: a HEAD first, as object stores delete absent keys silently
        self.inner.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self.counts.add("delete_many", DELETE=math.ceil(len(keys) / PAGE))
        self.inner.delete_many(keys)

    def delete_if_old(self, key: str, cutoff: float) -> bool:
        self.counts.add("delete_if_old", HEAD=1, DELETE=1)
        return self.inner.delete_if_old(key, cutoff)

    def size(self, key: str) -> int:
        self.counts.add("size", HEAD=1)
        return self.inner.size(key)

    def touch(self, key: str) -> None:
        self.counts.add("touch", COPY=1)
        self.inner.touch(key)

    def mtime(self, key: str) -> float:
        self.counts.add("mtime", HEAD=1)
        return self.inner.mtime(key)

    def check_create_if_absent(self) -> None:
        self.counts.add("check_create_if_absent", OTHER=1)
        self.inner.check_create_if_absent()

    def close(self) -> None:
        self.inner.close()


def _delegate_missing() -> None:
    """Methods added to Backend later (by anyone) are still delegated, counted as OTHER under their name."""
    for name in dir(Backend):
        if name.startswith("_") or name in CountingBackend.__dict__ or not callable(getattr(Backend, name)):
            continue

        def method(self: CountingBackend, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            self.counts.add(_name, OTHER=1)
            return getattr(self.inner, _name)(*args, **kwargs)

        method.__name__ = name
        setattr(CountingBackend, name, method)
    CountingBackend.__abstractmethods__ = frozenset()


_delegate_missing()


def open_counting(
    url: str | os.PathLike[str],
    counts: Counts | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Any, Counts]:
    """``cas.open`` with a CountingBackend around the store's backend; returns (store, counts).

    The counts include what opening costs (the config read, the create-if-absent
    probe unless ``single_writer``); call ``counts.reset()`` after opening to
    count one operation alone.
    """
    from cas.repository import backend_at
    from cas.store import Store

    backend = CountingBackend(backend_at(url, storage_options), counts)
    return Store(backend, **options), backend.counts

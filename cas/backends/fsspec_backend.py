"""A backend over any fsspec filesystem (``memory://``, ``s3://``, ...)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import fsspec

from cas.backends.base import Backend, Buffer, Sink
from cas.errors import BackendError, InvalidArgumentError
from cas.keys import temp_key

T = TypeVar("T")


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


def _range_unsatisfiable(exc: BaseException) -> bool:
    """S3's answer (HTTP 416) to a read that starts past the end of a shorter object."""
    text = str(exc).lower()  # never match bare status numbers: they also occur in URLs and hashes
    return "range is not satisfiable" in text or "invalidrange" in text


def _precondition_failed(exc: BaseException) -> bool:
    """S3's answer to a create-if-absent of an existing key (HTTP 412), as s3fs reports it."""
    text = str(exc).lower()
    return "precondition" in text or "pre-condition" in text


class FsspecBackend(Backend):
    """Keys are paths below ``root`` on an fsspec filesystem.

    Object stores answer over a network: every call is retried with
    exponential backoff on errors other than "not found", "exists" and bad
    requests, so a server that blinks does not fail a put.
    """

    def __init__(
        self, url: str, storage_options: dict[str, Any] | None = None, *, retries: int = 6, backoff: float = 0.1
    ) -> None:
        options = dict(storage_options or {})
        protocol = url.split("://", 1)[0]
        if protocol in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
            # Another process may add keys at any time: never answer a listing from a cache.
            options.setdefault("use_listings_cache", False)
        fs, root = fsspec.core.url_to_fs(url, **options)
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.protocol = protocol
        self.retries = retries
        self.backoff = backoff
        # create() must be atomic; fsspec's memory filesystem checks at open,
        # so creates from threads of this process are serialized here.
        self._create_lock = threading.Lock()
        self.pack_target = 16 << 20  # smaller packs: more uploads in flight
        self.cheap_exists = protocol == "memory"

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise InvalidArgumentError(f"bad key {key!r}")
        return f"{self.root}/{key}"

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the filesystem, retrying transient failures; what still fails becomes BackendError."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except (FileNotFoundError, FileExistsError, ValueError, NotImplementedError):
                raise
            except Exception as exc:
                if _precondition_failed(exc) or _range_unsatisfiable(exc):
                    raise
                if isinstance(exc, (PermissionError, TypeError)) or attempt == self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise BackendError(f"{self.url}: {type(exc).__name__}{tries}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def read(self, key: str) -> bytes:
        return self._call(self.fs.cat_file, self._path(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            return self._call(self.fs.cat_file, self._path(key), start=offset, end=offset + length)
        except OSError as exc:
            if _range_unsatisfiable(exc):
                return b""  # the object is shorter than the range: the caller sees a truncation
            raise

    def write(self, key: str, data: Buffer) -> None:
        self._call(self.fs.pipe_file, self._path(key), bytes(data))

    def create(self, key: str, data: Buffer) -> bool:
        path = self._path(key)
        payload = bytes(data)

        def once() -> None:
            with self.fs.open(path, "xb") as f:
                f.write(payload)

        with self._create_lock:
            try:
                self._call(once)
            except FileExistsError:
                return False
            except OSError as exc:
                if _precondition_failed(exc):
                    return False
                raise
        return True

    def open_sink(self) -> Sink:
        return _MemorySink(self)

    def exists(self, key: str) -> bool:
        return bool(self._call(self.fs.exists, self._path(key)))

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            found = self._call(self.fs.find, base)
        except FileNotFoundError:
            return
        head = self.root + "/"
        below = base + "/"
        for path in found:
            # Only keys strictly below the folder: some servers list the folder itself.
            if path.startswith(below) and not path.endswith("/"):
                yield path[len(head) :]

    def list_hex(self, prefix: str) -> Iterator[str]:
        if not self.protocol.startswith("s3"):
            return self.list(prefix)
        base = self._path(prefix.rstrip("/"))
        head = self.root + "/"

        def shard(digit: str) -> list[str]:
            try:
                return list(self._call(self.fs.find, base, prefix=digit))
            except FileNotFoundError:
                return []

        # A listing walks the server's folders one request at a time: 16 run side by side.
        with ThreadPoolExecutor(16) as pool:
            found = [p for part in pool.map(shard, "0123456789abcdef") for p in part]
        below = base + "/"
        return iter([p[len(head) :] for p in found if p.startswith(below) and not p.endswith("/")])

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.protocol != "memory" and not self._call(self.fs.exists, path):
            raise FileNotFoundError(path)  # object stores delete absent keys silently
        self._call(self.fs.rm_file, path)

    def delete_many(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]
        if self.protocol == "memory":
            for path in paths:
                if self.fs.exists(path):
                    self._call(self.fs.rm_file, path)
            return
        for start in range(0, len(paths), 1000):  # S3's multi-object delete takes 1,000 keys
            try:
                self._call(self.fs.rm, paths[start : start + 1000])
            except FileNotFoundError:
                pass

    def size(self, key: str) -> int:
        return int(self._call(self.fs.size, self._path(key)))

    def touch(self, key: str) -> None:
        path = self._path(key)
        if hasattr(self.fs, "setxattr") and self.protocol.startswith("s3"):
            # A server-side copy onto itself with new metadata: a new timestamp, no data moved.
            self._call(self.fs.setxattr, path, cas_freshened=str(time.time()))
            return
        # fsspec's touch creates an empty file where the key is missing (memory://, and others):
        # a key gc just removed would then look present and hold nothing. Rewriting the
        # (immutable) bytes fails on a missing key and, if gc removes it meanwhile, puts it back whole.
        self.write(key, self.read(key))

    def mtime(self, key: str) -> float:
        return float(self._call(self.fs.modified, self._path(key)).timestamp())

    def check_create_if_absent(self) -> None:
        """Refuse a backend that lets a second create of a key succeed (refs would be lost)."""
        key = temp_key(f"probe-{uuid.uuid4().hex}")
        try:
            first = self.create(key, b"1")
            second = self.create(key, b"2")
        finally:
            try:
                self.delete(key)
            except FileNotFoundError:
                pass
        if not first or second:
            raise BackendError(
                f"{self.url} does not honour create-if-absent (conditional writes): concurrent writers "
                "could overwrite each other's versions. Use a server that supports If-None-Match, or open "
                "with single_writer=True if only one process ever writes."
            )

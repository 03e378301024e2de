"""A backend over any fsspec filesystem (``memory://``, ``s3://``, ...)."""

from __future__ import annotations

import builtins
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import fsspec.asyn

from cas.backends.base import Backend, Buffer, ListedKey, Sink, Timeouts
from cas.errors import AccessDeniedError, BackendError, BackendTimeoutError, InvalidArgumentError
from cas.keys import temp_key

#: Object stores whose create-if-absent was checked in this process, by (protocol, endpoint, root).
_CHECKED_CREATE: set[tuple[str, str, str]] = set()
_CHECK_LOCK = threading.Lock()
#: What each filesystem method does, for error messages.
_OPERATIONS = {
    "cat_file": "read", "pipe_file": "write", "exists": "exists", "find": "list", "rm_file": "delete",
    "rm": "delete", "info": "stat", "setxattr": "touch", "modified": "stat", "size": "stat",
}  # fmt: skip


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


def _timed_out(exc: BaseException) -> bool:
    """A connect or read timeout (botocore's, aiohttp's, or fsspec's deadline), however it is wrapped."""
    while exc is not None:
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            return True
        if "timed out" in str(exc).lower() or "timeout on" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _permanent(exc: BaseException) -> bool:
    """A failure another attempt would repeat: access denied, no credentials, a bad call."""
    return isinstance(exc, (PermissionError, TypeError)) or type(exc).__name__ in _NO_CREDENTIALS


_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError")


def _endpoint(protocol: str, fs: Any, options: dict[str, Any]) -> str:
    """Where requests go: the S3 endpoint URL (options, then the AWS variables), else the protocol."""
    if not protocol.startswith("s3"):
        return protocol
    client = options.get("client_kwargs") or {}
    return str(
        options.get("endpoint_url")
        or client.get("endpoint_url")
        or getattr(fs, "endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "AWS S3"
    )


class FsspecBackend(Backend):
    """Keys are paths below ``root`` on an fsspec filesystem.

    Object stores answer over a network: every call has a connect and read
    timeout and a total deadline (``Timeouts``), and is retried with
    exponential backoff on errors other than "not found", "exists", "access
    denied" and bad requests, so a server that blinks does not fail a put and
    one that stalls fails it in bounded time. The retries are all here: s3fs's
    and botocore's own are turned off, so they never multiply.
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        timeouts: Timeouts | None = None,
        backoff: float = 0.1,
    ) -> None:
        options = dict(storage_options or {})
        protocol = url.split("://", 1)[0]
        limits = timeouts if timeouts is not None else Timeouts.resolve()
        self.timeouts = self.limits = limits
        if protocol in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
            # Another process may add keys at any time: never answer a listing from a cache.
            options.setdefault("use_listings_cache", False)
        if protocol in ("s3", "s3a"):
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("connect_timeout", self.limits.connect)
            config.setdefault("read_timeout", self.limits.read)
            config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})  # ours are in _call
            options["config_kwargs"] = config
        fs, root = fsspec.core.url_to_fs(url, **options)
        if protocol in ("s3", "s3a"):
            fs.retries = 1  # s3fs's own retry loop (an attribute, not an option): one attempt per call here
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.protocol = protocol
        self.endpoint = _endpoint(protocol, fs, options)
        self.backoff = backoff
        # create() must be atomic; fsspec's memory filesystem checks at open,
        # so creates from threads of this process are serialized here.
        self._create_lock = threading.Lock()
        self._create_checked = protocol == "memory"  # one process's memory: exclusive by the lock above
        self.pack_target = 16 << 20  # smaller packs: more uploads in flight
        self.cheap_exists = protocol == "memory"
        self.detail_in_shards = protocol.startswith("s3")

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise InvalidArgumentError(f"bad key {key!r}")
        return f"{self.root}/{key}"

    def _where(self) -> str:
        return self.url if self.endpoint == self.protocol else f"{self.url} at {self.endpoint}"

    def _call(self, method: str, *args: Any, size: int = 0, **kwargs: Any) -> Any:
        """Call the filesystem's ``method``, retrying transient failures within the deadline.

        What still fails becomes BackendError (BackendTimeoutError, AccessDeniedError),
        naming the endpoint, the operation and the key.
        """
        fs = self.fs
        coroutine = getattr(fs, f"_{method}", None) if getattr(fs, "async_impl", False) else None
        attempts = self.limits.attempts
        budget = self.limits.budget(size)
        started = time.monotonic()
        delay = self.backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                if coroutine is not None:
                    # A hard bound on the attempt, whatever the socket timeouts let through.
                    left = max(budget - (time.monotonic() - started), 0.05)
                    return fsspec.asyn.sync(fs.loop, coroutine, *args, timeout=left, **kwargs)
                return getattr(fs, method)(*args, **kwargs)
            except (FileNotFoundError, FileExistsError, ValueError, NotImplementedError):
                raise
            except Exception as exc:
                if _precondition_failed(exc) or _range_unsatisfiable(exc):
                    raise
                elapsed = time.monotonic() - started
                final = _permanent(exc) or attempt >= attempts
                if final or elapsed + delay >= budget:
                    raise self._error(method, args, exc, attempt, elapsed) from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _error(
        self, method: str, args: tuple[Any, ...], exc: BaseException, attempts: int, elapsed: float
    ) -> BackendError:
        what = _OPERATIONS.get(method, method)
        target = args[0] if args and isinstance(args[0], str) else ""
        if target.startswith(self.root + "/"):
            target = target[len(self.root) + 1 :]
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        head = f"{self._where()}: {what} {target}".rstrip()
        if isinstance(exc, PermissionError):
            return AccessDeniedError(f"{head}: access denied ({exc}); are these credentials allowed to write?")
        if _timed_out(exc):
            return BackendTimeoutError(
                f"{head}: no answer{tries} in {elapsed:.1f} s (timeouts: connect {self.limits.connect:g} s, "
                f"read {self.limits.read:g} s, deadline {self.limits.deadline:g} s; CAS_TIMEOUT, CAS_DEADLINE)"
            )
        return BackendError(f"{head}: {type(exc).__name__}{tries} in {elapsed:.1f} s: {exc}")

    def _before_write(self) -> None:
        """Check create-if-absent once per endpoint and path, before the first write (never at open)."""
        if self._create_checked:
            return
        identity = (self.protocol, self.endpoint, self.root)
        with _CHECK_LOCK:
            if identity not in _CHECKED_CREATE:
                self._probe_create()
                _CHECKED_CREATE.add(identity)
        self._create_checked = True

    def read(self, key: str) -> bytes:
        return bytes(self._call("cat_file", self._path(key)))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            return bytes(self._call("cat_file", self._path(key), start=offset, end=offset + length, size=length))
        except OSError as exc:
            if _range_unsatisfiable(exc):
                return b""  # the object is shorter than the range: the caller sees a truncation
            raise

    def write(self, key: str, data: Buffer) -> None:
        self._before_write()
        self._write(key, data)

    def _write(self, key: str, data: Buffer) -> None:
        self._call("pipe_file", self._path(key), bytes(data), size=len(data))

    def create(self, key: str, data: Buffer) -> bool:
        self._before_write()
        return self._create(key, data)

    def _create(self, key: str, data: Buffer) -> bool:
        path = self._path(key)
        with self._create_lock:
            try:
                self._call("pipe_file", path, bytes(data), mode="create", size=len(data))
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
        return bool(self._call("exists", self._path(key)))

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            found = self._call("find", base)
        except FileNotFoundError:
            return
        head = self.root + "/"
        below = base + "/"
        for path in found:
            # Only keys strictly below the folder: some servers list the folder itself.
            if path.startswith(below) and not path.endswith("/"):
                yield path[len(head) :]

    def list_detailed(self, prefix: str, start: str = "") -> builtins.list[ListedKey]:
        """On S3 the listing itself carries each key's time and size (one request per 1,000 keys)."""
        if not self.protocol.startswith("s3"):
            return super().list_detailed(prefix, start)
        base = self._path(prefix.rstrip("/"))
        try:
            found = self._call("find", base, prefix=start, detail=True)
        except FileNotFoundError:
            return []
        head, below = self.root + "/", base + "/"
        out = []
        for path, info in found.items():
            if not path.startswith(below) or path.endswith("/") or info.get("type") == "directory":
                continue
            key = path[len(head) :]
            stamp = info.get("LastModified")
            try:
                mtime = stamp.timestamp() if stamp is not None else self.mtime(key)
            except FileNotFoundError:
                continue
            out.append(ListedKey(key, float(mtime), int(info.get("size") or 0)))
        return out

    def list_hex(self, prefix: str) -> Iterator[str]:
        if not self.protocol.startswith("s3"):
            return self.list(prefix)
        base = self._path(prefix.rstrip("/"))
        head = self.root + "/"

        def shard(digit: str) -> list[str]:
            try:
                return list(self._call("find", base, prefix=digit))
            except FileNotFoundError:
                return []

        # A listing walks the server's folders one request at a time: 16 run side by side.
        with ThreadPoolExecutor(16) as pool:
            found = [p for part in pool.map(shard, "0123456789abcdef") for p in part]
        below = base + "/"
        return iter([p[len(head) :] for p in found if p.startswith(below) and not p.endswith("/")])

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.protocol != "memory" and not self._call("exists", path):
            raise FileNotFoundError(path)  # object stores delete absent keys silently
        self._call("rm_file", path)

    def delete_many(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]
        if self.protocol == "memory":
            for path in paths:
                if self.fs.exists(path):
                    self._call("rm_file", path)
            return
        for start in range(0, len(paths), 1000):  # S3's multi-object delete takes 1,000 keys
            try:
                self._call("rm", paths[start : start + 1000])
            except FileNotFoundError:
                pass

    def size(self, key: str) -> int:
        return int(self._call("size", self._path(key)))

    def touch(self, key: str) -> None:
        path = self._path(key)
        self._before_write()
        if hasattr(self.fs, "setxattr") and self.protocol.startswith("s3"):
            # A server-side copy onto itself with new metadata: a new timestamp, no data moved.
            self._call("setxattr", path, copy_kwargs=None, cas_freshened=str(time.time()))
            return
        # fsspec's touch creates an empty file where the key is missing (memory://, and others):
        # a key gc just removed would then look present and hold nothing. Rewriting the
        # (immutable) bytes fails on a missing key and, if gc removes it meanwhile, puts it back whole.
        self._write(key, self.read(key))

    def mtime(self, key: str) -> float:
        path = self._path(key)
        if self.protocol.startswith("s3"):
            return float(self._call("info", path)["LastModified"].timestamp())
        return float(self._call("modified", path).timestamp())

    def check_create_if_absent(self) -> None:
        """Refuse a backend that lets a second create of a key succeed (refs would be lost).

        Made by the first write of this process to each endpoint and path (a
        reader never writes); calling it checks at once.
        """
        with _CHECK_LOCK:
            self._probe_create()
            _CHECKED_CREATE.add((self.protocol, self.endpoint, self.root))
        self._create_checked = True

    def skip_create_check(self) -> None:
        self._create_checked = True

    def _probe_create(self) -> None:
        key = temp_key(f"probe-{uuid.uuid4().hex}")
        first = self._create(key, b"1")  # fails: nothing to clean up worth another wait
        try:
            second = self._create(key, b"2")
        finally:
            try:
                self.delete(key)
            except (FileNotFoundError, BackendError):
                pass  # a stray probe under tmp/ harms nothing; the create's own error (if any) is the one to see
        if not first or second:
            raise BackendError(
                f"{self.url} does not honour create-if-absent (conditional writes): concurrent writers "
                "could overwrite each other's versions. Use a server that supports If-None-Match, or open "
                "with single_writer=True if only one process ever writes."
            )

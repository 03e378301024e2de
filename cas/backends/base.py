"""The storage backend interface: a dumb map from keys to bytes.

A backend knows nothing about objects or refs. Keys are relative POSIX paths
made by cas (``objects/ab/...``, ``refs/...``). Backends report storage
meaning through built-in exceptions: ``FileNotFoundError`` for a missing key,
``FileExistsError`` never escapes (``create`` answers False instead).
Everything else is wrapped in :class:`cas.BackendError` by the object store.
"""

from __future__ import annotations

import builtins
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from cas.errors import InvalidArgumentError

Buffer = bytes | bytearray | memoryview

#: Environment variables that set the defaults of :class:`Timeouts` (seconds).
TIMEOUT_VARIABLE = "CAS_TIMEOUT"
DEADLINE_VARIABLE = "CAS_DEADLINE"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long one call to a network backend may wait; a local disk answers or fails by itself.

    ``connect``: for a connection; ``read``: for each read of an answer (no
    byte for that long fails the attempt); ``deadline``: for the whole call,
    retries included, plus one second per ``min_rate`` bytes the call moves;
    ``attempts``: the first try and its retries, in all (nothing below retries again).
    """

    connect: float = 5.0
    read: float = 15.0
    deadline: float = 45.0
    attempts: int = 3
    min_rate: float = float(256 << 10)

    @classmethod
    def resolve(cls, timeout: float | None = None, deadline: float | None = None) -> Timeouts:
        """``timeout`` (connect and read) and ``deadline``, else ``CAS_TIMEOUT`` / ``CAS_DEADLINE``, else defaults.

        Raises InvalidArgumentError for a value that is not a positive number.
        """
        default = cls()
        wait = _seconds(timeout, TIMEOUT_VARIABLE, "timeout")
        total = _seconds(deadline, DEADLINE_VARIABLE, "deadline")
        return cls(
            connect=wait if wait is not None else default.connect,
            read=wait if wait is not None else default.read,
            deadline=total if total is not None else default.deadline,
        )

    def budget(self, size: int = 0) -> float:
        """Seconds a call that moves ``size`` bytes may take in all."""
        return self.deadline + size / self.min_rate


def _seconds(value: float | None, variable: str, what: str) -> float | None:
    source = what
    if value is None:
        text = os.environ.get(variable)
        if not text:
            return None
        source = f"{variable}={text!r}"
        try:
            value = float(text)
        except ValueError:
            raise InvalidArgumentError(f"{source} is not a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InvalidArgumentError(f"{source} must be a positive number of seconds, not {value!r}")
    return float(value)


class Sink(ABC):
    """A file being written in pieces, invisible until ``commit`` renames it into place."""

    @abstractmethod
    def pwrite(self, offset: int, buffers: Sequence[Buffer]) -> None:
        """Write ``buffers`` back to back at ``offset``; safe to call from several threads."""

    @abstractmethod
    def commit(self, key: str) -> None:
        """Make the written bytes visible at ``key`` in one atomic step."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written; the key never appears."""


T = TypeVar("T")
Item = TypeVar("Item")

#: Calls made side by side where each is a request (``each_request``).
REQUEST_THREADS = 16


def each_request(
    backend: Backend, call: Callable[[Item], T], items: Iterable[Item], *, threads: int = REQUEST_THREADS
) -> builtins.list[T]:
    """``call`` of each item, in order: one after another where a call is cheap (a disk), side by side
    on threads of their own where each is a request (an object store; never the store's executor,
    whose threads may be waiting for the caller)."""
    items = builtins.list(items)
    if backend.cheap_exists or len(items) < 2:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="cas-requests") as pool:
        return builtins.list(pool.map(call, items))


class ListedKey(NamedTuple):
    """A key as a listing saw it: its timestamp on the storage's clock, and its size in bytes."""

    key: str
    mtime: float
    size: int


class Backend(ABC):
    """Key -> bytes storage with atomic writes and create-if-absent."""

    url: str
    #: How long a call may wait (network backends honour it, and remotes opened from
    #: this store inherit it; None: ``Timeouts.resolve()``, from the environment).
    timeouts: Timeouts | None = None
    #: Packs are cut at about this many bytes on this backend.
    pack_target: int = 64 << 20
    #: Whether ``exists`` costs much less than a small write (a stat, not a request).
    cheap_exists: bool = True

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Return the whole value; FileNotFoundError if absent."""

    @abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``."""

    def readv(self, key: str, offset: int, buffers: Sequence[memoryview]) -> int:
        """Fill ``buffers`` back to back from ``offset``; return the byte count read."""
        total = sum(len(b) for b in buffers)
        data = self.read_range(key, offset, total)
        pos = 0
        for buf in buffers:
            piece = data[pos : pos + len(buf)]
            buf[: len(piece)] = piece
            pos += len(piece)
        return len(data)

    @abstractmethod
    def write(self, key: str, data: Buffer) -> None:
        """Atomically write ``data`` at ``key``, replacing any previous value."""

    @abstractmethod
    def create(self, key: str, data: Buffer) -> bool:
        """Atomically write ``data`` only if ``key`` is absent; return whether it was written."""

    @abstractmethod
    def open_sink(self) -> Sink:
        """Start a large write (a pack) made of pieces."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if ``key`` holds a value."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key below the folder ``prefix`` (recursively, any order)."""

    #: Whether ``list_detailed`` of a big folder is best made in shards (by first hex digit):
    #: an object store, where a listing pages through the keys one request at a time.
    detail_in_shards: bool = False

    def list_detailed(self, prefix: str, start: str = "") -> builtins.list[ListedKey]:
        """Every key below the folder ``prefix`` whose name there begins with ``start``, with its age and size.

        Object stores and disks have both in their listings (no request per key);
        this default asks for each.
        """
        found = []
        for key in self.list(prefix):
            if start and not key[len(prefix) :].startswith(start):
                continue
            try:
                found.append(ListedKey(key, self.mtime(key), self.size(key)))
            except FileNotFoundError:
                continue  # removed since the listing
        return found

    def list_hex(self, prefix: str) -> Iterator[str]:
        """Like ``list``, for a folder whose entries are named by hex digits (``objects/``, ``names/``).

        Object stores override it to list the 16 first digits at once (so entries
        that do not begin with a lowercase hex digit may be left out).
        """
        return self.list(prefix)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; FileNotFoundError if absent."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove many keys at once, absent ones ignored (object stores: one request per 1,000 keys)."""
        for key in keys:
            try:
                self.delete(key)
            except FileNotFoundError:
                pass

    def delete_if_old(self, key: str, cutoff: float) -> bool:
        """Delete ``key`` if its timestamp is still at or before ``cutoff``; return whether it went.

        gc's last step: the check and the delete are as close as the backend
        allows (object stores: a request apart; the local disk: atomic).
        """
        if self.mtime(key) > cutoff:
            return False
        self.delete(key)
        return True

    def delete_many_if_old(self, keys: Sequence[str], cutoff: float) -> builtins.list[bool | None]:
        """``delete_if_old`` for each key: True if it went, False if kept (newer than ``cutoff``), None if absent.

        Backends that can check and delete a batch more cheaply than key by key
        (the local disk) override it; gc uses it when they do.
        """
        results: builtins.list[bool | None] = []
        for key in keys:
            try:
                results.append(self.delete_if_old(key, cutoff))
            except FileNotFoundError:
                results.append(None)
        return results

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of the value at ``key`` in bytes."""

    @abstractmethod
    def touch(self, key: str) -> None:
        """Refresh the modification time of ``key`` (git's "freshen")."""

    @abstractmethod
    def mtime(self, key: str) -> float:
        """Modification time of ``key`` as a POSIX timestamp."""

    def check_create_if_absent(self) -> None:
        """Raise BackendError if ``create`` is not really exclusive here.

        Backends that need the check make it themselves before their first
        write (never at open: reading needs no write access).
        """

    def skip_create_check(self) -> None:
        """Trust ``create`` without checking it (a store only one process ever writes)."""

    def close(self) -> None:
        """Release open handles."""

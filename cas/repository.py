"""The Repository: one store's backend, config, object store, refs and run index, built by composition.

Everything above the storage layer (the public ``Store``, gc, fsck, du, sync,
history) works on a Repository, or on just the parts it needs. A Repository
knows nothing of materializers or values: it stores and reads bytes, refs and
runs. Reading through a remote is wired in when it is built: the object store
gets ``fetch_missing`` as a constructor argument, and the remote Repository
is opened on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cas.backends import Backend, Timeouts, backend_for
from cas.config import CONFIG_KEY, TABLES_FORMAT, StoreConfig, load_config
from cas.consolidate import consolidate
from cas.errors import (
    BackendError,
    CasError,
    CorruptObjectError,
    InvalidNameError,
    ObjectNotFoundError,
    StoreNotFoundError,
    WrongObjectKindError,
)
from cas.hashing import DIGEST_SIZE, from_hex, short
from cas.objects import kind_of
from cas.objectstore import EXPANSION_ALLOWANCE, MAX_EXPANSION, ObjectStore
from cas.refs import RefStore
from cas.remotes import RemoteList
from cas.runs import Run, RunIndex
from cas.transfer import copy_objects

#: Threads that copy objects in from the read-through remote.
FETCH_THREADS = 16


class Repository:
    """A store's parts: ``backend``, ``config``, ``objects``, ``refs``, ``run_index`` (and the worker threads)."""

    def __init__(
        self,
        backend: Backend,
        *,
        create: bool = True,
        workers: int | None = None,
        single_writer: bool = False,
        read_through: bool = True,
        max_expansion: float = MAX_EXPANSION,
        expansion_allowance: int = EXPANSION_ALLOWANCE,
    ) -> None:
        self.backend = backend
        if single_writer:
            backend.skip_create_check()
        # Otherwise the backend checks create-if-absent before its first write: opening only reads.
        self.config: StoreConfig = load_config(backend, create=create)
        self.executor = ThreadPoolExecutor(
            max_workers=workers or max(4, (os.cpu_count() or 2) + 2), thread_name_prefix="cas"
        )
        self._read_through: Repository | None = None
        self._read_through_checked = not read_through
        self.objects = ObjectStore(
            backend,
            self.executor,
            compression_level=self.config.compression_level,
            max_expansion=max_expansion,
            expansion_allowance=expansion_allowance,
            fetch_missing=self.fetch_missing if read_through else None,
        )
        self.objects.on_many_recent = self._consolidate_recent
        self.refs = RefStore(backend)
        self.run_index = RunIndex(backend)

    def _consolidate_recent(self) -> None:
        """Fold many index files into a chunk table (a writer's automatic upkeep; never raises the format)."""
        if self.config.format >= TABLES_FORMAT:
            try:
                consolidate(self, merge_packs=False)
            except CasError:
                pass  # upkeep only: reads and writes go on without it, and gc consolidates too

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def remotes(self) -> RemoteList:
        """This store's remotes."""
        return RemoteList(self.backend)

    def __repr__(self) -> str:
        return f"<cas.Repository {self.url}>"

    def close(self) -> None:
        """Stop the worker threads and release open files (the read-through remote's too)."""
        self.executor.shutdown(wait=True)
        self.backend.close()
        if self._read_through is not None:
            self._read_through.close()

    # -- reading ---------------------------------------------------------------------
    def names(self) -> Iterator[str]:
        """Every artifact name in the store."""
        return self.refs.names()

    def run(self, run_hash: bytes | str) -> Run:
        """A run by hash (raw, hex, or a unique hex prefix).

        Raises ObjectNotFoundError (absent), WrongObjectKindError (another kind of object),
        CorruptObjectError (a run object that breaks the run rules, such as a time outside 1970..3000).
        """
        if isinstance(run_hash, str):
            run_hash = from_hex(run_hash) if len(run_hash) == 64 else self.objects.resolve_prefix(run_hash)
        if not isinstance(run_hash, (bytes, bytearray)) or len(run_hash) != DIGEST_SIZE:
            raise InvalidNameError(f"not a run hash: {run_hash!r:.80}")
        data = self.objects.get_object(run_hash)
        try:
            return Run.from_bytes(data, key=f"run {short(run_hash)}")
        except CorruptObjectError:
            # The bytes match their hash: either another kind of object, or a run no reader accepts.
            kind = kind_of(data)
            if kind == "run":
                raise
            raise WrongObjectKindError(f"{short(run_hash)} is a {kind}, not a run") from None

    # -- read-through ----------------------------------------------------------------
    def read_through(self) -> Repository | None:
        """The repository missing objects are fetched from (a remote marked read-through), opened once."""
        if not self._read_through_checked:
            self._read_through_checked = True
            remote = self.remotes.read_through()
            if remote is not None:
                self._read_through = open_remote(remote.url, like=None, timeouts=self.backend.timeouts)
        return self._read_through

    def fetch_missing(self, digests: list[bytes]) -> bool:
        """Copy objects this store lacks from its read-through remote, and keep them.

        Only objects move (verified): never a ref, run or cache entry, so a
        read-through remote can not answer a cache lookup. Returns False when
        no remote is marked read-through; raises ObjectNotFoundError when it
        lacks them too, IntegrityError when its copy is damaged, BackendError.
        """
        remote = self.read_through()
        if remote is None:
            return False
        try:
            with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="cas-fetch") as pool:
                copy_objects(remote.objects, self.objects, digests, pool, keep_layout=True)
        except FileNotFoundError as exc:  # removed there (its gc) between listing and reading
            if isinstance(exc, CasError):
                raise
            raise ObjectNotFoundError(f"read-through: {exc}") from None
        except OSError as exc:
            if isinstance(exc, CasError):
                raise
            raise BackendError(f"read-through from {remote.url} failed: {exc}") from exc
        return True

    def stored_size_of(self, d: bytes) -> int:
        """The stored size of one object: here, else in the read-through remote (where a read would fetch it).

        Raises ObjectNotFoundError when neither holds it.
        """
        for repo in (self, self.read_through()):
            if repo is None:
                continue
            loc = repo.objects.locate(d)
            if loc is not None:
                return loc.entry.stored
            try:
                return repo.objects.loose_size(d)
            except FileNotFoundError:
                continue
        raise ObjectNotFoundError(
            f"object {short(d)} is missing"
            + (" here and in the read-through remote" if self._read_through is not None else "")
        )


def backend_at(
    url: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    timeouts: Timeouts | None = None,
) -> Backend:
    """The backend for ``url``; BackendError (not ImportError) when its fsspec package is missing.

    ``timeout`` (seconds to connect, and to wait for each read) and ``deadline``
    (seconds for a whole call, retries included) default to ``CAS_TIMEOUT`` and
    ``CAS_DEADLINE``, else to ``Timeouts()``; ``timeouts`` gives all of them at once.
    Raises InvalidArgumentError for a timeout that is not a positive number.
    """
    if timeouts is None:
        timeouts = Timeouts.resolve(timeout, deadline)
    try:
        return backend_for(url, storage_options, timeouts=timeouts)
    except ImportError as exc:
        raise BackendError(f"{os.fspath(url)}: {exc} (for S3: pip install 'cas-store[s3]')") from None


def open_remote(url: str, *, like: Repository | None, timeouts: Timeouts | None = None) -> Repository:
    """Open the store at ``url`` (never reading through it further); create it like ``like`` if absent.

    ``timeouts`` default to ``like``'s (else to the environment's). Opening
    only reads: a store that is only read (pull, clone, read-through) needs
    no write access.
    """
    if timeouts is None and like is not None:
        timeouts = like.backend.timeouts
    try:
        return Repository(backend_at(url, timeouts=timeouts), create=False, read_through=False)
    except StoreNotFoundError:
        if like is None:
            raise
    backend = backend_at(url, timeouts=timeouts)
    try:
        backend.create(CONFIG_KEY, like.config.to_bytes())  # the same chunking, so dedup carries over
    finally:
        backend.close()
    return Repository(backend_at(url, timeouts=timeouts), create=False, read_through=False)

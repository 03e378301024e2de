"""The remote side of the Store: remotes, push, pull, clone and read-through fetches."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cas.config import CONFIG_KEY
from cas.errors import BackendError, CasError, ObjectNotFoundError, RefExistsError, StoreNotFoundError
from cas.hashing import short
from cas.remotes import Remote, RemoteList
from cas.sync import TRANSFER_THREADS, TransferReport, transfer
from cas.transfer import copy_objects

if TYPE_CHECKING:
    from cas.backends.base import Backend
    from cas.config import StoreConfig
    from cas.objectstore import ObjectStore
    from cas.store import Store


class Remoting:
    """Mixed into Store: everything that involves another store."""

    backend: Backend
    objects: ObjectStore
    config: StoreConfig
    _read_through: Store | None
    _read_through_checked: bool

    @property
    def remotes(self) -> RemoteList:
        """This store's remotes (``add``, ``remove``, ``get``, ``all``)."""
        return RemoteList(self.backend)

    def push(
        self,
        remote: str | os.PathLike[str] | Store | None = None,
        refs: Sequence[str] | None = None,
        *,
        on_conflict: str = "fail",
        progress: bool | None = None,
    ) -> TransferReport:
        """Copy ``refs`` (default: every ref and every run) and their history to ``remote``.

        ``remote`` is a remote's name (default ``origin``, or the only one), a
        URL or path, or an open Store; a store that does not exist yet is
        created with this store's settings. Only objects the remote lacks
        move; refs are written last. A version the remote holds with another
        artifact is a conflict: ``on_conflict="fail"`` (default) raises
        RefConflictError before copying anything, ``"skip"`` leaves it out,
        ``"rename"`` gives it the remote's next free version number. Copied
        runs get cache entries there only if they answer this store's own
        cache lookups (a run pulled from an untrusted remote never does).
        Bad refs, runs and objects are left out and listed in the report's
        ``skipped``; labels and tags must agree with the version they name.
        """
        other, owned = self._other_store(remote, create=True)
        try:
            return transfer(self._self(), other, refs, action="push", on_conflict=on_conflict, progress=progress)
        finally:
            if owned:
                other.close()

    def pull(
        self,
        remote: str | os.PathLike[str] | Store | None = None,
        refs: Sequence[str] | None = None,
        *,
        on_conflict: str = "fail",
        progress: bool | None = None,
        trust_cache: bool | None = None,
    ) -> TransferReport:
        """Copy ``refs`` (default: everything) and their history from ``remote`` into this store; see ``push``.

        Pulled runs answer this store's cache lookups only if ``trust_cache``
        (default: whether the remote is marked ``trust_cache`` in this store's
        remotes); otherwise they are copied for log and lineage only.
        """
        other, owned = self._other_store(remote, create=False)
        if trust_cache is None:
            trust_cache = self._trusts_cache(remote, other)
        try:
            return transfer(
                other, self._self(), refs, action="pull", on_conflict=on_conflict, progress=progress, cache=trust_cache
            )
        finally:
            if owned:
                other.close()

    def _trusts_cache(self, remote: str | os.PathLike[str] | Store | None, other: Store) -> bool:
        """Whether the user marked this remote (by name, or any remote at its URL) as trusted for caching."""
        if remote is None or (isinstance(remote, str) and remote in self.remotes.all()):
            return self.remotes.get(remote).trust_cache
        return self.remotes.trusting_cache(other.url)

    def _self(self) -> Store:
        from cas.store import Store

        assert isinstance(self, Store)
        return self

    def _other_store(self, remote: str | os.PathLike[str] | Store | None, *, create: bool) -> tuple[Store, bool]:
        from cas.store import Store

        if isinstance(remote, Store):
            return remote, False
        if remote is None or (isinstance(remote, str) and remote in self.remotes.all()):
            url: str = self.remotes.get(remote).url
        else:
            url = os.fspath(remote)
        return open_remote(url, like=self._self() if create else None), True

    # -- read-through ----------------------------------------------------------------
    def read_through_store(self) -> Store | None:
        """The store ``get`` fetches missing objects from (a remote marked read-through), opened once."""
        if not self._read_through_checked:
            self._read_through_checked = True
            remote = self.remotes.read_through()
            if remote is not None:
                self._read_through = open_remote(remote.url, like=None)
        return self._read_through

    def fetch_missing(self, digests: list[bytes]) -> bool:
        """Copy objects this store lacks from its read-through remote, and keep them.

        Only objects move (verified): never a ref, run or cache entry, so a
        read-through remote can not answer a cache lookup. Returns False when
        no remote is marked read-through; raises ObjectNotFoundError when it
        lacks them too, IntegrityError when its copy is damaged, BackendError.
        """
        remote = self.read_through_store()
        if remote is None:
            return False
        try:
            with ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="cas-fetch") as pool:
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
        """The stored size of one object: here, else in the read-through remote (where ``get`` would fetch it).

        Raises ObjectNotFoundError when neither holds it.
        """
        for store in (self, self.read_through_store()):
            if store is None:
                continue
            loc = store.objects.locate(d)
            if loc is not None:
                return loc.entry.stored
            try:
                return store.objects.loose_size(d)
            except FileNotFoundError:
                continue
        raise ObjectNotFoundError(
            f"object {short(d)} is missing"
            + (" here and in the read-through remote" if self._read_through is not None else "")
        )


def open_remote(url: str, *, like: Store | None) -> Store:
    """Open the store at ``url`` (never reading through it further); create it like ``like`` if absent.

    Without ``like`` the store is only read (pull, clone, read-through), so its
    create-if-absent probe, which writes, is skipped.
    """
    from cas.store import open as open_store

    try:
        return open_store(url, create=False, read_through=False, single_writer=like is None)
    except StoreNotFoundError:
        if like is None:
            raise
    from cas.backends import backend_for

    backend = backend_for(url)
    try:
        backend.create(CONFIG_KEY, like.config.to_bytes())  # the same chunking, so dedup carries over
    finally:
        backend.close()
    return open_store(url, create=False, read_through=False)


def clone(
    url: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    trust_cache: bool = False,
    on_report: Callable[[TransferReport], None] | None = None,
    **options: Any,
) -> Store:
    """Make a new store at ``path`` (default ``./.cas``) with everything the store at ``url`` holds.

    The new store takes the other's chunking and compression (so dedup
    carries over) but none of its policy: ``allow_pickle`` and the gc grace
    period start at their defaults. It names the other store as its remote
    ``origin``; with ``trust_cache`` that remote is marked trusted for
    caching and the cloned runs answer cache lookups (otherwise they serve
    log and lineage only). ``on_report`` receives the pull's TransferReport
    (what was copied, and what was skipped and why).
    Raises StoreNotFoundError if there is no store at ``url``, RefExistsError
    if ``path`` already holds one, InvalidConfigError if ``url``'s config is
    out of range.
    """
    from cas.backends import backend_for
    from cas.store import open as open_store

    text = os.fspath(url)
    source = open_remote(text, like=None)
    try:
        target_url = os.fspath(path) if path is not None else str(Path.cwd() / ".cas")
        backend = backend_for(target_url)
        try:
            if not backend.create(CONFIG_KEY, source.config.for_new_store().to_bytes()):
                raise RefExistsError(f"{target_url} already holds a store")
        finally:
            backend.close()
        store = open_store(target_url, create=False, **options)
        try:
            store.remotes.add("origin", text, trust_cache=trust_cache)
            report = store.pull(source, trust_cache=trust_cache)
        except CasError:
            store.close()
            raise
        if on_report is not None:
            on_report(report)
        return store
    finally:
        source.close()


__all__ = ["Remote", "Remoting", "clone", "open_remote"]

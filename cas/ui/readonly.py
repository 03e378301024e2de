"""The store as ``cas ui`` sees it: read-only, enforced in one place (the backend).

Every route of the UI is a GET, and a GET must never change the store: not
by a read-through copy, a saved visualization, a cache entry or a freshened
timestamp. The UI therefore never uses the caller's ``Store`` directly; it
opens its own over ``ReadOnlyBackend``, which refuses every write with
ReadOnlyStoreError. With a read-through remote, content-addressed keys
(objects, packs, pack indexes) the local store lacks are read from the
remote in place; every object read is still verified against its hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn, TypeVar

from cas.backends import Backend, Sink, backend_for
from cas.errors import ReadOnlyStoreError
from cas.keys import INDEX_FOLDER, OBJECTS_FOLDER, PACKS_FOLDER
from cas.store import Store

#: Key prefixes named by the hash of what they hold: the same bytes in every store, so safe to read elsewhere.
SHARED = (OBJECTS_FOLDER, PACKS_FOLDER, INDEX_FOLDER)
T = TypeVar("T")


class ReadOnlyBackend(Backend):
    """Reads ``inner`` (then ``fallback`` for content-addressed keys it lacks); refuses every write.

    Closing it closes only the fallback (``inner`` belongs to whoever opened it).
    """

    def __init__(self, inner: Backend, fallback: Backend | None = None) -> None:
        self.inner = inner
        self.fallback = fallback
        self.url = inner.url
        self.pack_target = inner.pack_target
        self.cheap_exists = inner.cheap_exists

    def _either(self, key: str, read: Callable[[Backend], T]) -> T:
        try:
            return read(self.inner)
        except FileNotFoundError:
            if self.fallback is None or not key.startswith(SHARED):
                raise
        return read(self.fallback)

    def read(self, key: str) -> bytes:
        return self._either(key, lambda b: b.read(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._either(key, lambda b: b.read_range(key, offset, length))

    def readv(self, key: str, offset: int, buffers: Sequence[memoryview]) -> int:
        return self._either(key, lambda b: b.readv(key, offset, buffers))

    def exists(self, key: str) -> bool:
        if self.inner.exists(key):
            return True
        return self.fallback is not None and key.startswith(SHARED) and self.fallback.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self._listing(prefix, lambda b: b.list(prefix))

    def list_hex(self, prefix: str) -> Iterator[str]:
        return self._listing(prefix, lambda b: b.list_hex(prefix))

    def _listing(self, prefix: str, listing: Callable[[Backend], Iterator[str]]) -> Iterator[str]:
        if self.fallback is None or not prefix.startswith(SHARED):
            yield from listing(self.inner)
            return
        seen = set()
        for backend in (self.inner, self.fallback):
            for key in listing(backend):
                if key not in seen:
                    seen.add(key)
                    yield key

    def size(self, key: str) -> int:
        return self._either(key, lambda b: b.size(key))

    def mtime(self, key: str) -> float:
        return self._either(key, lambda b: b.mtime(key))

    def write(self, key: str, data: object) -> NoReturn:
        self._refuse(key)

    def create(self, key: str, data: object) -> NoReturn:
        self._refuse(key)

    def open_sink(self) -> Sink:
        self._refuse(PACKS_FOLDER)

    def delete(self, key: str) -> NoReturn:
        self._refuse(key)

    def delete_if_old(self, key: str, cutoff: float) -> NoReturn:
        self._refuse(key)

    def touch(self, key: str) -> NoReturn:
        self._refuse(key)

    def _refuse(self, key: str) -> NoReturn:
        raise ReadOnlyStoreError(f"{self.url} is open read-only here: refusing to write {key[:200]!r}")

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()


def read_only_views(store: Store) -> tuple[Store, Store]:
    """Two read-only stores over ``store``'s backend: the local one alone, and one that also reads
    through the remote ``store`` reads through (the same store when there is none).

    Neither writes, copies or caches anything in the store.
    """
    local = _view(ReadOnlyBackend(store.backend))
    remote = store.remotes.read_through()
    if remote is None:
        return local, local
    # Objects the store lacks are read from the remote in place, never copied in (no fetch_missing); names
    # are this store's own (the UI lists and resolves only those, and reaches artifacts by hash).
    return local, _view(ReadOnlyBackend(store.backend, backend_for(remote.url)))


def _view(backend: ReadOnlyBackend) -> Store:
    # single_writer: the create-if-absent probe would write; no read-through: it copies what it fetches.
    return Store(backend, create=False, workers=2, single_writer=True, read_through=False, allow_pickle=False)

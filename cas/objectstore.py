"""Objects by hash: loose objects, packs of chunks and the chunk index.

Layout below the store root::

    objects/ab/cdef...   one loose object (header + payload), named by its hash
    packs/ab/abcd...     a pack: many chunks back to back, then its index
    index/abcd...        a copy of a pack's index, as a loose-style object

Every read verifies the hash of what it returns. Writing an object that exists
writes nothing and refreshes its timestamp, so gc's grace period covers it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import NamedTuple, overload

from cas import codec
from cas.backends.base import Backend, Buffer, Sink, each_request
from cas.chunktables import ChunkTable
from cas.errors import (
    AmbiguousRefError,
    BackendError,
    CasError,
    CorruptObjectError,
    IntegrityError,
    ObjectNotFoundError,
)
from cas.hashing import digest, is_hex_prefix, short
from cas.keys import (
    INDEX_FOLDER,
    PACKS_FOLDER,
    TABLES_FOLDER,
    index_key,
    object_folder,
    object_key,
    pack_key,
    parse_index_key,
    parse_object_key,
    parse_pack_key,
    parse_table_key,
    table_key,
)
from cas.objects import PackEntry, PackIndex

PACK_TRAILER_MAGIC = b"CASPACK1"
# Objects up to this size are rewritten rather than checked first where checking is a request.
SMALL_REWRITE = 64 << 10
# Single table lookups a locate_many makes (each loading the index of the pack it finds) before it looks up in bulk.
_SINGLE_LOOKUPS = 16
# Rows of pack indexes kept after table lookups led to their packs (about 200 bytes of memory each).
_CACHED_ROWS = 1 << 18
#: A writer folds the index files into a table once a listing finds more than this many.
AUTO_CONSOLIDATE = 1000
#: ... or once the index files hold this many rows (every reader reads them whole).
AUTO_CONSOLIDATE_ROWS = 1 << 18
# The longest pack index a lookup caches whole (a 64 MiB pack of 48 KiB chunks: about 60 KiB).
_CACHED_INDEX = 256 << 10
# How much of a pack's end a trailer read takes at once (most indexes fit: one request).
_TRAILER_READ = 64 << 10
#: How far a tree read from this store may re-use its own chunks, by default (see cas.trees.check_expansion):
#: 256 times its distinct bytes, or 512 MiB in all whatever its re-use (a file of zeros of
#: 256 MiB is one 256 KiB chunk listed 1,024 times).
MAX_EXPANSION = 256
EXPANSION_ALLOWANCE = 512 << 20
#: Rows of verified pack indexes a process keeps for every store it opens (about 60 MiB at most).
VERIFIED_ROWS = 1 << 18


class ChunkLocation(NamedTuple):
    """A chunk inside a pack (a named tuple: made for every entry of every index loaded)."""

    pack: bytes
    entry: PackEntry


class _VerifiedIndexes:
    """Pack indexes this process has read and verified, by pack id, with their chunk locations.

    A pack id is the digest of its index's bytes, so an index read once is the
    same in every store and every handle: a store opened again in this process
    (each step, each request of the UI, each new ``cas.open``) takes the ones
    its listing names from here instead of reading and decoding each again.
    Only indexes whose bytes hashed to their id get here.
    """

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._rows = 0
        self._lock = threading.Lock()
        self._found: OrderedDict[bytes, dict[bytes, ChunkLocation]] = OrderedDict()

    def get(self, pack_id: bytes) -> dict[bytes, ChunkLocation] | None:
        with self._lock:
            found = self._found.get(pack_id)
            if found is not None:
                self._found.move_to_end(pack_id)
            return found

    def clear(self) -> None:
        """Forget every index (what a new process starts with)."""
        with self._lock:
            self._found.clear()
            self._rows = 0

    def add(self, pack_id: bytes, index: PackIndex) -> dict[bytes, ChunkLocation]:
        """The chunk locations of a verified index, kept for later handles."""
        locations = _locations(pack_id, index)
        with self._lock:
            if pack_id not in self._found and len(locations) <= self._max_rows:
                self._found[pack_id] = locations
                self._rows += len(locations)
                while self._rows > self._max_rows:
                    _, dropped = self._found.popitem(last=False)
                    self._rows -= len(dropped)
        return locations


def _locations(pack_id: bytes, index: PackIndex) -> dict[bytes, ChunkLocation]:
    return {e.digest: ChunkLocation(pack_id, e) for e in index.entries}


_verified = _VerifiedIndexes(VERIFIED_ROWS)


class ObjectStore:
    """Content-addressed reads and writes on top of a backend."""

    def __init__(
        self,
        backend: Backend,
        executor: Executor,
        *,
        compression_level: int = 1,
        max_expansion: float = MAX_EXPANSION,
        expansion_allowance: int = EXPANSION_ALLOWANCE,
        fetch_missing: Callable[[list[bytes]], bool] | None = None,
    ) -> None:
        self.backend = backend
        self.executor = executor
        self.compression_level = compression_level
        #: A tree read from here may declare at most max(expansion_allowance, max_expansion x its distinct bytes).
        self.max_expansion = max_expansion
        self.expansion_allowance = expansion_allowance
        self._recent: dict[bytes, ChunkLocation] = {}
        self._loaded_indexes: set[bytes] = set()
        self._written: set[bytes] = set()
        self._tables: dict[bytes, ChunkTable] = {}
        self._pack_cache: OrderedDict[bytes, list[bytes]] = OrderedDict()  # pack -> its digests, LRU
        self._cached: dict[bytes, ChunkLocation] = {}
        self._cached_rows = 0
        self._gone: set[bytes] = set()
        self._index_lock = threading.Lock()
        self._index_ready = False
        # One listing at a time: threads that miss at once share the listing one of them makes.
        self._refresh_lock = threading.Lock()
        self._refreshes = 0  # listings begun
        #: Packs whose index could be read neither from index/ nor from the pack.
        #: Chunk tables that could not be read (their packs' chunks may not be found).
        self.unreadable_tables: dict[bytes, CasError] = {}
        self.unreadable: dict[bytes, CasError] = {}
        self._batch: dict[bytes, tuple[bytes, bytes, int]] | None = None
        self._batch_lock = threading.Lock()
        #: Copies objects this store lacks from elsewhere (a read-through remote): False if
        #: there is nowhere to fetch from, ObjectNotFoundError if that place lacks them too.
        self.fetch_missing = fetch_missing
        #: Called after a listing finds more than AUTO_CONSOLIDATE index files, in a process that
        #: has written packs: the repository folds them into a table (stores at format 2 only).
        self.on_many_recent: Callable[[], None] | None = None

    # -- loose objects -------------------------------------------------------
    def put_object(self, raw: Buffer, *, compress: bool | None = None, loose: bool = False) -> bytes:
        """Store ``raw`` as an object and return its digest (freshening an existing loose one).

        Inside ``deferred()``, the object is gathered into a pack written by
        ``flush`` (one write for many small objects), unless ``loose``.
        """
        d = digest(raw)
        if self._batch is not None and not loose:
            if compress is None:
                compress = codec.worth_compressing(raw, self.compression_level)
            header, payload = codec.encode(raw, compress=compress, level=self.compression_level)
            with self._batch_lock:
                if d not in self._batch:
                    self._batch[d] = (header, bytes(payload), len(raw))
            return d
        key = object_key(d)
        with backend_errors(key):
            # Where asking costs as much as writing (object stores), small objects are just
            # written again: same bytes, and the new timestamp is the freshen.
            if (self.backend.cheap_exists or len(raw) > SMALL_REWRITE) and self.backend.exists(key):
                try:
                    self.backend.touch(key)
                    return d
                except FileNotFoundError:
                    pass  # gc took it between the two calls: write it again
            if compress is None:
                compress = codec.worth_compressing(raw, self.compression_level)
            header, payload = codec.encode(raw, compress=compress, level=self.compression_level)
            self.backend.write(key, header + bytes(payload))
        return d

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Gather the objects put inside the block into packs (written on ``flush`` and at the end)."""
        if self._batch is not None:  # nested: the outer block writes
            yield
            return
        self._batch = {}
        try:
            yield
            self.flush()
        finally:
            self._batch = None

    def flush(self) -> None:
        """Write the objects gathered by ``deferred()`` as one pack, and its index."""
        if not self._batch:
            return
        with self._batch_lock:
            items, self._batch = self._batch, {}
        self.write_pack((d, [header, payload], raw_size, header[codec.CODEC_BYTE])
                        for d, (header, payload, raw_size) in items.items())  # fmt: skip

    def write_pack(
        self,
        objects: Iterable[tuple[bytes, Sequence[Buffer], int, int]],
        *,
        on_written: Callable[[int], None] | None = None,
        register: bool = True,
    ) -> tuple[bytes, PackIndex, int]:
        """Write ``(digest, stored pieces, raw size, codec)`` objects as one new pack, then its index.

        Returns (pack id, index, bytes). Nothing is visible if it fails part-way.
        ``register=False`` leaves the pack out of this process's index (the
        caller registers it, as a repack does once the old pack is forgotten).
        """
        sink = self.backend.open_sink()
        entries = []
        offset = 0
        try:
            for d, pieces, raw_size, codec_id in objects:
                stored = sum(len(p) for p in pieces)
                sink.pwrite(offset, pieces)
                entries.append(PackEntry(d, offset, stored, raw_size, codec_id))
                offset += stored
                if on_written is not None:
                    on_written(stored)
        except BaseException:
            sink.abort()
            raise
        with backend_errors(PACKS_FOLDER):
            pack_id, index = self.finish_pack(sink, entries, offset)
        if register:
            self.register_pack(pack_id, index)
        return pack_id, index, offset

    def get_object(self, d: bytes) -> bytes:
        """Read and verify an object: loose, or (written by a batch) in a pack."""
        if self._batch:
            self.flush()  # reads see every object put before them
        damaged: CasError | None = None
        if self._index_ready:
            # Known to be packed (no request to ask): read it there, not first as a loose object.
            packed = self._known(d)
            if packed is not None:
                try:
                    return self.read_relocating(packed)
                except ObjectNotFoundError:
                    pass  # the pack went and no other holds it: maybe loose
                except CasError as exc:
                    damaged = exc  # a loose copy may still be whole
        try:
            return self._get_loose(d)
        except ObjectNotFoundError:
            if damaged is not None:
                raise damaged from None
            loc = self.locate(d)
            if loc is None:
                self.refresh_index()  # another process's batch may have packed it
                loc = self.locate(d)
            if loc is None:
                if self.fetch_missing is None or not self.fetch_missing([d]):
                    raise
                return self._get_fetched(d)
            return self.read_relocating(loc)

    def _get_loose(self, d: bytes) -> bytes:
        """A loose object, read and verified; ObjectNotFoundError if there is none."""
        key = object_key(d)
        raw = codec.decode(self._read(key, d), key=f"object {short(d)}")
        codec.verify(raw, d, key=f"object {short(d)}")
        return bytes(raw)

    def _get_fetched(self, d: bytes) -> bytes:
        """An object just copied in by ``fetch_missing`` (loose or in a registered pack)."""
        loc = self.locate(d)
        if loc is not None:
            return self.read_packed(loc)
        return self._get_loose(d)

    def has_object(self, d: bytes) -> bool:
        """Whether an object is stored loose (packed chunks and objects: ``knows_chunk``)."""
        with backend_errors(object_key(d)):
            return self.backend.exists(object_key(d))

    def has_any(self, d: bytes) -> bool:
        """Whether an object is stored, loose or packed."""
        return self.knows_chunk(d) or self.has_object(d)

    def loose_size(self, d: bytes) -> int:
        """Stored size of a loose object (header included)."""
        with backend_errors(object_key(d)):
            return self.backend.size(object_key(d))

    def _read(self, key: str, d: bytes) -> bytes:
        try:
            with backend_errors(key):
                return self.backend.read(key)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"object {short(d)} not found") from None

    def resolve_prefix(self, prefix: str) -> bytes:
        """Expand a hex prefix (>= 6 digits) to the one loose object it names."""
        if not is_hex_prefix(prefix):
            raise ObjectNotFoundError(f"not a hash or hash prefix: {prefix!r}")
        folder = object_folder(prefix)
        with backend_errors(folder):
            loose = (parse_object_key(k) for k in self.backend.list(folder))
            found = {d.hex() for d in loose if d is not None and d.hex().startswith(prefix)}
        # Objects a batch packed are found through the index (chunks match too; callers check the kind).
        found |= {d.hex() for d in self.find_prefix(prefix)}
        if not found:
            raise ObjectNotFoundError(f"no object matches {prefix!r}")
        if len(found) > 1:
            raise AmbiguousRefError(f"hash prefix {prefix!r} matches {len(found)} objects")
        return bytes.fromhex(found.pop())

    # -- chunk index ---------------------------------------------------------
    # Three parts, looked up in this order: the recent part (every ``index/<pack>`` file,
    # read whole: packs no table covers yet, and this process's own), the indexes of packs
    # a table lookup led to (a bounded LRU: the neighbours of a chunk are usually in its
    # pack), and the chunk tables (``midx/``), read by ranges. Packs found missing (gc
    # removed or repacked them) are skipped until a listing shows them again.
    def ensure_index(self) -> None:
        """List the chunk index if this process has not yet."""
        if not self._index_ready:
            self.refresh_index()  # (threads that get here at once share one listing)

    def locate(self, d: bytes) -> ChunkLocation | None:
        """Where a chunk sits in a pack, or None (it may be loose, or absent)."""
        self.ensure_index()
        loc = self._known(d)
        if loc is None:
            loc = self._from_tables(d)
        return loc

    def locate_many(self, digests: Iterable[bytes]) -> dict[bytes, ChunkLocation]:
        """Where each of these chunks sits in a pack (the ones not found are left out).

        A few single lookups first, each loading the index of the pack it finds (a
        file's chunks mostly sit together); what is left is looked up in bulk.
        """
        self.ensure_index()
        found: dict[bytes, ChunkLocation] = {}
        rest: list[bytes] = []
        singles = 0
        for d in digests:
            loc = self._known(d)
            if loc is None and singles < _SINGLE_LOOKUPS and self._tables:
                singles += 1
                loc = self._from_tables(d)
            if loc is not None:
                found[d] = loc
            elif d not in found:
                rest.append(d)
        for table in list(self._tables.values()):
            if not rest:
                break
            try:
                located = table.lookup_many(rest)
            except (CasError, FileNotFoundError) as exc:
                self._table_failed(table, exc)
                continue
            for d, where in located.items():
                if where.pack not in self._gone:
                    found[d] = ChunkLocation(where.pack, where.entry)
            rest = [d for d in rest if d not in found]
        return found

    def _known(self, d: bytes) -> ChunkLocation | None:
        loc = self._recent.get(d)
        if loc is not None and loc.pack not in self._gone:
            return loc
        loc = self._cached.get(d)
        if loc is not None and loc.pack not in self._gone:
            return loc
        return None

    def _from_tables(self, d: bytes) -> ChunkLocation | None:
        for table in list(self._tables.values()):
            try:
                where = table.lookup(d)
            except (CasError, FileNotFoundError) as exc:
                self._table_failed(table, exc)
                continue
            if where is None or where.pack in self._gone:
                continue
            self._cache_pack(where.pack, table)
            return ChunkLocation(where.pack, where.entry)
        return None

    def _table_failed(self, table: ChunkTable, exc: BaseException) -> None:
        """A table that vanished (merged by another process) or is unreadable is set aside."""
        with self._index_lock:
            self._tables.pop(table.id, None)
        if isinstance(exc, CasError) and not isinstance(exc, ObjectNotFoundError):
            self.unreadable_tables[table.id] = exc
        self._index_ready = False  # list again on the next lookup: its replacement is there

    def _cache_pack(self, pack_id: bytes, table: ChunkTable) -> None:
        """Keep the index of a pack a table lookup led to (its trailer, verified against its id)."""
        with self._index_lock:
            if pack_id in self._pack_cache:
                self._pack_cache.move_to_end(pack_id)
                return
        try:
            index = self.read_pack_trailer(pack_id, max_length=_CACHED_INDEX)
        except ObjectNotFoundError:
            self._gone.add(pack_id)
            return
        except CasError:
            return  # the table's row still locates the chunk, and its read is verified
        if index is None:
            return  # an index of many small objects: lookups in the table serve them better
        with self._index_lock:
            self._pack_cache[pack_id] = [e.digest for e in index.entries]
            for e in index.entries:
                self._cached[e.digest] = ChunkLocation(pack_id, e)
            self._cached_rows += len(index.entries)
            while self._cached_rows > _CACHED_ROWS and len(self._pack_cache) > 1:
                self._uncache(*self._pack_cache.popitem(last=False))

    def _uncache(self, pack_id: bytes, digests: list[bytes]) -> None:
        """Drop a pack's rows from the cache (under the index lock)."""
        self._cached_rows -= len(digests)
        for d in digests:
            loc = self._cached.get(d)
            if loc is not None and loc.pack == pack_id:
                del self._cached[d]

    def find_prefix(self, prefix: str) -> set[bytes]:
        """Packed objects whose hex digest starts with ``prefix`` (at least 6 digits)."""
        self.ensure_index()
        found = {d for d in list(self._recent) if d.hex().startswith(prefix)}
        for table in list(self._tables.values()):
            try:
                found |= table.find_prefix(prefix)
            except (CasError, FileNotFoundError) as exc:
                self._table_failed(table, exc)
        return found

    def knows_chunk(self, d: bytes) -> bool:
        """True if the chunk is in a known pack (memory only, for recent packs and packs looked up before)."""
        return self.locate(d) is not None

    def refresh_index(self) -> None:
        """List the chunk index again: packs and tables written since the last look (by any process).

        ``index/`` is listed before ``midx/``: a consolidation writes a table before it
        deletes the index files the table replaces, so every pack is in one listing or the other.
        Threads that ask at once share one listing: a caller that waited while
        a listing begun after its call ran takes that one (it saw everything
        written before the call).
        """
        asked = self._refreshes
        with self._refresh_lock:
            if self._refreshes > asked:
                return  # a listing that began after this call finished while it waited
            self._refreshes += 1
            self._list_index()
        many = len(self._loaded_indexes) > AUTO_CONSOLIDATE or len(self._recent) > AUTO_CONSOLIDATE_ROWS
        if self.on_many_recent is not None and many and self._written:
            hook, self.on_many_recent = self.on_many_recent, None  # once at a time (it lists again itself)
            try:
                hook()
            finally:
                self.on_many_recent = hook

    def _list_index(self) -> None:
        for _ in range(3):
            with backend_errors(INDEX_FOLDER):
                keys = list(self.backend.list(INDEX_FOLDER))
            with backend_errors(TABLES_FOLDER):
                table_keys = list(self.backend.list(TABLES_FOLDER))
            present = {pack_id for key in keys if (pack_id := parse_index_key(key)) is not None}
            tables = {t for key in table_keys if (t := parse_table_key(key)) is not None}
            self._gone -= present
            gone = self._loaded_indexes - present - self._written
            if gone:  # merged into a table (listed below), or removed by gc
                with self._index_lock:
                    self._recent = {d: loc for d, loc in self._recent.items() if loc.pack not in gone}
                    self._loaded_indexes -= gone
            new = sorted(present - self._loaded_indexes)
            known = {pack_id: found for pack_id in new if (found := _verified.get(pack_id)) is not None}
            for pack_id, locations in known.items():
                self._register(pack_id, locations, written=False)
                self.unreadable.pop(pack_id, None)
            new = [pack_id for pack_id in new if pack_id not in known]
            # (each_request's threads, not the executor's: they may be waiting for this listing)
            for pack_id, index in zip(new, each_request(self.backend, self._try_pack_index, new), strict=True):
                if isinstance(index, PackIndex):
                    self._register(pack_id, _verified.add(pack_id, index), written=False)
                    self.unreadable.pop(pack_id, None)
                else:
                    self.unreadable[pack_id] = index
            if self._open_tables(tables):
                break
        self._index_ready = True

    def _open_tables(self, listed: set[bytes]) -> bool:
        """Keep the listed tables open; False if one vanished before it could be opened (list again)."""
        with self._index_lock:
            for table_id in set(self._tables) - listed:
                del self._tables[table_id]
        complete = True
        for table_id in sorted(listed - set(self._tables)):
            try:
                with backend_errors(table_key(table_id)):
                    table = ChunkTable(self.backend, table_id)
            except FileNotFoundError:
                complete = False  # merged into another table meanwhile
                continue
            except CasError as exc:
                self.unreadable_tables[table_id] = exc
                continue
            self.unreadable_tables.pop(table_id, None)
            with self._index_lock:
                self._tables[table_id] = table
        return complete

    def tables(self) -> list[ChunkTable]:
        """The chunk tables listed last (by size, smallest first)."""
        self.ensure_index()
        return sorted(self._tables.values(), key=lambda t: t.entry_count)

    def recent_pack_ids(self) -> set[bytes]:
        """Packs with an ``index/`` file (read whole by every reader), as listed last."""
        self.ensure_index()
        return set(self._loaded_indexes)

    def _try_pack_index(self, pack_id: bytes) -> PackIndex | CasError:
        try:
            return self.read_pack_index(pack_id)
        except CasError as exc:
            return exc

    def read_pack_index(self, pack_id: bytes) -> PackIndex:
        """A pack's index from ``index/``, else from the copy that ends the pack itself."""
        key = index_key(pack_id)
        try:
            raw = codec.decode(self._read(key, pack_id), key=key)
            codec.verify(raw, pack_id, key=key)
            return PackIndex.from_bytes(raw, key=key)
        except (IntegrityError, ObjectNotFoundError) as first:
            try:
                return self.read_pack_trailer(pack_id)
            except (IntegrityError, ObjectNotFoundError):
                raise first from None

    @overload
    def read_pack_trailer(self, pack_id: bytes) -> PackIndex: ...
    @overload
    def read_pack_trailer(self, pack_id: bytes, *, max_length: int) -> PackIndex | None: ...

    def read_pack_trailer(self, pack_id: bytes, *, max_length: int | None = None) -> PackIndex | None:
        """The index that ends a pack, read from its trailer and checked: magic, length and hash (the pack id).

        With ``max_length``, None for an index longer than that (nothing more is read).
        Raises ObjectNotFoundError for a missing pack, CorruptObjectError or IntegrityError for a bad trailer.
        """
        key = pack_key(pack_id)
        with backend_errors(key):
            try:
                size = self.backend.size(key)
                start = max(0, size - _TRAILER_READ)
                tail = self.backend.read_range(key, start, size - start)
                length = int.from_bytes(tail[-12:-8], "little")
                if len(tail) < 12 or tail[-8:] != PACK_TRAILER_MAGIC or length > size - 12:
                    raise CorruptObjectError(f"pack {short(pack_id)} has no valid trailer", key=key)
                if max_length is not None and length > max_length:
                    return None
                if length + 12 <= len(tail):
                    raw = tail[len(tail) - 12 - length : len(tail) - 12]
                else:
                    raw = self.backend.read_range(key, size - 12 - length, length)
            except FileNotFoundError:
                raise ObjectNotFoundError(f"pack {short(pack_id)} is missing") from None
        codec.verify(raw, pack_id, key=f"trailer of pack {short(pack_id)}")
        return PackIndex.from_bytes(raw, key=key)

    def describe_unreadable(self) -> str:
        """Why some packs' chunks can not be found (empty when every index loaded)."""
        return "; ".join(str(e) for e in [*self.unreadable.values(), *self.unreadable_tables.values()])

    def register_pack(self, pack_id: bytes, index: PackIndex, *, written: bool = True) -> None:
        """Add a pack to the recent part (``written``: this process wrote it, so it stays until forgotten)."""
        self._register(pack_id, _locations(pack_id, index), written=written)

    def _register(self, pack_id: bytes, locations: dict[bytes, ChunkLocation], *, written: bool) -> None:
        with self._index_lock:
            recent = self._recent
            held = recent.keys() & locations.keys()
            if held:  # a chunk in two packs stays where it was found first, unless that pack is gone
                locations = {d: loc for d, loc in locations.items() if d not in held or recent[d].pack in self._gone}
            recent.update(locations)
            self._loaded_indexes.add(pack_id)
            if written:
                self._written.add(pack_id)
        self._gone.discard(pack_id)

    def forget_pack(self, pack_id: bytes) -> None:
        """Drop a pack from the in-memory index (gc removed it)."""
        with self._index_lock:
            self._recent = {d: loc for d, loc in self._recent.items() if loc.pack != pack_id}
            self._loaded_indexes.discard(pack_id)
            self._written.discard(pack_id)
            dropped = self._pack_cache.pop(pack_id, None)
            if dropped is not None:
                self._uncache(pack_id, dropped)
        self._gone.add(pack_id)

    def pack_gone(self, pack_id: bytes) -> None:
        """A read found this pack missing: skip it until a listing shows it again."""
        self._gone.add(pack_id)

    def pack_ids(self) -> Iterator[bytes]:
        """Ids of the packs the index knows: recent ones and those the tables cover (gone ones too)."""
        self.ensure_index()
        ids = set(self._loaded_indexes)
        for table in list(self._tables.values()):
            ids.update(p for p, _ in table.pack_list())
        return iter(sorted(ids))

    def existing_pack_ids(self) -> set[bytes]:
        """Every pack file in the store, indexed or not (one listing of ``packs/``)."""
        with backend_errors(PACKS_FOLDER):
            return {p for key in self.backend.list(PACKS_FOLDER) if (p := parse_pack_key(key)) is not None}

    def pack_entries(self) -> dict[bytes, list[PackEntry]]:
        """Every indexed pack's entries, by pack id, for packs that still exist (gc, fsck, usage).

        Reads every index whole: its cost grows with the store, as gc's marking does.
        """
        self.ensure_index()
        existing = self.existing_pack_ids()
        packs: dict[bytes, list[PackEntry]] = {}
        for table in self.tables():
            for pack_id, entries in table.entries_by_pack().items():
                if pack_id in existing:
                    packs[pack_id] = entries
        recent = [pack_id for pack_id in self._loaded_indexes if pack_id in existing]
        for pack_id, index in zip(recent, each_request(self.backend, self.read_pack_index, recent), strict=True):
            packs[pack_id] = list(index.entries)
        return packs

    def freshen_chunks(self, digests: set[bytes], *, done: set[bytes] | None = None) -> set[bytes]:
        """Refresh the timestamps of the packs (and loose objects) holding these chunks.

        A writer that reuses stored chunks calls this before writing what refers
        to them, so gc's grace period covers them as if they had just been written.
        Returns the chunks that turned out to be gone (gc removed their pack
        since this process loaded its index): the caller must store them again.
        ``done`` collects the packs already freshened, so a put touches each once.
        """
        missing: set[bytes] = set()
        for attempt in range(2):
            packs: dict[bytes, set[bytes]] = {}
            located = self.locate_many(digests)
            for d in digests:
                loc = located.get(d)
                if loc is not None:
                    packs.setdefault(loc.pack, set()).add(d)
                elif not self._touch(object_key(d)):
                    missing.add(d)
            lost: set[bytes] = set()
            for pack_id, held in packs.items():
                if done is not None and pack_id in done:
                    continue
                if self._touch(pack_key(pack_id)):
                    if done is not None:
                        done.add(pack_id)
                else:
                    self._gone.add(pack_id)
                    lost |= held
            if not lost:
                return missing
            if attempt == 0:
                self.refresh_index()  # repacked elsewhere, or really gone
                digests = lost
        return missing | lost

    def _touch(self, key: str) -> bool:
        try:
            with backend_errors(key):
                self.backend.touch(key)
        except FileNotFoundError:
            return False
        return True

    def write_pack_index(self, pack_id: bytes, index_bytes: bytes) -> None:
        header, payload = codec.encode(index_bytes, compress=True, level=self.compression_level)
        with backend_errors(index_key(pack_id)):
            self.backend.write(index_key(pack_id), header + bytes(payload))

    def finish_pack(self, sink: Sink, entries: list[PackEntry], size: int) -> tuple[bytes, PackIndex]:
        """Write the trailer of a pack holding ``entries`` (``size`` bytes so far), commit it, then its index.

        Pack first, then its index: a reader that finds the index finds the pack.
        The caller registers the pack once it is ready to be read from.
        """
        try:
            index = PackIndex(tuple(sorted(entries, key=lambda e: e.offset)))
            index_bytes = index.to_bytes()
            pack_id = digest(index_bytes)
            sink.pwrite(size, [pack_trailer(index_bytes)])
        except BaseException:
            sink.abort()
            raise
        sink.commit(pack_key(pack_id))
        self.write_pack_index(pack_id, index_bytes)
        return pack_id, index

    # -- reading chunks ------------------------------------------------------
    def read_chunk(self, d: bytes, size: int) -> bytes:
        """Read and verify one chunk, wherever it lives."""
        loc = self.locate(d)
        if loc is None and not self.has_object(d):
            self.refresh_index()
            loc = self.locate(d)
        if loc is None:
            raw = self.get_object(d)
        else:
            raw = self.read_relocating(loc)
        if len(raw) != size:
            raise CorruptObjectError(f"chunk {short(d)} is {len(raw)} bytes, tree says {size}")
        return raw

    def read_packed(self, loc: ChunkLocation) -> bytes:
        """Read and verify a packed object (ObjectNotFoundError if its pack has gone)."""
        key = pack_key(loc.pack)
        entry = loc.entry
        if entry.stored > _max_stored(entry.raw_size):
            raise CorruptObjectError(f"chunk {short(entry.digest)}: the index claims {entry.stored:,} stored bytes "
                                     f"for {entry.raw_size:,}", key=key)  # fmt: skip
        with backend_errors(key):
            try:
                data = self.backend.read_range(key, entry.offset, entry.stored)
            except FileNotFoundError:
                self._gone.add(loc.pack)
                raise ObjectNotFoundError(f"pack {short(loc.pack)} is missing") from None
        return bytes(verify_packed(data, entry, loc.pack))

    def read_relocating(self, loc: ChunkLocation) -> bytes:
        """``read_packed``, and if the pack has gone (gc repacked it), find the object again once."""
        try:
            return self.read_packed(loc)
        except ObjectNotFoundError:
            self.refresh_index()
            again = self.locate(loc.entry.digest)
            if again is None or again.pack == loc.pack:
                raise
            return self.read_packed(again)


def _max_stored(raw_size: int) -> int:
    """The most a stored form of ``raw_size`` bytes can take (header, and zstd's worst case, with room)."""
    return codec.HEADER_SIZE + raw_size + (raw_size >> 7) + (1 << 10)


def verify_packed(stored: Buffer, entry: PackEntry, pack_id: bytes) -> Buffer:
    """The raw bytes of a pack entry's stored form, checked: length, header against the index, hash."""
    name = f"chunk {short(entry.digest)} in pack {short(pack_id)}"
    if len(stored) != entry.stored:
        raise CorruptObjectError(f"{name}: truncated", key=pack_key(pack_id))
    header = codec.parse_header(stored, key=name)
    check_entry_header(header, entry, name)
    raw = codec.decode_payload(header, memoryview(stored)[codec.HEADER_SIZE :], key=name)
    codec.verify(raw, entry.digest, key=name)
    return raw


def check_entry_header(header: codec.Header, entry: PackEntry, name: str) -> None:
    """A pack entry's header must agree with the index that points at it."""
    if header.codec != entry.codec or header.raw_size != entry.raw_size:
        raise CorruptObjectError(f"{name}: header disagrees with the pack index")


def pack_trailer(index_bytes: bytes) -> bytes:
    """What ends a pack: its index, the index length (u32 LE), and a magic."""
    return index_bytes + len(index_bytes).to_bytes(4, "little") + PACK_TRAILER_MAGIC


@contextmanager
def backend_errors(key: str) -> Iterator[None]:
    """Turn unexpected backend failures into BackendError (missing keys pass through)."""
    try:
        yield
    except (FileNotFoundError, FileExistsError, CasError):
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"storage failed at {key}: {exc}") from exc

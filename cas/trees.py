"""Writing and reading the files of one artifact (the materializer's view of a tree)."""

from __future__ import annotations

import mmap
import os
from concurrent.futures import Future
from operator import itemgetter, ne
from pathlib import Path
from typing import Any

from cas import codec, destination, restore
from cas.backends.base import Buffer
from cas.chunking import ChunkParams
from cas.errors import (
    CorruptObjectError,
    DeclaredSizeError,
    ExpansionLimitError,
    InvalidArgumentError,
    InvalidNameError,
    SourceNotFoundError,
)
from cas.hashing import short
from cas.ingest import ChunkIngest, ChunkRefs, Release
from cas.objects import INLINE_MAX, FileEntry, Tree, check_portable_path
from cas.objectstore import ChunkLocation, ObjectStore

# Files up to this size are one loose object; larger ones are cut into packed chunks.
SMALL_MAX = 1 << 20
_KEEP_LOCATED = 1 << 17
_DIGEST = itemgetter(0)
_SIZE = itemgetter(1)


class _Pending:
    """A large file whose chunks are still being stored."""

    def __init__(self, size: int, futures: list[Future[ChunkRefs]]) -> None:
        self.size = size
        self.futures = futures


class TreeWriter:
    """Collects the files a materializer writes; ``finish`` returns the tree once all is stored."""

    def __init__(self, objects: ObjectStore, params: ChunkParams) -> None:
        self._objects = objects
        self._params = params
        self._ingest: ChunkIngest | None = None
        self._pending: dict[str, _Pending] = {}
        self._done: dict[str, FileEntry] = {}
        self._maps: list[mmap.mmap] = []

    def _claim_path(self, path: str) -> None:
        check_portable_path(path)  # refused here, at put, rather than only when restored
        if path in self._done or path in self._pending:
            raise InvalidNameError(f"file {path!r} written twice")

    def write_bytes(self, path: str, data: Buffer) -> None:
        self._claim_path(path)
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = len(view)
        if size <= INLINE_MAX:
            self._done[path] = FileEntry(path, size, data=bytes(view))
        elif size <= SMALL_MAX:
            d = self._objects.put_object(view)
            self._done[path] = FileEntry(path, size, ((d, size),), hash=d)
        else:
            self._write_large(path, view, None)

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        self._claim_path(path)
        try:
            f = open(source, "rb")
        except FileNotFoundError:
            raise SourceNotFoundError(f"no such file: {os.fspath(source)}") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size <= SMALL_MAX:
                self.write_bytes(path, f.read())
                return
            # Mapping the file lets the chunker, the hasher and the writes read
            # the page cache directly; released ranges leave our RSS at once.
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        release = _releaser(mapped)
        self._write_large(path, memoryview(mapped), release)

    def _write_large(self, path: str, view: memoryview, release: Release | None) -> None:
        # Cut, hashed and stored chunk by chunk; chunks the store holds already are only freshened.
        if self._ingest is None:
            self._ingest = ChunkIngest(self._objects, self._params)
        self._pending[path] = _Pending(len(view), self._ingest.add_buffer(view, release))

    def finish(self) -> Tree:
        """Wait for every chunk to be stored, then build the tree."""
        try:
            if self._ingest is not None:
                self._ingest.finish()
            entries = list(self._done.values())
            for path, pending in self._pending.items():
                chunks = tuple(ref for future in pending.futures for ref in future.result())
                entries.append(FileEntry(path, pending.size, chunks))  # no whole-file digest: a version-2 tree
            return Tree.of(entries)
        finally:
            self._close_maps()

    def abort(self) -> None:
        try:
            if self._ingest is not None:
                self._ingest.abort()
        finally:
            self._close_maps()

    def _close_maps(self) -> None:
        self._pending.clear()
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:  # a view is still alive; the mapping goes with it
                pass
        self._maps.clear()


def _releaser(mapped: mmap.mmap) -> Release:
    page = mmap.PAGESIZE

    def release(start: int, end: int) -> None:
        first = start - start % page
        try:
            mapped.madvise(mmap.MADV_DONTNEED, first, end - first)
        except (ValueError, OSError):
            pass  # only a memory hint

    return release


def check_expansion(objects: ObjectStore, tree: Tree) -> dict[bytes, ChunkLocation]:
    """Check a tree's declared sizes against what is stored, before anything is allocated for it.

    A chunk listed many times expands a small object into a large value (a
    file of zeros is one chunk repeated), so a tree may declare at most
    ``max(objects.expansion_allowance, objects.max_expansion x distinct bytes)``,
    where distinct bytes are its inline data plus each distinct chunk once.
    A packed chunk's size must equal the pack index's, and its stored bytes
    must be able to hold it; so must a loose chunk's larger than a small file.
    Returns where each packed chunk was found (the reads plan with it).
    Raises ExpansionLimitError, CorruptObjectError.
    """
    sizes: dict[bytes, int] = {}
    logical = distinct = 0
    for entry in tree.entries:
        logical += entry.size
        if entry.data is not None:
            distinct += entry.size
        else:
            sizes.update(entry.chunks)
    # Every listing of a chunk, in every file, must give the size kept for it (C-level passes).
    for entry in tree.entries:
        if any(map(ne, map(sizes.__getitem__, map(_DIGEST, entry.chunks)), map(_SIZE, entry.chunks))):
            raise CorruptObjectError("the tree lists a chunk with two different sizes")
    if not sizes:
        return {}
    located = objects.locate_many(sizes)
    raw_codec, header = codec.CODEC_RAW, codec.HEADER_SIZE
    for d, loc in located.items():
        n = sizes[d]
        e = loc.entry
        if e.raw_size != n:
            raise CorruptObjectError(f"chunk {short(d)}: the tree says {n} bytes, its pack index {e.raw_size}")
        if e.codec == raw_codec and e.stored - header != n:
            _check_backed(d, n, e.stored, raw=True)
        elif n > (e.stored - header) * codec.MAX_ZSTD_RATIO:
            _check_backed(d, n, e.stored, raw=False)
    if len(located) != len(sizes):
        for d, n in sizes.items():
            if d not in located and n > SMALL_MAX and objects.has_object(d):
                _check_backed(d, n, objects.loose_size(d), raw=False)
    distinct += sum(sizes.values())
    limit = max(objects.expansion_allowance, objects.max_expansion * distinct)
    if logical > limit:
        raise ExpansionLimitError(
            f"the artifact declares {logical:,} bytes made of {distinct:,} distinct bytes: it re-uses its chunks "
            f"{logical / max(distinct, 1):,.0f} times, beyond the limit of {objects.max_expansion:,} times "
            f"(or {objects.expansion_allowance:,} bytes in all); if you trust it, raise the limit with "
            "cas.open(..., max_expansion=N, expansion_allowance=BYTES)"
        )
    return located


def _check_backed(d: bytes, size: int, stored: int, *, raw: bool) -> None:
    """``stored`` bytes (header included) can hold ``size`` raw bytes: as they are, or as zstd at most expands."""
    payload = stored - codec.HEADER_SIZE
    room = payload if raw else payload * codec.MAX_ZSTD_RATIO + (128 << 10)
    if payload < 0 or size > room or (raw and size != payload):
        raise DeclaredSizeError(f"chunk {short(d)}: {stored:,} stored bytes can not hold the {size:,} it declares")


class TreeReader:
    """Reads the files of a stored tree, verifying every byte."""

    def __init__(self, objects: ObjectStore, tree: Tree, metadata: dict[str, Any] | None = None) -> None:
        # Before any read allocates what the tree declares; the reads plan with the locations found
        # (kept for trees of up to _KEEP_LOCATED chunks, about 10 GiB: larger ones locate per file).
        located = check_expansion(objects, tree)
        self._located = located if len(located) <= _KEEP_LOCATED else None
        self._objects = objects
        self._entries = {e.path: e for e in tree.entries}
        self._metadata = metadata or {}

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    def _entry(self, path: str) -> FileEntry:
        try:
            return self._entries[path]
        except KeyError:
            raise CorruptObjectError(f"the artifact has no file {path!r}") from None

    def paths(self) -> list[str]:
        return sorted(self._entries)

    def size(self, path: str) -> int:
        return self._entry(path).size

    def read_bytes(self, path: str) -> bytes:
        return restore.read_bytes(self._objects, self._entry(path), self._located)

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of one file (clamped to its size), reading only the chunks they touch."""
        return restore.read_range(self._objects, self._entry(path), start, end)

    def read_into(self, path: str, dest: memoryview) -> None:
        entry = self._entry(path)
        if len(dest) != entry.size:
            raise InvalidArgumentError(f"destination is {len(dest)} bytes, file {path!r} is {entry.size}")
        restore.read_into(self._objects, entry, dest, self._located)

    def restore_file(self, path: str, target: Path, *, executable: bool = False) -> Path:
        """Write one file to ``target``, or into it under its base name if ``target`` is a folder.

        Returns the file written. A file or symlink already there is replaced,
        never written through. Raises NonPortablePathError, DestinationExistsError
        (the destination is a folder), and what reading the file raises.
        """
        entry = self._entry(path)
        dest = destination.plan_file(target, path.rpartition("/")[2])
        dest.parent.mkdir(parents=True, exist_ok=True)
        restore.restore_file(self._objects, entry, dest, executable=executable, located=self._located)
        return dest

    def restore_tree(self, target: Path, *, executable: frozenset[str] = frozenset()) -> Path:
        """Write every file below the folder ``target`` (created if missing); ``executable``: paths to mark so.

        The whole destination is checked before the first file is written
        (see ``cas.destination.plan_folder`` for what is refused).
        """
        paths = self.paths()
        dests = destination.plan_folder(target, paths)
        target.mkdir(parents=True, exist_ok=True)
        made: set[Path] = {target}
        for path, dest in zip(paths, dests, strict=True):
            if dest.parent not in made:
                dest.parent.mkdir(parents=True, exist_ok=True)
                made.add(dest.parent)
            restore.restore_file(
                self._objects, self._entries[path], dest, executable=path in executable, located=self._located
            )
        return target

"""Writing and reading the files of one artifact (the materializer's view of a tree)."""

from __future__ import annotations

import mmap
import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from cas import restore
from cas.backends.base import Buffer
from cas.chunking import ChunkParams
from cas.errors import CorruptObjectError, InvalidNameError, SourceNotFoundError
from cas.hashing import digest, digest_windows
from cas.ingest import ChunkIngest, ChunkRefs, Release
from cas.objects import INLINE_MAX, ChunkMap, FileEntry, Tree, check_tree_path
from cas.objectstore import ObjectStore

# Files up to this size are one loose object; larger ones are cut into packed chunks.
SMALL_MAX = 1 << 20
_HASH_WINDOW = 64 << 20


class _Pending:
    """A large file whose chunks are still being stored."""

    def __init__(self, size: int, file_hash: bytes, futures: list[Future[ChunkRefs]]) -> None:
        self.size = size
        self.hash = file_hash
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
        check_tree_path(path)
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
            self._write_large(path, view, digest(view), None)

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
        view = memoryview(mapped)
        self._write_large(path, view, digest_windows(view, _HASH_WINDOW, release), release)

    def _write_large(self, path: str, view: memoryview, file_hash: bytes, release: Release | None) -> None:
        known = self._objects.read_chunkmap(file_hash, len(view))
        # The same bytes were stored before: nothing to cut, unless gc took some of them meanwhile.
        if known is not None and not self._objects.freshen_chunks({d for d, _ in known.chunks}):
            self._done[path] = FileEntry(path, len(view), known.chunks, hash=file_hash)
            return
        if self._ingest is None:
            self._ingest = ChunkIngest(self._objects, self._params)
        self._pending[path] = _Pending(len(view), file_hash, self._ingest.add_buffer(view, release))

    def finish(self) -> Tree:
        """Wait for every chunk to be stored, then build the tree."""
        try:
            if self._ingest is not None:
                self._ingest.finish()
            entries = dict(self._done)
            for path, pending in self._pending.items():
                chunks = tuple(ref for future in pending.futures for ref in future.result())
                entries[path] = FileEntry(path, pending.size, chunks, hash=pending.hash)
                self._objects.write_chunkmap(ChunkMap(pending.hash, pending.size, chunks))
            return Tree(tuple(entries[p] for p in sorted(entries)))
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


class TreeReader:
    """Reads the files of a stored tree, verifying every byte."""

    def __init__(self, objects: ObjectStore, tree: Tree, metadata: dict[str, Any] | None = None) -> None:
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
        return restore.read_bytes(self._objects, self._entry(path))

    def read_into(self, path: str, dest: memoryview) -> None:
        entry = self._entry(path)
        if len(dest) != entry.size:
            raise ValueError(f"destination is {len(dest)} bytes, file {path!r} is {entry.size}")
        restore.read_into(self._objects, entry, dest)

    def restore_file(self, path: str, target: Path) -> None:
        restore.restore_file(self._objects, self._entry(path), target)

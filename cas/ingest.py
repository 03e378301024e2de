"""Writing the chunks of one put into packs, concurrently.

Regions of the payload are cut on the store's thread pool and stitched in the
caller's thread (see cas.chunking); batches of chunks go to the pool, which hashes them, skips chunks the store already has, compresses them
when a sample says it pays, and appends them to the current pack. Consecutive
batches share a pack until it holds about ``backend.pack_target`` bytes; the
batch that finishes a sealed pack writes its index and commits it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from cas import codec
from cas.backends.base import Buffer, Sink
from cas.chunking import ChunkParams, cut_ends, stitch
from cas.hashing import digest
from cas.objects import PackEntry
from cas.objectstore import ObjectStore

BATCH_BYTES = 8 << 20
REGION_BYTES = 16 << 20
REGIONS_AHEAD = 3

ChunkRefs = list[tuple[bytes, int]]
Release = Callable[[int, int], None]


class _PackBuilder:
    """One pack being filled by several batches at once."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        self._entries: list[PackEntry] = []
        self._size = 0
        self._expected = 0
        self._done = 0
        self._sealed = False
        self._closed = False
        self.assigned = 0

    def expect(self, raw_bytes: int) -> None:
        with self._lock:
            self._expected += 1
            self.assigned += raw_bytes

    def append(self, items: list[tuple[bytes, bytes, Buffer, int]]) -> None:
        """Append (digest, header, payload, raw size) items; they land contiguously."""
        buffers: list[Buffer] = []
        with self._lock:
            if self._sink is None:
                self._sink = self._objects.backend.open_sink()
            sink = self._sink
            offset = start = self._size
            for d, header, payload, raw_size in items:
                stored = len(header) + len(payload)
                self._entries.append(PackEntry(d, offset, stored, raw_size, header[codec.CODEC_BYTE]))
                buffers += (header, payload)
                offset += stored
            self._size = offset
        sink.pwrite(start, buffers)

    def batch_done(self) -> None:
        with self._lock:
            self._done += 1
            ready = self._sealed and self._done == self._expected and not self._closed
            self._closed = self._closed or ready
        if ready:
            self._finish()

    def seal(self) -> None:
        with self._lock:
            self._sealed = True
            ready = self._done == self._expected and not self._closed
            self._closed = self._closed or ready
        if ready:
            self._finish()

    def abort(self) -> None:
        with self._lock:
            sink, self._sink = self._sink, None
            self._closed = True
        if sink is not None:
            sink.abort()

    def _finish(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None:  # every chunk was already stored
            return
        pack_id, index = self._objects.finish_pack(sink, self._entries, self._size)
        self._objects.register_pack(pack_id, index)


class ChunkIngest:
    """Stores the chunks of one put; ``finish`` waits until every pack is committed."""

    def __init__(self, objects: ObjectStore, params: ChunkParams, *, max_inflight: int = 6) -> None:
        self._objects = objects
        self._params = params
        self._claimed: set[bytes] = set()
        self._freshened: set[bytes] = set()  # packs this put has refreshed already
        self._claim_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._futures: list[Future[ChunkRefs]] = []
        self._builders: list[_PackBuilder] = []
        self._pack: _PackBuilder | None = None
        objects.ensure_index()  # load it here, not inside a pool thread

    # -- feeding -------------------------------------------------------------
    def add_buffer(self, view: memoryview, release: Release | None = None) -> list[Future[ChunkRefs]]:
        """Cut and store a buffer; the futures give its chunks in order.

        Regions are cut on the pool in parallel and stitched here, in order.
        ``release(start, end)`` is called once a stored range is no longer needed.
        """
        size = len(view)
        regions = [(s, min(s + REGION_BYTES, size)) for s in range(0, size, REGION_BYTES)]
        cutting: deque[Future[list[int]]] = deque()
        launched = 0
        futures: list[Future[ChunkRefs]] = []
        prev = 0
        for k, (_, end) in enumerate(regions):
            while launched < len(regions) and launched <= k + REGIONS_AHEAD:
                r_start, r_end = regions[launched]
                cutting.append(self._objects.executor.submit(cut_ends, self._params, view, r_start, r_end))
                launched += 1
            candidates = cutting.popleft().result()
            cuts = stitch(self._params, view, prev, end, candidates, end == size)
            batch: list[memoryview] = []
            batch_start = prev
            for pos in cuts:
                batch.append(view[prev:pos])
                prev = pos
                if prev - batch_start >= BATCH_BYTES:
                    futures.append(self._submit(batch, batch_start, prev, release))
                    batch, batch_start = [], prev
            if batch:
                futures.append(self._submit(batch, batch_start, prev, release))
        return futures

    def _submit(self, batch: list[memoryview], start: int, end: int, release: Release | None) -> Future[ChunkRefs]:
        size = end - start
        pack = self._pack
        if pack is None or pack.assigned >= self._objects.backend.pack_target:
            if pack is not None:
                pack.seal()
            pack = self._pack = _PackBuilder(self._objects)
            self._builders.append(pack)
        pack.expect(size)
        self._slots.acquire()
        try:
            future = self._objects.executor.submit(self._store_batch, pack, batch, start, end, release)
        except BaseException:
            self._slots.release()
            raise
        self._futures.append(future)
        return future

    # -- the work of one batch (pool thread) ---------------------------------
    def _claim(self, d: bytes) -> bool:
        """True if this batch must store chunk ``d`` (stored chunks are freshened by the batch)."""
        with self._claim_lock:
            if d in self._claimed:
                return False
            self._claimed.add(d)
            return True

    def _store_batch(
        self, pack: _PackBuilder, batch: list[memoryview], start: int, end: int, release: Release | None
    ) -> ChunkRefs:
        try:
            digests = [digest(view) for view in batch]
            refs: ChunkRefs = [(d, len(view)) for d, view in zip(digests, batch, strict=True)]
            new: list[tuple[bytes, memoryview]] = []
            reused: dict[bytes, memoryview] = {}
            stored = self._objects.locate_many(digests)  # one call per batch, not one per chunk
            with self._claim_lock:
                for d, view in zip(digests, batch, strict=True):
                    if d in stored:
                        reused[d] = view
                    elif d not in self._claimed:
                        self._claimed.add(d)
                        new.append((d, view))
            if reused:
                # Refresh what this put reuses while its bytes are still at hand: a chunk
                # whose pack gc removed since the index was loaded is stored again.
                with self._claim_lock:
                    gone = self._objects.freshen_chunks(set(reused), done=self._freshened)
                new += [(d, reused[d]) for d in sorted(gone) if self._claim(d)]
            if new:
                level = self._objects.compression_level
                compress = codec.worth_compressing(new[0][1], level)
                items = []
                for d, view in new:
                    header, payload = codec.encode(view, compress=compress, level=level)
                    items.append((d, header, payload, len(view)))
                pack.append(items)
            pack.batch_done()
            return refs
        finally:
            self._slots.release()
            if release is not None:
                release(start, end)

    # -- completion ------------------------------------------------------------
    def abort(self) -> None:
        """Wait for running batches, then discard every pack not yet committed."""
        for future in self._futures:
            future.exception()
        for builder in self._builders:
            builder.abort()

    def finish(self) -> None:
        """Seal the last pack and wait for every batch; on failure discard unfinished packs."""
        if self._pack is not None:
            self._pack.seal()
            self._pack = None
        error: BaseException | None = None
        for future in self._futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            for builder in self._builders:
                builder.abort()
            raise error

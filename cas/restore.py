"""Reading files back out of chunks: into memory or onto disk, verified, concurrently.

A file's chunks are located once (by the tree's size check, which a reader
passes on, or one ``locate_many``), then planned as *runs* of chunks that sit
back to back in one pack with one codec, each at most ``RUN_BYTES``. Runs are
grouped into spans of about ``SPAN_BYTES``, planned as they are taken in turn
by the calling thread and a few of the store's pool threads (reads and BLAKE3
release the GIL), so reading starts after the first span is planned. A raw run is one vectored read of its headers
and payloads straight into the destination (no copy of ours), after which its
chunks are hashed while they are still in the CPU's cache; a compressed run is
one read, then each chunk is decoded, verified and copied into place; a loose
chunk is read as an object. Nothing read is trusted: each entry's size is
checked against the tree before the read, each header against the pack index
and each chunk's hash against the tree after it (FORMAT.md R16, R31).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cas import codec
from cas.buffers import filled_bytes
from cas.errors import CorruptObjectError, IntegrityError, ObjectNotFoundError
from cas.hashing import digest, short
from cas.keys import pack_key
from cas.objects import FileEntry, PackEntry
from cas.objectstore import ChunkLocation, ObjectStore, backend_errors, check_entry_header

#: A run's raw bytes at most: small enough that hashing finds them in the CPU's cache after the read.
RUN_BYTES = 1 << 20
#: About this many bytes per task on the pool.
SPAN_BYTES = 16 << 20
MAX_RUN_CHUNKS = 500  # two iovecs per chunk stay under IOV_MAX
# Pool threads that read beside the calling thread: reads and hashes release the GIL.
_HELPERS = max(2, os.cpu_count() or 2)

_HEADER = codec.HEADER_SIZE
_RAW = codec.CODEC_RAW

# One chunk of a run: its digest, raw size and pack entry (None: a loose object).
_Chunk = tuple[bytes, int, PackEntry | None]


@dataclass(slots=True)
class _Run:
    """Chunks consecutive in the file, stored back to back in one pack with one codec (or one loose chunk)."""

    pack: bytes | None  # None: a single loose chunk
    codec: int
    start: int  # pack offset of the first entry
    end: int  # pack offset just past the last entry
    offset: int  # file offset of the first chunk
    size: int  # raw bytes, all chunks
    chunks: list[_Chunk]


Located = Mapping[bytes, ChunkLocation]


def _planned_spans(objects: ObjectStore, entry: FileEntry, located: Located | None = None) -> Iterator[list[_Run]]:
    """The file's chunks as runs, grouped into spans of about ``SPAN_BYTES``, planned as they are taken.

    ``located``: where its chunks are, if the caller looked (``check_expansion``
    did). Chunks in no known pack are looked for before the first span. Each
    entry's size and codec are checked against the tree before its run is read.
    """
    index = objects.locate_many(d for d, _ in entry.chunks) if located is None else located
    if any(d not in index for d, _ in entry.chunks):
        index = _find_unplaced(objects, entry, index)
    return _spans_of(entry, index)


def _spans_of(entry: FileEntry, index: Located) -> Iterator[list[_Run]]:
    span: list[_Run] = []
    span_size = 0
    run: _Run | None = None
    offset = 0
    for d, size in entry.chunks:
        loc = index.get(d)
        pack, e = (None, None) if loc is None else loc
        if e is not None and (e.raw_size != size or (e.codec == _RAW and e.stored != size + _HEADER)):
            raise CorruptObjectError(
                f"chunk {short(d)}: the tree says {size:,} bytes, its pack entry {e.raw_size:,} ({e.stored:,} stored)"
            )
        if (
            e is not None
            and run is not None
            and run.end == e.offset
            and run.pack == pack
            and run.codec == e.codec
            and run.size + size <= RUN_BYTES
            and len(run.chunks) < MAX_RUN_CHUNKS
        ):
            run.chunks.append((d, size, e))
            run.end += e.stored
            run.size += size
        else:
            if span_size >= SPAN_BYTES:
                yield span
                span, span_size = [], 0
            if e is None:  # a loose chunk: a run of its own
                run = _Run(None, -1, 0, 0, offset, size, [(d, size, None)])
            else:
                run = _Run(pack, e.codec, e.offset, e.offset + e.stored, offset, size, [(d, size, e)])
            span.append(run)
        span_size += size
        offset += size
    if span:
        yield span


def _find_unplaced(objects: ObjectStore, entry: FileEntry, index: Located) -> Located:
    """``index`` completed after looking again for chunks in no known pack; loose ones stay out of it.

    Raises ObjectNotFoundError (IntegrityError if some pack's index is unreadable) for a chunk found nowhere.
    """
    missing = sorted({d for d, _ in entry.chunks if d not in index})
    if len(missing) > 1:
        # Several chunks in no known pack: most likely packs another process wrote since this one
        # listed the index. One listing finds them, where asking for each as a loose object costs a request each.
        objects.refresh_index()
        index = {**index, **objects.locate_many(missing)}
        missing = [d for d in missing if d not in index]
    unplaced = [d for d in missing if not objects.has_object(d)]
    if not unplaced:
        return index
    objects.refresh_index()  # another process may have written packs since we looked
    index = {**index, **objects.locate_many(unplaced)}
    absent = [d for d in unplaced if d not in index]
    if absent and objects.fetch_missing is not None and objects.fetch_missing(absent):
        # fetched from a read-through remote (which raises if it lacks them)
        index.update(objects.locate_many(absent))
    for d in unplaced:
        if d not in index and not objects.has_object(d):
            why = objects.describe_unreadable()
            if why:
                raise IntegrityError(f"chunk {short(d)} of {entry.path!r} can not be found: {why}")
            raise ObjectNotFoundError(f"chunk {short(d)} of {entry.path!r} is missing from the store")
    return index


def _read_run(objects: ObjectStore, run: _Run, dest: memoryview) -> None:
    """Fill ``dest`` (exactly ``run.size`` bytes) with the run's verified bytes."""
    if run.pack is None:
        d, size, _ = run.chunks[0]
        raw = objects.get_object(d)
        if len(raw) != size:
            raise CorruptObjectError(f"chunk {short(d)} is {len(raw)} bytes, tree says {size}")
        dest[:] = raw
    elif run.codec == _RAW:
        _read_raw_run(objects, run, dest)
    else:
        _read_compressed_run(objects, run, dest)


def _read_pack(objects: ObjectStore, run: _Run, read: Callable[[str], int]) -> None:
    assert run.pack is not None
    key = pack_key(run.pack)
    try:
        with backend_errors(key):
            got = read(key)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"pack {short(run.pack)} is missing") from None
    if got != run.end - run.start:
        raise CorruptObjectError(f"pack {short(run.pack)} is truncated", key=key)


def _read_raw_run(objects: ObjectStore, run: _Run, dest: memoryview) -> None:
    """One vectored read straight into the destination, then each chunk verified there."""
    chunks = run.chunks
    headers = bytearray(_HEADER * len(chunks))
    slots = memoryview(headers)
    buffers: list[memoryview] = []
    views: list[memoryview] = []
    pos = slot = 0
    for _, size, _ in chunks:  # (one pass per chunk of every get: kept to plain operations)
        view = dest[pos : pos + size]
        pos += size
        views.append(view)
        buffers.append(slots[slot : slot + _HEADER])
        buffers.append(view)
        slot += _HEADER
    _read_pack(objects, run, lambda key: objects.backend.readv(key, run.start, buffers))
    # The common case costs one comparison for all headers and one per hash; the diagnosis runs on a mismatch.
    if headers != b"".join([codec.pack_header(_RAW, size) for _, size, _ in chunks]):
        _diagnose_headers(run, headers)
    for view, (d, _, _) in zip(views, chunks, strict=True):
        if digest(view) != d:
            assert run.pack is not None
            codec.verify(view, d, key=f"chunk {short(d)} in pack {short(run.pack)}")


def _diagnose_headers(run: _Run, headers: bytearray) -> NoReturn:
    """Raise the error that names the first header differing from its pack entry."""
    assert run.pack is not None
    for i, (d, _, e) in enumerate(run.chunks):
        assert e is not None
        name = f"chunk {short(d)} in pack {short(run.pack)}"
        check_entry_header(codec.parse_header(headers[i * _HEADER : (i + 1) * _HEADER], key=name), e, name)
    raise CorruptObjectError(f"pack {short(run.pack)}: a header in a run differs from what its index says")


def _read_compressed_run(objects: ObjectStore, run: _Run, dest: memoryview) -> None:
    """One read for the whole run, then each chunk decoded, verified and copied into place."""
    assert run.pack is not None
    data = memoryview(b"")

    def read(key: str) -> int:
        nonlocal data
        data = memoryview(objects.backend.read_range(key, run.start, run.end - run.start))
        return len(data)

    _read_pack(objects, run, read)
    pos = 0
    for d, size, e in run.chunks:
        assert e is not None
        name = f"chunk {short(d)} in pack {short(run.pack)}"
        stored = data[e.offset - run.start :][: e.stored]
        header = codec.parse_header(stored, key=name)
        check_entry_header(header, e, name)
        raw = codec.decode_payload(header, stored[_HEADER:], key=name)
        codec.verify(raw, d, key=name)
        dest[pos : pos + size] = raw
        pos += size


def _in_parallel(
    objects: ObjectStore, entry: FileEntry, spans: Iterator[list[_Run]], work: Callable[[list[_Run]], None]
) -> None:
    """``work(span)`` for every span, taken in turn by this thread and a few of the pool's.

    Spans are planned as they are taken (under the lock), so reading starts
    after the first one is planned. The first error stops the others at their
    next span and is raised once all have stopped.
    """
    lock = threading.Lock()
    failed = threading.Event()

    def drain() -> None:
        while not failed.is_set():
            try:
                with lock:
                    span = next(spans, None)
                if span is None:
                    return
                work(span)
            except BaseException:
                failed.set()
                raise

    helpers = min(-(-entry.size // SPAN_BYTES) - 1, _HELPERS)
    futures = [objects.executor.submit(drain) for _ in range(helpers)]
    error: BaseException | None = None
    try:
        drain()
    except BaseException as exc:
        error = exc
    for future in futures:
        other = future.exception()
        if error is None:
            error = other
    if error is not None:
        raise error


def _retrying(objects: ObjectStore, located: Located | None, work: Callable[[Located | None], None]) -> None:
    """Run ``work(located)``; if a pack vanished under it (gc repacked it), reload the index and run it again."""
    try:
        work(located)
    except ObjectNotFoundError:
        objects.refresh_index()
        work(None)  # what was located may be what vanished: locate again


def read_into(objects: ObjectStore, entry: FileEntry, dest: memoryview, located: Located | None = None) -> None:
    """Fill ``dest`` (exactly ``entry.size`` bytes) with the file's verified bytes.

    ``located``: where the file's packed chunks are, if the caller looked.
    """
    if entry.data is not None:
        dest[:] = entry.data
        return

    def one(span: list[_Run]) -> None:
        for run in span:
            _read_run(objects, run, dest[run.offset : run.offset + run.size])

    _retrying(objects, located, lambda where: _in_parallel(objects, entry, _planned_spans(objects, entry, where), one))


def read_range(objects: ObjectStore, entry: FileEntry, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (clamped to the file) of a file, reading and verifying only the chunks they touch."""
    start, end = max(0, min(start, entry.size)), max(0, min(end, entry.size))
    if start >= end:
        return b""
    if entry.data is not None:
        return entry.data[start:end]
    parts: list[bytes] = []
    offset = 0
    for d, size in entry.chunks:
        if offset >= end:
            break
        if offset + size > start:
            try:
                chunk = objects.read_chunk(d, size)
            except ObjectNotFoundError:
                objects.refresh_index()
                chunk = objects.read_chunk(d, size)
            parts.append(chunk[max(0, start - offset) : min(size, end - offset)])
        offset += size
    return b"".join(parts)


def read_bytes(objects: ObjectStore, entry: FileEntry, located: Located | None = None) -> bytes:
    """The file's bytes as one ``bytes`` object, allocated once (``located``: as for ``read_into``)."""
    if entry.data is not None:
        return entry.data
    if len(entry.chunks) == 1:
        d, size = entry.chunks[0]
        try:
            return objects.read_chunk(d, size)
        except ObjectNotFoundError:
            objects.refresh_index()
            return objects.read_chunk(d, size)

    def fill(view: memoryview) -> None:
        _prefer_huge_pages(view)
        read_into(objects, entry, view, located)

    return filled_bytes(entry.size, fill)


_HUGE_PAGE = 2 << 20
_madvise: Callable[[int, int, int], int] | None = None
if sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE"):
    try:
        _libc_madvise = ctypes.CDLL(None, use_errno=True).madvise
        _libc_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc_madvise.restype = ctypes.c_int
        _madvise = _libc_madvise
    except (OSError, AttributeError):
        pass


def _prefer_huge_pages(view: memoryview) -> None:
    """Ask Linux to back fresh memory (not yet touched) with huge pages, as numpy does for its arrays.

    Filling 256 MiB of fresh 4 KiB pages costs 65,536 page faults, about as
    long as the copy itself. Only a hint: nothing changes if it is refused.
    """
    if _madvise is None or len(view) < 4 * _HUGE_PAGE or view.readonly:
        return
    try:
        anchor = ctypes.c_char.from_buffer(view)
    except (TypeError, ValueError):  # a buffer ctypes can not address: no hint
        return
    address = ctypes.addressof(anchor)
    del anchor  # releases the export of ``view``
    start = -(-address // _HUGE_PAGE) * _HUGE_PAGE
    end = (address + len(view)) // _HUGE_PAGE * _HUGE_PAGE
    _madvise(start, end - start, mmap.MADV_HUGEPAGE)


def restore_file(
    objects: ObjectStore,
    entry: FileEntry,
    path: Path,
    *,
    executable: bool = False,
    durable: bool = False,
    located: Located | None = None,
) -> None:
    """Write the file to ``path`` atomically (a new file, then rename), in bounded memory.

    The new file gets the usual mode (0o666, 0o777 if ``executable``, less the
    umask). Whatever is at ``path`` (a file, a symlink) is replaced by the
    rename, never written through. The folder ``path`` is in must exist.
    """
    fd, tmp = _create_temp(path, 0o777 if executable else 0o666)
    try:
        if entry.data is not None:
            os.write(fd, entry.data)
        elif entry.chunks:
            _retrying(objects, located, lambda where: _restore_chunks(objects, entry, fd, where))
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_CREATE |= getattr(os, "O_BINARY", 0)


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """A new file beside ``path``; the kernel applies the umask to ``mode`` (mkstemp would force 0600)."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name[:64]}.{secrets.token_hex(6)}.cas-tmp")
        try:
            return os.open(tmp, _CREATE, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _restore_chunks(objects: ObjectStore, entry: FileEntry, fd: int, located: Located | None) -> None:
    """Each run read into a small buffer (it stays in the CPU's cache), verified, then written at its offset."""

    def one(span: list[_Run]) -> None:
        buffer = memoryview(bytearray(max(run.size for run in span)))
        for run in span:
            view = buffer[: run.size]
            _read_run(objects, run, view)
            written = 0
            while written < run.size:
                written += os.pwrite(fd, view[written:], run.offset + written)

    _in_parallel(objects, entry, _planned_spans(objects, entry, located), one)

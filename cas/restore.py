"""Reading files back out of chunks: into memory or onto disk, verified, concurrently.

A file's chunks are split into spans of about ``SPAN_BYTES``; each span is one
task on the store's pool. Within a span, chunks that sit back to back in a pack
uncompressed are read with one vectored read straight into the destination,
then each is hashed; anything else is read, decoded and verified one by one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from cas import codec
from cas.backends.base import Buffer
from cas.buffers import filled_bytes
from cas.chunking import BufferPool
from cas.errors import CorruptObjectError, IntegrityError, ObjectNotFoundError
from cas.hashing import digest, short
from cas.keys import pack_key
from cas.objects import FileEntry
from cas.objectstore import ChunkLocation, ObjectStore, check_entry_header

SPAN_BYTES = 16 << 20
MAX_RUN_CHUNKS = 500  # two iovecs per chunk stay under IOV_MAX


@dataclass(frozen=True, slots=True)
class _Planned:
    digest: bytes
    size: int
    offset: int  # in the file
    location: ChunkLocation | None  # None: a loose object


def _plan(objects: ObjectStore, entry: FileEntry) -> list[_Planned]:
    index = objects.locate_many(d for d, _ in entry.chunks)
    planned = []
    offset = 0
    for d, size in entry.chunks:
        planned.append(_Planned(d, size, offset, index.get(d)))
        offset += size
    unplaced = [i for i, p in enumerate(planned) if p.location is None and not objects.has_object(p.digest)]
    if unplaced:  # another process may have written packs since we looked
        objects.refresh_index()
        index = objects.locate_many(planned[i].digest for i in unplaced)
        absent = [planned[i].digest for i in unplaced if planned[i].digest not in index]
        if absent and objects.fetch_missing is not None and objects.fetch_missing(absent):
            index = objects.locate_many(planned[i].digest for i in unplaced)  # fetched from a read-through remote (which raises if it lacks them)
        for i in unplaced:
            p = planned[i]
            loc = index.get(p.digest)
            if loc is None and not objects.has_object(p.digest):
                why = objects.describe_unreadable()
                if why:
                    raise IntegrityError(f"chunk {short(p.digest)} of {entry.path!r} can not be found: {why}")
                raise ObjectNotFoundError(f"chunk {short(p.digest)} of {entry.path!r} is missing from the store")
            planned[i] = _Planned(p.digest, p.size, p.offset, loc)
    return planned


def _spans(planned: list[_Planned]) -> list[list[_Planned]]:
    spans: list[list[_Planned]] = []
    current: list[_Planned] = []
    size = 0
    for chunk in planned:
        current.append(chunk)
        size += chunk.size
        if size >= SPAN_BYTES:
            spans.append(current)
            current, size = [], 0
    if current:
        spans.append(current)
    return spans


def _runs(span: list[_Planned]) -> list[list[_Planned]]:
    """Group chunks stored back to back in one pack with the same codec."""
    runs: list[list[_Planned]] = []
    for chunk in span:
        loc = chunk.location
        if runs and loc is not None and len(runs[-1]) < MAX_RUN_CHUNKS:
            prev = runs[-1][-1].location
            if (
                prev is not None
                and prev.pack == loc.pack
                and prev.entry.codec == loc.entry.codec
                and prev.entry.offset + prev.entry.stored == loc.entry.offset
            ):
                runs[-1].append(chunk)
                continue
        runs.append([chunk])
    return runs


def _read_span(objects: ObjectStore, span: list[_Planned], dest: memoryview, base: int) -> None:
    """Fill ``dest`` (which starts at file offset ``base``) with the span's verified bytes."""
    for run in _runs(span):
        first = run[0]
        loc = first.location
        if loc is None:
            raw = objects.get_object(first.digest)
            _place(raw, first, dest, base)
        elif loc.entry.codec == codec.CODEC_RAW:
            _read_raw_run(objects, run, dest, base)
        else:
            _read_compressed_run(objects, run, dest, base)


def _place(raw: Buffer, chunk: _Planned, dest: memoryview, base: int) -> None:
    if len(raw) != chunk.size:
        raise CorruptObjectError(f"chunk {short(chunk.digest)} is {len(raw)} bytes, tree says {chunk.size}")
    start = chunk.offset - base
    dest[start : start + chunk.size] = raw


def _read_compressed_run(objects: ObjectStore, run: list[_Planned], dest: memoryview, base: int) -> None:
    """One read for the whole run, then decode and verify each chunk into place."""
    first = run[0].location
    last = run[-1].location
    assert first is not None and last is not None
    key = pack_key(first.pack)
    length = last.entry.offset + last.entry.stored - first.entry.offset
    try:
        data = memoryview(objects.backend.read_range(key, first.entry.offset, length))
    except FileNotFoundError:
        raise ObjectNotFoundError(f"pack {short(first.pack)} is missing") from None
    if len(data) != length:
        raise CorruptObjectError(f"pack {short(first.pack)} is truncated", key=key)
    for chunk in run:
        loc = chunk.location
        assert loc is not None
        name = f"chunk {short(chunk.digest)} in pack {short(loc.pack)}"
        stored = data[loc.entry.offset - first.entry.offset :][: loc.entry.stored]
        header = codec.parse_header(stored, key=name)
        check_entry_header(header, loc.entry, name)
        raw = codec.decode_payload(header, stored[codec.HEADER_SIZE :], key=name)
        codec.verify(raw, chunk.digest, key=name)
        _place(raw, chunk, dest, base)


def _read_raw_run(objects: ObjectStore, run: list[_Planned], dest: memoryview, base: int) -> None:
    """One vectored read straight into the destination, then verify each chunk there."""
    first = run[0].location
    assert first is not None
    key = pack_key(first.pack)
    headers = [bytearray(codec.HEADER_SIZE) for _ in run]
    buffers: list[memoryview] = []
    expected = 0
    for chunk, header in zip(run, headers, strict=False):
        assert chunk.location is not None
        if chunk.location.entry.raw_size != chunk.size:
            raise CorruptObjectError(f"chunk {short(chunk.digest)}: pack index and tree disagree on its size")
        start = chunk.offset - base
        buffers += (memoryview(header), dest[start : start + chunk.size])
        expected += codec.HEADER_SIZE + chunk.size
    try:
        got = objects.backend.readv(key, first.entry.offset, buffers)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"pack {short(first.pack)} is missing") from None
    if got != expected:
        raise CorruptObjectError(f"pack {short(first.pack)} is truncated", key=key)
    for chunk, header, view in zip(run, headers, buffers[1::2], strict=False):
        # The common case costs two comparisons; the diagnosis only runs on a mismatch.
        if header != codec.pack_header(codec.CODEC_RAW, chunk.size) or digest(view) != chunk.digest:
            assert chunk.location is not None
            name = f"chunk {short(chunk.digest)} in pack {short(first.pack)}"
            check_entry_header(codec.parse_header(header, key=name), chunk.location.entry, name)
            codec.verify(view, chunk.digest, key=name)


def _wait(futures: list[Future[None]]) -> None:
    error = None
    for future in futures:
        exc = future.exception()
        if exc is not None and error is None:
            error = exc
    if error is not None:
        raise error


def _retrying(objects: ObjectStore, work: Callable[[], None]) -> None:
    """Run ``work``; if a pack vanished under it (gc repacked it), reload the index and run it again."""
    try:
        work()
    except ObjectNotFoundError:
        objects.refresh_index()
        work()


def read_into(objects: ObjectStore, entry: FileEntry, dest: memoryview) -> None:
    """Fill ``dest`` (exactly ``entry.size`` bytes) with the file's verified bytes."""
    if entry.data is not None:
        dest[:] = entry.data
        return
    _retrying(objects, lambda: _read_into(objects, entry, dest))


def _read_into(objects: ObjectStore, entry: FileEntry, dest: memoryview) -> None:
    planned = _plan(objects, entry)
    futures = [
        objects.executor.submit(_read_span, objects, span, dest[span[0].offset :], span[0].offset)
        for span in _spans(planned)
    ]
    _wait(futures)


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


def read_bytes(objects: ObjectStore, entry: FileEntry) -> bytes:
    """The file's bytes as one ``bytes`` object, allocated once."""
    if entry.data is not None:
        return entry.data
    if len(entry.chunks) == 1:
        d, size = entry.chunks[0]
        try:
            return objects.read_chunk(d, size)
        except ObjectNotFoundError:
            objects.refresh_index()
            return objects.read_chunk(d, size)
    return filled_bytes(entry.size, lambda view: read_into(objects, entry, view))


def restore_file(
    objects: ObjectStore, entry: FileEntry, path: Path, *, executable: bool = False, durable: bool = False
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
            _retrying(objects, lambda: _restore_chunks(objects, entry, fd))
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


def _restore_chunks(objects: ObjectStore, entry: FileEntry, fd: int) -> None:
    planned = _plan(objects, entry)
    spans = _spans(planned)
    pool = BufferPool(min(3, len(spans)), max(sum(c.size for c in span) for span in spans))

    def one(span: list[_Planned]) -> None:
        buf = pool.take()
        try:
            size = sum(c.size for c in span)
            view = memoryview(buf)[:size]
            _read_span(objects, span, view, span[0].offset)
            written = 0
            while written < size:
                written += os.pwrite(fd, view[written:], span[0].offset + written)
        finally:
            pool.give(buf)

    _wait([objects.executor.submit(one, span) for span in spans])

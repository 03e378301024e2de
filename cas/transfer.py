"""Copying objects between two object stores: what the other side lacks, and nothing else.

Used by push, pull and clone (``cas.sync``) and by read-through fetches.
Every object is read verified from the source (header against the pack
index, payload against its digest) and written in its stored form: chunks,
trees and artifacts go into new packs on the destination, runs stay loose
(the format keeps runs loose). Whole packs are written one at a time, each
complete before its index, so an interrupted copy leaves only whole packs
and a rerun copies only what is still missing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

from cas import codec
from cas.backends.base import Backend
from cas.errors import CasError, ObjectNotFoundError
from cas.hashing import short
from cas.keys import HEX_FOLDERS, OBJECTS_FOLDER, object_key, pack_key
from cas.objectstore import ChunkLocation, ObjectStore, verify_packed

#: Up to this many keys are asked about one by one; more are found by listing their folders.
ASK_LIMIT = 32
#: Keys an object store returns per listing request (S3's page size).
LIST_PAGE = 1000
#: Adjacent chunks of a source pack are read in ranges of up to this many bytes.
READ_RANGE = 8 << 20


def present_keys(
    backend: Backend,
    keys: Iterable[str],
    executor: Executor,
    *,
    fanout: str | None = None,
    whole: str | None = None,
) -> set[str]:
    """Which of ``keys`` exist on ``backend``, in as few requests as the numbers allow.

    A cheap backend (a local disk) or a handful of keys: one existence check
    each, concurrently. Otherwise one listing of ``whole`` (for folders such
    as ``refs/`` whose size tracks the number of keys asked about), or of the
    folders holding the keys, or of the whole ``fanout`` folder (``objects/``,
    256 sub-folders), whichever takes the fewest requests: one folder,
    listed first, tells how full the others are.
    """
    wanted = set(keys)
    if not wanted:
        return set()
    if backend.cheap_exists or len(wanted) <= ASK_LIMIT:
        return _ask(backend, wanted, executor)
    if whole is not None:
        return wanted & set(_list(backend, whole))
    folders = sorted({k.rsplit("/", 1)[0] + "/" for k in wanted})
    sample = list(backend.list(folders[0]))
    pages = max(1, math.ceil(len(sample) / LIST_PAGE))
    costs = {"ask": len(wanted), "folders": len(folders) * pages}
    if fanout is not None:
        costs["fanout"] = max(1, math.ceil(len(sample) * 256 / LIST_PAGE))
    plan = min(costs, key=lambda k: costs[k])
    if plan == "ask":
        return _ask(backend, wanted, executor)
    if plan == "fanout" and fanout is not None:
        return wanted & set(_list(backend, fanout))
    found = set(sample)
    for listed in executor.map(lambda f: list(backend.list(f)), folders[1:]):
        found.update(listed)
    return wanted & found


def _list(backend: Backend, folder: str) -> Iterator[str]:
    return backend.list_hex(folder) if folder in HEX_FOLDERS else backend.list(folder)


def _ask(backend: Backend, keys: set[str], executor: Executor) -> set[str]:
    ordered = sorted(keys)
    return {k for k, ok in zip(ordered, executor.map(backend.exists, ordered), strict=True) if ok}


@dataclass
class CopyStats:
    """What a copy sent."""

    objects: int = 0
    bytes: int = 0  # stored (compressed) bytes
    packs: int = 0


@dataclass(frozen=True, slots=True)
class _Source:
    digest: bytes
    location: ChunkLocation | None  # None: loose in the source
    stored: int


def lacking(dst: ObjectStore, digests: Iterable[bytes], executor: Executor) -> tuple[set[bytes], set[bytes]]:
    """Split ``digests`` into (missing from ``dst``, present in ``dst``), loose or packed."""
    wanted = set(digests)
    dst.refresh_index()  # packs other writers added since this process looked
    packed = set(dst.locate_many(wanted))
    rest = {object_key(d): d for d in wanted - packed}
    loose = {rest[k] for k in present_keys(dst.backend, rest, executor, fanout=OBJECTS_FOLDER)}
    present = packed | loose
    return wanted - present, present


def copy_objects(
    src: ObjectStore,
    dst: ObjectStore,
    digests: Iterable[bytes],
    executor: Executor,
    *,
    loose: Iterable[bytes] = (),
    keep_layout: bool = False,
    progress: Callable[[int], None] | None = None,
    failed: dict[bytes, str] | None = None,
) -> CopyStats:
    """Copy the objects ``digests`` from ``src`` to ``dst`` (all of them: callers filter first).

    ``loose`` objects (runs) are written as loose objects, the rest into new
    packs of about the destination's pack size. With ``keep_layout``, objects
    loose in the source stay loose (read-through fetches, which do not know
    kinds). Raises ObjectNotFoundError if the source lacks one, IntegrityError
    if its copy is damaged; with ``failed``, such objects are left out and
    recorded there (digest -> why) and everything else is copied.
    """
    stats = CopyStats()
    loose_set = set(loose)
    sources = _locate(src, digests, failed)
    in_packs = [s.digest not in loose_set and not (keep_layout and s.location is None) for s in sources]
    packable = [s for s, packed in zip(sources, in_packs, strict=True) if packed]
    single = [s for s, packed in zip(sources, in_packs, strict=True) if not packed]

    def one_loose(item: _Source) -> int:
        try:
            raw = src.get_object(item.digest)  # verified
        except CasError as exc:
            if failed is None:
                raise
            failed[item.digest] = str(exc)
            return 0
        dst.put_object(raw, loose=True)
        if progress:
            progress(len(raw))
        return len(raw)

    for size in executor.map(one_loose, single):
        stats.objects += size > 0
        stats.bytes += size
    groups = list(_pack_groups(packable, dst.backend.pack_target))
    for count, size in executor.map(lambda g: _copy_into_pack(src, dst, g, progress, failed), groups):
        stats.objects += count
        stats.bytes += size
        stats.packs += count > 0
    return stats


def _locate(src: ObjectStore, digests: Iterable[bytes], failed: dict[bytes, str] | None = None) -> list[_Source]:
    wanted = sorted(set(digests))
    found = []
    refreshed = False
    located = src.locate_many(wanted)  # in bulk: one table read serves many digests
    for d in wanted:
        loc = located.get(d)
        if loc is None and not src.has_object(d):
            if not refreshed:
                src.refresh_index()
                refreshed = True
                loc = src.locate(d)
            if loc is None and not src.has_object(d):
                why = f"object {short(d)} is missing from {src.backend.url}"
                if failed is None:
                    raise ObjectNotFoundError(why)
                failed[d] = why
                continue
        stored = loc.entry.stored if loc is not None else 0
        found.append(_Source(d, loc, stored))
    # Source order: chunks of one pack are read in ranges, front to back.
    found.sort(key=lambda s: (s.location is None, s.location.pack if s.location else b"", _offset(s), s.digest))
    return found


def _offset(source: _Source) -> int:
    return source.location.entry.offset if source.location is not None else 0


def _pack_groups(sources: list[_Source], target: int) -> Iterator[list[_Source]]:
    group: list[_Source] = []
    size = 0
    for item in sources:
        group.append(item)
        size += item.stored or 64 << 10  # a loose object's size is known once read
        if size >= target:
            yield group
            group, size = [], 0
    if group:
        yield group


def _copy_into_pack(
    src: ObjectStore,
    dst: ObjectStore,
    group: list[_Source],
    progress: Callable[[int], None] | None,
    failed: dict[bytes, str] | None = None,
) -> tuple[int, int]:
    """Read ``group`` verified from ``src`` and write it to ``dst`` as one new pack (none if nothing is left)."""
    objects = ((d, [data], raw_size, codec_id) for d, data, raw_size, codec_id in _read_stored(src, group, failed))
    first = next(objects, None)
    if first is None:  # every object of the group was missing or damaged
        return 0, 0
    _, index, size = dst.write_pack(itertools.chain([first], objects), on_written=progress)
    return len(index.entries), size


def _read_stored(
    src: ObjectStore, group: list[_Source], failed: dict[bytes, str] | None = None
) -> Iterator[tuple[bytes, bytes, int, int]]:
    """(digest, stored bytes, raw size, codec) of each object, verified, reading adjacent chunks together.

    With ``failed``, an object that is missing or damaged is recorded there and left out.
    """
    for run in _ranges(group):
        if failed is None:
            yield from _read_run(src, run)
            continue
        try:
            yield from _read_run(src, run, failed)
        except CasError as exc:  # the whole range is unreadable (its pack is gone)
            for source in run:
                failed.setdefault(source.digest, str(exc))


def _read_run(
    src: ObjectStore, run: list[_Source], failed: dict[bytes, str] | None = None
) -> Iterator[tuple[bytes, bytes, int, int]]:
    """One read: a loose object, or adjacent chunks of one pack (each verified)."""
    first = run[0]
    if first.location is None:
        key = object_key(first.digest)
        try:
            data = src.backend.read(key)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"object {short(first.digest)} is missing from {src.backend.url}") from None
        name = f"object {short(first.digest)}"
        header = codec.parse_header(data, key=name)
        codec.verify(codec.decode(data, key=name), first.digest, key=name)
        yield first.digest, data, header.raw_size, header.codec
        return
    pack = first.location.pack
    start = first.location.entry.offset
    end = run[-1].location.entry.offset + run[-1].location.entry.stored  # type: ignore[union-attr]
    try:
        data = src.backend.read_range(pack_key(pack), start, end - start)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"pack {short(pack)} is missing from {src.backend.url}") from None
    for item in run:
        entry = item.location.entry  # type: ignore[union-attr]
        piece = data[entry.offset - start : entry.offset - start + entry.stored]
        try:
            verify_packed(piece, entry, pack)
        except CasError as exc:
            if failed is None:
                raise
            failed[entry.digest] = str(exc)
            continue
        yield entry.digest, piece, entry.raw_size, entry.codec


def _ranges(group: list[_Source]) -> Iterator[list[_Source]]:
    """Split a group into reads: loose objects alone, chunks of one pack in adjacent runs."""
    run: list[_Source] = []
    for item in group:
        loc = item.location
        if loc is None:
            if run:
                yield run
                run = []
            yield [item]
            continue
        if run:
            last = run[-1].location
            assert last is not None
            adjacent = last.pack == loc.pack and loc.entry.offset == last.entry.offset + last.entry.stored
            too_long = loc.entry.offset + loc.entry.stored - run[0].location.entry.offset > READ_RANGE  # type: ignore[union-attr]
            if not adjacent or too_long:
                yield run
                run = []
        run.append(item)
    if run:
        yield run


def freshen(dst: ObjectStore, digests: set[bytes], executor: Executor) -> tuple[int, set[bytes]]:
    """Refresh the timestamps of objects ``dst`` holds that new refs or runs will reach.

    As for a local put that reuses stored objects: gc's grace period then
    covers them until the refs that need them exist. Returns how many files
    were touched, and the digests whose file had gone meanwhile (gc removed
    it): the caller copies those again.
    """
    index = dst.locate_many(digests)
    holders: dict[str, set[bytes]] = {}
    for d in digests:
        key = pack_key(index[d].pack) if d in index else object_key(d)
        holders.setdefault(key, set()).add(d)

    def touch(key: str) -> bool:
        try:
            dst.backend.touch(key)
        except FileNotFoundError:
            return False
        return True

    gone: set[bytes] = set()
    for key, ok in zip(holders, executor.map(touch, holders), strict=True):
        if not ok:
            gone |= holders[key]
    return len(holders) - len({k for k in holders if holders[k] <= gone}), gone

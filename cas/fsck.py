"""fsck: verify every stored byte, and that everything the roots need is there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import blake3

from cas import codec, visualrecords
from cas.chunktables import ChunkTable
from cas.errors import CasError, CorruptObjectError, ExpansionLimitError, IntegrityError, ObjectNotFoundError
from cas.gc import Marks, mark, rewrite_pack
from cas.hashing import short
from cas.keys import (
    CACHE_FOLDER,
    CHUNKMAPS_FOLDER,
    INDEX_FOLDER,
    OBJECTS_FOLDER,
    TABLES_FOLDER,
    VISUALIZATIONS_FOLDER,
    chunkmap_key,
    index_key,
    pack_key,
    parse_index_key,
    parse_object_key,
    parse_table_key,
    table_key,
)
from cas.objects import ChunkMap, FileEntry, PackEntry, PackIndex, Tree, kind_of
from cas.objectstore import verify_packed
from cas.progress import Phase, ProgressCallback
from cas.trees import check_expansion

if TYPE_CHECKING:
    from cas.repository import Repository


@dataclass
class FsckReport:
    """What fsck checked and found."""

    checked: Counter[str] = field(default_factory=Counter)
    bytes_checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    #: What was not checked, and why: a tree beyond the reader's expansion limit is not hashed whole.
    unchecked: list[str] = field(default_factory=list)
    #: What an interrupted command left that readers already ignore (``repair`` removes it); not a problem.
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.checked.items()))
        lines = [f"fsck checked {counts} ({self.bytes_checked:,} bytes): {'ok' if self.ok else 'PROBLEMS'}"]
        lines += [f"  corrupt: {item}" for item in self.corrupt]
        lines += [f"  missing: {item}" for item in self.missing]
        lines += [f"  repaired: {item}" for item in self.repaired]
        lines += [f"  not checked: {item}" for item in self.unchecked]
        lines += [f"  left by an interrupted command (fsck --repair removes it): {item}" for item in self.leftovers]
        if self.dangling:
            lines.append(
                f"  {len(self.dangling)} dangling (unreachable) objects: gc removes them after the grace period"
            )
        return "\n".join(lines)


def _check_loose(store: Repository, key: str) -> tuple[str, str | None, int]:
    """(kind, problem, size) of one loose object."""
    h = parse_object_key(key)
    try:
        data = store.backend.read(key)
    except FileNotFoundError:
        return "gone", None, 0
    except CasError as exc:  # not a file at all (a FIFO, a link): never read
        return "corrupt", str(exc), 0
    if h is None:
        return "stray", f"{key}: not an object name", len(data)
    try:
        raw = codec.decode(data, key=key)
        codec.verify(raw, h, key=f"object {short(h)}")
    except CasError as exc:
        return "corrupt", str(exc), len(data)
    return kind_of(raw), None, len(data)


_WINDOW = 8 << 20


def _check_pack(store: Repository, pack_id: bytes) -> tuple[list[PackEntry], list[PackEntry], list[str], int]:
    """(good entries, bad entries, problems, bytes) of one pack, read in order in windows and verified."""
    key = pack_key(pack_id)
    try:
        index = store.objects.read_pack_index(pack_id)
        size = store.backend.size(key)
    except FileNotFoundError:
        return [], [], [f"pack {short(pack_id)} is missing"], 0
    except CasError as exc:
        return [], [], [f"pack {short(pack_id)}: its index can not be read ({exc})"], 0
    problems = []
    try:
        trailer: PackIndex | None = store.objects.read_pack_trailer(pack_id)
    except (IntegrityError, ObjectNotFoundError):
        trailer = None
    if trailer is None or trailer.to_bytes() != index.to_bytes():
        problems.append(f"pack {short(pack_id)}: its trailer does not match its index")
    good, bad = [], []
    entries = list(index.entries)
    i = 0
    while i < len(entries):
        j = i + 1  # a window of consecutive entries
        while j < len(entries) and entries[j].offset + entries[j].stored - entries[i].offset <= _WINDOW:
            j += 1
        start = entries[i].offset
        window = memoryview(store.backend.read_range(key, start, entries[j - 1].offset + entries[j - 1].stored - start))
        for entry in entries[i:j]:
            try:
                verify_packed(window[entry.offset - start : entry.offset - start + entry.stored], entry, pack_id)
                good.append(entry)
            except CasError as exc:
                bad.append(entry)
                problems.append(str(exc))
        i = j
    return good, bad, problems, size


def _run_hash(raw: bytes, key: str) -> bytes:
    if len(raw) != 32:
        raise CorruptObjectError(f"{key}: not a run hash", key=key)
    return raw


def _check_tables(store: Repository, report: FsckReport, *, repair: bool) -> None:
    """Chunk tables, each read whole and verified. Repair writes ``index/`` files again (from the
    trailers) for the packs no sound table or index file covers, then removes the damaged tables."""
    backend = store.backend
    damaged = []
    existing = store.objects.existing_pack_ids()
    for key in list(backend.list(TABLES_FOLDER)):
        table_id = parse_table_key(key)
        if table_id is None:
            continue
        try:
            table = ChunkTable(backend, table_id)
            table.verify()
            _check_table_rows(store, table, existing)
        except FileNotFoundError:
            continue  # merged by a consolidation meanwhile
        except CasError as exc:
            report.corrupt.append(f"{key}: {exc}")
            damaged.append(table_id)
        else:
            report.checked["table"] += 1
    if not (repair and damaged):
        return
    store.objects.refresh_index()
    covered = set(store.objects.recent_pack_ids())
    for table in store.objects.tables():
        if table.id not in damaged:
            covered.update(p for p, _ in table.pack_list())
    for pack_id in sorted(existing - covered):
        try:
            index = store.objects.read_pack_trailer(pack_id)
        except CasError:
            continue  # the pack is unreadable too: reported with the packs
        store.objects.write_pack_index(pack_id, index.to_bytes())
        report.repaired.append(f"rewrote {index_key(pack_id)} from its pack's trailer")
    backend.delete_many([table_key(t) for t in damaged])
    report.repaired += [f"removed damaged chunk table {short(t)}" for t in damaged]
    store.objects.refresh_index()


def _check_table_rows(store: Repository, table: ChunkTable, existing: set[bytes]) -> None:
    """A table's rows for each pack that still exists must be that pack's own index (its trailer)."""
    for pack_id, entries in table.entries_by_pack().items():
        if pack_id not in existing:
            continue  # removed by gc since: stale rows, dropped by the next consolidation
        try:
            own = store.objects.read_pack_trailer(pack_id).entries
        except CasError:
            continue  # the pack itself is reported
        if not set(entries) <= set(own):  # a subset: a chunk in two packs is listed once
            raise CorruptObjectError(f"its rows for pack {short(pack_id)} disagree with the pack's own index")


def _check_side_files(store: Repository, report: FsckReport, *, repair: bool) -> None:
    """Index copies, chunk maps, cache entries and ref files: each verified against its checksum.

    Readers survive damage to the first three (the pack trailer, a re-cut and a
    rerun stand in), so only fsck tells; repair rewrites an index copy from its
    pack and removes a damaged chunk map or cache entry. A damaged ref is never
    removed: it is reported for a person to decide.
    """
    backend = store.backend
    for key in list(backend.list(INDEX_FOLDER)):
        pack_id = parse_index_key(key)
        try:
            if pack_id is None:
                raise CorruptObjectError("not a pack id", key=key)
            raw = codec.decode(backend.read(key), key=key)
            codec.verify(raw, pack_id, key=key)
            PackIndex.from_bytes(raw, key=key)
        except FileNotFoundError:
            continue
        except (CasError, ValueError) as exc:
            report.corrupt.append(f"{key}: {exc}")
            if repair and pack_id is not None:
                try:
                    index = store.objects.read_pack_trailer(pack_id)
                except CasError:
                    continue  # the pack is unreadable too: reported with the packs
                store.objects.write_pack_index(pack_id, index.to_bytes())
                report.repaired.append(f"rewrote {key} from its pack's trailer")
        else:
            report.checked["index"] += 1
    sealed: list[tuple[str, str, Callable[[bytes, str], object]]] = [
        (CHUNKMAPS_FOLDER, "chunkmap", lambda raw, key: ChunkMap.from_bytes(raw, key=key)),
        (CACHE_FOLDER, "cache entry", _run_hash),
        (
            VISUALIZATIONS_FOLDER,
            "visualizations",
            lambda raw, key: visualrecords.VisualizationRecord.from_bytes(raw, key=key),
        ),
    ]
    for folder, kind, validate in sealed:
        for key in list(backend.list(folder)):
            try:
                validate(codec.unseal(backend.read(key), key=key), key)
            except FileNotFoundError:
                continue
            except CasError as exc:
                report.corrupt.append(str(exc))
                if repair:  # each is a cache or is recomputed: never a ref
                    backend.delete(key)
                    report.repaired.append(f"removed damaged {kind} {key}")
            else:
                report.checked[kind] += 1
    for _key, record in store.refs.all_records():
        if isinstance(record, CasError):
            report.corrupt.append(str(record))
        else:
            report.checked["ref"] += 1


FileChunks = tuple[bytes, int, tuple[tuple[bytes, int], ...]]  # whole-file hash, size, chunks


def _chunks_hash(store: Repository, chunks: tuple[tuple[bytes, int], ...]) -> bytes | None:
    """The BLAKE3 of the chunks' concatenation, read one chunk at a time; None if one can not be read."""
    hasher = blake3.blake3()
    try:
        for d, n in chunks:
            hasher.update(store.objects.read_chunk(d, n))
    except CasError:
        return None  # a missing or damaged chunk is reported by the checks of objects and packs
    return hasher.digest()


def _sizes_checked(store: Repository, tree: Tree, what: str, report: FsckReport) -> bool:
    """Whether the chunk sizes ``tree`` declares are what is stored and within the reader's limit (else reported).

    The same check a read makes before it allocates: so fsck never hashes more
    than a read would accept, and reports the sizes a read refuses.
    """
    try:
        check_expansion(store.objects, tree)
    except ExpansionLimitError as exc:
        report.unchecked.append(f"{what}: {exc}")
        return False
    except CorruptObjectError as exc:
        report.corrupt.append(f"{what}: {exc}")
        return False
    return True


def _check_whole_files(
    store: Repository, marks: Marks, report: FsckReport, *, repair: bool, progress: ProgressCallback | None
) -> None:
    """Each whole-file hash (version-1 trees) must be the hash of its chunks' concatenation; so must each chunk map's.

    Nothing this cas reads depends on them, but a tree or map whose chunks are
    other bytes than its hash says is damage or forgery.
    """
    files: dict[FileChunks, list[str]] = {}
    for d, kind in list(marks.kinds.items()):
        if kind != "tree":
            continue
        try:
            tree = Tree.from_bytes(store.objects.get_object(d), key=f"tree {short(d)}")
        except CasError:
            continue  # reported by mark
        if not _sizes_checked(store, tree, f"tree {short(d)}", report):
            continue
        for entry in tree.entries:
            if entry.hash is not None and entry.chunks != ((entry.hash, entry.size),):
                files.setdefault((entry.hash, entry.size, entry.chunks), []).append(
                    f"{entry.path!r} of tree {short(d)}"
                )
    maps: dict[FileChunks, str] = {}
    for key in list(store.backend.list(CHUNKMAPS_FOLDER)):
        try:
            found = ChunkMap.from_bytes(codec.unseal(store.backend.read(key), key=key), key=key)
        except (FileNotFoundError, CasError):
            continue  # reported by the side-file checks
        if chunkmap_key(found.hash) != key or (found.hash, found.size, found.chunks) in files:
            continue
        as_tree = Tree((FileEntry("file", found.size, found.chunks, hash=found.hash),))
        if _sizes_checked(store, as_tree, f"chunk map {key}", report):
            maps[(found.hash, found.size, found.chunks)] = key
    items = list(files) + list(maps)
    with Phase(progress, "checking whole-file hashes", len(items)) as bar:
        for item, got in zip(
            items, store.objects.executor.map(lambda i: _chunks_hash(store, i[2]), items), strict=True
        ):
            bar.advance()
            report.checked["file hash"] += got is not None
            if got is None or got == item[0]:
                continue
            what = f"{', '.join(files[item])}" if item in files else f"chunk map {maps[item]}"
            report.corrupt.append(f"{what}: its chunks hash to {short(got)}, not to its file hash {short(item[0])}")
            if item in maps and repair:  # a chunk map is a cache older cas wrote
                store.backend.delete(maps[item])
                report.repaired.append(f"removed chunk map {maps[item]} whose chunks are other bytes")


def check(store: Repository, *, repair: bool = False, progress: ProgressCallback | None = None) -> FsckReport:
    """Verify every object and pack; report corrupt, missing and dangling; optionally remove corrupt objects."""
    report = FsckReport()
    backend = store.backend
    store.objects.refresh_index()
    corrupt_loose = []
    keys = list(backend.list(OBJECTS_FOLDER))
    with Phase(progress, "checking objects", len(keys)) as bar:
        for key, (kind, problem, size) in zip(
            keys, store.objects.executor.map(lambda k: _check_loose(store, k), keys), strict=True
        ):
            bar.advance()
            report.bytes_checked += size
            if problem is not None:
                report.corrupt.append(problem)
                corrupt_loose.append(key)
            elif kind != "gone":
                report.checked[kind] += 1
    # An index whose pack has gone is what a gc interrupted between its two deletes leaves:
    # harmless unless the pack held chunks something still needs (judged after marking).
    all_packs = sorted(store.objects.pack_ids())
    gone_packs = [p for p, there in zip(all_packs, store.objects.executor.map(
        lambda p: backend.exists(pack_key(p)), all_packs), strict=True) if not there]  # fmt: skip
    pack_ids = [p for p in all_packs if p not in set(gone_packs)]
    damaged: dict[bytes, list[PackEntry]] = {}
    with Phase(progress, "checking packs", len(pack_ids)) as bar:
        for pack_id, (good, bad, problems, size) in zip(
            pack_ids, store.objects.executor.map(lambda p: _check_pack(store, p), pack_ids), strict=True
        ):
            bar.advance()
            report.bytes_checked += size
            report.checked["pack"] += 1
            report.checked["chunk"] += len(good)
            report.corrupt += problems
            if bad:
                damaged[pack_id] = good
    for pack_id, why in store.objects.unreadable.items():
        report.corrupt.append(f"pack {short(pack_id)}: {why}")
    _check_tables(store, report, repair=repair)
    _check_side_files(store, report, repair=repair)
    report.corrupt += [f"refs: {line}" for line in store.refs.problems()]  # label splits
    for key, reason in store.refs.leftovers():  # an interrupted rm: readers already treat these as deleted
        report.leftovers.append(f"refs: {reason}")
        if repair:
            try:
                backend.delete(key)
                report.repaired.append(f"removed {key}: {reason}")
            except FileNotFoundError:
                pass
    if repair:
        for key in corrupt_loose:
            backend.delete(key)
            report.repaired.append(f"removed corrupt {key}")
        for pack_id, good in damaged.items():
            new_id = rewrite_pack(store, pack_id, good)
            report.repaired.append(f"rewrote pack {short(pack_id)} as {short(new_id)} without its corrupt chunks")
        store.objects.refresh_index()
    marks = mark(store.objects, store.refs, store.run_index, strict=False, progress=progress)
    report.missing += marks.missing
    _check_whole_files(store, marks, report, repair=repair, progress=progress)
    recent = store.objects.recent_pack_ids()
    for pack_id in gone_packs:
        try:
            entries = store.objects.read_pack_index(pack_id).entries
        except CasError:
            entries = ()
        needed = [e.digest for e in entries if e.digest in marks.chunks or e.digest in marks.objects]
        if needed:
            report.missing.append(f"pack {short(pack_id)} (holding {len(needed)} chunks still needed)")
        elif pack_id in recent:
            report.dangling.append(f"index {short(pack_id)} of a removed pack")
            if repair:
                backend.delete(index_key(pack_id))
                report.repaired.append(f"removed the index of removed pack {short(pack_id)}")
    gone_set = set(gone_packs)
    located = store.objects.locate_many(sorted(marks.chunks))  # in bulk: one pass over each table
    for d in sorted(marks.chunks):
        loc = located.get(d)
        if (loc is None or loc.pack in gone_set) and not store.objects.has_object(d):
            if loc is None:
                report.missing.append(f"chunk {short(d)}")
    for key in keys:
        h = parse_object_key(key)
        if h is not None and h not in marks.objects and h not in marks.chunks and backend.exists(key):
            report.dangling.append(short(h))
    return report

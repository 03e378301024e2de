"""Consolidation: the chunk index into a few tables, small packs into large ones, geometrically.

Every pack a writer makes comes with its own ``index/`` file, which every
reader lists and reads whole. Consolidation folds those files, with the
smaller chunk tables, into one new table (``midx/``), so that the tables form a
geometric progression (each at least twice the rows of all smaller ones
together, as git's ``repack --geometric``): a store of n chunks has about
log2(n) tables, and a lookup reads two small ranges of each at most.

Safe beside other writers and readers without locks (FORMAT.md, *Chunk tables*):
a table is written before anything it replaces is deleted, so each pack is
always in an ``index/`` file or in a table that a listing shows; readers list
``index/`` before ``midx/`` and list again when a table vanishes under them.
Small packs are merged by copying every entry (verified) into new packs,
written with their index before the old packs go; a chunk therefore always
sits in some pack, and readers that held an old location find the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cas import chunktables
from cas.config import TABLES_FORMAT, raise_format
from cas.errors import CasError
from cas.hashing import digest
from cas.keys import PACKS_FOLDER, index_key, pack_key, table_key
from cas.objects import PackEntry, PackIndex
from cas.objectstore import backend_errors, pack_trailer, verify_packed
from cas.progress import Phase, ProgressCallback

if TYPE_CHECKING:
    from cas.repository import Repository

#: gc folds the ``index/`` files into a table once there are this many, or they hold MIN_RECENT_ROWS
#: rows (every reader reads them whole); ``repack``: always.
MIN_RECENT = 16
MIN_RECENT_ROWS = 1 << 16
#: A table joins the merge when it has at most this many times the rows merged so far (git: 2).
FACTOR = 2
#: A table whose rows point at removed packs beyond this share of its packs is rewritten.
STALE_SHARE = 0.05
#: Packs smaller than this share of the backend's pack target are merged into full-size ones.
SMALL_PACK_SHARE = 0.25


@dataclass
class ConsolidationReport:
    """What a consolidation did."""

    tables_written: int = 0
    index_files_merged: int = 0
    tables_merged: int = 0
    rows: int = 0
    packs_merged: int = 0
    packs_written: int = 0
    bytes_copied: int = 0
    skipped: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = []
        if self.tables_written:
            parts.append(
                f"chunk index: {self.index_files_merged} index files and {self.tables_merged} tables "
                f"merged into 1 table of {self.rows:,} chunks"
            )
        if self.packs_merged:
            parts.append(
                f"{self.packs_merged} small packs merged into {self.packs_written} ({self.bytes_copied:,} bytes copied)"
            )
        return "; ".join(parts) or "chunk index already consolidated"


def consolidate(
    repo: Repository,
    *,
    force: bool = False,
    merge_packs: bool = True,
    live: set[bytes] | None = None,
    packs: dict[bytes, list[PackEntry]] | None = None,
    progress: ProgressCallback | None = None,
) -> ConsolidationReport:
    """Merge small packs, then the chunk index; ``force`` also merges below the thresholds gc waits for.

    With ``live`` (what gc's roots reach), only packs holding nothing else are merged,
    so that unreachable chunks keep their age; without it every small pack is (all copied).
    ``packs`` (pack id -> entries, as gc read them) saves reading every index again.
    """
    report = ConsolidationReport()
    present = repo.objects.existing_pack_ids()
    if merge_packs:
        _merge_small_packs(repo, present, report, live, packs, progress)
        present = repo.objects.existing_pack_ids()
    # Packs just merged come with index files of many rows each: fold them into a table at once.
    _merge_index(repo, present, report, force=force or report.packs_merged > 0, progress=progress)
    return report


def _pack_size(index: PackIndex) -> int:
    """A pack's size as its writer made it: its entries back to back, then the trailer."""
    end = max((e.offset + e.stored for e in index.entries), default=0)
    return end + len(pack_trailer(index.to_bytes()))


def _merge_index(
    repo: Repository,
    present: set[bytes],
    report: ConsolidationReport,
    *,
    force: bool,
    progress: ProgressCallback | None,
) -> None:
    objects = repo.objects
    objects.refresh_index()
    recent: dict[bytes, PackIndex] = {}
    skipped = list(report.skipped)
    for pack_id in sorted(objects.recent_pack_ids()):
        if pack_id not in present:
            continue  # its pack was removed: gc deletes the index file
        try:
            recent[pack_id] = objects.read_pack_index(pack_id)
        except CasError as exc:
            skipped.append(f"index of pack {pack_id.hex()[:12]} left as it is: {exc}")
    merged_rows = sum(len(i.entries) for i in recent.values())
    chosen: list[chunktables.ChunkTable] = []
    for table in objects.tables():
        packs = table.pack_list()
        stale = sum(1 for p, _ in packs if p not in present) / max(len(packs), 1)
        if table.entry_count <= FACTOR * max(merged_rows, 1) or stale > STALE_SHARE:
            try:
                table.verify()
            except (CasError, FileNotFoundError) as exc:
                skipped.append(f"chunk table {table.id.hex()[:12]} left as it is: {exc}")
                continue
            chosen.append(table)
            merged_rows += table.entry_count
    report.skipped = tuple(skipped)
    recent_rows = sum(len(i.entries) for i in recent.values())
    if not chosen and not recent:
        return
    if not chosen and not force and len(recent) < MIN_RECENT and recent_rows < MIN_RECENT_ROWS:
        return
    if len(chosen) == 1 and not recent and not force:
        stale_only = chosen[0]
        if all(p in present for p, _ in stale_only.pack_list()):
            return  # one table, nothing to fold into it
    np = chunktables.numpy()
    if repo.config.format < TABLES_FORMAT:
        repo.config = raise_format(repo.backend, TABLES_FORMAT)
    with Phase(progress, "consolidating the chunk index", len(recent) + len(chosen)) as bar:
        sizes: dict[bytes, int] = {p: _pack_size(i) for p, i in recent.items()}
        for table in chosen:
            for p, size in table.pack_list():
                if p in present:
                    sizes.setdefault(p, size)
        order = sorted(sizes)
        ordinal = {p: i for i, p in enumerate(order)}
        parts = []
        for table in chosen:
            rows = table.all_rows().copy()
            remap = np.array([ordinal.get(p, -1) if p in present else -1 for p, _ in table.pack_list()], np.int64)
            new = remap[rows["pack"].astype(np.int64)] if len(rows) else np.zeros(0, np.int64)
            keep = new >= 0
            rows = rows[keep]
            rows["pack"] = new[keep]
            parts.append(rows)
            bar.advance()
        for pack_id, index in recent.items():
            parts.append(chunktables.rows_of(index.entries, ordinal[pack_id]))
            bar.advance()
        rows = np.concatenate(parts) if parts else np.zeros(0, chunktables.entry_dtype())
        data = chunktables.build_from_rows(rows, [(p, sizes[p]) for p in order])
    table_id = digest(data)
    with backend_errors(table_key(table_id)):
        repo.backend.write(table_key(table_id), data)
    # Only now what the table replaces goes: index files first, then the tables merged.
    with backend_errors(index_key(b"")):
        repo.backend.delete_many([index_key(p) for p in recent])
        repo.backend.delete_many([table_key(t.id) for t in chosen if t.id != table_id])
    report.tables_written += 1
    report.index_files_merged += len(recent)
    report.tables_merged += len([t for t in chosen if t.id != table_id])
    report.rows = chunktables.HEADER.unpack(data[: chunktables.HEADER.size])[4]
    objects.refresh_index()


def _merge_small_packs(
    repo: Repository,
    present: set[bytes],
    report: ConsolidationReport,
    live: set[bytes] | None,
    packs: dict[bytes, list[PackEntry]] | None,
    progress: ProgressCallback | None,
) -> None:
    """Copy the entries of packs under a quarter of the pack target into full-size packs, then remove them."""
    objects = repo.objects
    target = repo.backend.pack_target
    small: list[tuple[bytes, list[PackEntry]]] = []
    for pack_id, entries in (objects.pack_entries() if packs is None else packs).items():
        if pack_id in present and _entries_size(entries) < SMALL_PACK_SHARE * target:
            if live is None or all(e.digest in live for e in entries):
                small.append((pack_id, entries))
    if len(small) < 2:
        return
    small.sort(key=lambda item: item[0])
    groups: list[list[tuple[bytes, list[PackEntry]]]] = [[]]
    size = 0
    for item in small:
        n = _entries_size(item[1])
        if groups[-1] and size + n > target:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += n
    with Phase(progress, "merging small packs", len(small)) as bar:
        for group in groups:
            if len(group) < 2:
                continue
            copied = _copy_group(repo, group)
            if copied is None:
                continue
            report.packs_merged += len(group)
            report.packs_written += 1
            report.bytes_copied += copied
            bar.advance(len(group))


def _entries_size(entries: list[PackEntry]) -> int:
    return sum(e.stored for e in entries)


def _copy_group(repo: Repository, group: list[tuple[bytes, list[PackEntry]]]) -> int | None:
    """Write one pack holding every entry of ``group`` (verified), then remove the old packs."""
    objects = repo.objects
    seen: set[bytes] = set()
    pieces: list[tuple[bytes, list[memoryview], int, int]] = []
    for pack_id, entries in group:
        key = pack_key(pack_id)
        try:
            with backend_errors(key):
                data = memoryview(repo.backend.read(key))
        except FileNotFoundError:
            return None  # gc or another consolidation took it: leave this group
        for e in entries:
            if e.digest in seen:
                continue
            stored = data[e.offset : e.offset + e.stored]
            try:
                verify_packed(stored, e, pack_id)
            except CasError:
                return None  # damaged: fsck reports it; never copy bad bytes
            seen.add(e.digest)
            pieces.append((e.digest, [stored], e.raw_size, e.codec))
    if not pieces:
        return None
    new_id, index, written = objects.write_pack(pieces, register=False)
    old = [p for p, _ in group]
    with backend_errors(PACKS_FOLDER):
        repo.backend.delete_many([index_key(p) for p in old])
        repo.backend.delete_many([pack_key(p) for p in old])
    for pack_id in old:
        objects.forget_pack(pack_id)
    objects.register_pack(new_id, index)  # after the old ones are forgotten: its rows take their place
    return written


__all__ = ["ConsolidationReport", "consolidate"]

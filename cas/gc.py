"""Garbage collection: mark what the roots reach, sweep the rest once it is old enough.

Roots are every ref (versions, labels, tags) and every run in the run log,
with their inputs and outputs (and the runs cached ones reused). Anything
else, an artifact put without a name and used by no run included, is
garbage, like a dangling git blob, and is removed once it is older than the
grace period. The grace period is what keeps gc safe beside writers: a put
writes its chunks and objects before the ref that reaches them, and
re-using a stored object or pack refreshes its timestamp, so anything a live
writer may still reference is young.

Time is the storage's, never this machine's: a pass writes a marker file
under ``tmp/`` and takes the storage's timestamp of it as "now" (the cutoff
is that minus the grace); it reads that clock again before each batch of
deletions and stops deleting, with a :class:`GraceExceededWarning`, once the
pass has outlived its grace period. Ages come from the listings (on an
object store a listing carries each key's timestamp), so a pass costs a
listing per folder plus what it deletes, in batches.

Packs with more than ``REPACK_THRESHOLD`` of their bytes unreachable are
rewritten: the new pack and its index are written before the old pack is
removed, so a crash at any point leaves at worst both copies. Two passes may
run at once: whatever vanishes under one (the other removed it) counts as
already gone, and a chunk held by two packs lives on in the newest one, the
copy a concurrent repack writes.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from cas import codec, visualrecords
from cas.backends.base import Backend, ListedKey, each_request
from cas.consolidate import ConsolidationReport, consolidate
from cas.errors import (
    BackendError,
    CasError,
    CorruptObjectError,
    IntegrityError,
    InvalidArgumentError,
    ObjectNotFoundError,
)
from cas.hashing import short
from cas.keys import (
    CACHE_FOLDER,
    CHUNKMAPS_FOLDER,
    CONSUMED_FOLDER,
    HEX_FOLDERS,
    INDEX_FOLDER,
    NAMES_FOLDER,
    OBJECTS_FOLDER,
    PACKS_FOLDER,
    PRODUCED_FOLDER,
    TMP_FOLDER,
    index_key,
    pack_key,
    parse_consumed_key,
    parse_index_key,
    parse_names_key,
    parse_object_key,
    parse_pack_key,
    parse_produced_key,
    temp_key,
    version_key,
)
from cas.objects import Artifact, ChunkMap, PackEntry, Tree
from cas.objectstore import verify_packed
from cas.progress import Phase, ProgressCallback
from cas.runs import Run

if TYPE_CHECKING:
    from cas.objectstore import ObjectStore
    from cas.refs import RefStore
    from cas.repository import Repository
    from cas.runs import RunIndex

#: One hour: covers puts that take up to an hour and clocks a few minutes apart.
DEFAULT_GRACE = 3600.0
#: Rewrite a pack once more than this share of its bytes is garbage (restic keeps at most 5%).
REPACK_THRESHOLD = 0.05
#: Deletions go out in batches of this many keys (S3's multi-object delete takes 1,000).
BATCH = 1000
#: The prefix of a pass's clock marker under ``tmp/``.
CLOCK_PREFIX = "gc-clock-"


class GraceExceededWarning(UserWarning):
    """A gc pass outlived its grace period and stopped deleting (run it again, or raise the grace)."""


def grace_seconds(grace: float | timedelta | None, default: float) -> float:
    if grace is None:
        return default
    try:
        seconds = grace.total_seconds() if isinstance(grace, timedelta) else float(grace)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"grace must be seconds or a timedelta, not {grace!r}") from None
    if not seconds >= 0:  # NaN too: it would make every unreferenced object old enough
        raise InvalidArgumentError(f"grace must be 0 seconds or more, not {grace!r}")
    return seconds


@dataclass
class Marks:
    """What the roots reach."""

    objects: set[bytes] = field(default_factory=set)  # loose objects: artifacts, trees, runs
    chunks: set[bytes] = field(default_factory=set)  # chunks, loose or packed
    runs: set[bytes] = field(default_factory=set)  # runs in the log (and the runs they reused)
    kinds: dict[bytes, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "what (needed by whom)"
    artifact_sizes: dict[bytes, int] = field(default_factory=dict)


def mark(
    objects: ObjectStore,
    refs: RefStore,
    run_index: RunIndex,
    *,
    strict: bool = True,
    progress: ProgressCallback | None = None,
) -> Marks:
    """Walk from the roots: the refs, and the runs in the run log. With ``strict``, an unreadable ref
    stops gc (its target is unknown). Reads only storage-level records (no materializer)."""
    marks = Marks()
    artifacts: dict[bytes, str] = {}
    for key, record in refs.all_records():
        if isinstance(record, CorruptObjectError):
            if strict:
                raise IntegrityError(f"{key} is unreadable, so gc can not know what it protects: run fsck") from None
            marks.missing.append(f"{key} (unreadable ref)")
            continue
        artifacts.setdefault(record.target, key)
    pending = list(run_index.newest())
    with Phase(progress, "marking runs", len(pending)) as bar:
        while pending:  # level by level: the runs cached ones came from are read in the next round
            wave = [h for h in dict.fromkeys(pending) if h not in marks.runs]
            for _ in range(len(pending) - len(wave)):
                bar.advance()  # (already marked: counted all the same)
            pending = []
            marks.runs.update(wave)
            runs = each_request(objects.backend, lambda h: _read_run(objects, h), wave)
            for run_hash, found in zip(wave, runs, strict=True):
                bar.advance()
                if isinstance(found, CasError):
                    marks.missing.append(f"run {short(run_hash)} ({found})")
                    continue
                marks.objects.add(run_hash)
                marks.kinds[run_hash] = "run"
                for h in (*found.inputs.values(), *found.outputs.values()):
                    artifacts.setdefault(h, f"run {short(run_hash)}")
                if found.cached_from is not None:
                    pending.append(found.cached_from)
                    bar.add_to_total(1)
    with Phase(progress, "marking artifacts", len(artifacts)) as bar:
        wanted = [a for a in artifacts if a not in marks.objects]
        found_all = each_request(objects.backend, lambda a: _read_artifact(objects, a), wanted)
        for artifact, got in zip(wanted, found_all, strict=True):
            bar.advance()
            _mark_artifact(artifact, artifacts[artifact], got, marks)
    _mark_visualizations(objects.backend, marks)
    return marks


def _read_run(objects: ObjectStore, run_hash: bytes) -> Run | CasError:
    try:
        return Run.from_bytes(objects.get_object(run_hash))
    except CasError as exc:
        return exc


def _read_artifact(objects: ObjectStore, artifact: bytes) -> tuple[Artifact, Tree | CasError] | CasError:
    """An artifact and its tree (or why the tree can not be read), or why the artifact can not be."""
    try:
        art = Artifact.from_bytes(objects.get_object(artifact))
    except CasError as exc:
        return exc
    try:
        return art, Tree.from_bytes(objects.get_object(art.tree))
    except CasError as exc:
        return art, exc


def _mark_visualizations(backend: Backend, marks: Marks) -> None:
    """The documents listed by the visualization record of a marked artifact live as long as it."""
    for key in backend.list(visualrecords.FOLDER):
        artifact = visualrecords.artifact_of_key(key)
        if artifact is None or artifact not in marks.objects:
            continue
        record = visualrecords.read_record(backend, artifact)
        if record is not None:
            for _, _, d, _ in record.items:
                marks.objects.add(d)
                marks.kinds.setdefault(d, "visualization")


def _mark_artifact(
    artifact: bytes, needed_by: str, found: tuple[Artifact, Tree | CasError] | CasError, marks: Marks
) -> None:
    if isinstance(found, CasError):
        marks.missing.append(f"artifact {short(artifact)} needed by {needed_by} ({found})")
        return
    art, tree = found
    marks.objects.add(artifact)
    marks.kinds[artifact] = "artifact"
    marks.artifact_sizes[artifact] = art.size
    if isinstance(tree, CasError):
        marks.missing.append(f"tree {short(art.tree)} of artifact {short(artifact)} ({tree})")
        return
    marks.objects.add(art.tree)
    marks.kinds[art.tree] = "tree"
    for entry in tree.entries:
        for d, _ in entry.chunks:
            marks.chunks.add(d)


@dataclass
class GcReport:
    """What gc removed (or, in a dry run, would remove)."""

    dry_run: bool
    grace: float
    removed: Counter[str] = field(default_factory=Counter)
    freed: Counter[str] = field(default_factory=Counter)
    repacked: int = 0
    kept_young: int = 0
    missing: list[str] = field(default_factory=list)
    #: The pass outlived its grace period (on the storage's clock) and stopped deleting.
    outlived_grace: bool = False
    #: What the consolidation after the sweep did (None in a dry run).
    consolidation: ConsolidationReport | None = None

    @property
    def objects(self) -> int:
        return sum(self.removed.values())

    @property
    def bytes(self) -> int:
        return sum(self.freed.values())

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"gc {verb} {self.objects} files, {self.bytes:,} bytes (grace {self.grace:g} s)"]
        for kind in sorted(self.removed):
            lines.append(f"  {kind:12} {self.removed[kind]:8} {self.freed[kind]:>16,} bytes")
        if self.repacked:
            lines.append(f"  {'repacked':12} {self.repacked:8} packs")
        if self.kept_young:
            lines.append(f"  kept {self.kept_young} unreachable files younger than the grace period")
        if self.outlived_grace:
            lines.append("  stopped early: the pass outlived the grace period, so it deleted nothing more")
        if self.consolidation is not None and (self.consolidation.tables_written or self.consolidation.packs_merged):
            lines.append(f"  {self.consolidation}")
        for item in self.missing:
            lines.append(f"  missing: {item}")
        return "\n".join(lines)


# -- listings with ages ----------------------------------------------------------
#: A key as a listing saw it: its timestamp on the storage's clock, and its size.
Listed = ListedKey


def listed_shards(backend: Backend, folder: str) -> Iterator[list[Listed]]:
    """The keys below ``folder`` with their ages, one shard at a time (``Backend.list_detailed``).

    Listings carry each key's timestamp and size, so no key costs a request of
    its own. Where a listing pages through the keys (S3) a hex-named folder
    comes in 16 shards (by first digit), each listed just before the caller
    sweeps it, so the age a deletion relies on is one shard's listing old, not
    the whole folder's.
    """
    shards = list("0123456789abcdef") if backend.detail_in_shards and folder in HEX_FOLDERS else [""]
    if len(shards) == 1:
        yield backend.list_detailed(folder)
        return
    with ThreadPoolExecutor(2) as pool:  # the next shard is listed while this one is swept
        pending = pool.submit(backend.list_detailed, folder, shards[0])
        for i in range(len(shards)):
            shard = pending.result()
            if i + 1 < len(shards):
                pending = pool.submit(backend.list_detailed, folder, shards[i + 1])
            yield shard


def listed(backend: Backend, folder: str) -> list[Listed]:
    """Every key below ``folder`` with its age (see ``listed_shards``)."""
    return [item for shard in listed_shards(backend, folder) for item in shard]


# -- the storage's clock -----------------------------------------------------------
class StorageClock:
    """Time as the storage tells it: the timestamp it gave a marker file it has just written.

    On S3 that is the server's clock, on a local or network disk the file
    system's; this machine's clock never enters. The marker lives in ``tmp/``.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.key = temp_key(f"{CLOCK_PREFIX}{uuid.uuid4().hex}")
        self.written = False

    def now(self) -> float:
        """Write the marker and read back its timestamp (raises BackendError if the storage fails)."""
        for _ in range(5):
            self.backend.write(self.key, b"")
            self.written = True
            try:
                return self.backend.mtime(self.key)
            except FileNotFoundError:
                continue  # another pass, run with grace 0, removed it at once
        raise BackendError(f"{self.backend.url}: gc's clock marker {self.key} keeps vanishing")

    def close(self) -> None:
        if not self.written:
            return
        try:
            self.backend.delete(self.key)
        except FileNotFoundError:
            pass


class _OutlivedGrace(Exception):
    """Internal: the pass stops deleting."""


class _Deleter:
    """Deletes unreachable files whose age the listing established, in batches, while the pass is in time.

    Before each batch it reads the storage clock again: once the pass has run
    for longer than the grace period it deletes nothing more. A backend with a
    ``delete_many_if_old`` of its own (the local disk: each file moved aside and
    checked again) takes the batch, so a writer's refresh after the listing
    keeps the file; on another backend whose ``delete_if_old`` is its own, each
    file goes through it; elsewhere (object stores) a batch goes out as one
    multi-object delete, right after the listing of its shard.
    """

    def __init__(self, backend: Backend, report: GcReport, clock: StorageClock, start: float) -> None:
        self.backend = backend
        self.report = report
        self.clock = clock
        self.start = start
        # Grace 0 declares that nothing else writes: what carries the marker's own timestamp counts as
        # old too (file systems date files in ticks of a few ms; object stores in whole seconds).
        self.cutoff = start - report.grace
        if report.grace == 0:
            self.cutoff = start + 1.0 if float(start).is_integer() else math.nextafter(start, math.inf)
        # delete_if_old deletes at or before its cutoff; gc deletes only what is strictly older.
        self._inclusive = math.nextafter(self.cutoff, -math.inf)
        self.atomic = type(backend).delete_if_old is not Backend.delete_if_old
        self.batched = type(backend).delete_many_if_old is not Backend.delete_many_if_old
        self.pending: list[tuple[Listed, str]] = []

    def old(self, item: Listed) -> bool:
        if item.mtime < self.cutoff:
            return True
        self.report.kept_young += 1
        return False

    def in_time(self) -> bool:
        """False once the pass has outlived its grace period (re-reads the storage clock)."""
        if self.report.outlived_grace:
            return False
        if self.report.grace > 0 and not self.report.dry_run:  # grace 0 declares that nothing else writes
            elapsed = self.clock.now() - self.start
            if elapsed > self.report.grace:
                self.report.outlived_grace = True
                warnings.warn(
                    f"gc stopped deleting: the pass has run {elapsed:.0f} s, longer than its grace period "
                    f"({self.report.grace:g} s), so what it marked may be out of date; run gc again, "
                    "with a grace period longer than a pass takes",
                    GraceExceededWarning,
                    stacklevel=2,
                )
        return not self.report.outlived_grace

    def add(self, item: Listed, kind: str) -> None:
        """Queue an unreachable file found old by the listing."""
        self.pending.append((item, kind))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
        if self.report.dry_run:
            for item, kind in items:
                self._count(item, kind)
            return
        if not self.in_time():
            raise _OutlivedGrace
        if self.batched:
            gone = self.backend.delete_many_if_old([item.key for item, _ in items], self._inclusive)
            for (item, kind), went in zip(items, gone, strict=True):
                if went:
                    self._count(item, kind)
                elif went is not None:
                    self.report.kept_young += 1
            return
        if self.atomic:
            for item, kind in items:
                self.remove_now(item, kind, checked=True)
            return
        self.backend.delete_many([item.key for item, _ in items])  # absent keys: another pass got there
        for item, kind in items:
            self._count(item, kind)

    def remove_now(self, item: Listed, kind: str, *, checked: bool = False) -> bool:
        """Delete one file now unless a writer refreshed it since the listing; whether it went."""
        if self.report.dry_run:
            self._count(item, kind)
            return True
        if not checked and not self.in_time():
            raise _OutlivedGrace
        try:
            if not self.backend.delete_if_old(item.key, self._inclusive):
                self.report.kept_young += 1
                return False
        except FileNotFoundError:
            return False  # already gone: another pass removed it
        self._count(item, kind)
        return True

    def remove_key(self, key: str, kind: str) -> None:
        """Delete a file that goes with one just removed (a pack's index), whatever its age."""
        try:
            size = self.backend.size(key)
            if not self.report.dry_run:
                self.backend.delete(key)
        except FileNotFoundError:
            return
        self._count(Listed(key, 0.0, size), kind)

    def _count(self, item: Listed, kind: str) -> None:
        self.report.removed[kind] += 1
        self.report.freed[kind] += item.size


class _Sweeper:
    """Finds what is unreachable and old enough, and hands it to the deleter."""

    def __init__(self, store: Repository, marks: Marks, deleter: _Deleter) -> None:
        self.store = store
        self.backend = store.backend
        self.report = deleter.report
        self.marks = marks
        self.deleter = deleter

    def objects(self, progress: ProgressCallback | None) -> None:
        marked_objects, marked_chunks = self.marks.objects, self.marks.chunks
        deleter = self.deleter
        with Phase(progress, "sweeping objects", 0) as bar:
            for shard in listed_shards(self.backend, OBJECTS_FOLDER):
                bar.add_to_total(len(shard))
                for item in shard:
                    bar.advance()
                    h = parse_object_key(item.key)
                    if h is not None and (h in marked_objects or h in marked_chunks):
                        continue
                    if deleter.old(item):
                        deleter.add(item, "object" if h is not None else "stray")
                if not deleter.atomic:
                    deleter.flush()  # while this shard's listing is fresh
            deleter.flush()

    def packs(self, packs: dict[bytes, list[PackEntry]], threshold: float) -> None:
        listing = listed(self.backend, PACKS_FOLDER)  # before repacking adds new ones
        present = {pack_id: item for item in listing if (pack_id := parse_pack_key(item.key)) is not None}
        canonical = self._canonical(packs, present)
        removed: set[bytes] = set()
        for pack_id, entries in packs.items():
            item = present.get(pack_id)
            if item is None:
                continue  # gone since the index was read (another pass)
            live = [e for e in entries if canonical.get(e.digest) == pack_id]
            total = sum(e.stored for e in entries)
            dead = total - sum(e.stored for e in live)
            if dead == 0 or not self.deleter.old(item):
                continue
            if not live:
                if self.deleter.remove_now(item, "pack"):
                    self.deleter.remove_key(index_key(pack_id), "pack index")
                    removed.add(pack_id)
                if not self.report.dry_run:
                    self.store.objects.forget_pack(pack_id)
            elif dead > threshold * total:
                self.report.repacked += 1
                self.report.freed["pack"] += dead
                if not self.report.dry_run:
                    if not self.deleter.in_time():
                        raise _OutlivedGrace
                    try:
                        rewrite_pack(self.store, pack_id, live, unless_fresher_than=self.deleter.cutoff,
                                     may_delete=self.deleter.in_time)  # fmt: skip
                    except ObjectNotFoundError:
                        pass  # another pass repacked or removed it first
        # Whether a pack is indexed is the object store's to say (an index file, or a chunk table).
        self.store.objects.refresh_index()
        indexed = set(self.store.objects.pack_ids())
        for item in listing:
            pack_id = parse_pack_key(item.key)
            if pack_id in removed or pack_id in indexed:
                continue
            if self.deleter.old(item):
                self.deleter.remove_now(item, "unindexed pack")  # a crash between a pack and its index

    def _canonical(self, packs: dict[bytes, list[PackEntry]], present: dict[bytes, Listed]) -> dict[bytes, bytes]:
        """For each marked chunk, the pack that keeps it: the newest present one holding it.

        A chunk in two packs is a repack's copy or two writers' at once. Every
        pass picks the newest, which is the copy a concurrent repack wrote (or
        the one a writer refreshed since), so two passes never remove both.
        """
        marked_chunks, marked_objects = self.marks.chunks, self.marks.objects
        best: dict[bytes, tuple[float, bytes]] = {}
        for pack_id, entries in packs.items():
            item = present.get(pack_id)
            if item is None:
                continue
            rank = (item.mtime, pack_id)
            for e in entries:
                if e.digest in marked_chunks or e.digest in marked_objects:
                    held = best.get(e.digest)
                    if held is None or rank > held:
                        best[e.digest] = rank
        return {d: rank[1] for d, rank in best.items()}

    def indexes(self) -> None:
        """Index entries and caches that point at what is gone."""
        backend, deleter = self.backend, self.deleter
        packs_now = {parse_pack_key(k) for k in backend.list(PACKS_FOLDER)}
        for item in listed(backend, INDEX_FOLDER):
            pack_id = parse_index_key(item.key)
            # A pack is written before its index: an old index whose pack is not there lost it.
            if pack_id is not None and pack_id not in packs_now and deleter.old(item):
                deleter.add(item, "pack index")
        for item in listed(backend, CHUNKMAPS_FOLDER):
            if not deleter.old(item):
                continue
            try:
                found = ChunkMap.from_bytes(codec.unseal(backend.read(item.key), key=item.key))
                stale = not all(d in self.marks.chunks for d, _ in found.chunks)
            except FileNotFoundError:
                continue
            except CasError:
                stale = True
            if stale:
                deleter.add(item, "chunk map")
        for item in listed(backend, CACHE_FOLDER):
            if not deleter.old(item):  # a young entry may belong to a run recorded after marking
                continue
            run_hash = self.store.run_index.cached_at(item.key)
            if run_hash is None or run_hash not in self.marks.runs or not self._outputs_marked(run_hash):
                deleter.add(item, "cache entry")
        for folder, parse in ((PRODUCED_FOLDER, parse_produced_key), (CONSUMED_FOLDER, parse_consumed_key)):
            for item in listed(backend, folder):
                link = parse(item.key)
                if (link is None or link.run not in self.marks.runs) and deleter.old(item):
                    deleter.add(item, "run index")
        for item in listed(backend, NAMES_FOLDER):
            entry = parse_names_key(item.key)
            if entry is not None and backend.exists(version_key(entry.name, entry.number)):
                continue
            if deleter.old(item):
                deleter.add(item, "name index")
        for item in listed(backend, visualrecords.FOLDER):
            artifact = visualrecords.artifact_of_key(item.key)
            if (artifact is None or artifact not in self.marks.objects) and deleter.old(item):
                deleter.add(item, "visualizations")
        for item in listed(backend, TMP_FOLDER):
            # Files being written (a pack, another pass's clock or set-aside files) are young, as the
            # grace requires; with grace 0 a pass sets aside only what nobody touched since it began.
            if item.key != deleter.clock.key and deleter.old(item):
                deleter.add(item, "tmp")
        deleter.flush()

    def _outputs_marked(self, run_hash: bytes) -> bool:
        try:
            run = Run.from_bytes(self.store.objects.get_object(run_hash))
        except CasError:
            return False
        return all(h in self.marks.objects for h in run.outputs.values())


def _pack_entries(objects: ObjectStore) -> dict[bytes, list[PackEntry]]:
    """Every indexed pack's entries; a pack that vanishes meanwhile (another pass) is forgotten, not an error."""
    for _ in range(5):
        try:
            return objects.pack_entries()
        except ObjectNotFoundError:
            objects.refresh_index()  # forgets the packs whose index has gone
    return objects.pack_entries()


def collect(
    store: Repository,
    *,
    dry_run: bool,
    grace: float,
    repack_threshold: float = REPACK_THRESHOLD,
    repack: bool = False,
    progress: ProgressCallback | None = None,
) -> GcReport:
    """Mark, then sweep everything unreachable and older than ``grace`` seconds on the storage's clock,
    then consolidate packs and the chunk index (``repack``: even below the usual thresholds).

    Warns with GraceExceededWarning (and sets ``outlived_grace`` in the report)
    if the pass outlives its grace period: it then deletes nothing more.
    """
    report = GcReport(dry_run=dry_run, grace=grace)
    clock = StorageClock(store.backend)
    try:
        start = clock.now()  # before anything is read: whatever is written from here on is young
    except (CasError, PermissionError):
        if not dry_run:
            raise
        # A dry run deletes nothing, so read-only access will do: this machine's clock then estimates the ages.
        start = time.time()
    try:
        store.objects.refresh_index()
        # Read before marking, so no pack written after this point is judged by stale liveness.
        packs = _pack_entries(store.objects)
        marks = mark(store.objects, store.refs, store.run_index, progress=progress)
        report.missing = marks.missing
        deleter = _Deleter(store.backend, report, clock, start)
        sweeper = _Sweeper(store, marks, deleter)
        try:
            sweeper.objects(progress)
            sweeper.packs(packs, repack_threshold)
            sweeper.indexes()
        except _OutlivedGrace:
            pass  # reported: deleter.in_time() warned and set report.outlived_grace
        if not dry_run:
            store.objects.refresh_index()
        if not dry_run and not report.outlived_grace:
            # Small packs into full-size ones, the index files and smaller tables into one table
            # (geometric): nothing is deleted that a newer pack or table does not hold (W20).
            # Only packs every chunk of which the roots reach are merged: unreachable chunks stay
            # where they are, so their age still counts (a merge would make them young again).
            live = marks.chunks | marks.objects
            report.consolidation = consolidate(store, force=repack, live=live, packs=packs, progress=progress)
    finally:
        clock.close()
    return report


def rewrite_pack(
    store: Repository,
    pack_id: bytes,
    keep: list[PackEntry],
    *,
    unless_fresher_than: float | None = None,
    may_delete: Callable[[], bool] | None = None,
) -> bytes:
    """Copy the ``keep`` entries (verified) into a new pack; then remove the old one. Returns the new id.

    With ``unless_fresher_than`` (storage time), the old pack stays if a writer
    refreshed it while it was being copied: that writer reuses chunks the copy
    left out. The old pack also stays if ``may_delete`` says no (gc ran out of
    time). Raises ObjectNotFoundError if the old pack vanished (another gc
    pass removed it) before it was copied: nothing is written then.
    """
    backend = store.backend
    old_key = pack_key(pack_id)

    def copied() -> Iterator[tuple[bytes, list[bytes], int, int]]:
        for entry in keep:
            try:
                data = backend.read_range(old_key, entry.offset, entry.stored)
            except FileNotFoundError:
                raise ObjectNotFoundError(f"pack {short(pack_id)} is missing") from None
            verify_packed(data, entry, pack_id)
            yield entry.digest, [data], entry.raw_size, entry.codec

    # The new pack and its index first...
    new_id, index, _ = store.objects.write_pack(copied(), register=False)
    try:
        refreshed = unless_fresher_than is not None and backend.mtime(old_key) >= unless_fresher_than
    except FileNotFoundError:
        refreshed = False
    if new_id != pack_id and not refreshed and (may_delete is None or may_delete()):
        for key in (index_key(pack_id), old_key):  # ...then the old one goes
            try:
                backend.delete(key)
            except FileNotFoundError:
                pass
        store.objects.forget_pack(pack_id)
    store.objects.register_pack(new_id, index)
    return new_id

"""Garbage collection: mark what the roots reach, sweep the rest once it is old enough.

Roots are every ref (versions, labels, tags) and every run in the run log,
with their inputs and outputs (and the runs cached ones reused). Anything
else, an artifact put without a name and used by no run included, is
garbage, like a dangling git blob, and is removed once it is older than the
grace period. The grace period is what keeps gc safe beside writers: a put
writes its chunks and objects before the ref that reaches them, and
re-using a stored object or pack refreshes its timestamp, so anything a live
writer may still reference is young.

Packs with more than ``REPACK_THRESHOLD`` of their bytes unreachable are
rewritten: the new pack and its index are written before the old pack is
removed, so a crash at any point leaves at worst both copies.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from cas import codec, visualrecords
from cas.errors import CasError, CorruptObjectError, IntegrityError, InvalidArgumentError
from cas.hashing import short
from cas.keys import (
    CACHE_FOLDER,
    CHUNKMAPS_FOLDER,
    CONSUMED_FOLDER,
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
    version_key,
)
from cas.objects import Artifact, ChunkMap, PackEntry, Tree, kind_of_stored
from cas.objectstore import verify_packed
from cas.progress import Phase, ProgressCallback
from cas.runs import Run

if TYPE_CHECKING:
    from cas.backends.base import Backend
    from cas.objectstore import ObjectStore
    from cas.refs import RefStore
    from cas.repository import Repository
    from cas.runs import RunIndex

#: One hour: covers puts that take up to an hour and clocks a few minutes apart.
DEFAULT_GRACE = 3600.0
#: Rewrite a pack once more than this share of its bytes is garbage (restic keeps at most 5%).
REPACK_THRESHOLD = 0.05


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
        while pending:
            run_hash = pending.pop()
            bar.advance()
            if run_hash in marks.runs:
                continue
            marks.runs.add(run_hash)
            try:
                run = Run.from_bytes(objects.get_object(run_hash))
            except CasError as exc:
                marks.missing.append(f"run {short(run_hash)} ({exc})")
                continue
            marks.objects.add(run_hash)
            marks.kinds[run_hash] = "run"
            for h in (*run.inputs.values(), *run.outputs.values()):
                artifacts.setdefault(h, f"run {short(run_hash)}")
            if run.cached_from is not None:
                pending.append(run.cached_from)
                bar.add_to_total(1)
    with Phase(progress, "marking artifacts", len(artifacts)) as bar:
        for artifact, needed_by in artifacts.items():
            bar.advance()
            _mark_artifact(objects, artifact, needed_by, marks)
    _mark_visualizations(objects.backend, marks)
    return marks


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


def _mark_artifact(objects: ObjectStore, artifact: bytes, needed_by: str, marks: Marks) -> None:
    if artifact in marks.objects:
        return
    try:
        art = Artifact.from_bytes(objects.get_object(artifact))
    except CasError as exc:
        marks.missing.append(f"artifact {short(artifact)} needed by {needed_by} ({exc})")
        return
    marks.objects.add(artifact)
    marks.kinds[artifact] = "artifact"
    marks.artifact_sizes[artifact] = art.size
    try:
        tree = Tree.from_bytes(objects.get_object(art.tree))
    except CasError as exc:
        marks.missing.append(f"tree {short(art.tree)} of artifact {short(artifact)} ({exc})")
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
        for item in self.missing:
            lines.append(f"  missing: {item}")
        return "\n".join(lines)


class _Sweeper:
    """Deletes (or, dry, only counts) what is unreachable and old enough."""

    def __init__(self, store: Repository, report: GcReport, marks: Marks, cutoff: float) -> None:
        self.store = store
        self.backend = store.backend
        self.report = report
        self.marks = marks
        self.cutoff = cutoff

    def old(self, key: str) -> bool:
        try:
            if self.backend.mtime(key) > self.cutoff:
                self.report.kept_young += 1
                return False
        except FileNotFoundError:
            return False
        return True

    def remove_if_old(self, key: str, kind: str) -> bool:
        """Delete a data file (object or pack) unless a writer refreshed it at the last moment.

        The backend re-checks the timestamp as it deletes (on a local disk
        atomically: it moves the file aside first), so a writer that reuses
        the file either refreshed it in time or finds it gone and writes anew.
        """
        try:
            size = self.backend.size(key)
            if not self.report.dry_run and not self.backend.delete_if_old(key, self.cutoff):
                self.report.kept_young += 1
                return False
        except FileNotFoundError:
            return False
        self.report.removed[kind] += 1
        self.report.freed[kind] += size
        return True

    def remove(self, key: str, kind: str) -> None:
        try:
            size = self.backend.size(key)
            if not self.report.dry_run:
                self.backend.delete(key)
        except FileNotFoundError:
            return
        self.report.removed[kind] += 1
        self.report.freed[kind] += size

    def objects(self, progress: ProgressCallback | None) -> None:
        keys = list(self.backend.list(OBJECTS_FOLDER))
        with Phase(progress, "sweeping objects", len(keys)) as bar:
            for key in keys:
                bar.advance()
                h = parse_object_key(key)
                if h is not None and (h in self.marks.objects or h in self.marks.chunks):
                    continue
                if self.old(key):
                    try:
                        kind = kind_of_stored(self.backend.read(key))
                    except FileNotFoundError:
                        continue
                    self.remove_if_old(key, kind if h is not None else "stray")

    def packs(self, packs: dict[bytes, list[PackEntry]], threshold: float) -> None:
        pack_files = list(self.backend.list(PACKS_FOLDER))  # before repacking adds new ones
        canonical_pack = {}
        for entries in packs.values():
            for e in entries:
                loc = self.store.objects.locate(e.digest)
                if loc is not None:
                    canonical_pack[e.digest] = loc.pack
        for pack_id, entries in packs.items():
            key = pack_key(pack_id)
            # A chunk kept in two packs (two writers at once) lives on in one of them.
            live = [
                e
                for e in entries
                if (e.digest in self.marks.chunks or e.digest in self.marks.objects)
                and canonical_pack.get(e.digest) == pack_id
            ]
            total = sum(e.stored for e in entries)
            dead = total - sum(e.stored for e in live)
            if dead == 0 or not self.old(key):
                continue
            if not live:
                if self.remove_if_old(key, "pack"):
                    self.remove(index_key(pack_id), "pack index")
                if not self.report.dry_run:
                    self.store.objects.forget_pack(pack_id)
            elif dead > threshold * total:
                self.report.repacked += 1
                self.report.freed["pack"] += dead
                if not self.report.dry_run:
                    rewrite_pack(self.store, pack_id, live, unless_fresher_than=self.cutoff)
        for key in pack_files:
            if parse_pack_key(key) not in packs and self.old(key):
                self.remove(key, "unindexed pack")  # a crash between a pack and its index

    def indexes(self) -> None:
        """Index entries and caches that point at what is gone."""
        backend = self.backend
        for key in list(backend.list(INDEX_FOLDER)):
            pack_id = parse_index_key(key)
            if pack_id is None:
                continue
            if not backend.exists(pack_key(pack_id)) and self.old(key):
                self.remove(key, "pack index")
        for key in list(backend.list(CHUNKMAPS_FOLDER)):
            try:
                found = ChunkMap.from_bytes(codec.unseal(backend.read(key), key=key))
                stale = not all(d in self.marks.chunks for d, _ in found.chunks)
            except (CasError, FileNotFoundError):
                stale = True
            if stale and self.old(key):
                self.remove(key, "chunk map")
        for key in list(backend.list(CACHE_FOLDER)):
            run_hash = self.store.run_index.cached_at(key)
            stale = run_hash is None or run_hash not in self.marks.runs or not self._outputs_marked(run_hash)
            if stale and self.old(key):  # a young entry may belong to a run recorded after marking
                self.remove(key, "cache entry")
        for folder, parse in ((PRODUCED_FOLDER, parse_produced_key), (CONSUMED_FOLDER, parse_consumed_key)):
            for key in list(backend.list(folder)):
                link = parse(key)
                run_hash = link.run if link is not None else b""
                if run_hash not in self.marks.runs and self.old(key):
                    self.remove(key, "run index")
        for key in list(backend.list(NAMES_FOLDER)):
            entry = parse_names_key(key)
            if (entry is None or not backend.exists(version_key(entry.name, entry.number))) and self.old(key):
                self.remove(key, "name index")
        for key in list(backend.list(visualrecords.FOLDER)):
            artifact = visualrecords.artifact_of_key(key)
            if (artifact is None or artifact not in self.marks.objects) and self.old(key):
                self.remove(key, "visualizations")
        for key in list(backend.list(TMP_FOLDER)):
            if self.old(key):
                self.remove(key, "tmp")

    def _outputs_marked(self, run_hash: bytes) -> bool:
        try:
            run = Run.from_bytes(self.store.objects.get_object(run_hash))
        except CasError:
            return False
        return all(h in self.marks.objects for h in run.outputs.values())


def collect(
    store: Repository,
    *,
    dry_run: bool,
    grace: float,
    repack_threshold: float = REPACK_THRESHOLD,
    progress: ProgressCallback | None = None,
) -> GcReport:
    """Mark, then sweep everything unreachable and older than ``grace`` seconds."""
    report = GcReport(dry_run=dry_run, grace=grace)
    store.objects.refresh_index()
    # Read before marking, so no pack written after this point is judged by stale liveness.
    packs = store.objects.pack_entries()
    marks = mark(store.objects, store.refs, store.run_index, progress=progress)
    report.missing = marks.missing
    sweeper = _Sweeper(store, report, marks, time.time() - grace)
    sweeper.objects(progress)
    sweeper.packs(packs, repack_threshold)
    sweeper.indexes()
    if not dry_run:
        store.objects.refresh_index()
    return report


def rewrite_pack(
    store: Repository, pack_id: bytes, keep: list[PackEntry], *, unless_fresher_than: float | None = None
) -> bytes:
    """Copy the ``keep`` entries (verified) into a new pack; then remove the old one. Returns the new id.

    With ``unless_fresher_than``, the old pack stays if a writer refreshed it
    while it was being copied: that writer reuses chunks the copy left out.
    """
    backend = store.backend
    old_key = pack_key(pack_id)

    def copied() -> Iterator[tuple[bytes, list[bytes], int, int]]:
        for entry in keep:
            data = backend.read_range(old_key, entry.offset, entry.stored)
            verify_packed(data, entry, pack_id)
            yield entry.digest, [data], entry.raw_size, entry.codec

    # The new pack and its index first...
    new_id, index, _ = store.objects.write_pack(copied(), register=False)
    try:
        refreshed = unless_fresher_than is not None and backend.mtime(old_key) > unless_fresher_than
    except FileNotFoundError:
        refreshed = False
    if new_id != pack_id and not refreshed:
        for key in (index_key(pack_id), old_key):  # ...then the old one goes
            try:
                backend.delete(key)
            except FileNotFoundError:
                pass
        store.objects.forget_pack(pack_id)
    store.objects.register_pack(new_id, index)
    return new_id

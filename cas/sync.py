"""Push and pull: copy refs, the runs in their history and every object they reach.

One function, :func:`transfer`, moves from a source store to a destination
store; push and pull only choose which is which. The order keeps the
destination readable at every moment, as a local put does:

1. Decide, from listings of both sides, which ref files and runs the
   destination lacks. A version that exists on both sides with another
   artifact is a conflict: with ``on_conflict="fail"`` nothing is written.
2. Gather the objects those refs and runs reach (artifacts, trees, chunks,
   runs), ask the destination which it lacks, in batches, and copy only
   those (verified, in new packs). Objects it already holds are freshened so
   its gc's grace period covers them.
3. Write the runs' index entries and the refs, last: a reader of the
   destination never sees a ref whose objects are missing.

An interrupted transfer leaves whole packs and maybe some refs; running it
again copies only what is still missing. A transfer where nothing changed
reads listings and copies nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cas import visualize
from cas.errors import BackendError, CasError, CorruptObjectError, InvalidNameError, RefConflictError, RefNotFoundError
from cas.hashing import short
from cas.objects import Artifact, RefRecord, Tree
from cas.progress import Progress
from cas.refs import gone_key, names_key, parse_ref, parse_ref_key
from cas.runs import Run
from cas.transfer import ASK_LIMIT, CopyStats, copy_objects, freshen, lacking, present_keys

if TYPE_CHECKING:
    from cas.store import Store

CONFLICT_POLICIES = ("fail", "skip", "rename")
#: Concurrent requests of a transfer (object stores answer in milliseconds; threads hide the wait).
TRANSFER_THREADS = 16


@dataclass(frozen=True, slots=True)
class RefConflict:
    """A ref that names one artifact here and another (or nothing, deleted) there."""

    ref: str
    ours: bytes
    theirs: bytes | None  # None: the version was deleted on the other side (or see ``why``)
    why: str = ""

    def __str__(self) -> str:
        there = self.why or ("deleted there" if self.theirs is None else f"{short(self.theirs)} there")
        return f"{self.ref}: {short(self.ours)} here, {there}"


@dataclass
class TransferReport:
    """What a push or pull did."""

    action: str
    remote: str
    refs: list[str] = field(default_factory=list)  # written
    renamed: list[str] = field(default_factory=list)  # "name@3 -> name@7"
    unchanged: int = 0
    conflicts: list[RefConflict] = field(default_factory=list)  # not written
    stale_tags: list[str] = field(default_factory=list)  # the other side's tag is newer: kept
    runs: int = 0
    objects: int = 0
    bytes: int = 0
    packs: int = 0
    freshened: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.refs or self.renamed or self.runs or self.objects)

    def __str__(self) -> str:
        toward = "to" if self.action == "push" else "from"
        if not self.changed and not self.conflicts and not self.stale_tags:
            return f"{self.action} {toward} {self.remote}: up to date ({self.unchanged} refs)"
        lines = [
            f"{self.action} {toward} {self.remote}: {len(self.refs)} refs, {self.runs} runs, "
            f"{self.objects} objects ({self.bytes:,} bytes in {self.packs} packs) in {self.seconds:.2f} s; "
            f"{self.unchanged} refs already there"
        ]
        lines += [f"  renamed {r}" for r in self.renamed]
        lines += [f"  conflict {c} (not written)" for c in self.conflicts]
        lines += [f"  kept their newer tag {t}" for t in self.stale_tags]
        return "\n".join(lines)


@dataclass
class _RefFile:
    """One ref file of the source: ``refs/<name>/@<kind>/<selector>``."""

    key: str
    name: str
    kind: str  # "v", "label" or "tag"
    selector: str
    target: bytes | None = None  # known from names/ before the file is read
    data: bytes | None = None
    record: RefRecord | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.selector}"

    @property
    def names_key(self) -> str:
        assert self.target is not None
        return names_key(self.target, self.name, self.selector)

    @property
    def gone_key(self) -> str:
        return gone_key(self.name, self.selector)


def transfer(
    src: Store,
    dst: Store,
    refs: Sequence[str] | None = None,
    *,
    action: str = "push",
    on_conflict: str = "fail",
    progress: bool | None = None,
) -> TransferReport:
    """Copy ``refs`` (all by default, with every run) and their history from ``src`` to ``dst``."""
    if on_conflict not in CONFLICT_POLICIES:
        raise InvalidNameError(f"on_conflict must be one of {CONFLICT_POLICIES}, not {on_conflict!r}")
    started = time.perf_counter()
    report = TransferReport(action, dst.url if action == "push" else src.url)
    try:
        _run(src, dst, refs, on_conflict, progress, report)
    except OSError as exc:
        if isinstance(exc, CasError):
            raise
        raise BackendError(f"{action} failed: {exc}") from exc
    report.seconds = time.perf_counter() - started
    return report


def _run(
    src: Store, dst: Store, refs: Sequence[str] | None, on_conflict: str, progress: bool | None, report: TransferReport
) -> None:
    with ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="cas-transfer") as pool:
        plan = _Plan(src, dst, pool, report)
        files = plan.select(refs)
        plan.classify(files)
        if report.conflicts and on_conflict == "fail":
            raise RefConflictError(
                f"{len(report.conflicts)} refs differ on the other side (nothing was copied): "
                + "; ".join(str(c) for c in report.conflicts[:5])
                + ("; ..." if len(report.conflicts) > 5 else "")
                + " — use on_conflict='skip' or 'rename'",
                report.conflicts,
            )
        runs = plan.runs(refs is None, [f.target for f in files if f.target is not None])
        renames = [c for c in report.conflicts if on_conflict == "rename" and c.ref.split("@")[-1].isdigit()]
        targets = {f.target for f in plan.to_write if f.target is not None} | {c.ours for c in renames}
        plan.copy(targets, runs, progress)
        plan.write_runs(runs)
        plan.write_refs(on_conflict, renames)


class _Plan:
    """The state of one transfer."""

    def __init__(self, src: Store, dst: Store, pool: Executor, report: TransferReport) -> None:
        self.src = src
        self.dst = dst
        self.pool = pool
        self.report = report
        self.to_write: list[_RefFile] = []

    # -- refs ----------------------------------------------------------------------
    def select(self, refs: Sequence[str] | None) -> list[_RefFile]:
        """The source's ref files that ``refs`` names, with their targets (read verified)."""
        keys = self._selected_keys(refs)
        files = [_RefFile(key, *parsed) for key in keys if (parsed := parse_ref_key(key)) is not None]
        versions = self.src.refs.version_targets({f.name for f in files if f.kind == "v"})
        for f in files:
            if f.kind == "v":
                f.target = versions.get((f.name, int(f.selector)))
        unread = [f for f in files if f.target is None]
        for f, (data, record) in zip(unread, self.pool.map(lambda f: _read_ref(self.src, f.key), unread), strict=True):
            f.data, f.record, f.target = data, record, record.target if record is not None else None
        return [f for f in files if f.target is not None]  # vanished meanwhile: deleted

    def _selected_keys(self, refs: Sequence[str] | None) -> list[str]:
        if refs is None:
            return sorted(self.src.backend.list("refs/"))
        keys: set[str] = set()
        for text in refs:
            spec = parse_ref(text)
            folder = f"refs/{spec.name}/"
            mine = [k for k in self.src.backend.list(folder) if (p := parse_ref_key(k)) and p[0] == spec.name]
            if spec.selector is None:
                chosen = mine
            else:
                chosen = [k for k in mine if parse_ref_key(k)[2] == spec.selector]  # type: ignore[index]
                for key in list(chosen):  # a label or tag brings the version it names
                    _, record = _read_ref(self.src, key)
                    if record is not None and record.number is not None and parse_ref_key(key)[1] != "v":  # type: ignore[index]
                        chosen.append(f"refs/{spec.name}/@v/{record.number}")
            if not chosen:
                raise RefNotFoundError(f"no ref {text!r} in {self.src.url}")
            keys.update(chosen)
        return sorted(keys)

    def classify(self, files: list[_RefFile]) -> None:
        """Sort the source's ref files into: already there, to write, conflicts, stale tags."""
        # A version whose names/ entry exists there names the same artifact there: one listing
        # (a few requests per 1,000 versions) settles most refs without reading any.
        versions = [f for f in files if f.kind == "v"]
        same = present_keys(self.dst.backend, [f.names_key for f in versions], self.pool, whole="names/")
        rest = [f for f in files if not (f.kind == "v" and f.names_key in same)]
        self.report.unchanged += len(files) - len(rest)
        ref_keys = [f.key for f in rest] + [f.gone_key for f in rest if f.kind == "v"]
        there = present_keys(self.dst.backend, ref_keys, self.pool, whole="refs/")
        for f in rest:
            if f.key not in there:
                if f.kind == "v" and f.gone_key in there:
                    self.report.conflicts.append(RefConflict(f.ref, f.target, None))  # type: ignore[arg-type]
                else:
                    self.to_write.append(f)
        unsure = [f for f in rest if f.key in there]
        for f, (_, theirs) in zip(unsure, self.pool.map(lambda f: _read_ref(self.dst, f.key), unsure), strict=True):
            if theirs is None:  # deleted since the listing
                self.to_write.append(f)
            elif theirs.target == f.target:
                self.report.unchanged += 1
            elif f.kind == "tag":
                ours = f.record or _read_ref(self.src, f.key)[1]
                if ours is not None and ours.created > theirs.created:
                    self.to_write.append(f)  # tags move; the newer one wins, as within a store
                else:
                    self.report.stale_tags.append(f.ref)
            else:
                self.report.conflicts.append(RefConflict(f.ref, f.target, theirs.target))  # type: ignore[arg-type]
        self._hold_back_labels_of_conflicts()

    def _hold_back_labels_of_conflicts(self) -> None:
        """A label or tag of a version that conflicts would name another artifact's number there."""
        clashing = {c.ref for c in self.report.conflicts}
        kept = []
        for f in self.to_write:
            number = f.record.number if f.record is not None else None
            if f.kind != "v" and number is not None and f"{f.name}@{number}" in clashing:
                why = f"its version {number} conflicts"
                self.report.conflicts.append(RefConflict(f.ref, f.target, None, why))  # type: ignore[arg-type]
            else:
                kept.append(f)
        self.to_write = kept

    def write_refs(self, on_conflict: str, renames: list[RefConflict]) -> None:
        """Versions first (exclusive create), then labels and tags, then renamed versions."""
        files = self.to_write
        unread = [f for f in files if f.data is None]
        for f, (data, record) in zip(unread, self.pool.map(lambda f: _read_ref(self.src, f.key), unread), strict=True):
            f.data, f.record = data, record
        for f in files:
            if f.record is not None and f.record.target != f.target:
                raise CorruptObjectError(
                    f"{f.key} in {self.src.url} disagrees with its names/ index entry: run `cas fsck --repair`"
                )
        files = [f for f in files if f.data is not None]  # deleted since it was listed
        order = {"v": 0, "label": 1, "tag": 2}
        late: list[RefConflict] = []
        for kind in sorted(order, key=order.__getitem__):
            batch = [f for f in files if f.kind == kind]
            for f, conflict in zip(batch, self.pool.map(self._write_ref, batch), strict=True):
                if conflict is None:
                    self.report.refs.append(f.ref)
                else:
                    late.append(conflict)
        if on_conflict == "rename":
            renames = renames + [c for c in late if c.ref.split("@")[-1].isdigit()]
            late = [c for c in late if not c.ref.split("@")[-1].isdigit()]
            for conflict in renames:
                name = conflict.ref.rsplit("@", 1)[0]
                record = self.dst.refs.create_version(name, conflict.ours)
                self.report.renamed.append(f"{conflict.ref} -> {name}@{record.number}")
            self.report.conflicts = [c for c in self.report.conflicts if c not in renames]
        self.report.conflicts += late
        if late and on_conflict == "fail":
            raise RefConflictError(
                f"{len(late)} refs were written on the other side meanwhile with other artifacts: "
                + "; ".join(str(c) for c in late[:5]),
                late,
            )

    def _write_ref(self, f: _RefFile) -> RefConflict | None:
        backend = self.dst.backend
        assert f.data is not None and f.target is not None
        if f.kind == "tag":
            backend.write(f.key, f.data)
            return None
        if not backend.create(f.key, f.data):
            _, theirs = _read_ref(self.dst, f.key)
            if theirs is None or theirs.target != f.target:
                return RefConflict(f.ref, f.target, theirs.target if theirs else None)
        if f.kind == "v":
            backend.write(f.names_key, b"")  # the reverse index, as a put writes it
        return None

    # -- runs ----------------------------------------------------------------------
    def runs(self, everything: bool, targets: list[bytes]) -> dict[bytes, Run]:
        """The source's runs the destination lacks: all of them, or those in the targets' history.

        The walk goes from each artifact to the runs that produced it, and from
        a run to its inputs' producers, its parents and the run it reused; it
        stops at runs the destination already logs (whose history it holds).
        """
        src_log = self.src.run_index.logged()
        producers = _Producers(self.src, len(targets))
        frontier = set(src_log) if everything else producers.of(targets)
        seen: set[bytes] = set()
        found: dict[bytes, Run] = {}
        while frontier:
            batch = frontier - seen
            seen |= batch
            known = {src_log[r]: r for r in batch if r in src_log}
            logged = present_keys(self.dst.backend, known, self.pool, whole="runlog/")
            wanted = sorted(batch - {known[k] for k in logged})
            frontier = set()
            inputs: list[bytes] = []
            for run in self.pool.map(self.src.run, wanted):
                found[run.hash] = run
                inputs += run.inputs.values()
                frontier.update(run.parents)
                if run.cached_from is not None:
                    frontier.add(run.cached_from)
            frontier |= producers.of(inputs)
        self.report.runs = len(found)
        return found

    def write_runs(self, runs: dict[bytes, Run]) -> None:
        """Index the copied runs on the destination (their objects are there)."""
        ordered = sorted(runs.values(), key=lambda r: r.ended)
        list(self.pool.map(lambda r: self.dst.run_index.add(r, replace_cache=False), ordered))

    # -- objects -------------------------------------------------------------------
    def copy(self, artifacts: set[bytes], runs: dict[bytes, Run], progress: bool | None) -> None:
        """Copy every object the refs and runs reach that the destination lacks; freshen the rest."""
        for run in runs.values():
            artifacts.update(run.inputs.values())
            artifacts.update(run.outputs.values())
        if not artifacts and not runs:
            return
        needed = set(runs)
        for reached in self.pool.map(self._reach, sorted(artifacts)):
            needed |= reached
        records = self._visualizations(artifacts)
        loose = set(runs) | {d for r in records for _, _, d, _ in r.items}
        needed |= loose
        missing, present = lacking(self.dst.objects, needed, self.pool)
        label = "pushing" if self.report.action == "push" else "pulling"
        with Progress(f"{label} objects", len(missing), enabled=progress) as bar:
            self._add(copy_objects(self.src.objects, self.dst.objects, missing, self.pool,
                                   loose=loose, progress=lambda _: bar.advance()))  # fmt: skip
            touched, gone = freshen(self.dst.objects, present, self.pool)
            self.report.freshened += touched
            if gone:  # removed by the other side's gc since we asked: copy them after all
                again, _ = lacking(self.dst.objects, gone, self.pool)
                self._add(copy_objects(self.src.objects, self.dst.objects, again, self.pool, loose=loose))
        for record in records:  # after the documents they list
            visualize.write_record(self.dst, record)

    def _visualizations(self, artifacts: set[bytes]) -> list[visualize.VisualizationRecord]:
        """The source's visualization records of these artifacts that the destination lacks."""
        keys = {visualize.record_key(a): a for a in artifacts}
        there = present_keys(self.src.backend, keys, self.pool, whole=visualize.FOLDER)
        there -= present_keys(self.dst.backend, there, self.pool, whole=visualize.FOLDER)
        found = self.pool.map(lambda k: visualize.read_record(self.src, keys[k]), sorted(there))
        return [r for r in found if r is not None]

    def _add(self, stats: CopyStats) -> None:
        self.report.objects += stats.objects
        self.report.bytes += stats.bytes
        self.report.packs += stats.packs

    def _reach(self, artifact: bytes) -> set[bytes]:
        """An artifact's own object, its tree and the tree's chunks, read verified from the source."""
        art = Artifact.from_bytes(self.src.objects.get_object(artifact), key=f"artifact {short(artifact)}")
        tree = Tree.from_bytes(self.src.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
        return {artifact, art.tree} | {d for entry in tree.entries for d, _ in entry.chunks}


class _Producers:
    """Which completed runs produced an artifact: one listing per artifact, or one for all."""

    def __init__(self, store: Store, expected: int) -> None:
        self.store = store
        self.whole: dict[bytes, list[bytes]] | None = None
        self.expected = expected

    def of(self, artifacts: Iterable[bytes]) -> set[bytes]:
        wanted = set(artifacts)
        if self.whole is None and not self.store.backend.cheap_exists and len(wanted) + self.expected > ASK_LIMIT:
            self.whole = self.store.run_index.all_producers()
        if self.whole is not None:
            return {r for a in wanted for r in self.whole.get(a, [])}
        return {r for a in wanted for r in self.store.run_index.producers(a)}


def _read_ref(store: Store, key: str) -> tuple[bytes | None, RefRecord | None]:
    """A ref file's bytes and record (verified); (None, None) if it is gone."""
    found = store.refs.read_file(key)
    return found if found is not None else (None, None)

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

Everything read from the source is untrusted input (whoever can write the
source can write hash-valid objects and ref files), so a transfer:

- copies a label or tag only if it agrees with the version it names, as that
  version will be on the destination once the transfer is done; a tag whose
  ``created`` lies more than ``CLOCK_SKEW`` ahead of this machine's clock is
  refused, and one already on the destination counts as older than any
  valid tag, so it can not win the newest-tag rule;
- writes cache entries for the runs it copies only if the destination trusts
  the source for caching (a pull: the remote is marked ``trust_cache``; a
  push: the pusher writes its own store) and only for runs that answer cache
  lookups in the source itself, so untrusted runs are never laundered;
- goes on past a bad ref, run or object: what needs it is left out and listed
  in ``TransferReport.skipped`` with the reason, and nothing else changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cas import visualrecords
from cas.errors import (
    BackendError,
    CasError,
    CorruptObjectError,
    InvalidArgumentError,
    InvalidNameError,
    RefConflictError,
    RefNotFoundError,
    check_argument_type,
)
from cas.hashing import short
from cas.keys import (
    NAMES_FOLDER,
    REFS_FOLDER,
    RUNLOG_FOLDER,
    gone_key,
    is_gone_key,
    names_key,
    parse_ref_key,
    parse_ref_name,
    ref_folder,
    version_key,
)
from cas.objects import Artifact, RefRecord, Tree, kind_of
from cas.progress import Phase, ProgressCallback
from cas.refs import check_label, check_name, check_new_label, newer_tag, parse_ref
from cas.runs import Run, RunIndex
from cas.transfer import ASK_LIMIT, CopyStats, copy_objects, freshen, lacking, present_keys

if TYPE_CHECKING:
    from cas.repository import Repository

CONFLICT_POLICIES = ("fail", "skip", "rename")
#: Concurrent requests of a transfer (object stores answer in milliseconds; threads hide the wait).
TRANSFER_THREADS = 16
#: How far ahead of this machine's clock a copied tag's ``created`` may be (seconds): clocks of
#: a team's machines differ by seconds; a tag dated later than this is refused, never clamped.
CLOCK_SKEW = 300.0
#: Version numbers have at most this many digits (a ref file's number is a u64).
MAX_VERSION_DIGITS = 19


@dataclass(frozen=True, slots=True)
class Skipped:
    """A ref or run a transfer left out, and why (the rest was copied)."""

    what: str  # "model@3", "model@prod", "run 1a2b3c4d5e6f"
    why: str

    def __str__(self) -> str:
        return f"{self.what}: {self.why}"


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
    skipped: list[Skipped] = field(default_factory=list)  # bad refs, runs or objects of the source: left out
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
        if not self.changed and not self.conflicts and not self.stale_tags and not self.skipped:
            return f"{self.action} {toward} {self.remote}: up to date ({self.unchanged} refs)"
        lines = [
            f"{self.action} {toward} {self.remote}: {len(self.refs)} refs, {self.runs} runs, "
            f"{self.objects} objects ({self.bytes:,} bytes in {self.packs} packs) in {self.seconds:.2f} s; "
            f"{self.unchanged} refs already there"
        ]
        lines += [f"  renamed {r}" for r in self.renamed]
        lines += [f"  conflict {c} (not written)" for c in self.conflicts]
        lines += [f"  kept their newer tag {t}" for t in self.stale_tags]
        lines += [f"  skipped {s}" for s in self.skipped]
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
    src: Repository,
    dst: Repository,
    refs: Sequence[str] | None = None,
    *,
    action: str = "push",
    on_conflict: str = "fail",
    progress: ProgressCallback | None = None,
    cache: bool = True,
) -> TransferReport:
    """Copy ``refs`` (all by default, with every run) and their history from ``src`` to ``dst``.

    ``cache``: whether ``dst`` trusts ``src`` for caching, i.e. whether the
    copied runs that answer cache lookups in ``src`` get cache entries in
    ``dst`` (a pull passes the remote's ``trust_cache`` mark).
    Raises RefConflictError, BackendError; bad refs, runs and objects of the
    source are left out and listed in the report's ``skipped``.
    """
    if on_conflict not in CONFLICT_POLICIES:
        raise InvalidArgumentError(f"on_conflict must be one of {CONFLICT_POLICIES}, not {on_conflict!r}")
    started = time.perf_counter()
    report = TransferReport(action, dst.url if action == "push" else src.url)
    try:
        _run(src, dst, refs, on_conflict, progress, report, cache)
    except OSError as exc:
        if isinstance(exc, CasError):
            raise
        raise BackendError(f"{action} failed: {exc}") from exc
    report.seconds = time.perf_counter() - started
    return report


def _run(
    src: Repository,
    dst: Repository,
    refs: Sequence[str] | None,
    on_conflict: str,
    progress: ProgressCallback | None,
    report: TransferReport,
    cache: bool,
) -> None:
    with ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="cas-transfer") as pool:
        plan = _Plan(src, dst, pool, report, cache)
        files = plan.select(refs)
        plan.classify(files)
        files = [f for f in files if f.key not in plan.left_out]
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
        report.skipped.sort(key=lambda s: s.what)


class _Plan:
    """The state of one transfer."""

    def __init__(self, src: Repository, dst: Repository, pool: Executor, report: TransferReport, cache: bool) -> None:
        self.src = src
        self.dst = dst
        self.pool = pool
        self.report = report
        self.cache = cache
        self.to_write: list[_RefFile] = []
        self.left_out: set[str] = set()  # keys of ref files skipped
        self.bad: dict[bytes, str] = {}  # artifacts (and runs) of the source that can not be copied: why
        #: (name, number) -> the artifact that version will name on the destination after the transfer
        self.versions_after: dict[tuple[str, int], bytes] = {}

    def skip(self, what: str, why: str, key: str | None = None) -> None:
        self.report.skipped.append(Skipped(what, why))
        if key is not None:
            self.left_out.add(key)

    # -- refs ----------------------------------------------------------------------
    def select(self, refs: Sequence[str] | None) -> list[_RefFile]:
        """The source's ref files that ``refs`` names, with their targets (read verified).

        A ref file with an invalid name, or one that does not decode, is skipped.
        """
        keys = self._selected_keys(refs)
        files = []
        for key in keys:
            parsed = parse_ref_key(key)
            if parsed is None:
                if not is_gone_key(key):  # a@b, x/@label/a@b, x/@v/1/y: no name rule lets a put write it
                    self.skip(_stray_ref(key), "not a valid ref file (its name or label breaks the naming rules)", key)
                continue
            f = _RefFile(key, *parsed)
            why = _invalid_name(f)
            if why is not None:
                self.skip(f.ref, why, key)
            else:
                files.append(f)
        versions = self.src.refs.version_targets({f.name for f in files if f.kind == "v"})
        for f in files:
            if f.kind == "v":
                f.target = versions.get((f.name, int(f.selector)))
        unread = [f for f in files if f.target is None]
        for f, found in zip(unread, self.pool.map(lambda f: _try_read_ref(self.src, f.key), unread), strict=True):
            if isinstance(found, CasError):
                self.skip(f.ref, str(found), f.key)
                continue
            f.data, f.record = found
            f.target = f.record.target if f.record is not None else None
        return [f for f in files if f.target is not None and f.key not in self.left_out]  # None: deleted meanwhile

    def _selected_keys(self, refs: Sequence[str] | None) -> list[str]:
        if refs is None:
            return sorted(self.src.backend.list(REFS_FOLDER))
        keys: set[str] = set()
        check_argument_type(refs, Iterable, "refs")
        for text in refs:
            spec = parse_ref(text)
            folder = ref_folder(spec.name)
            mine = [k for k in self.src.backend.list(folder) if (p := parse_ref_key(k)) and p[0] == spec.name]
            if spec.selector is None:
                chosen = mine
            else:
                chosen = [k for k in mine if parse_ref_key(k)[2] == spec.selector]  # type: ignore[index]
                for key in list(chosen):  # a label or tag brings the version it names
                    found = _try_read_ref(self.src, key)
                    record = None if isinstance(found, CasError) else found[1]  # unreadable: select skips it
                    if record is not None and record.number is not None and parse_ref_key(key)[1] != "v":  # type: ignore[index]
                        chosen.append(version_key(spec.name, record.number))
            if not chosen:
                raise RefNotFoundError(f"no ref {text!r} in {self.src.url}")
            keys.update(chosen)
        return sorted(keys)

    def classify(self, files: list[_RefFile]) -> None:
        """Sort the source's ref files into: already there, to write, conflicts, stale tags, skipped."""
        now = time.time()
        for f in files:
            if f.kind == "tag" and f.record is not None and not _plausible_time(f.record.created, now):
                self.skip(f.ref, f"tag dated {_when(f.record.created)}, ahead of this clock", f.key)
        files = [f for f in files if f.key not in self.left_out]
        # A version whose names/ entry exists there names the same artifact there: one listing
        # (a few requests per 1,000 versions) settles most refs without reading any.
        versions = [f for f in files if f.kind == "v"]
        same = present_keys(self.dst.backend, [f.names_key for f in versions], self.pool, whole=NAMES_FOLDER)
        for f in versions:
            if f.names_key in same:
                self.versions_after[(f.name, int(f.selector))] = f.target  # type: ignore[assignment]
        rest = [f for f in files if not (f.kind == "v" and f.names_key in same)]
        self.report.unchanged += len(files) - len(rest)
        ref_keys = [f.key for f in rest] + [f.gone_key for f in rest if f.kind == "v"]
        there = present_keys(self.dst.backend, ref_keys, self.pool, whole=REFS_FOLDER)
        for f in rest:
            if f.key not in there:
                if f.kind == "v" and f.gone_key in there:
                    self.report.conflicts.append(RefConflict(f.ref, f.target, None))  # type: ignore[arg-type]
                else:
                    self.to_write.append(f)
        unsure = [f for f in rest if f.key in there]
        for f, found in zip(unsure, self.pool.map(lambda f: _try_read_ref(self.dst, f.key), unsure), strict=True):
            if isinstance(found, CasError):  # the destination's own file is damaged
                if f.kind == "tag":
                    self.to_write.append(f)  # a valid tag replaces it
                else:
                    why = f"unreadable here: {found}"
                    self.report.conflicts.append(RefConflict(f.ref, f.target, None, why))  # type: ignore[arg-type]
                continue
            theirs = found[1]
            if theirs is None:  # deleted since the listing
                self.to_write.append(f)
            elif theirs.target == f.target:
                self.report.unchanged += 1
                if f.kind == "v":
                    self.versions_after[(f.name, int(f.selector))] = theirs.target
            elif f.kind == "tag":
                ours = f.record
                # tags move; the newer one wins, as within a store; an implausible tag there never does
                if ours is not None and (newer_tag(ours, theirs) or not self._valid_here(f.name, theirs, now)):
                    self.to_write.append(f)
                else:
                    self.report.stale_tags.append(f.ref)
            else:
                self.report.conflicts.append(RefConflict(f.ref, f.target, theirs.target))  # type: ignore[arg-type]
        self._check_new_names(there)
        self._hold_back_labels_of_conflicts()
        self._check_claims()

    def _check_new_names(self, there: set[str]) -> None:
        """Leave out names, labels and tags new here that a put here would refuse (look-alikes, hex)."""
        refused = self.dst.refs.refusals(f.name for f in self.to_write)
        for f in self.to_write:
            why = refused.get(f.name)
            if why is None and f.kind != "v" and f.key not in there:
                try:
                    check_new_label(f.selector, "version" if f.kind == "label" else "tag")
                except InvalidNameError as exc:
                    why = str(exc)
            if why is not None:
                self.skip(f.ref, why, f.key)
        self.to_write = [f for f in self.to_write if f.key not in self.left_out]

    def _valid_here(self, name: str, tag: RefRecord, now: float) -> bool:
        """Whether a tag on the destination is dated plausibly and agrees with the version it names there."""
        if not _plausible_time(tag.created, now) or tag.number is None:
            return False
        found = _try_read_ref(self.dst, version_key(name, tag.number))
        return not isinstance(found, CasError) and found[1] is not None and found[1].target == tag.target

    def _check_claims(self) -> None:
        """Leave out ref files whose record contradicts what they claim.

        A version must be the number it is filed under and name the artifact
        the source's index says; a label or tag must name the artifact its
        version number will name on the destination after the transfer.
        """
        unread = [f for f in self.to_write if f.data is None]
        for f, found in zip(unread, self.pool.map(lambda f: _try_read_ref(self.src, f.key), unread), strict=True):
            if isinstance(found, CasError):
                self.skip(f.ref, str(found), f.key)
            else:
                f.data, f.record = found
        for f in self.to_write:
            if f.key in self.left_out or f.record is None:
                continue
            record = f.record
            if f.kind == "v" and record.number != int(f.selector):
                self.skip(f.ref, f"its record says it is version {record.number}", f.key)
            elif f.kind == "v" and record.target != f.target:
                self.skip(f.ref, f"its record names {short(record.target)}, the source's index {short(f.target)}"  # type: ignore[arg-type]
                          " (run `cas fsck --repair` there)", f.key)  # fmt: skip
            elif f.kind == "v":
                self.versions_after[(f.name, int(f.selector))] = record.target
            elif record.number is None:
                self.skip(f.ref, "names no version number", f.key)
            elif f.kind == "label" and record.label != f.selector:
                self.skip(f.ref, f"its record names the label {record.label!r}", f.key)
        claims = [f for f in self.to_write if f.kind != "v" and f.key not in self.left_out and f.record is not None]
        unknown = sorted({(f.name, f.record.number) for f in claims} - self.versions_after.keys())  # type: ignore[union-attr]
        keys = [version_key(name, number) for name, number in unknown]  # type: ignore[arg-type]  # numbers set
        for (name, number), found in zip(
            unknown, self.pool.map(lambda k: _try_read_ref(self.dst, k), keys), strict=True
        ):
            if not isinstance(found, CasError) and found[1] is not None:
                self.versions_after[(name, number)] = found[1].target  # type: ignore[index]
        for f in claims:
            assert f.record is not None and f.record.number is not None
            version = self.versions_after.get((f.name, f.record.number))
            if version is None:
                self.skip(f.ref, f"names version {f.record.number}, which the destination will not have", f.key)
            elif version != f.record.target:
                why = f"points at {short(f.record.target)}, but version {f.record.number} is {short(version)}"
                self.skip(f.ref, why, f.key)
        self.to_write = [f for f in self.to_write if f.key not in self.left_out]

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
        files = []
        for f in self.to_write:
            if f.data is None:
                continue  # deleted since it was listed
            if f.target in self.bad:
                self.skip(f.ref, self.bad[f.target], f.key)  # type: ignore[index]
            else:
                files.append(f)
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
                if conflict.ours in self.bad:
                    self.skip(conflict.ref, self.bad[conflict.ours])
                    continue
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
            found = _try_read_ref(self.dst, f.key)
            theirs = None if isinstance(found, CasError) else found[1]
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
            logged = present_keys(self.dst.backend, known, self.pool, whole=RUNLOG_FOLDER)
            wanted = sorted(batch - {known[k] for k in logged})
            frontier = set()
            inputs: list[bytes] = []
            for run_hash, run in zip(wanted, self.pool.map(self._try_run, wanted), strict=True):
                if isinstance(run, CasError):
                    self.bad[run_hash] = str(run)
                    self.skip(f"run {short(run_hash)}", str(run))
                    continue
                found[run.hash] = run
                inputs += run.inputs.values()
                frontier.update(run.parents)
                if run.cached_from is not None:
                    frontier.add(run.cached_from)
            frontier |= producers.of(inputs)
        return found

    def _try_run(self, run_hash: bytes) -> Run | CasError:
        try:
            run = self.src.run(run_hash)
            RunIndex.log_key(run)  # a time no index key can hold: refused like a bad encoding
        except CasError as exc:
            return exc
        except (OverflowError, ValueError, OSError) as exc:
            return CorruptObjectError(f"run {short(run_hash)} has an impossible time: {exc}")
        return run

    def write_runs(self, runs: dict[bytes, Run]) -> None:
        """Index the copied runs on the destination (their objects are there).

        A run naming an artifact that could not be copied is left out. A
        cache entry is written only if the destination trusts the source for
        caching and the run answers the source's own lookups for its key.
        """
        kept = []
        for run in runs.values():
            lost = sorted({run.hash, *run.inputs.values(), *run.outputs.values()} & self.bad.keys())
            if lost:
                self.skip(f"run {run.short}", self.bad[lost[0]])
            else:
                kept.append(run)
        completed = [r for r in kept if r.status == "completed"] if self.cache else []
        trusted = {r.hash for r, h in zip(completed, self.pool.map(self._source_cached, completed), strict=True) if h}
        ordered = sorted(kept, key=lambda r: r.ended)
        list(self.pool.map(lambda r: self.dst.run_index.add(r, replace_cache=False, cache=r.hash in trusted), ordered))
        self.report.runs = len(kept)

    def _source_cached(self, run: Run) -> bool:
        return self.src.run_index.cached(run.cache_key) == run.hash

    # -- objects -------------------------------------------------------------------
    def copy(self, artifacts: set[bytes], runs: dict[bytes, Run], progress: ProgressCallback | None) -> None:
        """Copy every object the refs and runs reach that the destination lacks; freshen the rest.

        An artifact whose objects are missing or damaged in the source (or
        that is no artifact) is marked bad: refs and runs that name it are
        left out later, everything else is copied.
        """
        for run in runs.values():
            artifacts.update(run.inputs.values())
            artifacts.update(run.outputs.values())
        if not artifacts and not runs:
            return
        needed = set(runs)
        needs: dict[bytes, set[bytes]] = {}
        ordered = sorted(artifacts)
        for artifact, reached in zip(ordered, self.pool.map(self._try_reach, ordered), strict=True):
            if isinstance(reached, CasError):
                self.bad[artifact] = str(reached)
            else:
                needs[artifact] = reached
                needed |= reached
        records = self._visualizations(set(needs))
        loose = set(runs) | {d for r in records for _, _, d, _ in r.items}
        needed |= loose
        missing, present = lacking(self.dst.objects, needed, self.pool)
        failed: dict[bytes, str] = {}
        label = "pushing" if self.report.action == "push" else "pulling"
        with Phase(progress, f"{label} objects", len(missing)) as bar:
            self._add(copy_objects(self.src.objects, self.dst.objects, missing, self.pool,
                                   loose=loose, progress=lambda _: bar.advance(), failed=failed))  # fmt: skip
            touched, gone = freshen(self.dst.objects, present, self.pool)
            self.report.freshened += touched
            if gone:  # removed by the other side's gc since we asked: copy them after all
                again, _ = lacking(self.dst.objects, gone, self.pool)
                self._add(
                    copy_objects(self.src.objects, self.dst.objects, again, self.pool, loose=loose, failed=failed)
                )
        for artifact, reached in needs.items():
            lost = sorted(reached & failed.keys())
            if lost:
                self.bad[artifact] = failed[lost[0]]
        for run_hash in runs.keys() & failed.keys():
            self.bad[run_hash] = failed[run_hash]
        for record in records:  # after the documents they list
            if not any(d in failed for _, _, d, _ in record.items):
                visualrecords.write_record(self.dst.backend, record)

    def _visualizations(self, artifacts: set[bytes]) -> list[visualrecords.VisualizationRecord]:
        """The source's visualization records of these artifacts that the destination lacks."""
        keys = {visualrecords.record_key(a): a for a in artifacts}
        there = present_keys(self.src.backend, keys, self.pool, whole=visualrecords.FOLDER)
        there -= present_keys(self.dst.backend, there, self.pool, whole=visualrecords.FOLDER)
        found = self.pool.map(lambda k: visualrecords.read_record(self.src.backend, keys[k]), sorted(there))
        return [r for r in found if r is not None]

    def _add(self, stats: CopyStats) -> None:
        self.report.objects += stats.objects
        self.report.bytes += stats.bytes
        self.report.packs += stats.packs

    def _try_reach(self, artifact: bytes) -> set[bytes] | CasError:
        """An artifact's own object, its tree and the tree's chunks, read verified from the source."""
        try:
            raw = self.src.objects.get_object(artifact)
            try:
                art = Artifact.from_bytes(raw, key=f"artifact {short(artifact)}")
            except CorruptObjectError:  # hash-valid, so another kind of object
                return CorruptObjectError(f"{short(artifact)} is a {kind_of(raw)}, not an artifact")
            tree = Tree.from_bytes(self.src.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
        except CasError as exc:
            return exc
        return {artifact, art.tree} | {d for entry in tree.entries for d, _ in entry.chunks}


class _Producers:
    """Which completed runs produced an artifact: one listing per artifact, or one for all."""

    def __init__(self, store: Repository, expected: int) -> None:
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


def _try_read_ref(store: Repository, key: str) -> tuple[bytes | None, RefRecord | None] | CasError:
    """A ref file's bytes and record (verified); (None, None) if it is gone; the error if it is unreadable."""
    try:
        found = store.refs.read_file(key)
    except CasError as exc:
        return exc
    return found if found is not None else (None, None)


def _invalid_name(f: _RefFile) -> str | None:
    """Why a ref file's name or label breaks the naming rules (None if it does not)."""
    if f.kind == "v" and len(f.selector) > MAX_VERSION_DIGITS:
        return f"version number {f.selector[:24]}... is too large"
    try:
        check_name(f.name)
        if f.kind != "v":
            check_label(f.selector, "version" if f.kind == "label" else "tag")
    except InvalidNameError as exc:
        return str(exc)
    return None


def _stray_ref(key: str) -> str:
    """How a ref file that does not parse is named in a report: ``name@selector`` from its key."""
    return f"{parse_ref_name(key) or key}@{key.rsplit('/', 1)[-1]}"


def _plausible_time(created: float, now: float) -> bool:
    """A ``created`` time the newest-tag rule may compare: finite and not beyond ``CLOCK_SKEW`` ahead."""
    return math.isfinite(created) and created <= now + CLOCK_SKEW


def _when(created: float) -> str:
    if not math.isfinite(created) or not 0 <= created < 32503680000:
        return repr(created)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(created))

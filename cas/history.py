"""Runs in a Repository: recording them, cache lookups, log, producers, lineage and the run index rebuild."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from cas import keys, steps
from cas import lineage as lineage_walk
from cas.artifacts import Ref, RefLike, is_complete, ref_of, resolve
from cas.backends.base import each_request
from cas.errors import (
    CasError,
    CorruptObjectError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidRunError,
    ObjectNotFoundError,
    WrongObjectKindError,
    check_argument_type,
)
from cas.hashing import from_hex, short, to_hex
from cas.objects import Artifact, RefRecord, kind_of
from cas.refs import READ_THREADS, check_name
from cas.repository import Repository
from cas.runs import STATUSES, Run, valid_time


@dataclass(frozen=True)
class VersionLog:
    """One version of a named artifact, with the run that produced it (if a step did)."""

    ref: Ref
    created: float | None
    run: Run | None

    def __str__(self) -> str:
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created)) if self.created else "?"
        except (OverflowError, OSError, ValueError):  # a ref's time comes from whoever wrote it
            when = "?"
        made = f" <- {self.run.step} {self.run.short}" if self.run is not None else " (put directly)"
        return f"{self.ref.short} {when} {self.ref}{made}"


Entry = TypeVar("Entry")


class LogEntries(list[Entry], Generic[Entry]):
    """Entries newest first (``log``: runs; ``version_history``: versions), and ``skipped``.

    ``skipped`` holds one line per unreadable record left out.
    """

    def __init__(self, entries: Iterable[Entry] = (), skipped: Iterable[str] = ()) -> None:
        super().__init__(entries)
        self.skipped: list[str] = list(skipped)


# -- recording -------------------------------------------------------------
def record_run(
    repo: Repository,
    *,
    step: str,
    inputs: Mapping[str, RefLike | bytes] | None = None,
    outputs: Mapping[str, RefLike | bytes] | None = None,
    params: dict[str, Any] | None = None,
    code: bytes | None = None,
    cache_key: bytes | None = None,
    status: str = "completed",
    started: float | None = None,
    ended: float | None = None,
    parents: Sequence[bytes] | None = None,
    cached_from: bytes | None = None,
    returns: str = "dict",
    order: Sequence[str] = (),
    environment: dict[str, Any] | None = None,
    message: str | None = None,
    metadata: dict[str, Any] | None = None,
    error: str | None = None,
) -> Run:
    """Record a run of ``step`` (for orchestrators driving the store themselves).

    Inputs and outputs are artifact refs or raw hashes; parents default to the
    runs that produced the inputs, the cache key to one derived from step,
    code, params and inputs. Times are POSIX seconds, finite, from 1970 up to
    the year 3000, ``started <= ended``. Everything is checked before anything
    is stored. Raises InvalidArgumentError (status), InvalidNameError (step),
    InvalidRunError (times, hashes, fields that are not plain data), RefNotFoundError.
    """
    if status not in STATUSES:
        raise InvalidArgumentError(f"run status must be one of {STATUSES}, not {status!r}")
    if not isinstance(step, str) or not step:
        raise InvalidNameError("a run needs a step name")
    for label, t in (("started", started), ("ended", ended)):
        if t is not None and not valid_time(t):
            raise InvalidRunError(f"run {label} time must be POSIX seconds between 1970 and 3000, not {t!r}")
    if started is not None and ended is not None and started > ended:
        raise InvalidRunError(f"run started ({started!r}) after it ended ({ended!r})")
    input_hashes = {name: _artifact_hash(repo, ref) for name, ref in (inputs or {}).items()}
    output_hashes = {name: _artifact_hash(repo, ref) for name, ref in (outputs or {}).items()}
    check_argument_type(params, (Mapping, type(None)), "params")
    params = dict(params or {})
    code = code if code is not None else bytes(32)
    if parents is None:
        parents = sorted({p for h in input_hashes.values() for p in repo.run_index.producers(h)[:1]})
    now = time.time()
    # A clock stepped back mid-run must not make an invalid run: ended never precedes started.
    start = float(started) if started is not None else (now if ended is None else min(now, float(ended)))
    run = Run(
        step=step,
        code=code,
        params=params,
        inputs=input_hashes,
        outputs=output_hashes,
        cache_key=cache_key or steps.cache_key(step, code, params, input_hashes, None),
        started=start,
        ended=float(ended) if ended is not None else max(now, start),
        status=status,
        parents=tuple(parents),
        cached_from=cached_from,
        returns=returns,
        order=tuple(order) or tuple(output_hashes),
        environment=environment if environment is not None else steps.environment(),
        pipeline=steps.current_pipeline(),
        message=message,
        metadata=metadata or {},
        error=error,
    )
    try:
        data = run.to_bytes()
    except TypeError as exc:
        raise InvalidRunError(f"run fields must be plain data: {exc}") from None
    try:  # what every reader will check, checked before anything is stored
        checked = Run.from_bytes(data, key=f"run of {step[:100]!r}")
    except CorruptObjectError as exc:
        raise InvalidRunError(f"not a valid run: {exc}") from None
    repo.objects.flush()  # in a batch: what the run names is stored before the run
    repo.objects.put_object(data, loose=True)  # runs stay loose: the index is rebuilt from them
    repo.run_index.add(checked)  # object first, then the index that finds it (its id: checked.hash)
    return checked


def _artifact_hash(repo: Repository, ref: RefLike | bytes) -> bytes:
    if isinstance(ref, bytes):
        return ref
    return from_hex(resolve(repo, ref)[0].hash)


# -- cache ---------------------------------------------------------------------
def cached_run(repo: Repository, cache_key: bytes, *, expires_after: float | timedelta | None = None) -> Run | None:
    """The completed run recorded under ``cache_key`` if all its outputs are still loadable.

    An entry whose outputs are gone (collected, damaged) is removed, so no
    cache hit ever points at missing data.
    """
    check_argument_type(cache_key, (bytes, bytearray), "cache_key")
    check_argument_type(expires_after, (int, float, timedelta, type(None)), "expires_after")
    run_hash = repo.run_index.cached(cache_key)
    if run_hash is None:
        return None
    try:
        run = repo.run(run_hash)
    except CasError:
        repo.run_index.forget_cache(cache_key)
        return None
    if isinstance(expires_after, timedelta):
        expires_after = expires_after.total_seconds()
    if run.status != "completed" or run.cache_key != cache_key:
        return None
    if expires_after is not None and time.time() - run.ended > expires_after:
        return None
    if not all(is_complete(repo, h) for h in run.outputs.values()):
        repo.run_index.forget_cache(cache_key)
        return None
    return run


# -- reading runs -------------------------------------------------------------
def runs(
    repo: Repository, *, step: str | None = None, skipped: list[str] | None = None, skip: int = 0
) -> Iterator[Run]:
    """Every run, newest first; ``step`` filters by step name (full or last part); ``skip`` passes over that many.

    An unreadable run is left out (one line about it goes to ``skipped``, if given).
    Without ``step`` the runs skipped are not read.
    """
    hashes = repo.run_index.newest()
    if step is None:
        hashes, skip = itertools.islice(hashes, skip, None), 0
    for run_hash in hashes:
        try:
            run = repo.run(run_hash)
        except CasError as exc:
            if skipped is not None:
                skipped.append(f"run {short(run_hash)}: {exc}")
            continue
        if step is None or run.step == step or run.step.rsplit(".", 1)[-1] == step:
            if skip:
                skip -= 1
                continue
            yield run


def log(repo: Repository, *, step: str | None = None, limit: int | None = None, offset: int = 0) -> LogEntries[Run]:
    """Runs, newest first, as git log; ``step`` filters by step name (full or last part), ``limit`` caps the count.

    ``offset`` skips that many runs (after the ``step`` filter). Unreadable
    runs are left out and listed in the result's ``skipped``.
    Raises InvalidArgumentError.
    """
    _check_page(offset, limit)
    skipped: list[str] = []
    found: LogEntries[Run] = LogEntries()
    for run in runs(repo, step=step, skipped=skipped, skip=offset):
        if limit is not None and len(found) >= limit:
            break
        found.append(run)
    found.skipped = skipped
    return found


def version_history(
    repo: Repository,
    name: str,
    *,
    step: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> LogEntries[VersionLog]:
    """The versions of ``name``, newest first, each with the run that produced it (``VersionLog``).

    ``step`` keeps the versions a run of that step produced; ``offset`` skips
    that many (after the ``step`` filter), ``limit`` caps how many are
    returned: a page costs two listings and the reads of that page (made in
    parallel on an object store), however many versions the name has.
    Unreadable versions and runs are left out and listed in the result's
    ``skipped``. Raises InvalidNameError, InvalidArgumentError.
    """
    check_name(name)
    _check_page(offset, limit)
    skipped: list[str] = []
    versions: LogEntries[VersionLog] = LogEntries()
    numbers = list(reversed(repo.refs.version_numbers(name)))
    if step is None:
        numbers = numbers[offset : None if limit is None else offset + limit]
    matched = 0
    for start in range(0, len(numbers), PAGE_BATCH):
        if limit is not None and len(versions) >= limit:
            break
        for entry in _version_logs(repo, name, numbers[start : start + PAGE_BATCH], skipped):
            if step is not None:
                run = entry.run
                if run is None or step not in (run.step, run.step.rsplit(".", 1)[-1]):
                    continue
                matched += 1
                if matched <= offset:
                    continue
            if limit is not None and len(versions) >= limit:
                break
            versions.append(entry)
    versions.skipped = skipped
    return versions


#: Versions read at once when a page has no limit (or a step filter needs more than the page).
PAGE_BATCH = 64


def _check_page(offset: int, limit: int | None) -> None:
    check_argument_type(offset, int, "offset")
    check_argument_type(limit, (int, type(None)), "limit")
    if offset < 0 or (limit is not None and limit < 0):
        raise InvalidArgumentError(f"offset and limit must not be negative, not {offset!r} and {limit!r}")


def _version_logs(repo: Repository, name: str, numbers: list[int], skipped: list[str]) -> list[VersionLog]:
    """``VersionLog`` of each of ``numbers`` (read in parallel on an object store); unreadable ones skipped."""
    records = repo.refs.read_versions([(name, n) for n in numbers])
    found: list[tuple[int, RefRecord]] = []
    for number, record in zip(numbers, records, strict=True):
        if isinstance(record, CasError):
            skipped.append(f"{name}@{number}: {record}")
        elif record is not None:  # None: deleted since the listing
            found.append((number, record))
    mine: list[str] = []
    targets = sorted({record.target for _, record in found})  # versions of one artifact share its producer
    made = each_request(repo.backend, lambda target: producer_of(repo, target, mine), targets, threads=READ_THREADS)
    skipped.extend(mine)
    runs = dict(zip(targets, made, strict=True))
    return [VersionLog(ref_of(name, record), record.created, runs[record.target]) for _, record in found]


@dataclass(frozen=True)
class NameEntry:
    """One line of ``cas ls``: a name, its latest version, and how many versions it has."""

    name: str
    latest: Ref
    versions: int


def names_page(repo: Repository, *, offset: int = 0, limit: int | None = None) -> LogEntries[NameEntry]:
    """Names in order, each with its latest version: what ``cas ls`` shows, a page at a time.

    One listing of ``refs/`` (a few requests per 1,000 names on an object
    store), then the latest version file of each name on the page, read in
    parallel; on an object store a page of more than ``READ_THREADS`` names
    takes the hashes of versions without a label from the reverse index
    instead (a few listings): the hash shown is then the index's, which a
    get checks against the version file. Unreadable versions are left out
    and listed in ``skipped``.
    Raises InvalidArgumentError.
    """
    _check_page(offset, limit)
    labelled: set[str] = set()
    indexed: dict[tuple[str, int], bytes] = {}
    if repo.backend.cheap_exists or (limit is not None and limit <= READ_THREADS):
        scanned = repo.refs.scan(labelled)
    else:
        # On an object store a page of many names reads the reverse index (a few
        # listings, made while refs/ is listed) rather than one version file per
        # name; a name with labels, or a version the index lacks, is still read
        # (the label is in its file).
        with ThreadPoolExecutor(1) as pool:
            index_listing = pool.submit(repo.refs.indexed_targets)
            scanned = repo.refs.scan(labelled)
            indexed = index_listing.result()
    page = list(scanned.items())[offset : None if limit is None else offset + limit]
    if len(page) <= READ_THREADS:
        indexed = {}
    unread = [(name, live[-1]) for name, live in page if name in labelled or (name, live[-1]) not in indexed]
    records = dict(zip(unread, repo.refs.read_versions(unread), strict=True))
    entries: LogEntries[NameEntry] = LogEntries()
    for name, live in page:
        where = (name, live[-1])
        if where not in records:
            entries.append(NameEntry(name, Ref(to_hex(indexed[where]), name, live[-1], live[-1]), len(live)))
            continue
        record = records[where]
        if isinstance(record, CasError):
            entries.skipped.append(f"{name}@{live[-1]}: {record}")
        elif record is not None:
            entries.append(NameEntry(name, ref_of(name, record), len(live)))
    return entries


def producer(repo: Repository, ref: RefLike, *, skipped: list[str] | None = None) -> Run | None:
    """The earliest completed run that output this artifact (None if it was put directly).

    Unreadable runs are passed over (a line about each goes to ``skipped``, if given).
    """
    return producer_of(repo, from_hex(resolve(repo, ref)[0].hash), skipped)


def producer_of(repo: Repository, artifact: bytes, skipped: list[str] | None = None) -> Run | None:
    runs = []
    for run_hash in repo.run_index.producers(artifact):
        try:
            run = repo.run(run_hash)
        except CasError as exc:
            if skipped is not None:
                skipped.append(f"run {short(run_hash)}: {exc}")
            continue
        if artifact in run.outputs.values() and run.status == "completed":
            runs.append(run)  # a produced/ entry whose run did not output it is a stray (or forged) index file
    return min(runs, key=lambda r: r.ended) if runs else None


# -- lineage ------------------------------------------------------------------
def lineage(
    repo: Repository,
    ref: RefLike | Run,
    direction: str = "up",
    depth: int | None = None,
    *,
    limit: int = lineage_walk.MAX_NODES,
) -> lineage_walk.LineageGraph:
    """Where an artifact came from (``up``) or what used it (``down``), as a graph.

    At most ``limit`` nodes, nearest first: the graph's ``truncated`` says when the walk
    stopped there; unreadable runs are left out and listed in its ``skipped``.
    """
    if direction not in ("up", "down"):
        raise InvalidArgumentError("direction must be 'up' or 'down'")
    if isinstance(ref, Run):
        roots = list(ref.outputs.values()) if direction == "up" else list(ref.inputs.values())
        root = roots[0] if roots else None
        if root is None:
            raise ObjectNotFoundError(f"run {ref.short} has no {'outputs' if direction == 'up' else 'inputs'}")
    else:
        root = from_hex(resolve(repo, ref)[0].hash)
        _refuse_another_kind(repo, root)
    return lineage_walk.walk(
        root, direction, depth, repo.run, repo.run_index.producers, repo.run_index.consumers, functools.partial(_describe, repo),
        limit=limit,
    )  # fmt: skip


def _refuse_another_kind(repo: Repository, root: bytes) -> None:
    """WrongObjectKindError for a stored object that is not an artifact; a missing or damaged one still draws."""
    try:
        kind = kind_of(repo.objects.get_object(root)) if repo.objects.has_any(root) else "artifact"
    except CasError:
        return
    if kind != "artifact":
        raise WrongObjectKindError(f"{short(root)} is a {kind}, not an artifact")


def _describe(repo: Repository, artifact: bytes) -> tuple[str, dict[str, Any]]:
    names = repo.refs.names_of(artifact)
    try:
        art = Artifact.from_bytes(repo.objects.get_object(artifact))
        kind = art.python_type.rsplit(".", 1)[-1]
        attrs: dict[str, Any] = {"type": art.python_type, "size": art.size}
    except CasError:
        kind, attrs = "missing", {}
    label = f"{names[0]} ({kind})" if names else f"{short(artifact, 8)} ({kind})"
    return label, {**attrs, "names": names}


def rebuild_run_index(repo: Repository, *, trust_runs: bool = False) -> int:
    """Rebuild runlog/, produced/ and consumed/ from the run objects; return the run count.

    A run object may have come from another store (pull, clone), so by
    default the rebuild writes no new ``cache/`` entries: those that still
    name a completed run of their key stay, the rest go. ``trust_runs=True``
    makes every completed run answer cache lookups again (for a store only
    you write).
    """
    kept = {} if trust_runs else _valid_cache_entries(repo)
    repo.run_index.clear()
    count = 0
    for key in list(repo.backend.list(keys.OBJECTS_FOLDER)):
        raw_hash = keys.parse_object_key(key)
        if raw_hash is None:
            continue
        try:
            run = repo.run(raw_hash)
        except CasError:
            continue
        repo.run_index.add(run, cache=trust_runs or kept.get(run.cache_key) == run.hash)
        count += 1
    return count


def _valid_cache_entries(repo: Repository) -> dict[bytes, bytes]:
    """The cache entries that name a readable completed run of their own key."""
    entries: dict[bytes, bytes] = {}
    for key in list(repo.backend.list(keys.CACHE_FOLDER)):
        run_hash = repo.run_index.cached_at(key)
        if run_hash is None:
            continue
        try:
            run = repo.run(run_hash)
        except CasError:
            continue
        if run.status == "completed" and repo.run_index.cache_entry_key(run.cache_key) == key:
            entries[run.cache_key] = run.hash
    return entries

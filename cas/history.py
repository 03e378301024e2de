"""The run side of the Store: recording runs, cache lookups, log and lineage."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import materializers
from cas import lineage as lineage_walk
from cas import steps
from cas.errors import CasError, CorruptObjectError, InvalidNameError, InvalidRunError, ObjectNotFoundError
from cas.hashing import from_hex, short
from cas.objects import Artifact, Tree, kind_of
from cas.refs import RefSpec, check_name
from cas.runs import STATUSES, Run, RunIndex, valid_time

if TYPE_CHECKING:
    from cas.backends.base import Backend
    from cas.objectstore import ObjectStore
    from cas.refs import RefStore
    from cas.store import Ref, RefLike


def ref_of(name: str, record: Any) -> Ref:
    from cas.store import _ref_of

    return _ref_of(name, record)


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


class LogEntries(list[Any]):
    """What ``log`` returns: the entries, newest first, and ``skipped``: one line per unreadable record left out."""

    def __init__(self, entries: Iterable[Any] = (), skipped: Iterable[str] = ()) -> None:
        super().__init__(entries)
        self.skipped: list[str] = list(skipped)


class History:
    """Mixed into Store: everything about runs."""

    backend: Backend
    objects: ObjectStore
    refs: RefStore
    run_index: RunIndex

    if TYPE_CHECKING:

        def resolve(self, ref: RefLike) -> Ref: ...

    # -- recording -------------------------------------------------------------
    def record_run(
        self,
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
        is stored. Raises InvalidNameError (status, step, fields that are not plain
        data), InvalidRunError (times, hashes), RefNotFoundError.
        """
        if status not in STATUSES:
            raise InvalidNameError(f"run status must be one of {STATUSES}, not {status!r}")
        if not isinstance(step, str) or not step:
            raise InvalidNameError("a run needs a step name")
        for label, t in (("started", started), ("ended", ended)):
            if t is not None and not valid_time(t):
                raise InvalidRunError(f"run {label} time must be POSIX seconds between 1970 and 3000, not {t!r}")
        if started is not None and ended is not None and started > ended:
            raise InvalidRunError(f"run started ({started!r}) after it ended ({ended!r})")
        input_hashes = {name: self._artifact_hash(ref) for name, ref in (inputs or {}).items()}
        output_hashes = {name: self._artifact_hash(ref) for name, ref in (outputs or {}).items()}
        params = dict(params or {})
        code = code if code is not None else bytes(32)
        if parents is None:
            parents = sorted({p for h in input_hashes.values() for p in self.run_index.producers(h)[:1]})
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
            raise InvalidNameError(f"run fields must be plain data: {exc}") from None
        try:  # what every reader will check, checked before anything is stored
            checked = Run.from_bytes(data, b"", key=f"run of {step[:100]!r}")
        except CorruptObjectError as exc:
            raise InvalidRunError(f"not a valid run: {exc}") from None
        self.objects.flush()  # in a batch: what the run names is stored before the run
        run_hash = self.objects.put_object(data, loose=True)  # runs stay loose: the index is rebuilt from them
        stored = dataclasses.replace(checked, hash=run_hash)
        self.run_index.add(stored)  # object first, then the index that finds it
        return stored

    def _artifact_hash(self, ref: RefLike | bytes) -> bytes:
        if isinstance(ref, bytes):
            return ref
        return from_hex(self.resolve(ref).hash)

    # -- cache ---------------------------------------------------------------------
    def cached_run(self, cache_key: bytes, *, expires_after: float | timedelta | None = None) -> Run | None:
        """The completed run recorded under ``cache_key`` if all its outputs are still loadable.

        An entry whose outputs are gone (collected, damaged) is removed, so no
        cache hit ever points at missing data.
        """
        run_hash = self.run_index.cached(cache_key)
        if run_hash is None:
            return None
        try:
            run = self.run(run_hash)
        except CasError:
            self.run_index.forget_cache(cache_key)
            return None
        if isinstance(expires_after, timedelta):
            expires_after = expires_after.total_seconds()
        if run.status != "completed" or run.cache_key != cache_key:
            return None
        if expires_after is not None and time.time() - run.ended > expires_after:
            return None
        if not all(self.is_complete(h) for h in run.outputs.values()):
            self.run_index.forget_cache(cache_key)
            return None
        return run

    def is_complete(self, artifact: bytes) -> bool:
        """Whether an artifact, its tree and every chunk are present and readable by this process."""
        try:
            art = Artifact.from_bytes(self.objects.get_object(artifact))
            tree = Tree.from_bytes(self.objects.get_object(art.tree))
            mat = materializers.registry.by_name(art.materializer)
        except CasError:
            return False
        if not mat.can_load(art.materializer_version):
            return False
        refreshed = False
        for entry in tree.entries:
            for d, _ in entry.chunks:
                if self.objects.knows_chunk(d) or self.objects.has_object(d):
                    continue
                if refreshed:
                    return False
                self.objects.refresh_index()
                refreshed = True
                if not self.objects.knows_chunk(d):
                    return False
        return True

    def materializer_packages(self, ref: RefLike) -> tuple[str, ...]:
        """The distributions an artifact's materializer depends on (for run environments)."""
        art = Artifact.from_bytes(self.objects.get_object(from_hex(self.resolve(ref).hash)))
        try:
            return materializers.registry.by_name(art.materializer).packages
        except CasError:
            return ()

    # -- reading runs -------------------------------------------------------------
    def run(self, run_hash: bytes | str) -> Run:
        """A run by hash (raw, hex, or a unique hex prefix).

        Raises ObjectNotFoundError (absent, or another kind of object),
        CorruptObjectError (a run object that breaks the run rules, such as a time outside 1970..3000).
        """
        if isinstance(run_hash, str):
            run_hash = from_hex(run_hash) if len(run_hash) == 64 else self.objects.resolve_prefix(run_hash)
        data = self.objects.get_object(run_hash)
        try:
            return Run.from_bytes(data, run_hash, key=f"run {short(run_hash)}")
        except CorruptObjectError:
            # The bytes match their hash: either another kind of object, or a run no reader accepts.
            kind = kind_of(data)
            if kind == "run":
                raise
            raise ObjectNotFoundError(f"{short(run_hash)} is a {kind}, not a run") from None

    def runs(self, *, step: str | None = None, skipped: list[str] | None = None) -> Iterator[Run]:
        """Every run, newest first; ``step`` filters by step name (full or last part).

        An unreadable run is left out (one line about it goes to ``skipped``, if given).
        """
        for run_hash in self.run_index.newest():
            try:
                run = self.run(run_hash)
            except CasError as exc:
                if skipped is not None:
                    skipped.append(f"run {short(run_hash)}: {exc}")
                continue
            if step is None or run.step == step or run.step.rsplit(".", 1)[-1] == step:
                yield run

    def log(self, name: str | None = None, *, step: str | None = None, limit: int | None = None) -> LogEntries:
        """Newest first, as git log: runs (``Run``), or with ``name`` its versions (``VersionLog``).

        Unreadable runs and versions are left out and listed in the result's ``skipped``.
        """
        skipped: list[str] = []
        if name is None:
            found = LogEntries()
            for run in self.runs(step=step, skipped=skipped):
                if limit is not None and len(found) >= limit:
                    break
                found.append(run)
            found.skipped = skipped
            return found
        versions = LogEntries()
        check_name(name)
        for number in reversed(self.refs.version_numbers(name)):
            if limit is not None and len(versions) >= limit:
                break
            try:
                record = self.refs.resolve(RefSpec(name, str(number)))
            except CasError as exc:
                skipped.append(f"{name}@{number}: {exc}")
                continue
            ref = ref_of(name, record)
            producer = self._producer(record.target, skipped)
            if step is not None and (producer is None or step not in (producer.step, producer.step.rsplit(".", 1)[-1])):
                continue
            versions.append(VersionLog(ref, record.created, producer))
        versions.skipped = skipped
        return versions

    def producer(self, ref: RefLike, *, skipped: list[str] | None = None) -> Run | None:
        """The earliest completed run that output this artifact (None if it was put directly).

        Unreadable runs are passed over (a line about each goes to ``skipped``, if given).
        """
        return self._producer(from_hex(self.resolve(ref).hash), skipped)

    def _producer(self, artifact: bytes, skipped: list[str] | None = None) -> Run | None:
        runs = []
        for run_hash in self.run_index.producers(artifact):
            try:
                run = self.run(run_hash)
            except CasError as exc:
                if skipped is not None:
                    skipped.append(f"run {short(run_hash)}: {exc}")
                continue
            if artifact in run.outputs.values() and run.status == "completed":
                runs.append(run)  # a produced/ entry whose run did not output it is a stray (or forged) index file
        return min(runs, key=lambda r: r.ended) if runs else None

    # -- lineage ------------------------------------------------------------------
    def lineage(
        self,
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
            raise InvalidNameError("direction must be 'up' or 'down'")
        if isinstance(ref, Run):
            roots = list(ref.outputs.values()) if direction == "up" else list(ref.inputs.values())
            root = roots[0] if roots else None
            if root is None:
                raise ObjectNotFoundError(f"run {ref.short} has no {'outputs' if direction == 'up' else 'inputs'}")
        else:
            root = from_hex(self.resolve(ref).hash)
        return lineage_walk.walk(
            root, direction, depth, self.run, self.run_index.producers, self.run_index.consumers, self._describe,
            limit=limit,
        )  # fmt: skip

    def _describe(self, artifact: bytes) -> tuple[str, dict[str, Any]]:
        names = self.refs.names_of(artifact)
        try:
            art = Artifact.from_bytes(self.objects.get_object(artifact))
            kind = art.python_type.rsplit(".", 1)[-1]
            attrs: dict[str, Any] = {"type": art.python_type, "size": art.size}
        except CasError:
            kind, attrs = "missing", {}
        label = f"{names[0]} ({kind})" if names else f"{short(artifact, 8)} ({kind})"
        return label, {**attrs, "names": names}

    # -- steps --------------------------------------------------------------------
    def step(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """``@store.step``: a step bound to this store (options as for ``cas.step``)."""
        return steps.step(fn, store=self, **options)  # type: ignore[arg-type]  # self is a Store

    def pipeline(self, name: str) -> AbstractContextManager[dict[str, Any]]:
        """``with store.pipeline("train"):`` groups the runs of one pipeline execution."""
        return steps.pipeline(name)

    def rebuild_run_index(self, *, trust_runs: bool = False) -> int:
        """Rebuild runlog/, produced/ and consumed/ from the run objects; return the run count.

        A run object may have come from another store (pull, clone), so by
        default the rebuild writes no new ``cache/`` entries: those that still
        name a completed run of their key stay, the rest go. ``trust_runs=True``
        makes every completed run answer cache lookups again (for a store only
        you write).
        """
        kept = {} if trust_runs else self._valid_cache_entries()
        self.run_index.clear()
        count = 0
        for key in list(self.backend.list("objects/")):
            try:
                raw_hash = from_hex(key[8:10] + key[11:])
                run = self.run(raw_hash)
            except CasError:
                continue
            self.run_index.add(run, cache=trust_runs or kept.get(run.cache_key) == run.hash)
            count += 1
        return count

    def _valid_cache_entries(self) -> dict[bytes, bytes]:
        """The cache entries that name a readable completed run of their own key."""
        entries: dict[bytes, bytes] = {}
        for key in list(self.backend.list("cache/")):
            run_hash = self.run_index.cached_at(key)
            if run_hash is None:
                continue
            try:
                run = self.run(run_hash)
            except CasError:
                continue
            if run.status == "completed" and self.run_index.cache_entry_key(run.cache_key) == key:
                entries[run.cache_key] = run.hash
        return entries

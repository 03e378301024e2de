"""The public Store: put, get, info and exists of named, versioned artifacts."""

from __future__ import annotations

import json
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple, overload

from cas import artifacts, fsck, gc, maintenance, remoting, steps, usage, values
from cas import history as history_mod
from cas import lineage as lineage_walk
from cas import visualize as visualize_mod
from cas.artifacts import Ref, RefLike, ref_of
from cas.backends import Backend
from cas.config import CONFIG_KEY, StoreConfig
from cas.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    InvalidNameError,
    ObjectNotFoundError,
    RefNotFoundError,
    StoreExistsError,
    check_argument_type,
)
from cas.fsck import FsckReport
from cas.gc import GcReport
from cas.hashing import from_hex, to_hex
from cas.history import LogEntries, VersionLog
from cas.objects import Artifact, Tree
from cas.objectstore import EXPANSION_ALLOWANCE, MAX_EXPANSION, ObjectStore
from cas.progress import ProgressCallback
from cas.refs import RefRecord, RefStore, check_name, check_new_label
from cas.remotes import RemoteList
from cas.repository import Repository, backend_at, open_remote
from cas.runs import Run, RunIndex
from cas.steps import Provenance
from cas.sync import TransferReport, transfer
from cas.trees import TreeReader
from cas.usage import Usage
from cas.values import ArtifactInfo
from cas.values import FileInfo as FileInfo  # re-exported: cas.store.FileInfo predates cas.values
from materializers.base import Materializer
from materializers.visuals import Visualization


class Store:
    """A content-addressed artifact store on one backend: the public front over a ``Repository``."""

    def __init__(
        self,
        backend: Backend,
        *,
        create: bool = True,
        workers: int | None = None,
        allow_pickle: bool | None = None,
        trust_pickle: bool = False,
        single_writer: bool = False,
        read_through: bool = True,
        max_expansion: float = MAX_EXPANSION,
        expansion_allowance: int = EXPANSION_ALLOWANCE,
    ) -> None:
        self.repository = Repository(
            backend,
            create=create,
            workers=workers,
            single_writer=single_writer,
            read_through=read_through,
            max_expansion=max_expansion,
            expansion_allowance=expansion_allowance,
        )
        #: Store with cloudpickle what no materializer handles (``put`` may override).
        self.allow_pickle = self.config.allow_pickle if allow_pickle is None else allow_pickle
        #: Load pickles. Never read from the store's own config: a shared store
        #: must not be able to make its readers run its code.
        self.trust_pickle = trust_pickle
        #: Objects loaded by get or returned by steps, with their artifact hashes.
        self.provenance = Provenance()
        #: How to open this store again in another process (what a pickled Store carries).
        self._reopen = _Reopen(
            self.url, None, workers, self.allow_pickle, trust_pickle, single_writer, read_through,
            max_expansion, expansion_allowance,
        )  # fmt: skip
        self.closed = False
        _live[self._reopen] = self

    def __reduce__(self) -> tuple[Any, ...]:
        """A Store pickles as its URL and options: unpickling reopens it, once per process (``reopen``)."""
        return (reopen, (self._reopen,))

    # -- the repository's parts ------------------------------------------------------
    @property
    def backend(self) -> Backend:
        return self.repository.backend

    @property
    def config(self) -> StoreConfig:
        return self.repository.config

    @property
    def objects(self) -> ObjectStore:
        return self.repository.objects

    @property
    def refs(self) -> RefStore:
        return self.repository.refs

    @property
    def run_index(self) -> RunIndex:
        return self.repository.run_index

    @property
    def url(self) -> str:
        return self.repository.url

    def __repr__(self) -> str:
        return f"<cas.Store {self.url}>"

    def close(self) -> None:
        """Stop the worker threads and release open files."""
        self.closed = True
        if _live.get(self._reopen) is self:
            del _live[self._reopen]
        self.repository.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------
    def put(
        self,
        obj: Any,
        name: str | None = None,
        *,
        version: str | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        materializer: Materializer | type[Materializer] | str | None = None,
        allow_pickle: bool | None = None,
        visualize: bool = False,
        new_version: bool = False,
    ) -> Ref:
        """Store ``obj``; with a name, also record it as the name's latest version (and move ``tags`` to it).

        A new version is made only when the content differs from the latest
        version of ``name`` (the highest number not deleted): putting what the
        latest already holds returns that version, so a cache hit mints none,
        while content that differs, even an older version's, becomes a new
        latest. ``new_version=True`` always makes one. A ``version`` label names
        one version for good: a new label makes a new version, a label that
        already names this content returns its version. Two processes putting
        the same content under one name at the same moment may both make one.

        ``materializer`` forces one (an instance, a class or a registered name).
        ``allow_pickle`` lets cloudpickle store what no materializer handles
        (default: the store's setting, off unless ``cas.open(allow_pickle=True)``).
        ``visualize`` also computes and stores the value's visualizations.
        Raises InvalidNameError (bad name, version or tag), InvalidArgumentError (a version or
        tag without a name, an argument of the wrong type), InvalidMetadataError,
        UnsupportedTypeError (no materializer), RefExistsError (``version`` taken
        by another artifact), SourceNotFoundError, BackendError.
        """
        try:
            tags = tuple(tags)
        except TypeError:
            raise ArgumentTypeError(f"tags must be an iterable of str, not {type(tags).__name__}") from None
        if name is not None:
            self.refs.check_creatable(name)
            if version is not None:
                check_new_label(version)
            for tag in tags:
                check_new_label(tag, "tag")
        elif version is not None or tags or new_version:
            raise InvalidArgumentError("a version or tag needs a name: put(obj, name, version=..., tags=...)")
        digest = values.put_value(
            self.repository,
            obj,
            user_metadata=metadata or {},
            materializer=materializer,
            allow_pickle=self.allow_pickle if allow_pickle is None else allow_pickle,
            visualize=visualize,
        )
        if name is None:
            return Ref(to_hex(digest))
        self.objects.flush()  # in a batch: a ref is written only after what it reaches
        record = self.refs.create_version(name, digest, label=version, reuse_latest=not new_version)
        for tag in tags:
            self.refs.set_tag(name, tag, record)
        return ref_of(name, record)

    def batch(self) -> AbstractContextManager[None]:
        """``with store.batch():`` gathers the objects of many small puts into one pack.

        One write instead of one per object: what makes thousands of small puts
        per second possible on an object store. The pack is written before any
        ref or run that needs it (a named put writes the pack gathered so far),
        before a read, and when the block ends; a failure raises there.
        """
        return self.objects.deferred()

    def tag(self, ref: RefLike, tag: str) -> Ref:
        """Point ``name@tag`` at the version ``ref`` names (moving the tag if it exists).

        Raises InvalidNameError for a tag the rules of new names refuse
        (``cas.refs.check_new_label``) or one differing only in case from another tag of the name.
        """
        resolved, record = self._resolve(ref)
        if resolved.name is None or record is None:
            raise InvalidNameError("only a named version can be tagged")
        self.refs.set_tag(resolved.name, tag, record)
        return resolved

    # -- reading -------------------------------------------------------------
    def resolve(self, ref: RefLike) -> Ref:
        """The artifact a ref string names: ``name``, ``name@3``, ``name@v1.0``, ``name@tag``, a hash or prefix.

        64 hex digits always mean that hash, even if a name is spelt so; 6 to 63
        hex digits that are both a name and a hash prefix raise AmbiguousRefError
        (``name@3`` always means the name). Raises InvalidNameError,
        RefNotFoundError, ObjectNotFoundError, AmbiguousRefError.
        """
        return self._resolve(ref)[0]

    def _resolve(self, ref: RefLike) -> tuple[Ref, RefRecord | None]:
        return artifacts.resolve(self.repository, ref)

    def _artifact(self, ref: Ref) -> Artifact:
        return artifacts.artifact(self.repository, ref)

    def _tree(self, artifact: Artifact) -> Tree:
        return artifacts.tree(self.repository, artifact)

    def get(
        self,
        ref: RefLike,
        *,
        path: str | os.PathLike[str] | None = None,
        trust_pickle: bool | None = None,
        allow_python_mismatch: bool = False,
    ) -> Any:
        """Load the artifact ``ref`` names and return the value.

        A pickled artifact loads only with ``trust_pickle=True`` (or
        ``cas.open(trust_pickle=True)``): unpickling runs code chosen by whoever
        wrote it. A file or folder artifact (``cas.path``) has no value to load:
        ``export`` writes its files. ``get(ref, path=...)`` is deprecated
        (DeprecationWarning; removed in cas 0.3): it does what ``export(ref, path)`` does.
        Raises RefNotFoundError, ObjectNotFoundError, AmbiguousRefError,
        IntegrityError/CorruptObjectError, UnsupportedTypeError, PathRequiredError (use ``export``),
        UntrustedPickleError, IncompatibleArtifactError (LoadError when the bytes are intact but this
        process lacks the materializer, module or library versions that wrote them: never CorruptObjectError).
        """
        if path is not None:
            warnings.warn(
                "get(ref, path=...) is deprecated and will be removed in cas 0.3: use export(ref, path), "
                "which writes the files and returns the Path written",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.export(ref, path)
        resolved, value = values.load_value(
            self.repository,
            ref,
            trust_pickle=self.trust_pickle if trust_pickle is None else trust_pickle,
            allow_python_mismatch=allow_python_mismatch,
        )
        self.provenance.remember(value, from_hex(resolved.hash))
        return value

    def export(self, ref: RefLike, path: str | os.PathLike[str]) -> Path:
        """Write the files of the artifact ``ref`` names to ``path``; return the Path written.

        A single-file artifact is written to ``path`` itself; a directory
        artifact (or one of several files) below the folder ``path``. Any
        artifact can be exported: its stored files, whatever its materializer
        (no code runs, not even for a pickle). Restored files get the usual
        mode (executable ones keep their bit); the whole destination is
        checked before anything is written, and a file already at a target
        path is replaced, never written through (a folder is refused).
        Raises NonPortablePathError, UnsafeDestinationError (a symlink on the way),
        DestinationExistsError (the wrong kind), RefNotFoundError, ObjectNotFoundError,
        AmbiguousRefError, IntegrityError/CorruptObjectError, ArgumentTypeError.
        """
        return values.export(self.repository, ref, path)

    def reader(self, ref: RefLike) -> TreeReader:
        """The files of an artifact, to read one by one (verified), without a materializer."""
        artifact = self._artifact(self.resolve(ref))
        return TreeReader(self.objects, self._tree(artifact), artifact.metadata)

    def info(self, ref: RefLike) -> ArtifactInfo:
        return values.info(self.repository, ref)

    info.__doc__ = values.info.__doc__

    def visualizations(self, ref: RefLike, *, save: bool = False) -> list[Visualization]:
        """Views of an artifact for people: the stored ones, else computed now (and kept if ``save``).

        Computing loads the value (never a pickle). See ``materializers.visuals``.
        """
        digest = from_hex(self.resolve(ref).hash)
        found = visualize_mod.stored(self.objects, digest)
        if found is None:
            found = visualize_mod.compute(self.objects, digest, self._load_for_view)
            if save:
                visualize_mod.save(self.objects, digest, found)
        return found

    def exists(self, ref: RefLike) -> bool:
        """True if ``ref`` names an artifact in this store (a bad name still raises InvalidNameError)."""
        try:
            resolved = self.resolve(ref)
            if self.objects.has_any(from_hex(resolved.hash)):
                return True
            remote = self.repository.read_through()
            return remote is not None and remote.objects.has_any(from_hex(resolved.hash))
        except (RefNotFoundError, ObjectNotFoundError):
            return False

    def names(self) -> Iterator[str]:
        """Every artifact name in the store."""
        return self.refs.names()

    def versions(self, name: str) -> list[Ref]:
        """Every numbered version of ``name``, oldest first."""
        check_name(name)
        return [self.resolve(f"{name}@{n}") for n in self.refs.version_numbers(name)]

    def _load_for_view(self, digest: bytes) -> Any:
        """Load a value to draw it (never a pickle)."""
        return self.get(to_hex(digest), trust_pickle=False)

    # -- runs (cas.history) ------------------------------------------------------------
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
        return history_mod.record_run(
            self.repository, step=step, inputs=inputs, outputs=outputs, params=params, code=code,
            cache_key=cache_key, status=status, started=started, ended=ended, parents=parents,
            cached_from=cached_from, returns=returns, order=order, environment=environment,
            message=message, metadata=metadata, error=error,
        )  # fmt: skip

    record_run.__doc__ = history_mod.record_run.__doc__

    def cached_run(self, cache_key: bytes, *, expires_after: float | timedelta | None = None) -> Run | None:
        return history_mod.cached_run(self.repository, cache_key, expires_after=expires_after)

    cached_run.__doc__ = history_mod.cached_run.__doc__

    def run(self, run_hash: bytes | str) -> Run:
        return self.repository.run(run_hash)

    run.__doc__ = Repository.run.__doc__

    def runs(self, *, step: str | None = None, skipped: list[str] | None = None) -> Iterator[Run]:
        return history_mod.runs(self.repository, step=step, skipped=skipped)

    runs.__doc__ = history_mod.runs.__doc__

    @overload
    def log(
        self, name: None = None, *, step: str | None = None, limit: int | None = None, offset: int = 0
    ) -> LogEntries[Run]: ...

    @overload
    def log(
        self, name: str, *, step: str | None = None, limit: int | None = None, offset: int = 0
    ) -> LogEntries[VersionLog]: ...

    def log(
        self, name: str | None = None, *, step: str | None = None, limit: int | None = None, offset: int = 0
    ) -> LogEntries[Run] | LogEntries[VersionLog]:
        """Runs, newest first, as git log; ``step`` filters by step name (full or last part), ``limit`` caps the count.

        ``offset`` skips that many (after the filter). Unreadable runs are left
        out and listed in the result's ``skipped``. ``log(name)`` is deprecated (DeprecationWarning; removed in cas 0.3): use ``history(name)``.
        """
        if name is not None:
            warnings.warn(
                f"log(name) is deprecated and will be removed in cas 0.3: use history({name!r}) for the versions "
                "of a name; log() returns runs only",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.history(name, step=step, limit=limit, offset=offset)
        return history_mod.log(self.repository, step=step, limit=limit, offset=offset)

    def history(
        self, name: str, *, step: str | None = None, limit: int | None = None, offset: int = 0
    ) -> LogEntries[VersionLog]:
        return history_mod.version_history(self.repository, name, step=step, limit=limit, offset=offset)

    history.__doc__ = history_mod.version_history.__doc__

    def producer(self, ref: RefLike, *, skipped: list[str] | None = None) -> Run | None:
        return history_mod.producer(self.repository, ref, skipped=skipped)

    producer.__doc__ = history_mod.producer.__doc__

    def lineage(
        self,
        ref: RefLike | Run,
        direction: str = "up",
        depth: int | None = None,
        *,
        limit: int = lineage_walk.MAX_NODES,
    ) -> lineage_walk.LineageGraph:
        return history_mod.lineage(self.repository, ref, direction, depth, limit=limit)

    lineage.__doc__ = history_mod.lineage.__doc__

    def rebuild_run_index(self, *, trust_runs: bool = False) -> int:
        return history_mod.rebuild_run_index(self.repository, trust_runs=trust_runs)

    rebuild_run_index.__doc__ = history_mod.rebuild_run_index.__doc__

    def step(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """``@store.step``: a step bound to this store (options as for ``cas.step``)."""
        return steps.step(fn, store=self, **options)

    def pipeline(self, name: str) -> AbstractContextManager[dict[str, Any]]:
        """``with store.pipeline("train"):`` groups the runs of one pipeline execution."""
        return steps.pipeline(name)

    # -- maintenance (cas.maintenance, cas.gc, cas.fsck, cas.usage) ---------------------
    def delete(self, ref: str) -> list[str]:
        return maintenance.delete(self.refs, ref)

    delete.__doc__ = maintenance.delete.__doc__

    def untag(self, ref: str) -> None:
        maintenance.untag(self.refs, ref)

    untag.__doc__ = maintenance.untag.__doc__

    def prune_runs(self, *, older_than: float | timedelta | None = None, keep_last: int | None = None) -> int:
        return maintenance.prune_runs(self.repository, older_than=older_than, keep_last=keep_last)

    prune_runs.__doc__ = maintenance.prune_runs.__doc__

    def gc(
        self,
        *,
        dry_run: bool = False,
        grace: float | timedelta | None = None,
        repack: bool = False,
        progress: ProgressCallback | None = None,
    ) -> GcReport:
        """Remove what no ref and no logged run reaches and that is older than ``grace``, then consolidate.

        After the sweep, small packs are merged into full-size ones and the chunk index
        into a few tables (once there are 16 index files; ``repack=True`` always), which
        keeps the first read of a fresh process cheap however many packs were written.

        ``grace`` defaults to the store's ``gc_grace`` setting (one hour). An artifact
        put without a name and used by no run is unreachable: gc removes it once it
        is older than the grace period. Raises IntegrityError if a ref is unreadable,
        InvalidArgumentError for a grace that is negative, NaN or not a number.
        """
        seconds = gc.grace_seconds(grace, self.config.gc_grace)
        return gc.collect(self.repository, dry_run=dry_run, grace=seconds, repack=repack, progress=progress)

    def fsck(self, *, repair: bool = False, progress: ProgressCallback | None = None) -> FsckReport:
        """Verify every object, pack and reference; ``repair`` removes corrupt objects (never refs)."""
        report = fsck.check(self.repository, repair=repair, progress=progress)
        if repair:
            artifacts.forget_decoded(self.repository)  # what it removed is not served from this process's memory
        return report

    def du(self, *, top: int = 10, progress: ProgressCallback | None = None) -> Usage:
        """Counts and sizes by kind, logical vs stored bytes, dedup and compression ratios."""
        return usage.usage(self.repository, top=top, progress=progress)

    # -- other stores (cas.remoting, cas.sync) -------------------------------------------
    @property
    def remotes(self) -> RemoteList:
        """This store's remotes (``add``, ``remove``, ``get``, ``all``)."""
        return self.repository.remotes

    def push(
        self,
        remote: str | os.PathLike[str] | Store | None = None,
        refs: Sequence[str] | None = None,
        *,
        on_conflict: str = "fail",
        progress: ProgressCallback | None = None,
    ) -> TransferReport:
        """Copy ``refs`` (default: every ref and every run) and their history to ``remote``.

        ``remote`` is a remote's name (default ``origin``, or the only one), a
        URL or path, or an open Store; a store that does not exist yet is
        created with this store's settings. Only objects the remote lacks
        move; refs are written last. A version the remote holds with another
        artifact is a conflict: ``on_conflict="fail"`` (default) raises
        RefConflictError before copying anything, ``"skip"`` leaves it out,
        ``"rename"`` gives it the remote's next free version number. Copied
        runs get cache entries there only if they answer this store's own
        cache lookups (a run pulled from an untrusted remote never does).
        Bad refs, runs and objects are left out and listed in the report's
        ``skipped``; labels and tags must agree with the version they name.
        """
        other, owned = self._other(remote, create=True)
        try:
            return transfer(self.repository, other, refs, action="push", on_conflict=on_conflict, progress=progress)
        finally:
            if owned:
                other.close()

    def pull(
        self,
        remote: str | os.PathLike[str] | Store | None = None,
        refs: Sequence[str] | None = None,
        *,
        on_conflict: str = "fail",
        progress: ProgressCallback | None = None,
        trust_cache: bool | None = None,
    ) -> TransferReport:
        """Copy ``refs`` (default: everything) and their history from ``remote`` into this store; see ``push``.

        Pulled runs answer this store's cache lookups only if ``trust_cache``
        (default: whether the remote is marked ``trust_cache`` in this store's
        remotes); otherwise they are copied for log and lineage only.
        """
        other, owned = self._other(remote, create=False)
        try:
            if trust_cache is None:
                trust_cache = (
                    self.remotes.trusting_cache(other.url)
                    if isinstance(remote, Store)
                    else remoting.trusts_cache(self.repository, remote, other.url)
                )
            return transfer(
                other, self.repository, refs, action="pull", on_conflict=on_conflict, progress=progress,
                cache=trust_cache,
            )  # fmt: skip
        finally:
            if owned:
                other.close()

    def _other(self, remote: str | os.PathLike[str] | Store | None, *, create: bool) -> tuple[Repository, bool]:
        """The repository ``remote`` names, and whether it was opened here (to be closed after)."""
        if isinstance(remote, Store):
            return remote.repository, False
        return remoting.open_other(self.repository, remote, create=create), True


def open(  # noqa: A001  (cas.open, like io.open)
    url: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    storage_options: dict[str, Any] | None = None,
    workers: int | None = None,
    allow_pickle: bool | None = None,
    trust_pickle: bool = False,
    single_writer: bool = False,
    read_through: bool = True,
    max_expansion: float = MAX_EXPANSION,
    expansion_allowance: int = EXPANSION_ALLOWANCE,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Store:
    """Open (or create) a store.

    With no URL: the ``CAS_STORE`` environment variable, else the nearest
    ``.cas`` folder in the current directory or a parent (as git finds
    ``.git``), else a new ``./.cas``. Raises StoreNotFoundError when
    ``create`` is false and no store exists. ``allow_pickle`` and
    ``trust_pickle`` set the defaults of ``put`` and ``get``.
    ``read_through=False`` ignores a remote marked read-through (see ``Store.remotes``).
    ``storage_options`` go to fsspec (for S3: ``key``, ``secret``,
    ``endpoint_url``...); credentials and endpoint otherwise come from the
    usual AWS environment variables and files, and ``CAS_STORAGE_OPTIONS``
    (JSON) adds options when the URL comes from ``CAS_STORE``. An object
    store must honour create-if-absent, which is checked before the first write
    (opening only reads); pass ``single_writer=True`` to write to one that does
    not, if only one process writes. ``timeout`` (seconds to connect and to wait
    for each read) and ``deadline`` (seconds for one call, retries included)
    bound every request to an object store (defaults: ``CAS_TIMEOUT`` and
    ``CAS_DEADLINE``, else 5/15 s and 45 s); what exceeds them raises BackendTimeoutError.
    A read refuses (ExpansionLimitError) an artifact declaring more than
    ``max(expansion_allowance, max_expansion x its distinct bytes)``: a tree
    that lists its chunks over and over (defaults: 256 times, or 512 MiB in all).
    """
    if url is None:
        url = os.environ.get("CAS_STORE") or _discover() or Path.cwd() / ".cas"
        if os.environ.get("CAS_STORE") and os.environ.get("CAS_STORAGE_OPTIONS"):
            try:
                extra = json.loads(os.environ["CAS_STORAGE_OPTIONS"])
            except ValueError as exc:
                raise InvalidArgumentError(f"CAS_STORAGE_OPTIONS is not JSON: {exc}") from None
            storage_options = {**extra, **(storage_options or {})}
    check_argument_type(url, (str, os.PathLike), "url")
    store = Store(
        backend_at(url, storage_options, timeout=timeout, deadline=deadline),
        create=create,
        workers=workers,
        allow_pickle=allow_pickle,
        trust_pickle=trust_pickle,
        single_writer=single_writer,
        read_through=read_through,
        max_expansion=max_expansion,
        expansion_allowance=expansion_allowance,
    )
    if storage_options:
        del _live[store._reopen]
        store._reopen = store._reopen._replace(storage_options=_frozen(storage_options))
        _live[store._reopen] = store
    return store


def clone(
    url: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    trust_cache: bool = False,
    on_report: Callable[[TransferReport], None] | None = None,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> Store:
    """Make a new store at ``path`` (default ``./.cas``) with everything the store at ``url`` holds.

    The new store takes the other's chunking and compression (so dedup
    carries over) but none of its policy: ``allow_pickle`` and the gc grace
    period start at their defaults. It names the other store as its remote
    ``origin``; with ``trust_cache`` that remote is marked trusted for
    caching and the cloned runs answer cache lookups (otherwise they serve
    log and lineage only). ``on_report`` receives the pull's TransferReport
    (what was copied, and what was skipped and why).
    ``progress`` receives the pull's progress events (cas.progress; default: none).
    Run again after an interruption (same ``url`` and ``path``), it completes
    the clone: what is missing is pulled from ``origin``.
    Raises StoreNotFoundError if there is no store at ``url``, StoreExistsError
    if ``path`` already holds a store that is not a clone of ``url``,
    InvalidConfigError if ``url``'s config is out of range.
    """
    check_argument_type(url, (str, os.PathLike), "url")
    check_argument_type(path, (str, os.PathLike, type(None)), "path")
    text = os.fspath(url)
    source = open_remote(text, like=None)
    try:
        target_url = os.fspath(path) if path is not None else str(Path.cwd() / ".cas")
        try:
            remoting.create_like(source, target_url)
            resumed = False
        except StoreExistsError:
            resumed = True  # an interrupted clone of this source, or refused below
        store = open(target_url, create=False, **options)
        try:
            state = remoting.clone_state(source, text, store.repository) if resumed else "unnamed"
            if state == "other":
                raise StoreExistsError(
                    f"{target_url} already holds a store that is not a clone of {text}: pull into it, or clone "
                    "elsewhere"
                )
            if state == "unnamed" or (trust_cache and not store.remotes.get("origin").trust_cache):
                store.remotes.add("origin", text, trust_cache=trust_cache)
            report = transfer(source, store.repository, None, action="pull", progress=progress, cache=trust_cache)
        except BaseException:
            store.close()
            raise
        if on_report is not None:
            on_report(report)
        return store
    finally:
        source.close()


def _discover(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".cas"
        if (candidate / CONFIG_KEY).is_file():
            return candidate
    return None


# -- one Store per URL and options in a process (what pickled stores and steps share) -------------
class _Reopen(NamedTuple):
    """What opens a store again: its URL and the options it was opened with (hashable: a registry key)."""

    url: str
    storage_options: str | None  # JSON, keys sorted
    workers: int | None
    allow_pickle: bool
    trust_pickle: bool
    single_writer: bool
    read_through: bool
    max_expansion: float
    expansion_allowance: int


#: Stores open in this process, by how they were opened: a pickled Store unpickles to one of these.
_live: weakref.WeakValueDictionary[_Reopen, Store] = weakref.WeakValueDictionary()
#: Stores opened here because a pickle named them: kept open for the life of the process (a worker's).
_reopened: dict[_Reopen, Store] = {}
_registry_lock = threading.Lock()


def _frozen(storage_options: dict[str, Any]) -> str:
    try:
        return json.dumps(storage_options, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"storage_options must be JSON-like data to share a store: {exc}") from None


def reopen(how: _Reopen) -> Store:
    """The open Store of this process for ``how`` (URL and options), opening it on first use.

    What an unpickled Store (and a step bound to one) is: every step and every
    task in a worker process shares one Store per URL and options, never one
    per step or per task. The store must exist (StoreNotFoundError otherwise):
    a worker never creates one where the driver had none.
    """
    if not isinstance(how, _Reopen):
        how = _Reopen(*how)
    with _registry_lock:
        found = _live.get(how)
        if found is not None and not found.closed:
            return found
        options = json.loads(how.storage_options) if how.storage_options is not None else None
        store = open(
            how.url, create=False, storage_options=options, workers=how.workers, allow_pickle=how.allow_pickle,
            trust_pickle=how.trust_pickle, single_writer=how.single_writer, read_through=how.read_through,
            max_expansion=how.max_expansion, expansion_allowance=how.expansion_allowance,
        )  # fmt: skip
        _reopened[how] = store
        return store


def default_store() -> Store:
    """The store a step given none uses: ``cas.open()``'s, opened once per process and shared by every step.

    Found again at each call (``CAS_STORE`` or the working folder may change),
    but opened only when it is not open yet.
    """
    url: str | os.PathLike[str] = os.environ.get("CAS_STORE") or _discover() or Path.cwd() / ".cas"
    options = os.environ.get("CAS_STORAGE_OPTIONS") if os.environ.get("CAS_STORE") else None
    key = (os.fspath(url), options)
    with _registry_lock:
        found = _defaults.get(key)
        if found is not None and not found.closed:
            return found
        store = open()
        _defaults[key] = store
        return store


_defaults: dict[tuple[str, str | None], Store] = {}

steps.set_default_store_opener(default_store)

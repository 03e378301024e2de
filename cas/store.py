"""The public Store: put, get, info and exists of named, versioned artifacts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import materializers
from cas import canonical
from cas import visualize as visualize_mod
from cas.backends import Backend, backend_for
from cas.config import StoreConfig, load_config
from cas.errors import (
    AmbiguousRefError,
    BackendError,
    CorruptObjectError,
    IncompatibleArtifactError,
    InvalidMetadataError,
    InvalidNameError,
    LoadError,
    ObjectNotFoundError,
    RefNotFoundError,
    UnsupportedTypeError,
    UntrustedPickleError,
)
from cas.hashing import from_hex, is_full_hex, is_hex_prefix, short, to_hex
from cas.history import History
from cas.maintenance import Maintenance
from cas.objects import Artifact, Tree, kind_of
from cas.objectstore import EXPANSION_ALLOWANCE, MAX_EXPANSION, ObjectStore
from cas.refs import RefRecord, RefSpec, RefStore, check_name, check_new_label, parse_ref
from cas.remoting import Remoting
from cas.runs import RunIndex
from cas.steps import Provenance
from cas.trees import TreeReader, TreeWriter
from materializers.base import Materializer, type_name_of, with_writer_record
from materializers.builtin import executable_paths
from materializers.visuals import Visualization


@dataclass(frozen=True, slots=True)
class Ref:
    """An artifact's hash, and the name and version it was reached by (if any)."""

    hash: str
    name: str | None = None
    version: int | str | None = None  # the label if one was given, else the number
    number: int | None = None

    def __str__(self) -> str:
        if self.name is None:
            return self.hash
        return f"{self.name}@{self.version}" if self.version is not None else self.name

    @property
    def short(self) -> str:
        return short(self.hash)


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    chunks: int


@dataclass(frozen=True)
class ArtifactInfo:
    """What ``info`` tells without loading the data."""

    ref: Ref
    python_type: str
    materializer: str
    materializer_version: str
    size: int
    stored_size: int
    metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    files: tuple[FileInfo, ...]
    created: float | None = None
    tree: str = ""
    chunks: int = field(default=0)


RefLike = str | Ref
_CHECKED_CREATE: set[str] = set()  # backends whose create-if-absent was probed in this process


class Store(History, Maintenance, Remoting):
    """A content-addressed artifact store on one backend."""

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
        self.backend = backend
        if not single_writer and backend.url not in _CHECKED_CREATE:
            backend.check_create_if_absent()
            _CHECKED_CREATE.add(backend.url)
        self.config: StoreConfig = load_config(backend, create=create)
        #: Store with cloudpickle what no materializer handles (``put`` may override).
        self.allow_pickle = self.config.allow_pickle if allow_pickle is None else allow_pickle
        #: Load pickles. Never read from the store's own config: a shared store
        #: must not be able to make its readers run its code.
        self.trust_pickle = trust_pickle
        self._executor = ThreadPoolExecutor(
            max_workers=workers or max(4, (os.cpu_count() or 2) + 2), thread_name_prefix="cas"
        )
        self.objects = ObjectStore(
            backend,
            self._executor,
            compression_level=self.config.compression_level,
            max_expansion=max_expansion,
            expansion_allowance=expansion_allowance,
        )
        self.refs = RefStore(backend)
        self.run_index = RunIndex(backend)
        #: Objects loaded by get or returned by steps, with their artifact hashes.
        self.provenance = Provenance()
        self._read_through: Store | None = None
        self._read_through_checked = not read_through
        if read_through:
            self.objects.fetch_missing = self.fetch_missing

    @property
    def url(self) -> str:
        return self.backend.url

    def __repr__(self) -> str:
        return f"<cas.Store {self.url}>"

    def close(self) -> None:
        """Stop the worker threads and release open files."""
        self._executor.shutdown(wait=True)
        self.backend.close()
        if self._read_through is not None:
            self._read_through.close()

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
        Raises InvalidNameError (bad name, version or tag), InvalidMetadataError,
        UnsupportedTypeError (no materializer), RefExistsError (``version`` taken
        by another artifact), SourceNotFoundError, BackendError.
        """
        tags = tuple(tags)
        if name is not None:
            self.refs.check_creatable(name)
            if version is not None:
                check_new_label(version)
            for tag in tags:
                check_new_label(tag, "tag")
        elif version is not None or tags or new_version:
            raise InvalidNameError("a version or tag needs a name: put(obj, name, version=..., tags=...)")
        user_metadata = _check_metadata(metadata or {})
        allow = self.allow_pickle if allow_pickle is None else allow_pickle
        try:
            mat = self._materializer(obj, materializer)
            tree = self._save(mat, obj)
        except UnsupportedTypeError:
            if not allow or materializer is not None:
                raise
            mat = materializers.registry.by_name("cas.pickle")
            tree = self._save(mat, obj)
        tree_digest = self.objects.put_object(tree.to_bytes())
        artifact = Artifact(
            tree=tree_digest,
            python_type=type_name_of(type(obj)),
            materializer=mat.name,
            materializer_version=mat.version,
            size=tree.size,
            metadata=_check_metadata(with_writer_record(mat, mat.metadata(obj))),
            user_metadata=user_metadata,
        )
        digest = self.objects.put_object(artifact.to_bytes())
        if visualize and not mat.executes_code:
            self.objects.flush()
            visualize_mod.save(self, digest, [*mat.visualize(obj), *visualize_mod.compute_listing(self, digest)])
        if name is None:
            return Ref(to_hex(digest))
        self.objects.flush()  # in a batch: a ref is written only after what it reaches
        record = self.refs.create_version(name, digest, label=version, reuse_latest=not new_version)
        for tag in tags:
            self.refs.set_tag(name, tag, record)
        return _ref_of(name, record)

    def _save(self, mat: Materializer, obj: Any) -> Tree:
        writer = TreeWriter(self.objects, self.config.chunking)
        try:
            mat.save(obj, writer)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

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

    def _materializer(self, obj: Any, chosen: Materializer | type[Materializer] | str | None) -> Materializer:
        if chosen is None:
            return materializers.registry.for_object(obj)
        if isinstance(chosen, str):
            return materializers.registry.by_name(chosen)
        if isinstance(chosen, type):
            return chosen()
        return chosen

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
        try:
            return self._resolve_here(ref)
        except ObjectNotFoundError:  # RefNotFoundError too: maybe the read-through remote knows it
            remote = self.read_through_store()
            if remote is None:
                raise
            try:
                return remote._resolve(ref)
            except ObjectNotFoundError:
                pass
            raise

    def _resolve_here(self, ref: RefLike) -> tuple[Ref, RefRecord | None]:
        if isinstance(ref, Ref):
            return ref, None
        if not isinstance(ref, str) or not ref:
            raise InvalidNameError(f"a ref must be a non-empty string, not {ref!r}")
        if "@" in ref:
            spec = parse_ref(ref)
            record = self.refs.resolve(spec)
            return _ref_of(spec.name, record), record
        # A name never shadows a hash. New names that could be read as one are
        # refused (check_new_name), but another writer can plant their ref files:
        # 64 hex digits always mean that hash; 6 to 63 hex digits that are both
        # a name here and a hash prefix raise AmbiguousRefError.
        if is_full_hex(ref):
            return Ref(ref), None
        if not is_hex_prefix(ref):
            check_name(ref)
            record = self.refs.resolve(RefSpec(ref, None))
            return _ref_of(ref, record), record
        if not self._is_name(ref):
            return Ref(to_hex(self.objects.resolve_prefix(ref))), None
        digest = self._prefix_match(ref)
        if digest is not None:
            raise AmbiguousRefError(
                f"{ref!r} is both a name and a prefix of the hash {short(digest)}: "
                f"write {ref}@<version> for the name, or the full hash"
            )
        record = self.refs.resolve(RefSpec(ref, None))
        return _ref_of(ref, record), record

    def _is_name(self, text: str) -> bool:
        try:
            return bool(self.refs.version_numbers(text))
        except InvalidNameError:
            return False

    def _prefix_match(self, prefix: str) -> bytes | None:
        """The one object ``prefix`` names here or in the read-through remote; None if none."""
        for store in (self, self.read_through_store()):
            if store is not None:
                try:
                    return store.objects.resolve_prefix(prefix)
                except ObjectNotFoundError:
                    continue
        return None

    def _artifact(self, ref: Ref) -> Artifact:
        d = from_hex(ref.hash)
        raw = self.objects.get_object(d)
        try:
            return Artifact.from_bytes(raw, key=f"artifact {short(d)}")
        except CorruptObjectError:
            # The bytes match their hash, so this is another kind of object, not damage.
            kind = kind_of(raw)
            raise ObjectNotFoundError(f"{short(d)} is a {kind}, not an artifact") from None

    def _tree(self, artifact: Artifact) -> Tree:
        tree = Tree.from_bytes(self.objects.get_object(artifact.tree), key=f"tree {short(artifact.tree)}")
        if tree.size != artifact.size:  # info shows the artifact's size: it must be the files'
            raise CorruptObjectError(f"artifact says {artifact.size:,} bytes, its tree {tree.size:,}")
        return tree

    def get(
        self,
        ref: RefLike,
        *,
        path: str | os.PathLike[str] | None = None,
        trust_pickle: bool | None = None,
        allow_python_mismatch: bool = False,
    ) -> Any:
        """Load the artifact ``ref`` names; with ``path``, write its files there instead.

        A single-file artifact is written to ``path`` itself; a directory
        artifact (or one of several files) below the folder ``path``. Returns
        the loaded object, or the Path written. A pickled artifact loads only
        with ``trust_pickle=True`` (or ``cas.open(trust_pickle=True)``): unpickling
        runs code chosen by whoever wrote it. Restored files get the usual
        mode (executable ones keep their bit); the whole destination is
        checked before anything is written, and a file already at a target
        path is replaced, never written through (a folder is refused).
        With ``path`` also raises NonPortablePathError, UnsafeDestinationError
        (a symlink on the way), DestinationExistsError (the wrong kind).
        Raises RefNotFoundError, ObjectNotFoundError, AmbiguousRefError,
        IntegrityError/CorruptObjectError, UnsupportedTypeError, PathRequiredError,
        UntrustedPickleError, IncompatibleArtifactError (LoadError when the bytes are intact but this
        process lacks the materializer, module or library versions that wrote them: never CorruptObjectError).
        """
        resolved = self.resolve(ref)
        artifact = self._artifact(resolved)
        tree = self._tree(artifact)
        if path is not None:
            return self._export(artifact, tree, Path(path))
        try:
            mat = materializers.registry.for_artifact(
                artifact.materializer, artifact.materializer_version, artifact.metadata
            )
        except LoadError as exc:
            raise exc.about(str(resolved)) from exc.__cause__
        if mat.executes_code and not (self.trust_pickle if trust_pickle is None else trust_pickle):
            raise UntrustedPickleError(
                f"{resolved} is a pickle: loading it runs code chosen by whoever wrote it; "
                "pass trust_pickle=True if you trust this store"
            )
        mat.check_environment(artifact.metadata, override=allow_python_mismatch)
        try:
            try:
                type_ = mat.resolve_type(artifact.python_type, artifact.metadata)
            except LoadError:
                raise
            except IncompatibleArtifactError as exc:  # a class this process has not imported
                raise mat.environment_error(artifact.metadata, exc) from exc
            value = mat.load_checked(TreeReader(self.objects, tree, artifact.metadata), type_)
        except LoadError as exc:
            raise exc.about(str(resolved)) from exc.__cause__
        self.provenance.remember(value, from_hex(resolved.hash))
        return value

    def reader(self, ref: RefLike) -> TreeReader:
        """The files of an artifact, to read one by one (verified), without a materializer."""
        artifact = self._artifact(self.resolve(ref))
        return TreeReader(self.objects, self._tree(artifact), artifact.metadata)

    def _export(self, artifact: Artifact, tree: Tree, target: Path) -> Path:
        # The tree and metadata are the store writer's: TreeReader checks the
        # whole destination (portable paths, no links on the way) before writing.
        reader = TreeReader(self.objects, tree)
        paths = [e.path for e in tree.entries]
        executable = executable_paths(artifact.metadata, paths) if artifact.materializer == "cas.path" else frozenset()
        if artifact.metadata.get("kind") == "directory" or len(paths) != 1:
            return reader.restore_tree(target, executable=executable)
        return reader.restore_file(paths[0], target, executable=paths[0] in executable)

    def info(self, ref: RefLike) -> ArtifactInfo:
        """Type, materializer, sizes, metadata and files of an artifact, without loading it."""
        resolved, record = self._resolve(ref)
        artifact = self._artifact(resolved)
        tree = self._tree(artifact)
        return ArtifactInfo(
            ref=resolved,
            python_type=artifact.python_type,
            materializer=artifact.materializer,
            materializer_version=artifact.materializer_version,
            size=artifact.size,
            stored_size=self._stored_size(tree),
            metadata=artifact.metadata,
            user_metadata=artifact.user_metadata,
            files=tuple(FileInfo(e.path, e.size, len(e.chunks)) for e in tree.entries),
            created=record.created if record is not None else None,
            tree=to_hex(artifact.tree),
            chunks=sum(len(e.chunks) for e in tree.entries),
        )

    def _stored_size(self, tree: Tree) -> int:
        seen: set[bytes] = set()
        total = 0
        for entry in tree.entries:
            for d, _size in entry.chunks:
                if d in seen:
                    continue
                seen.add(d)
                loc = self.objects.locate(d)
                total += loc.entry.stored if loc is not None else self.stored_size_of(d)  # maybe read-through
        return total

    def visualizations(self, ref: RefLike, *, save: bool = False) -> list[Visualization]:
        """Views of an artifact for people: the stored ones, else computed now (and kept if ``save``).

        Computing loads the value (never a pickle). See ``materializers.visuals``.
        """
        digest = from_hex(self.resolve(ref).hash)
        found = visualize_mod.stored(self, digest)
        if found is None:
            found = visualize_mod.compute(self, digest)
            if save:
                visualize_mod.save(self, digest, found)
        return found

    def exists(self, ref: RefLike) -> bool:
        """True if ``ref`` names an artifact in this store (a bad name still raises InvalidNameError)."""
        try:
            resolved = self.resolve(ref)
            if self.objects.has_any(from_hex(resolved.hash)):
                return True
            remote = self.read_through_store()
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


def _ref_of(name: str, record: RefRecord) -> Ref:
    version: int | str | None = record.label if record.label is not None else record.number
    return Ref(to_hex(record.target), name, version, record.number)


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata as the plain data that is stored (and that ``info`` shows).

    Plain data is None, bool, int, float, str, bytes, lists and dicts with str
    keys. Exactly these conversions happen: tuple -> list; a subclass of bool,
    int, float, str or bytes (IntEnum, StrEnum...) -> the base type's value;
    bytearray and memoryview -> bytes; numpy bool, integer and floating scalars
    (up to 64 bits) -> bool, int, float. Anything else raises
    InvalidMetadataError naming the key path, e.g. ``metadata['metrics']['when']``.
    """
    if not isinstance(value, dict):
        raise InvalidMetadataError(f"metadata must be a dict, not {type(value).__name__}")
    plain = _plain(value, "metadata", 0)
    try:
        canonical.encode(plain)
    except canonical.EncodingError as exc:  # an int beyond 64 bits
        raise InvalidMetadataError(f"metadata is not plain data: {exc}") from None
    return plain  # type: ignore[no-any-return]


def _plain(value: Any, path: str, depth: int) -> Any:
    """``value`` converted to plain data (see _check_metadata); InvalidMetadataError names ``path``."""
    if depth > canonical.MAX_DEPTH:
        raise InvalidMetadataError(f"{path}: nested deeper than {canonical.MAX_DEPTH}")
    t = type(value)
    if value is None or t is str or t is float or t is bool or t is bytes:
        return value
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        number = int.__index__(value)
        if not -(1 << 63) <= number < 1 << 64:
            raise InvalidMetadataError(f"{path}: int {number} does not fit in 64 bits")
        return number
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadataError(f"{path}: key {key!r} is a {type(key).__name__}, not a str")
            key = str.__str__(key)  # a str subclass (StrEnum) as its value
            out[key] = _plain(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value.tobytes() if isinstance(value, memoryview) else bytes(value)
    np = sys.modules.get("numpy")  # a numpy scalar exists only once numpy is imported
    if np is not None and isinstance(value, (np.bool_, np.integer)):
        return value.item()
    if np is not None and isinstance(value, np.floating) and value.itemsize <= 8:
        return float(value)
    raise InvalidMetadataError(f"{path}: {type(value).__module__}.{type(value).__qualname__} is not plain data")


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
    store must honour create-if-absent, which is checked at open; pass
    ``single_writer=True`` to open one that does not, if only one process writes.
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
                raise InvalidNameError(f"CAS_STORAGE_OPTIONS is not JSON: {exc}") from None
            storage_options = {**extra, **(storage_options or {})}
    try:
        backend = backend_for(url, storage_options)
    except ImportError as exc:
        raise BackendError(f"{url}: {exc} (for S3: pip install 'cas-store[s3]')") from None
    return Store(
        backend,
        create=create,
        workers=workers,
        allow_pickle=allow_pickle,
        trust_pickle=trust_pickle,
        single_writer=single_writer,
        read_through=read_through,
        max_expansion=max_expansion,
        expansion_allowance=expansion_allowance,
    )


def _discover(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".cas"
        if (candidate / "config").is_file():
            return candidate
    return None

"""Values in a Repository: storing an object through a materializer, loading it back, exporting its files.

The value logic behind ``Store.put``, ``get``, ``export`` and ``info``: which
materializer stores an object (and when cloudpickle may), whether a stored
artifact may be loaded here (pickle trust, environment), and how its files
are written out. Names, versions and tags stay with the Store (cas.refs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from cas import artifacts
from cas import visualize as visualize_mod
from cas.artifacts import Ref, RefLike
from cas.errors import (
    IncompatibleArtifactError,
    LoadError,
    UnsupportedTypeError,
    UntrustedPickleError,
    check_argument_type,
)
from cas.hashing import to_hex
from cas.metadata import check_metadata
from cas.objects import Artifact, Tree
from cas.repository import Repository
from cas.trees import TreeReader, TreeWriter
from materializers.base import Materializer, type_name_of, with_writer_record
from materializers.builtin import executable_paths
from materializers.registry import registry

#: What ``put`` takes as its ``materializer``: an instance, a class or a registered name.
MaterializerChoice: TypeAlias = Materializer | type[Materializer] | str | None


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


# -- storing -------------------------------------------------------------------
def put_value(
    repo: Repository,
    obj: Any,
    *,
    user_metadata: dict[str, Any],
    materializer: MaterializerChoice = None,
    allow_pickle: bool = False,
    visualize: bool = False,
) -> bytes:
    """Store ``obj`` as an artifact (its files, then the artifact object); return the artifact's digest.

    ``materializer`` forces one; without it the registry chooses, and
    cloudpickle stores what no materializer handles if ``allow_pickle``.
    ``visualize`` also stores the value's visualizations (never a pickle's).
    Raises InvalidMetadataError, UnsupportedTypeError, SourceNotFoundError, BackendError.
    """
    user_metadata = check_metadata(user_metadata)
    try:
        mat = choose_materializer(obj, materializer)
        tree = _save(repo, mat, obj)
    except UnsupportedTypeError:
        if not allow_pickle or materializer is not None:
            raise
        mat = registry.by_name("cas.pickle")
        tree = _save(repo, mat, obj)
    tree_bytes = tree.to_bytes()
    tree_digest = repo.objects.put_object(tree_bytes)
    artifact = Artifact(
        tree=tree_digest,
        python_type=type_name_of(type(obj)),
        materializer=mat.name,
        materializer_version=mat.version,
        size=tree.size,
        metadata=check_metadata(with_writer_record(mat, mat.metadata(obj))),
        user_metadata=user_metadata,
    )
    artifact_bytes = artifact.to_bytes()
    digest = repo.objects.put_object(artifact_bytes)
    # A get in this process needs no read or decode of what it just stored.
    artifacts.remember(repo, tree_digest, tree, len(tree_bytes))
    artifacts.remember(repo, digest, artifact, len(artifact_bytes))
    if visualize and not mat.executes_code:
        repo.objects.flush()
        visualize_mod.save(
            repo.objects, digest, [*mat.visualize(obj), *visualize_mod.compute_listing(repo.objects, digest)]
        )
    return digest


def choose_materializer(obj: Any, chosen: MaterializerChoice) -> Materializer:
    """The materializer ``chosen`` names, or the registry's choice for ``obj``."""
    if chosen is None:
        return registry.for_object(obj)
    if isinstance(chosen, str):
        return registry.by_name(chosen)
    if isinstance(chosen, type) and issubclass(chosen, Materializer):
        return chosen()
    check_argument_type(chosen, Materializer, "materializer")
    return chosen


def _save(repo: Repository, mat: Materializer, obj: Any) -> Tree:
    writer = TreeWriter(repo.objects, repo.config.chunking)
    try:
        mat.save(obj, writer)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


# -- reading -------------------------------------------------------------------
def load_value(
    repo: Repository, ref: RefLike, *, trust_pickle: bool, allow_python_mismatch: bool = False
) -> tuple[Ref, Any]:
    """Load the artifact ``ref`` names; return its Ref and the value.

    A pickle loads only with ``trust_pickle``. Raises RefNotFoundError,
    ObjectNotFoundError, AmbiguousRefError, IntegrityError/CorruptObjectError,
    UnsupportedTypeError, PathRequiredError, UntrustedPickleError,
    IncompatibleArtifactError (LoadError when the bytes are intact but this
    process lacks what wrote them).
    """
    resolved, record = artifacts.resolve(repo, ref)
    # What a live ref reaches gc keeps: remembered, it is used without asking storage again.
    live = record is not None
    artifact = artifacts.artifact(repo, resolved, reachable=live)
    tree = artifacts.tree(repo, artifact, reachable=live)
    try:
        mat = registry.for_artifact(artifact.materializer, artifact.materializer_version, artifact.metadata)
    except LoadError as exc:
        raise exc.about(str(resolved)) from exc.__cause__
    if mat.executes_code and not trust_pickle:
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
        return resolved, mat.load_checked(TreeReader(repo.objects, tree, artifact.metadata), type_)
    except LoadError as exc:
        raise exc.about(str(resolved)) from exc.__cause__


def export(repo: Repository, ref: RefLike, path: str | os.PathLike[str]) -> Path:
    """Write the files of the artifact ``ref`` names to ``path``; return the Path written (see ``Store.export``)."""
    resolved = artifacts.resolve(repo, ref)[0]
    artifact = artifacts.artifact(repo, resolved)
    tree = artifacts.tree(repo, artifact)
    check_argument_type(path, (str, os.PathLike), "path")
    # The tree and metadata are the store writer's: TreeReader checks the
    # whole destination (portable paths, no links on the way) before writing.
    reader = TreeReader(repo.objects, tree)
    target = Path(path)
    paths = [e.path for e in tree.entries]
    executable = executable_paths(artifact.metadata, paths) if artifact.materializer == "cas.path" else frozenset()
    if artifact.metadata.get("kind") == "directory" or len(paths) != 1:
        return reader.restore_tree(target, executable=executable)
    return reader.restore_file(paths[0], target, executable=paths[0] in executable)


def info(repo: Repository, ref: RefLike) -> ArtifactInfo:
    """Type, materializer, sizes, metadata and files of an artifact, without loading it."""
    resolved, record = artifacts.resolve(repo, ref)
    artifact = artifacts.artifact(repo, resolved)
    tree = artifacts.tree(repo, artifact)
    return ArtifactInfo(
        ref=resolved,
        python_type=artifact.python_type,
        materializer=artifact.materializer,
        materializer_version=artifact.materializer_version,
        size=artifact.size,
        stored_size=_stored_size(repo, tree),
        metadata=artifact.metadata,
        user_metadata=artifact.user_metadata,
        files=tuple(FileInfo(e.path, e.size, len(e.chunks)) for e in tree.entries),
        created=record.created if record is not None else None,
        tree=to_hex(artifact.tree),
        chunks=sum(len(e.chunks) for e in tree.entries),
    )


def _stored_size(repo: Repository, tree: Tree) -> int:
    seen: set[bytes] = set()
    total = 0
    for entry in tree.entries:
        for d, _size in entry.chunks:
            if d in seen:
                continue
            seen.add(d)
            loc = repo.objects.locate(d)
            total += loc.entry.stored if loc is not None else repo.stored_size_of(d)  # maybe read-through
    return total

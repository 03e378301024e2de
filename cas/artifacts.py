"""Artifacts in a Repository: what a ref names, the artifact and tree objects, and whether all is there.

``Ref`` is what the public API hands out for an artifact. ``resolve`` turns a
ref string into one (asking the read-through remote when this store does
not know it); ``artifact`` and ``tree`` read the objects behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cas.errors import (
    AmbiguousRefError,
    CasError,
    CorruptObjectError,
    InvalidNameError,
    ObjectNotFoundError,
    WrongObjectKindError,
)
from cas.hashing import from_hex, is_full_hex, is_hex_prefix, short, to_hex
from cas.objects import Artifact, RefRecord, Tree, kind_of
from cas.refs import RefSpec, check_name, parse_ref
from cas.repository import Repository
from materializers.registry import registry


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


RefLike = str | Ref


def ref_of(name: str, record: RefRecord) -> Ref:
    """The Ref of a named version's record."""
    version: int | str | None = record.label if record.label is not None else record.number
    return Ref(to_hex(record.target), name, version, record.number)


def resolve(repo: Repository, ref: RefLike) -> tuple[Ref, RefRecord | None]:
    """The artifact a ref names, and the ref record it was reached by (None for a hash); see ``Store.resolve``."""
    try:
        return _resolve_here(repo, ref)
    except ObjectNotFoundError:  # RefNotFoundError too: maybe the read-through remote knows it
        remote = repo.read_through()
        if remote is None:
            raise
        try:
            return resolve(remote, ref)
        except ObjectNotFoundError:
            pass
        raise


def _resolve_here(repo: Repository, ref: RefLike) -> tuple[Ref, RefRecord | None]:
    if isinstance(ref, Ref):
        return ref, None
    if not isinstance(ref, str) or not ref:
        raise InvalidNameError(f"a ref must be a non-empty string, not {ref!r}")
    if "@" in ref:
        spec = parse_ref(ref)
        record = repo.refs.resolve(spec)
        return ref_of(spec.name, record), record
    # A name never shadows a hash. New names that could be read as one are
    # refused (check_new_name), but another writer can plant their ref files:
    # 64 hex digits always mean that hash; 6 to 63 hex digits that are both
    # a name here and a hash prefix raise AmbiguousRefError.
    if is_full_hex(ref):
        return Ref(ref), None
    if not is_hex_prefix(ref):
        check_name(ref)
        record = repo.refs.resolve(RefSpec(ref, None))
        return ref_of(ref, record), record
    if not _is_name(repo, ref):
        return Ref(to_hex(repo.objects.resolve_prefix(ref))), None
    digest = _prefix_match(repo, ref)
    if digest is not None:
        raise AmbiguousRefError(
            f"{ref!r} is both a name and a prefix of the hash {short(digest)}: "
            f"write {ref}@<version> for the name, or the full hash"
        )
    record = repo.refs.resolve(RefSpec(ref, None))
    return ref_of(ref, record), record


def _is_name(repo: Repository, text: str) -> bool:
    try:
        return bool(repo.refs.version_numbers(text))
    except InvalidNameError:
        return False


def _prefix_match(repo: Repository, prefix: str) -> bytes | None:
    """The one object ``prefix`` names here or in the read-through remote; None if none."""
    for where in (repo, repo.read_through()):
        if where is not None:
            try:
                return where.objects.resolve_prefix(prefix)
            except ObjectNotFoundError:
                continue
    return None


def artifact(repo: Repository, ref: Ref) -> Artifact:
    """The artifact object ``ref`` names; ObjectNotFoundError if absent, WrongObjectKindError if another kind."""
    d = from_hex(ref.hash)
    raw = repo.objects.get_object(d)
    try:
        return Artifact.from_bytes(raw, key=f"artifact {short(d)}")
    except CorruptObjectError:
        # The bytes match their hash: either another kind of object, or an artifact no reader accepts.
        kind = kind_of(raw)
        if kind == "artifact":
            raise
        raise WrongObjectKindError(f"{short(d)} is a {kind}, not an artifact") from None


def tree(repo: Repository, art: Artifact) -> Tree:
    """An artifact's tree, checked against the size the artifact declares."""
    found = Tree.from_bytes(repo.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
    if found.size != art.size:  # info shows the artifact's size: it must be the files'
        raise CorruptObjectError(f"artifact says {art.size:,} bytes, its tree {found.size:,}")
    return found


def is_complete(repo: Repository, digest: bytes) -> bool:
    """Whether an artifact, its tree and every chunk are present and readable by this process."""
    try:
        art = Artifact.from_bytes(repo.objects.get_object(digest))
        found = Tree.from_bytes(repo.objects.get_object(art.tree))
        mat = registry.by_name(art.materializer)
    except CasError:
        return False
    if not mat.can_load(art.materializer_version):
        return False
    refreshed = False
    for entry in found.entries:
        for d, _ in entry.chunks:
            if repo.objects.knows_chunk(d) or repo.objects.has_object(d):
                continue
            if refreshed:
                return False
            repo.objects.refresh_index()
            refreshed = True
            if not repo.objects.knows_chunk(d):
                return False
    return True


def materializer_packages(repo: Repository, ref: RefLike) -> tuple[str, ...]:
    """The distributions an artifact's materializer depends on (for run environments)."""
    art = Artifact.from_bytes(repo.objects.get_object(from_hex(resolve(repo, ref)[0].hash)))
    try:
        return registry.by_name(art.materializer).packages
    except CasError:
        return ()

"""Artifacts in a Repository: what a ref names, the artifact and tree objects, and whether all is there.

``Ref`` is what the public API hands out for an artifact. ``resolve`` turns a
ref string into one (asking the read-through remote when this store does
not know it); ``artifact`` and ``tree`` read the objects behind it.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
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

#: Bytes of decoded artifacts and trees each Repository keeps (they never change: their key is their hash).
CACHE_BYTES = 64 << 20


class _Decoded:
    """Artifacts and trees this process has verified and decoded, by digest; least recently used go first."""

    def __init__(self) -> None:
        self._items: OrderedDict[bytes, tuple[Artifact | Tree, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Artifact | Tree | None:
        with self._lock:
            found = self._items.get(digest)
            if found is None:
                return None
            self._items.move_to_end(digest)
            return found[0]

    def put(self, digest: bytes, obj: Artifact | Tree, size: int) -> None:
        if size > CACHE_BYTES // 4:
            return
        with self._lock:
            if digest in self._items:
                return
            self._items[digest] = (obj, size)
            self._size += size
            while self._size > CACHE_BYTES:
                _, (_, gone) = self._items.popitem(last=False)
                self._size -= gone


_decoded: weakref.WeakKeyDictionary[Repository, _Decoded] = weakref.WeakKeyDictionary()
_decoded_lock = threading.Lock()


def _cached(repo: Repository, digest: bytes, *, reachable: bool = False) -> Artifact | Tree | None:
    """What this process decoded of ``digest`` before, if the store still holds it.

    Only where asking is cheap (a local disk: a stat or an index lookup); on an
    object store the question costs a request, as the read does, so it reads.
    ``reachable``: the object was reached through a ref found live just now,
    so gc keeps it and it is not asked for (the bytes were verified when read).
    """
    if not repo.backend.cheap_exists:
        return None
    found = _cache(repo).get(digest)
    if found is None or reachable:
        return found
    # (loose first: artifacts and trees of plain puts are loose, a stat; then the pack index)
    return found if repo.objects.has_object(digest) or repo.objects.knows_chunk(digest) else None


def _cache(repo: Repository) -> _Decoded:
    found = _decoded.get(repo)
    if found is None:
        with _decoded_lock:
            found = _decoded.setdefault(repo, _Decoded())
    return found


def forget_decoded(repo: Repository) -> None:
    """Drop what this process remembered of ``repo``'s artifacts and trees (after a repair removed objects)."""
    with _decoded_lock:
        _decoded.pop(repo, None)


def remember(repo: Repository, digest: bytes, obj: Artifact | Tree, size: int) -> None:
    """Keep an artifact or tree this process just stored (``size``: its encoded bytes) for later reads."""
    _cache(repo).put(digest, obj, size)


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


def artifact(repo: Repository, ref: Ref, *, reachable: bool = False) -> Artifact:
    """The artifact object ``ref`` names; ObjectNotFoundError if absent, WrongObjectKindError if another kind.

    ``reachable``: ``ref`` was resolved from a live ref just now (see ``_cached``).
    """
    d = from_hex(ref.hash)
    cached = _cached(repo, d, reachable=reachable)
    if isinstance(cached, Artifact):
        return cached
    raw = repo.objects.get_object(d)
    try:
        found = Artifact.from_bytes(raw, key=f"artifact {short(d)}")
        _cache(repo).put(d, found, len(raw))
        return found
    except CorruptObjectError:
        # The bytes match their hash: either another kind of object, or an artifact no reader accepts.
        kind = kind_of(raw)
        if kind == "artifact":
            raise
        raise WrongObjectKindError(f"{short(d)} is a {kind}, not an artifact") from None


def tree(repo: Repository, art: Artifact, *, reachable: bool = False) -> Tree:
    """An artifact's tree, checked against the size the artifact declares (``reachable``: see ``artifact``)."""
    found = _cached(repo, art.tree, reachable=reachable)
    if not isinstance(found, Tree):
        raw = repo.objects.get_object(art.tree)
        found = Tree.from_bytes(raw, key=f"tree {short(art.tree)}")
        _cache(repo).put(art.tree, found, len(raw))
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

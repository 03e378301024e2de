"""Every kind of typed record cas stores, each declared once (cas.schema) for both encoding and decoding.

Each is a canonical msgpack map with ``type`` (the tag below) and ``v`` (its
schema version: 1 for all, 1 or 2 for trees); FORMAT.md gives the byte-level grammar. Decoding
checks every field before use and raises CorruptObjectError for anything else
(UnsupportedFormatError, a subclass, for a ``v`` newer than this cas).

Objects, stored under the digest of their bytes (``.digest``: the id, computed from ``to_bytes()``):

==============  =====  ==============================================================
type            v      class and meaning
==============  =====  ==============================================================
tree            1, 2   Tree: the files a materializer wrote, path -> size + chunks (or inline bytes)
artifact        1      Artifact: a tree plus the Python type and materializer that wrote it
run             1      Run: one execution of a step (or a recorded cache hit); always loose
packindex       1      PackIndex: where each object sits in one pack; its digest is the pack id
==============  =====  ==============================================================

Sealed files, stored under a key of their own with a checksum (cas.codec.seal):

==============  =====  ==============================================================
ref             1      RefRecord: what a version, label or tag file holds
chunkmap        1      ChunkMap: how a file with a given digest was cut (a cache older cas wrote)
visualizations  1      VisualizationRecord: the objects holding an artifact's visualizations
==============  =====  ==============================================================

``KINDS`` maps each tag to its class; ``decode`` reads bytes of any of them.
Not typed records, so not here: blobs (a file's bytes, a chunk, a
visualization document: objects with no structure of their own), run cache
entries (a sealed bare run hash), the empty index files (``runlog/``,
``produced/``, ``consumed/``, ``names/``) and ``config`` (JSON, cas.config).

The tree path rules (``check_tree_path``, and the stricter portable checks
applied at put and before restoring) live here too, since a tree's decoder
applies them.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import starmap
from operator import itemgetter
from typing import Any, ClassVar, NamedTuple, TypeVar

from cas import canonical, codec, hashing
from cas.errors import CorruptObjectError, InvalidNameError, NonPortablePathError
from cas.hashing import short, to_hex
from cas.schema import (
    DIGEST,
    FLOAT,
    MAP,
    STR,
    Field,
    Schema,
    array,
    at_least,
    check_fields,
    closed,
    corrupt,
    list_of,
    map_of,
    of_type,
    one_of,
    optional,
    table,
)

__all__ = [
    "CHUNK", "CHUNKS", "INLINE_MAX", "KINDS", "MAX_COMPONENT_LENGTH", "MAX_PATH_LENGTH", "MAX_TIME", "MAX_VISUALIZATIONS",
    "MEDIA_TYPES", "OBJECT_KINDS", "RETURNS", "STATUSES", "Artifact", "ChunkMap", "Encoded", "FileEntry", "PackEntry",
    "PackIndex", "RefRecord", "Run", "StoredObject", "Tree", "VisualizationRecord", "check_chunks",
    "check_portable_path", "check_portable_tree", "check_tree_path", "decode", "is_device_name", "kind_of",
    "kind_of_stored", "valid_time",
]  # fmt: skip

MAX_PATH_LENGTH = 4096
MAX_COMPONENT_LENGTH = 255
# Files up to this size are kept inside the tree object itself.
INLINE_MAX = 4096


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_tree_path(path: str) -> str:
    """Validate a relative file path inside a tree; raise InvalidNameError with the rule broken."""
    if not isinstance(path, str) or not path:
        raise InvalidNameError("tree path must be a non-empty string")
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_LENGTH:
        raise InvalidNameError(f"tree path longer than {MAX_PATH_LENGTH} bytes")
    if _CONTROL.search(path):
        raise InvalidNameError(f"tree path {path!r} contains a control character or NUL")
    if "\\" in path:
        raise InvalidNameError(f"tree path {path!r} contains a backslash")
    if path[0] == "/":
        raise InvalidNameError(f"tree path {path!r} is absolute")
    parts = path.split("/")
    if "" in parts or "." in parts or ".." in parts:
        raise InvalidNameError(f"tree path {path!r} has an empty, '.' or '..' component")
    if size > MAX_COMPONENT_LENGTH and any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_LENGTH for part in parts
    ):
        raise InvalidNameError(f"tree path component longer than {MAX_COMPONENT_LENGTH} bytes")
    if len(path) >= 2 and path[1] == ":":
        raise InvalidNameError(f"tree path {path!r} looks like a drive path")
    return path


# Windows opens a device, not a file, for these names, whatever the extension.
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)
_DEVICE_PREFIXES = frozenset(name[:3] for name in _DEVICE_NAMES)


def is_device_name(component: str) -> bool:
    """Whether Windows reads a path component as a device (``CON``, ``nul.txt``, ``COM1 .log``), in any case."""
    return component[:3].upper() in _DEVICE_PREFIXES and component.split(".", 1)[0].rstrip(" ").upper() in _DEVICE_NAMES


# Code points HFS+ ignores when comparing names (git's list): ".g\u200cit" is ".git" there.
_HFS_IGNORED = dict.fromkeys([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])


def check_portable_path(path: str) -> str:
    """``check_tree_path``, plus what makes a path unsafe on some file system (NonPortablePathError).

    Refused in any component: ``.git`` in any case (also as HFS+ and NTFS spell it),
    a ``:`` (an NTFS alternate data stream), a Windows device name such as ``CON``
    or ``nul.txt``, a trailing dot or space (Windows drops them, so ``x.`` is ``x``).
    Applied at put and before restoring to disk, not when a tree is decoded.
    """
    check_tree_path(path)
    for part in path.split("/"):
        if ":" in part:
            raise NonPortablePathError(f"tree path {path!r}: {part!r} names an NTFS data stream (':')")
        if part[-1] in ". ":
            raise NonPortablePathError(f"tree path {path!r}: {part!r} ends in a dot or space, which Windows drops")
        if is_device_name(part):
            raise NonPortablePathError(f"tree path {path!r}: {part!r} is a Windows device name")
        if part.isascii():
            if part[0] not in ".gG" or part.lower() not in (".git", "git~1"):
                continue
        elif part.translate(_HFS_IGNORED).casefold() not in (".git", "git~1"):
            continue
        raise NonPortablePathError(f"tree path {path!r}: a '.git' component could plant a git repository")
    return path


def _fold(part: str) -> str:
    """What a case-insensitive, normalizing file system (macOS, Windows) sees of a name."""
    if part.isascii():
        return part.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", part).casefold())


def check_portable_tree(paths: Iterable[str]) -> None:
    """``check_portable_path`` for each path, and no two paths (or folders) equal up to case and NFC.

    Fastest with paths sorted (as a tree holds them): a folder's prefixes are folded once.
    """
    seen: dict[str, str] = {}  # folded path or folder -> as spelt

    def claim(folded: str, spelt: str) -> None:
        other = seen.setdefault(folded, spelt)
        if other != spelt:
            raise NonPortablePathError(
                f"tree paths {ascii(other)} and {ascii(spelt)} differ only in case or Unicode normalization: "
                "on macOS and Windows one would overwrite the other"
            )

    last_folder: str | None = None
    folder_key = ""
    for path in paths:
        check_portable_path(path)
        folder, _, name = path.rpartition("/")
        if folder != last_folder:
            spelt = folder_key = ""
            for part in folder.split("/") if folder else ():
                spelt = f"{spelt}/{part}" if spelt else part
                folder_key = f"{folder_key}/{_fold(part)}" if folder_key else _fold(part)
                claim(folder_key, spelt)
            last_folder = folder
        claim(f"{folder_key}/{_fold(name)}" if folder else _fold(name), path)


# -- the kinds ----------------------------------------------------------------------

KindT = TypeVar("KindT", bound="Encoded")


class Encoded:
    """A kind with a declared schema: ``to_bytes`` and ``from_bytes`` both follow ``schema``."""

    __slots__ = ()
    schema: ClassVar[Schema]

    def to_bytes(self) -> bytes:
        """The canonical bytes (TypeError for a field that is not plain data)."""
        return self.schema.encode(self)

    @classmethod
    def from_bytes(cls: type[KindT], data: bytes | bytearray | memoryview, *, key: str | None = None) -> KindT:
        """Decode and check untrusted bytes; CorruptObjectError names ``key`` (default: the tag)."""
        return cls(**cls.schema.decode(data, key or cls.schema.tag))


class StoredObject(Encoded):
    """A kind stored under the digest of its own bytes: that digest is its id."""

    @cached_property
    def digest(self) -> bytes:
        """The BLAKE3 digest of ``to_bytes()``: the id the object has (or will have) in any store."""
        return hashing.digest(self.to_bytes())

    @classmethod
    def from_bytes(cls: type[KindT], data: bytes | bytearray | memoryview, *, key: str | None = None) -> KindT:
        """Decode and check untrusted bytes; the object's id is then their digest, not encoded again.

        Decoding refuses bytes that are not the canonical form, so they are
        exactly what ``to_bytes`` gives back.
        """
        obj = super().from_bytes(data, key=key)
        obj.__dict__["digest"] = hashing.digest(data)  # (what cached_property would store)
        return obj


@closed
def _tree_path(value: Any, key: str, name: str) -> str:
    if not isinstance(value, str):
        raise corrupt(key, f"field {name!r} has the wrong type")
    try:
        return check_tree_path(value)
    except InvalidNameError as exc:
        raise corrupt(key, str(exc)) from None


#: A chunk reference: [digest, size > 0].
CHUNK = array(DIGEST, at_least(1))
#: A file's chunk list, checked column by column (a 1 GiB file has ~13,000 chunks).
CHUNKS = table(DIGEST, at_least(1))


def check_chunks(chunks: tuple[tuple[bytes, int], ...], size: int, key: str) -> None:
    """Chunk sizes add up to ``size``, and a non-empty file has a chunk (trees and chunk maps)."""
    total = sum(map(itemgetter(1), chunks))
    if total != size:
        raise corrupt(key, f"chunks add up to {total} bytes, not {size}")
    if size and not chunks:
        raise corrupt(key, "a non-empty file has no chunks")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a tree: its bytes inline, or its ordered (chunk hash, size) list.

    ``hash`` (BLAKE3 of the whole file) is held by chunked entries of version-1
    trees only; a version-2 tree identifies a file by its chunk list alone.
    """

    path: str
    size: int
    chunks: tuple[tuple[bytes, int], ...] = ()
    data: bytes | None = None
    hash: bytes | None = None  # BLAKE3 of the whole file, in version-1 trees

    INLINE: ClassVar[tuple[Field, ...]] = (
        Field("path", _tree_path),
        Field("size", at_least(0)),
        Field("data", of_type(bytes)),
    )
    CHUNKED: ClassVar[tuple[Field, ...]] = (
        Field("path", _tree_path),
        Field("size", at_least(0)),
        Field("chunks", CHUNKS),
    )
    CHUNKED_V1: ClassVar[tuple[Field, ...]] = (
        Field("path", _tree_path),
        Field("size", at_least(0)),
        Field("hash", DIGEST),
        Field("chunks", CHUNKS),
    )

    def to_value(self) -> dict[str, Any]:
        if self.data is not None:
            fields = self.INLINE
        else:
            fields = self.CHUNKED if self.hash is None else self.CHUNKED_V1
        return {f.name: f.value_of(self) for f in fields}

    @classmethod
    def from_value(cls, value: Any, key: str, version: int = 2) -> FileEntry:
        if not isinstance(value, dict):
            raise corrupt(key, "tree entry is not a map")
        if "data" in value:
            v = check_fields(value, cls.INLINE, key, "tree entry")
            if len(v["data"]) != v["size"] or v["size"] > INLINE_MAX:
                raise corrupt(key, f"inline data of {v['path']!r} has the wrong size")
            return cls(v["path"], v["size"], data=v["data"])
        v = check_fields(value, cls.CHUNKED_V1 if version == 1 else cls.CHUNKED, key, "tree entry")
        check_chunks(v["chunks"], v["size"], key)
        return cls(v["path"], v["size"], v["chunks"], hash=v.get("hash"))


@closed  # FileEntry.INLINE and CHUNKED are closed fields (tests/test_get_decoding.py checks)
def _tree_entry(value: Any, key: str, name: str) -> FileEntry:
    return FileEntry.from_value(value, key)


@closed  # FileEntry.INLINE and CHUNKED_V1 are closed fields
def _tree_entry_v1(value: Any, key: str, name: str) -> FileEntry:
    return FileEntry.from_value(value, key, version=1)


def _tree_rules(values: Mapping[str, Any], key: str) -> None:
    paths = [e.path for e in values["entries"]]
    if paths != sorted(set(paths)):
        raise corrupt(key, "tree entries are not unique and sorted")
    files = set(paths)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise corrupt(key, f"tree has {'/'.join(parts[:i])!r} both as a file and a folder")


def _entries_field(entry: Callable[[Any, str, str], FileEntry]) -> Field:
    return Field("entries", list_of(entry), lambda t: [e.to_value() for e in t.entries])


#: Version 1 trees: a chunked file also carries the BLAKE3 digest of its whole bytes.
_TREE_V1 = Schema("tree", 1, (_entries_field(_tree_entry_v1),), _tree_rules)


@dataclass(frozen=True)
class Tree(StoredObject):
    """The files of an artifact, sorted by path.

    ``version`` is the tree schema version. In version 1 every chunked entry
    carries its whole-file ``hash``; cas still writes it when that costs
    nothing (inline files and files of one chunk, whose digest is the file's),
    so small artifacts keep their ids. A tree with a file of several chunks is
    version 2: no entry has a ``hash``. Left out, the version follows the entries.
    """

    entries: tuple[FileEntry, ...]
    version: int = 0

    schema = Schema("tree", 2, (_entries_field(_tree_entry),), _tree_rules, older=(_TREE_V1,))

    def __post_init__(self) -> None:
        paths = [e.path for e in self.entries]
        if paths != sorted(set(paths)):
            raise ValueError("tree entries must be unique and sorted by path")
        hashed = [e.hash is not None for e in self.entries if e.data is None]
        version = self.version or (1 if all(hashed) else 2)
        if version not in (1, 2) or (version == 2 and any(hashed)) or (version == 1 and not all(hashed)):
            raise ValueError(
                f"a version-{version} tree's chunked entries must {'' if version == 1 else 'not '}have a hash"
            )
        object.__setattr__(self, "version", version)

    @classmethod
    def of(cls, entries: Iterable[FileEntry]) -> Tree:
        """The tree a writer writes of these entries (FORMAT.md W25), sorted by path.

        Version 1 if every entry that is not inline carries its ``hash``;
        otherwise version 2, with every ``hash`` left out.
        """
        ordered = sorted(entries, key=lambda e: e.path)
        if all(e.data is not None or e.hash is not None for e in ordered):
            return cls(tuple(ordered), version=1)
        return cls(tuple(e if e.hash is None else replace(e, hash=None) for e in ordered), version=2)

    def to_bytes(self) -> bytes:
        return (_TREE_V1 if self.version == 1 else self.schema).encode(self)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, key: str | None = None) -> Tree:
        version, values = cls.schema.decode_versioned(data, key or "tree")
        return cls(**values, version=version)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass(frozen=True)
class Artifact(StoredObject):
    """A stored value: its files, and how to turn them back into a Python object."""

    tree: bytes
    python_type: str
    materializer: str
    materializer_version: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    user_metadata: dict[str, Any] = field(default_factory=dict)

    schema = Schema(
        "artifact",
        1,
        (
            Field("tree", DIGEST),
            Field("python_type", STR),
            Field("materializer", STR),
            Field("materializer_version", STR),
            Field("size", at_least(0)),
            Field("metadata", MAP),
            Field("user_metadata", MAP),
        ),
    )


STATUSES = ("completed", "failed", "cached")
#: How a run's outputs make the step's return value.
RETURNS = ("none", "single", "tuple", "dict")
#: Run times are POSIX seconds in [0, MAX_TIME): 1970 up to the year 3000. Anything else (NaN, infinities,
#: 1e300) is refused when a run is recorded and when one is read, so every page and log line can print it.
MAX_TIME = 32503680000.0  # 3000-01-01T00:00:00Z


def valid_time(t: object) -> bool:
    """Whether ``t`` can be a run's start or end time (a float or int, finite, 1970 <= t < 3000)."""
    return isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < MAX_TIME


def _run_time(value: Any, key: str, name: str) -> float:
    FLOAT(value, key, name)
    if not valid_time(value):  # NaN fails every comparison
        raise corrupt(key, f"run {name} time {value!r} is outside 1970..3000")
    return float(value)


def _run_rules(values: Mapping[str, Any], key: str) -> None:
    order, outputs = values["order"], values["outputs"]
    if sorted(order) != sorted(outputs) or len(set(order)) != len(order):
        raise corrupt(key, "output order does not list the outputs")


@dataclass(frozen=True)
class Run(StoredObject):
    """One execution of a step (or a recorded cache hit). Its id (``hash``) is the digest of its bytes."""

    step: str
    code: bytes
    params: dict[str, Any]
    inputs: dict[str, bytes]
    outputs: dict[str, bytes]
    cache_key: bytes
    started: float
    ended: float
    status: str
    parents: tuple[bytes, ...] = ()
    cached_from: bytes | None = None
    returns: str = "single"  # how outputs map back to the return value: none, single, tuple, dict
    order: tuple[str, ...] = ()  # output names in return order (maps are stored sorted)
    environment: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] | None = None
    message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    schema = Schema(
        "run",
        1,
        (
            Field("step", STR),
            Field("code", DIGEST),
            Field("params", MAP),
            Field("inputs", map_of(DIGEST)),
            Field("outputs", map_of(DIGEST)),
            Field("cache_key", DIGEST),
            Field("started", _run_time, lambda r: float(r.started)),
            Field("ended", _run_time, lambda r: float(r.ended)),
            Field("status", one_of(*STATUSES)),
            Field("parents", list_of(DIGEST), lambda r: list(r.parents)),
            Field("cached_from", optional(DIGEST)),
            Field("returns", one_of(*RETURNS)),
            Field("order", list_of(STR), lambda r: list(r.order or r.outputs)),
            Field("environment", MAP),
            Field("pipeline", optional(MAP)),
            Field("message", optional(STR)),
            Field("metadata", MAP),
            Field("error", optional(STR)),
        ),
        _run_rules,
    )

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, run_hash: bytes | None = None, *, key: str | None = None
    ) -> Run:
        """Decode a run. ``run_hash`` is accepted for older callers and not used: the id comes from the bytes."""
        return super().from_bytes(data, key=key)

    @property
    def hash(self) -> bytes:
        """The run's id: the digest of its bytes, the same before and after it is stored."""
        return self.digest

    @property
    def id(self) -> str:
        return to_hex(self.hash)

    @property
    def short(self) -> str:
        return short(self.hash)

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        status = "cache hit" if self.status == "cached" else self.status
        ins = ", ".join(f"{k}={short(v, 8)}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}={short(v, 8)}" for k, v in self.outputs.items())
        return f"{self.short} {when} {self.step} [{status}, {self.duration * 1000:.0f} ms] ({ins}) -> ({outs})"


class PackEntry(NamedTuple):
    """Where one chunk sits in a pack: ``stored`` bytes (header included) at ``offset``.

    A named tuple (immutable, and made about three times faster than a frozen
    dataclass: a pack index holds thousands).
    """

    digest: bytes
    offset: int
    stored: int
    raw_size: int
    codec: int


_PACK_ROWS = table(DIGEST, at_least(0), at_least(0), at_least(0), at_least(0))


@closed
def _pack_entries(value: Any, key: str, name: str) -> tuple[PackEntry, ...]:
    rows = _PACK_ROWS(value, key, name)
    if rows:
        _, _, stored, _, codecs = zip(*rows, strict=True)
        if not set(codecs) <= {0, 1} or min(stored) < 16:
            raise corrupt(key, "a pack entry has an unknown codec or is under 16 bytes")
    return tuple(starmap(PackEntry, rows))


def _pack_rules(values: Mapping[str, Any], key: str) -> None:
    end = 0
    for entry in values["entries"]:
        if entry.offset < end:
            raise corrupt(key, "pack entries overlap or are out of order")
        end = entry.offset + entry.stored


@dataclass(frozen=True)
class PackIndex(StoredObject):
    """The table of contents of one pack file; its digest is the pack's id."""

    entries: tuple[PackEntry, ...]

    schema = Schema(
        "packindex",
        1,
        (
            Field(
                "entries",
                _pack_entries,
                lambda p: [[e.digest, e.offset, e.stored, e.raw_size, e.codec] for e in p.entries],
            ),
        ),
        _pack_rules,
    )


@dataclass(frozen=True)
class RefRecord(Encoded):
    """What a version or tag file holds: the artifact it names, and when it was made."""

    target: bytes
    created: float
    number: int | None = None
    label: str | None = None

    schema = Schema(
        "ref",
        1,
        (
            Field("target", DIGEST),
            Field("created", FLOAT, lambda r: float(r.created)),
            Field("number", optional(at_least(1))),
            Field("label", optional(STR)),
        ),
    )


def _chunkmap_rules(values: Mapping[str, Any], key: str) -> None:
    check_chunks(values["chunks"], values["size"], key)


@dataclass(frozen=True)
class ChunkMap(Encoded):
    """How a file with this whole-content hash was cut: lets a re-put skip chunking."""

    hash: bytes
    size: int
    chunks: tuple[tuple[bytes, int], ...]

    schema = Schema(
        "chunkmap",
        1,
        (Field("hash", DIGEST), Field("size", at_least(0)), Field("chunks", CHUNKS)),
        _chunkmap_rules,
    )


#: The media types a stored visualization may have.
MEDIA_TYPES = ("text/html", "image/svg+xml", "image/png", "text/markdown", "text/csv", "text/plain")
#: At most this many visualizations per artifact.
MAX_VISUALIZATIONS = 64
_VISUALIZATION_ITEM = (
    Field("name", STR),
    Field("media_type", one_of(*MEDIA_TYPES)),
    Field("object", DIGEST),
    Field("size", at_least(0)),
)


def _visualization_item(value: Any, key: str, name: str) -> tuple[str, str, bytes, int]:
    v = check_fields(value, _VISUALIZATION_ITEM, key, "visualization entry")
    return (v["name"][:100], v["media_type"], v["object"], v["size"])


@dataclass(frozen=True)
class VisualizationRecord(Encoded):
    """Which objects hold an artifact's visualizations."""

    artifact: bytes
    items: tuple[tuple[str, str, bytes, int], ...]  # (name, media type, object, size)

    schema = Schema(
        "visualizations",
        1,
        (
            Field("artifact", DIGEST),
            Field(
                "items",
                list_of(_visualization_item, max_items=MAX_VISUALIZATIONS),
                lambda r: [{f.name: x for f, x in zip(_VISUALIZATION_ITEM, item, strict=True)} for item in r.items],
            ),
        ),
    )


# -- the registry ---------------------------------------------------------------------

#: Every typed kind, by its ``type`` tag.
KINDS: dict[str, type[Encoded]] = {
    cls.schema.tag: cls for cls in (Tree, Artifact, Run, PackIndex, RefRecord, ChunkMap, VisualizationRecord)
}
#: The kinds stored under their own digest (the others are sealed files).
OBJECT_KINDS = frozenset(tag for tag, cls in KINDS.items() if issubclass(cls, StoredObject))


def _tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def decode(data: bytes | bytearray | memoryview, *, key: str = "object") -> Encoded:
    """A typed record of any kind in ``KINDS``, chosen by its tag; CorruptObjectError for anything else."""
    cls = KINDS.get(_tag(canonical.decode(data, key=key)) or "")
    if cls is None:
        raise corrupt(key, "not a typed record of a known kind")
    return cls.from_bytes(data, key=key)


def kind_of(raw: bytes | bytearray | memoryview) -> str:
    """The ``type`` of an object's raw bytes, or "blob" for bytes that are not a typed object.

    A str tag outside ``KINDS`` is returned as it is (an object of a kind this cas does not know).
    """
    try:
        value = canonical.decode(raw)
    except CorruptObjectError:
        return "blob"
    return _tag(value) or "blob"


def kind_of_stored(data: bytes | bytearray | memoryview) -> str:
    """``kind_of`` for a stored object (header + payload); "corrupt" if it does not decode."""
    try:
        return kind_of(codec.decode(data))
    except CorruptObjectError:
        return "corrupt"

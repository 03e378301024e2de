"""The typed objects cas stores, each with its canonical encoding.

Every object is a canonical msgpack map with ``type`` (the tag below) and ``v``
(its schema version). Decoding validates every field before use and raises
CorruptObjectError for anything else.

=========  ======================================================
type       meaning
=========  ======================================================
tree       the files a materializer wrote: path -> size + chunks
artifact   a tree plus the Python type and materializer that wrote it
packindex  where each chunk sits inside one pack file
ref        a name's version or tag, pointing at an artifact
=========  ======================================================
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cas import canonical, codec
from cas.errors import CorruptObjectError, InvalidNameError, NonPortablePathError
from cas.hashing import DIGEST_SIZE

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


def _fail(key: str, why: str) -> CorruptObjectError:
    return CorruptObjectError(f"{key}: {why}", key=key)


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], key: str) -> Any:
    if name not in obj:
        raise _fail(key, f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(key, f"field {name!r} has the wrong type")
    return value


def _digest_field(value: Any, key: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise _fail(key, "a hash field is not 32 bytes")
    return value


def _header(value: Any, tag: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "object is not a map")
    if value.get("type") != tag:
        raise _fail(key, f"expected a {tag} object, found {value.get('type')!r}")
    if value.get("v") != 1:
        raise _fail(key, f"unknown {tag} schema version {value.get('v')!r}")
    return value


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a tree: its bytes inline, or its hash and ordered (chunk hash, size) list."""

    path: str
    size: int
    chunks: tuple[tuple[bytes, int], ...] = ()
    data: bytes | None = None
    hash: bytes | None = None  # BLAKE3 of the whole file, for chunked files

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"path": self.path, "size": self.size}
        if self.data is not None:
            value["data"] = self.data
        else:
            value["hash"] = self.hash
            value["chunks"] = [[h, n] for h, n in self.chunks]
        return value

    @classmethod
    def from_value(cls, value: Any, key: str) -> FileEntry:
        if not isinstance(value, dict):
            raise _fail(key, "tree entry is not a map")
        path = _field(value, "path", str, key)
        try:
            check_tree_path(path)
        except InvalidNameError as exc:
            raise _fail(key, str(exc)) from None
        size = _field(value, "size", int, key)
        if size < 0:
            raise _fail(key, "negative file size")
        if set(value) == {"path", "size", "data"}:
            data = _field(value, "data", bytes, key)
            if len(data) != size or size > INLINE_MAX:
                raise _fail(key, f"inline data of {path!r} has the wrong size")
            return cls(path, size, data=data)
        if set(value) != {"path", "size", "hash", "chunks"}:
            raise _fail(key, f"tree entry {path!r} has unexpected fields")
        chunks = _chunk_list(_field(value, "chunks", list, key), size, key)
        return cls(path, size, chunks, hash=_digest_field(value["hash"], key))


def _chunk_list(items: list[Any], size: int, key: str) -> tuple[tuple[bytes, int], ...]:
    chunks = []
    total = 0
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise _fail(key, "chunk reference is not a [hash, size] pair")
        digest = _digest_field(item[0], key)
        length = item[1]
        if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
            raise _fail(key, "chunk size is not a positive int")
        chunks.append((digest, length))
        total += length
    if total != size:
        raise _fail(key, f"chunks add up to {total} bytes, not {size}")
    if size and not chunks:
        raise _fail(key, "a non-empty file has no chunks")
    return tuple(chunks)


@dataclass(frozen=True, slots=True)
class ChunkMap:
    """How a file with this whole-content hash was cut: lets a re-put skip chunking."""

    hash: bytes
    size: int
    chunks: tuple[tuple[bytes, int], ...]

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "type": "chunkmap",
                "v": 1,
                "hash": self.hash,
                "size": self.size,
                "chunks": [[h, n] for h, n in self.chunks],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, key: str = "chunkmap") -> ChunkMap:
        value = _header(canonical.decode(data, key=key), "chunkmap", key)
        if set(value) != {"type", "v", "hash", "size", "chunks"}:
            raise _fail(key, "chunk map has unexpected fields")
        size = _field(value, "size", int, key)
        if size < 0:
            raise _fail(key, "negative size")
        return cls(_digest_field(value["hash"], key), size, _chunk_list(_field(value, "chunks", list, key), size, key))


@dataclass(frozen=True, slots=True)
class Tree:
    """The files of an artifact, sorted by path."""

    entries: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        paths = [e.path for e in self.entries]
        if paths != sorted(set(paths)):
            raise ValueError("tree entries must be unique and sorted by path")

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def to_bytes(self) -> bytes:
        return canonical.encode({"type": "tree", "v": 1, "entries": [e.to_value() for e in self.entries]})

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, key: str = "tree") -> Tree:
        value = _header(canonical.decode(data, key=key), "tree", key)
        if set(value) != {"type", "v", "entries"}:
            raise _fail(key, "tree has unexpected fields")
        entries = tuple(FileEntry.from_value(e, key) for e in _field(value, "entries", list, key))
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise _fail(key, "tree entries are not unique and sorted")
        _check_no_file_dir_clash(paths, key)
        return cls(entries)


def _check_no_file_dir_clash(paths: list[str], key: str) -> None:
    files = set(paths)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise _fail(key, f"tree has {'/'.join(parts[:i])!r} both as a file and a folder")


@dataclass(frozen=True, slots=True)
class Artifact:
    """A stored value: its files, and how to turn them back into a Python object."""

    tree: bytes
    python_type: str
    materializer: str
    materializer_version: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    user_metadata: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "type": "artifact",
                "v": 1,
                "tree": self.tree,
                "python_type": self.python_type,
                "materializer": self.materializer,
                "materializer_version": self.materializer_version,
                "size": self.size,
                "metadata": self.metadata,
                "user_metadata": self.user_metadata,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, key: str = "artifact") -> Artifact:
        value = _header(canonical.decode(data, key=key), "artifact", key)
        expected = {
            "type",
            "v",
            "tree",
            "python_type",
            "materializer",
            "materializer_version",
            "size",
            "metadata",
            "user_metadata",
        }
        if set(value) != expected:
            raise _fail(key, "artifact has missing or unexpected fields")
        size = _field(value, "size", int, key)
        if size < 0:
            raise _fail(key, "negative artifact size")
        return cls(
            tree=_digest_field(value["tree"], key),
            python_type=_field(value, "python_type", str, key),
            materializer=_field(value, "materializer", str, key),
            materializer_version=_field(value, "materializer_version", str, key),
            size=size,
            metadata=_field(value, "metadata", dict, key),
            user_metadata=_field(value, "user_metadata", dict, key),
        )


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one chunk sits in a pack: ``stored`` bytes (header included) at ``offset``."""

    digest: bytes
    offset: int
    stored: int
    raw_size: int
    codec: int


@dataclass(frozen=True, slots=True)
class PackIndex:
    """The table of contents of one pack file; its hash is the pack's id."""

    entries: tuple[PackEntry, ...]

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "type": "packindex",
                "v": 1,
                "entries": [[e.digest, e.offset, e.stored, e.raw_size, e.codec] for e in self.entries],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, key: str = "packindex") -> PackIndex:
        value = _header(canonical.decode(data, key=key), "packindex", key)
        if set(value) != {"type", "v", "entries"}:
            raise _fail(key, "pack index has unexpected fields")
        entries = []
        end = 0
        for item in _field(value, "entries", list, key):
            if not isinstance(item, list) or len(item) != 5:
                raise _fail(key, "pack entry is not a 5-element array")
            digest = _digest_field(item[0], key)
            offset, stored, raw_size, codec = item[1:]
            if not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (offset, stored, raw_size, codec)
            ):
                raise _fail(key, "pack entry fields must be non-negative ints")
            if offset < end or codec not in (0, 1) or stored < 16:
                raise _fail(key, "pack entries overlap, are out of order or invalid")
            end = offset + stored
            entries.append(PackEntry(digest, offset, stored, raw_size, codec))
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class RefRecord:
    """What a version or tag file holds: the artifact it names, and when it was made."""

    target: bytes
    created: float
    number: int | None = None
    label: str | None = None

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "type": "ref",
                "v": 1,
                "target": self.target,
                "created": float(self.created),
                "number": self.number,
                "label": self.label,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, key: str = "ref") -> RefRecord:
        value = _header(canonical.decode(data, key=key), "ref", key)
        if set(value) != {"type", "v", "target", "created", "number", "label"}:
            raise _fail(key, "ref has missing or unexpected fields")
        number = value["number"]
        label = value["label"]
        if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < 1):
            raise _fail(key, "ref number is not a positive int")
        if label is not None and not isinstance(label, str):
            raise _fail(key, "ref label is not a str")
        return cls(
            target=_digest_field(value["target"], key),
            created=_field(value, "created", float, key),
            number=number,
            label=label,
        )


def kind_of(raw: bytes | bytearray | memoryview) -> str:
    """The ``type`` of an object's raw bytes, or "blob" for bytes that are not a typed object."""
    try:
        value = canonical.decode(raw)
    except CorruptObjectError:
        return "blob"
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else "blob"


def kind_of_stored(data: bytes | bytearray | memoryview) -> str:
    """``kind_of`` for a stored object (header + payload); "corrupt" if it does not decode."""
    try:
        return kind_of(codec.decode(data))
    except CorruptObjectError:
        return "corrupt"

"""Materializers for plain Python values, bytes, text and files on disk."""

from __future__ import annotations

import os
import pathlib
import stat
from typing import Any

from cas.errors import (
    CorruptObjectError,
    IncompatibleArtifactError,
    PathRequiredError,
    SourceNotFoundError,
    UnsupportedTypeError,
)
from cas.objects import check_portable_tree
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer, type_name_of
from materializers.registry import registry
from materializers.visuals import Visualization


class BytesMaterializer(Materializer):
    """bytes, bytearray and memoryview, as one file of the same bytes."""

    name = "cas.bytes"
    version = "1"
    types = (bytes, bytearray, memoryview)
    subclasses = False

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        view = memoryview(obj)
        writer.write_bytes("data", view if view.contiguous else view.tobytes())

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        data = reader.read_bytes("data")
        if type_ is bytearray:
            return bytearray(data)
        if type_ is memoryview:
            return memoryview(data)
        return data

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"length": memoryview(obj).nbytes}

    def visualize(self, obj: Any) -> list[Visualization]:
        data = bytes(memoryview(obj).cast("B")[: visuals.HEAD_BYTES * 2])
        size = memoryview(obj).nbytes
        return [visuals.summary([("size", visuals.nice_size(size))]), visuals.text_head(data)]


class StrMaterializer(Materializer):
    """str, as UTF-8 (lone surrogates kept, so every str round-trips)."""

    name = "cas.str"
    version = "1"
    types = (str,)
    subclasses = False

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes("data.txt", obj.encode("utf-8", "surrogatepass"))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        return reader.read_bytes("data.txt").decode("utf-8", "surrogatepass")

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"length": len(obj)}

    def visualize(self, obj: Any) -> list[Visualization]:
        head = obj[: visuals.HEAD_BYTES].encode("utf-8", "replace")
        lines = obj.count("\n") + 1
        return [visuals.summary([("characters", f"{len(obj):,}"), ("lines", f"{lines:,}")]), visuals.text_head(head)]


class ValueMaterializer(Materializer):
    """None, bool, int, float, complex and nested list/tuple/dict/set/frozenset: one file per value.

    A container that also holds other objects (arrays, frames, ...) keeps its
    structure in ``composite.msgpack`` and each such leaf, written by its own
    materializer, under ``leaves/<n>/``.
    """

    name = "cas.value"
    version = "1"
    types = (type(None), bool, int, float, complex, list, tuple, dict, set, frozenset, *valuecodec.EVERYDAY_TYPES)
    # Subclasses reach save, which stores Enum members and namedtuples by class
    # and refuses (UnsupportedTypeError) any other, rather than store its base type.
    subclasses = True

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        try:
            writer.write_bytes("value.msgpack", valuecodec.encode(obj))
            return
        except UnsupportedTypeError:
            if type(obj) not in valuecodec.CONTAINERS and not valuecodec.is_namedtuple(obj):
                raise  # exact types only: a dict subclass must not come back here as its own leaf
        leaves: list[dict[str, Any]] = []

        def leaf(value: Any) -> int:
            mat = registry.for_object(value)
            number = len(leaves)
            mat.save(value, _PrefixedWriter(writer, f"leaves/{number}/"))
            leaves.append(
                {"materializer": mat.name, "version": mat.version, "type": type_name_of(type(value)),
                 "metadata": mat.metadata(value)}
            )  # fmt: skip
            return number

        structure = valuecodec.encode(obj, leaf)
        writer.write_bytes("composite.msgpack", valuecodec.encode({"structure": structure, "leaves": leaves}))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        if "value.msgpack" in reader.paths():
            return valuecodec.decode(reader.read_bytes("value.msgpack"))
        info = valuecodec.decode(reader.read_bytes("composite.msgpack"))
        if not isinstance(info, dict) or not isinstance(info.get("leaves"), list):
            raise CorruptObjectError("composite value is malformed")
        leaves = info["leaves"]

        def load_leaf(number: int) -> Any:
            spec = leaves[number]
            mat = registry.by_name(spec["materializer"])
            if not mat.can_load(spec["version"]) or mat.executes_code:
                raise IncompatibleArtifactError(
                    f"leaf {number} was written by {spec['materializer']} {spec['version']}"
                )
            sub = _PrefixedReader(reader, f"leaves/{number}/", spec["metadata"])
            return mat.load_checked(sub, mat.resolve_type(spec["type"], spec["metadata"]))

        return valuecodec.decode(info["structure"], load_leaf)

    def metadata(self, obj: Any) -> dict[str, Any]:
        if type(obj) in (*valuecodec.CONTAINERS, set, frozenset) or valuecodec.is_namedtuple(obj):
            return {"length": len(obj)}
        if obj is None or type(obj) in (bool, float) or (type(obj) is int and -(2**63) <= obj < 2**63):
            return {"value": obj}
        return {}

    def visualize(self, obj: Any) -> list[Visualization]:
        return [visuals.readable_tree(obj)]


class _PrefixedWriter:
    """A writer that puts a leaf's files below a folder of the artifact."""

    def __init__(self, inner: ArtifactWriter, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    def write_bytes(self, path: str, data: Any) -> None:
        self._inner.write_bytes(self._prefix + path, data)

    def write_file(self, path: str, source: Any) -> None:
        self._inner.write_file(self._prefix + path, source)


class _PrefixedReader:
    """A reader of the files below a folder of the artifact."""

    def __init__(self, inner: ArtifactReader, prefix: str, metadata: dict[str, Any]) -> None:
        self._inner = inner
        self._prefix = prefix
        self._metadata = metadata

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    def paths(self) -> list[str]:
        return [p[len(self._prefix) :] for p in self._inner.paths() if p.startswith(self._prefix)]

    def size(self, path: str) -> int:
        return self._inner.size(self._prefix + path)

    def read_bytes(self, path: str) -> bytes:
        return self._inner.read_bytes(self._prefix + path)

    def read_into(self, path: str, dest: memoryview) -> None:
        self._inner.read_into(self._prefix + path, dest)


class PathMaterializer(Materializer):
    """A file or a whole directory tree on disk; restored with ``export(ref, path)``.

    Symlinks to files are stored as the files they point to; symlinked
    folders are not followed; empty folders are not kept. Metadata
    ``executable`` (only when there are any) lists the paths whose owner
    execute bit was set, so a restore gives them their bit back; artifacts
    without it restore every file without one.
    """

    name = "cas.path"
    version = "1"
    types = (pathlib.Path, pathlib.PurePath)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        root = pathlib.Path(obj)
        if root.is_file():
            writer.write_file(root.name, root)
            return
        if not root.is_dir():
            raise SourceNotFoundError(f"no such file or directory: {root}")
        rels = _walk_files(root)
        check_portable_tree(rels)  # before reading a byte: the user learns at once
        for rel in rels:
            writer.write_file(rel, root / rel)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        raise PathRequiredError("this artifact is a file or directory: write its files with export(ref, path)")

    def metadata(self, obj: Any) -> dict[str, Any]:
        root = pathlib.Path(obj)
        if root.is_file():
            meta: dict[str, Any] = {"kind": "file", "name": root.name}
            executable = [root.name] if _is_executable(root) else []
        else:
            meta = {"kind": "directory", "name": root.name}
            executable = [rel for rel in _walk_files(root) if _is_executable(root / rel)]
        if executable:  # absent when empty: the artifact of a plain folder is what it always was
            meta["executable"] = executable
        return meta


def executable_paths(metadata: dict[str, Any], paths: list[str]) -> frozenset[str]:
    """The paths of ``paths`` that a cas.path artifact's metadata marks executable (none without the key).

    A listed path the tree lacks is ignored (a file removed during the put).
    Raises CorruptObjectError unless ``executable`` is a list of str.
    """
    value = metadata.get("executable", [])
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise CorruptObjectError("cas.path metadata 'executable' is not a list of paths")
    return frozenset(value).intersection(paths)


def _is_executable(path: pathlib.Path) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IXUSR)
    except OSError:  # removed since it was stored
        return False


def _walk_files(root: pathlib.Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            full = os.path.join(folder, name)
            if os.path.isfile(full):  # skips sockets, fifos and broken links
                rel = name if rel_folder == "." else f"{rel_folder}/{name}"
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)

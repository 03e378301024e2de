"""Materializers for plain Python values, bytes, text and files on disk."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from cas.errors import PathRequiredError, SourceNotFoundError
from materializers import valuecodec
from materializers.base import ArtifactReader, ArtifactWriter, Materializer


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


class ValueMaterializer(Materializer):
    """None, bool, int, float, complex and nested list/tuple/dict/set/frozenset: one file per value."""

    name = "cas.value"
    version = "1"
    types = (type(None), bool, int, float, complex, list, tuple, dict, set, frozenset)
    subclasses = False  # an IntEnum or a namedtuple would come back as its base type

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes("value.msgpack", valuecodec.encode(obj))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        return valuecodec.decode(reader.read_bytes("value.msgpack"))

    def metadata(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, (list, tuple, dict, set, frozenset)):
            return {"length": len(obj)}
        if obj is None or isinstance(obj, (bool, float)) or (isinstance(obj, int) and -(2**63) <= obj < 2**63):
            return {"value": obj}
        return {}


class PathMaterializer(Materializer):
    """A file or a whole directory tree on disk; restored with ``get(ref, path=...)``.

    Symlinks to files are stored as the files they point to; symlinked
    folders are not followed; empty folders are not kept.
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
        for rel in _walk_files(root):
            writer.write_file(rel, root / rel)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        raise PathRequiredError("this artifact is a file or directory: restore it with get(ref, path=...)")

    def metadata(self, obj: Any) -> dict[str, Any]:
        root = pathlib.Path(obj)
        if root.is_file():
            return {"kind": "file", "name": root.name}
        return {"kind": "directory", "name": root.name}


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

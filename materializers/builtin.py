"""Materializers for bytes, text and files on disk."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from cas.errors import PathRequiredError, SourceNotFoundError
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.registry import registry


@registry.register
class BytesMaterializer(Materializer):
    """bytes, bytearray and memoryview, as one file of the same bytes."""

    name = "cas.bytes"
    version = "1"
    types = (bytes, bytearray, memoryview)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        view = memoryview(obj)
        writer.write_bytes("data", view if view.contiguous else view.tobytes())

    def load(self, reader: ArtifactReader, type_name: str) -> Any:
        data = reader.read_bytes("data")
        t = self.type_for(type_name)
        if t is bytearray:
            return bytearray(data)
        if t is memoryview:
            return memoryview(data)
        return data

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"length": memoryview(obj).nbytes}


@registry.register
class StrMaterializer(Materializer):
    """str, as UTF-8 (lone surrogates kept, so every str round-trips)."""

    name = "cas.str"
    version = "1"
    types = (str,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes("data.txt", obj.encode("utf-8", "surrogatepass"))

    def load(self, reader: ArtifactReader, type_name: str) -> Any:
        return reader.read_bytes("data.txt").decode("utf-8", "surrogatepass")

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"length": len(obj)}


@registry.register
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

    def load(self, reader: ArtifactReader, type_name: str) -> Any:
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

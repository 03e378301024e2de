"""The materializer mechanism: turning Python objects into files and back.

A materializer declares the types it handles, writes an object as one or more
files through an :class:`ArtifactWriter`, and reads it back through an
:class:`ArtifactReader`. Its ``version`` is recorded in every artifact it
writes, so a changed format is never silently misread.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Protocol

Buffer = bytes | bytearray | memoryview


class ArtifactWriter(Protocol):
    """Where a materializer writes the files of one artifact."""

    def write_bytes(self, path: str, data: Buffer) -> None:
        """Add a file holding ``data`` (not copied: it must stay unchanged during the put)."""

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        """Add a file copied from ``source`` on disk, streamed in bounded memory."""


class ArtifactReader(Protocol):
    """How a materializer reads the files of one artifact back."""

    def paths(self) -> list[str]:
        """The artifact's file paths, sorted."""

    def size(self, path: str) -> int:
        """The size of one file."""

    def read_bytes(self, path: str) -> bytes:
        """The whole file, verified."""

    def read_into(self, path: str, dest: memoryview) -> None:
        """Fill ``dest`` (exactly the file's size) with the file's verified bytes."""


class Materializer:
    """Base class: subclass, set ``name``, ``version`` and ``types``, and register."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    types: ClassVar[tuple[type, ...]] = ()

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        raise NotImplementedError

    def load(self, reader: ArtifactReader, type_name: str) -> Any:
        raise NotImplementedError

    def metadata(self, obj: Any) -> dict[str, Any]:
        """Facts shown by ``info`` without loading the data (str keys, plain values)."""
        return {}

    def can_load(self, version: str) -> bool:
        """Whether artifacts written by ``version`` of this materializer can be read."""
        return version == self.version

    def type_for(self, type_name: str) -> type:
        """Map a recorded type name to one of ``types`` (never imports anything)."""
        for t in self.types:
            if type_name_of(t) == type_name:
                return t
        return self.types[0]


def type_name_of(t: type) -> str:
    """The name recorded for a type: ``module.qualname``."""
    return f"{t.__module__}.{t.__qualname__}"

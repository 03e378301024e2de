"""The materializer mechanism: turning Python objects into files and back.

A materializer declares the types it handles, writes an object as one or more
files through an :class:`ArtifactWriter`, and reads it back through an
:class:`ArtifactReader`. Its ``version`` is recorded in every artifact it
writes, so a changed format is never silently misread.

Subclasses that set ``name`` and ``types`` register themselves (pass
``register=False`` in the class statement to opt out); ``cas.register_materializer``
does the same as a decorator.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Protocol

from cas.errors import CasError, CorruptObjectError
from materializers.visuals import Visualization

Buffer = bytes | bytearray | memoryview


class ArtifactWriter(Protocol):
    """Where a materializer writes the files of one artifact."""

    def write_bytes(self, path: str, data: Buffer) -> None:
        """Add a file holding ``data`` (not copied: it must stay unchanged during the put)."""

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        """Add a file copied from ``source`` on disk, streamed in bounded memory."""


class ArtifactReader(Protocol):
    """How a materializer reads the files of one artifact back."""

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata the materializer recorded at save time."""

    def paths(self) -> list[str]:
        """The artifact's file paths, sorted."""

    def size(self, path: str) -> int:
        """The size of one file."""

    def read_bytes(self, path: str) -> bytes:
        """The whole file, verified."""

    def read_into(self, path: str, dest: memoryview) -> None:
        """Fill ``dest`` (exactly the file's size) with the file's verified bytes."""


class Materializer:
    """Base class: subclass, set ``name``, ``version`` and ``types``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    types: ClassVar[tuple[type, ...]] = ()
    #: Whether subclasses of ``types`` are handled too (else only the exact types).
    subclasses: ClassVar[bool] = True
    #: Loading runs code from the stored bytes (pickle): needs explicit trust.
    executes_code: ClassVar[bool] = False
    #: Distributions whose versions a run records when this materializer wrote its outputs.
    packages: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and cls.name and cls.types:
            from materializers.registry import registry

            registry.register(cls)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        raise NotImplementedError

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        raise NotImplementedError

    def load_checked(self, reader: ArtifactReader, type_: type) -> Any:
        """``load``, with any error other than cas's own turned into CorruptObjectError.

        The files were verified against their hashes, so a load that fails on
        them means they are not what this materializer writes: damaged on
        purpose, or written by something else. Never a traceback from deep
        inside a library.
        """
        try:
            return self.load(reader, type_)
        except CasError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, LookupError,
                RecursionError, MemoryError, EOFError, OSError, AssertionError) as exc:  # fmt: skip
            raise CorruptObjectError(
                f"stored files do not load as {self.name} {self.version}: {type(exc).__name__}: {exc}"
            ) from exc

    def visualize(self, obj: Any) -> list[Visualization]:
        """Views of the value for people (HTML, SVG, PNG, Markdown, CSV, text); none by default.

        Called only when a visualization is asked for (the UI, ``put(...,
        visualize=True)``, ``Store.visualizations``), never by a plain put.
        """
        return []

    def metadata(self, obj: Any) -> dict[str, Any]:
        """Facts shown by ``info`` without loading the data (str keys, plain values)."""
        return {}

    def can_load(self, version: str) -> bool:
        """Whether artifacts written by ``version`` of this materializer can be read."""
        return version == self.version

    def check_environment(self, metadata: dict[str, Any], *, override: bool = False) -> None:
        """Refuse (IncompatibleArtifactError) to load what this interpreter would misread."""

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        """Map a recorded type name to one of ``types``; never imports anything."""
        for t in self.types:
            if type_name_of(t) == type_name:
                return t
        for t in self.types:
            for sub in _all_subclasses(t):
                if type_name_of(sub) == type_name:
                    return sub
        return self.types[0] if self.types else object


def _all_subclasses(t: type) -> list[type]:
    found = []
    stack: list[type] = list(t.__subclasses__())
    while stack:
        sub = stack.pop()
        found.append(sub)
        stack.extend(sub.__subclasses__())
    return found


def type_name_of(t: type) -> str:
    """The name recorded for a type: ``module.qualname``."""
    return f"{t.__module__}.{t.__qualname__}"

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

import functools
import os
import re
from importlib import metadata as importlib_metadata
from typing import Any, ClassVar, Protocol

from cas.errors import (
    CasError,
    CorruptObjectError,
    IncompatibleArtifactError,
    InvalidMetadataError,
    LoadError,
    UnsupportedTypeError,
)
from materializers.visuals import Visualization

Buffer = bytes | bytearray | memoryview

#: The key of an artifact's metadata under which put records who wrote it:
#: ``{"module": str, "packages": {distribution: version}}``, either part absent
#: when empty (a built-in materializer records nothing: its formats do not depend on library versions).
WRITER_KEY = "cas.writer"
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_DISTRIBUTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,99}")  # names and versions, safe in a message


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
        """``load``, with any error other than cas's own turned into a typed one.

        The files were verified against their hashes, so a load that fails on
        them is either an environment that cannot read them (LoadError: a
        missing module, or library versions other than the recorded ones) or
        bytes that are not what this materializer writes (CorruptObjectError:
        the same versions that wrote them cannot read them, or nothing was
        recorded). Never a traceback from deep inside a library.
        """
        guarded = _GuardedReader(reader)
        try:
            return self.load(guarded, type_)
        except LoadError:
            raise
        except UnsupportedTypeError as exc:  # the registry lacks a materializer the value needs (a composite's leaf)
            raise LoadError(
                f"{self.name} {self.version} can not load it: {exc}; import the module that registers that "
                "materializer (or install its library) and load again",
                materializer=self.name, materializer_version=self.version,
            ) from exc  # fmt: skip
        except IncompatibleArtifactError as exc:  # a class or time zone this process lacks
            raise self.environment_error(reader.metadata, exc) from exc
        except CasError as exc:
            if exc in guarded.failures or type(exc) is not CorruptObjectError:
                raise  # storage damage, or a refusal that already says what it is (a size bomb, ...)
            raise self.load_failure(reader.metadata, exc) from exc  # its own words, plus the versions
        except ImportError as exc:
            raise self.load_failure(reader.metadata, exc, missing=exc.name or str(exc)) from exc
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, LookupError,
                RecursionError, MemoryError, EOFError, OSError, AssertionError) as exc:  # fmt: skip
            raise self.load_failure(reader.metadata, exc) from exc

    def environment_error(self, metadata: dict[str, Any], exc: IncompatibleArtifactError) -> LoadError:
        """``exc`` (a class, time zone... this process lacks) as a LoadError with the recorded and installed versions."""
        recorded = self.recorded_versions(metadata)
        installed = installed_versions(tuple(sorted({*self.packages, *recorded})))
        facts = f"; {versions_text(recorded, installed)}" if recorded or installed else ""
        return LoadError(
            f"{exc}{facts}", materializer=self.name, materializer_version=self.version, recorded=recorded,
            installed=installed, module=read_writer_record(metadata)[0],
        )  # fmt: skip

    def recorded_versions(self, metadata: dict[str, Any]) -> dict[str, str]:
        """The library versions an artifact records it was written with (empty if it records none)."""
        return read_writer_record(metadata)[1]

    def load_failure(
        self, metadata: dict[str, Any], exc: BaseException, *, missing: str | None = None
    ) -> LoadError | CorruptObjectError:
        """The error for verified files that did not load: LoadError or CorruptObjectError, by the rule above.

        ``missing`` names a module the load needed and could not import: always LoadError.
        """
        module, _ = read_writer_record(metadata)
        recorded = self.recorded_versions(metadata)
        installed = installed_versions(tuple(sorted({*self.packages, *recorded})))
        here = type(self).__module__
        changed = [p for p, v in recorded.items() if installed.get(p) != v]
        reason = f"{type(exc).__name__}: {_short(str(exc))}"
        if missing is None and not changed and (module is None or module == here):
            if recorded:
                facts = (f"; {versions_text(recorded, installed)}: the versions that wrote them can not read them "
                         f"back, so they are not what {self.name} writes (damaged, or written by something else)")  # fmt: skip
            elif installed:
                facts = f"; the artifact records no library versions (this process has {_versions(installed)})"
            else:
                facts = ""
            if isinstance(exc, CorruptObjectError):  # the materializer's own words
                return CorruptObjectError(f"{exc}{facts}", key=exc.key)
            return CorruptObjectError(f"stored files do not load as {self.name} {self.version} ({reason}){facts}")
        if missing is not None:
            what = f"the module {missing!r} is not importable in this process"
            todo = f"install or import {missing!r} (the code that wrote it) and load again"
        elif changed:
            what = f"{', '.join(changed)} changed since it was written"
            todo = "load it where " + ", ".join(f"{p}=={recorded[p]}" for p in changed) + " is installed"
        else:
            what = f"{self.name} is registered here by {here!r}, not by {module!r} that wrote it"
            todo = f"import {module!r} before loading, so that its {self.name} is the one registered"
        return LoadError(
            f"{self.name} {self.version} can not load it ({reason}): {what}; {versions_text(recorded, installed)}; "
            f"{todo}",
            materializer=self.name,
            materializer_version=self.version,
            recorded=recorded,
            installed=installed,
            module=missing or module,
        )

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


class _GuardedReader:
    """A reader that remembers the errors its own reads raised (damage), so they are never taken for load failures."""

    def __init__(self, inner: ArtifactReader) -> None:
        self._inner = inner
        self.failures: list[BaseException] = []

    @property
    def metadata(self) -> dict[str, Any]:  # the writer record is for load errors, not for the materializer
        found = self._inner.metadata
        return {k: v for k, v in found.items() if k != WRITER_KEY} if WRITER_KEY in found else found

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._inner, method)(*args)
        except BaseException as exc:
            self.failures.append(exc)
            raise

    def paths(self) -> list[str]:
        return self._call("paths")  # type: ignore[no-any-return]

    def size(self, path: str) -> int:
        return self._call("size", path)  # type: ignore[no-any-return]

    def read_bytes(self, path: str) -> bytes:
        return self._call("read_bytes", path)  # type: ignore[no-any-return]

    def read_into(self, path: str, dest: memoryview) -> None:
        self._call("read_into", path, dest)

    def __getattr__(self, name: str) -> Any:  # what a materializer's own reader type adds (a prefix, ...)
        return getattr(self._inner, name)


@functools.lru_cache(maxsize=256)  # bounded: a store's records may name any distribution
def _installed(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except (importlib_metadata.PackageNotFoundError, ValueError):
        return None


def installed_versions(distributions: tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution (None: not installed); looked up once per process."""
    return {d: _installed(d) for d in distributions}


def writer_record(mat: Materializer) -> dict[str, Any]:
    """What put records about who wrote an artifact: the module of a custom materializer, its libraries' versions."""
    module, versions = _record_of(type(mat).__module__, mat.packages)
    record: dict[str, Any] = {}
    if module is not None:
        record["module"] = module
    if versions:
        record["packages"] = dict(versions)
    return record


@functools.lru_cache(maxsize=256)  # once per materializer: a put pays a dict, not a version lookup
def _record_of(module: str, packages: tuple[str, ...]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    custom = module if module != "materializers" and not module.startswith("materializers.") else None
    if custom is None:
        # cas's own formats (npy, Arrow IPC, msgpack) do not depend on the library's version:
        # recording it would give the same data another hash on every upgrade, and split a
        # team's cache between machines. Only a custom materializer's libraries are recorded.
        return None, ()
    versions = installed_versions(tuple(sorted(set(packages))))
    return custom, tuple((d, v) for d, v in versions.items() if v is not None)


def with_writer_record(mat: Materializer, metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` plus the writer record under WRITER_KEY (unchanged when there is nothing to record)."""
    if WRITER_KEY in metadata:
        raise InvalidMetadataError(f"{mat.name}'s metadata uses the reserved key {WRITER_KEY!r}")
    record = writer_record(mat)
    return {**metadata, WRITER_KEY: record} if record else metadata


def read_writer_record(metadata: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The recorded module (None if none) and library versions of an artifact's metadata.

    The record only explains a failed load, so a malformed one (another
    writer's) is read as no record rather than refusing an artifact that may
    load fine; its values are bounded before they reach a message.
    """
    record = metadata.get(WRITER_KEY) if isinstance(metadata, dict) else None
    if not isinstance(record, dict):
        return None, {}
    module = record.get("module")
    if not (isinstance(module, str) and len(module) <= 200 and _MODULE.fullmatch(module)):
        module = None
    packages = record.get("packages")
    versions: dict[str, str] = {}
    if isinstance(packages, dict) and len(packages) <= 32:
        for d, v in packages.items():
            if isinstance(d, str) and isinstance(v, str) and _DISTRIBUTION.fullmatch(d) and _DISTRIBUTION.fullmatch(v):
                versions[d] = v
    return module, versions


def versions_text(recorded: dict[str, str], installed: dict[str, str | None]) -> str:
    """``written with numpy 2.4.0; this process has numpy 2.3.1`` (the part of a message that says both)."""
    written = _versions(recorded) if recorded else "no recorded library versions"
    return f"written with {written}; this process has {_versions(installed)}"


def _versions(versions: dict[str, str] | dict[str, str | None]) -> str:
    if not versions:
        return "no libraries to compare"
    return ", ".join(f"{d} {v}" if v is not None else f"no {d}" for d, v in versions.items())


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

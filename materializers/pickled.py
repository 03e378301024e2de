"""cloudpickle, for what no other materializer handles: only by explicit consent.

Unpickling runs code chosen by whoever wrote the bytes, so ``put`` needs
``allow_pickle=True`` and ``get`` needs ``trust_pickle=True``. The artifact
records the Python, cloudpickle and library versions; loading under another
Python minor version is refused unless overridden, since pickles of code are
tied to the interpreter.
"""

from __future__ import annotations

import pickle
import sys
import types
from importlib import metadata as importlib_metadata
from typing import Any

import cloudpickle

from cas.errors import CorruptObjectError, IncompatibleArtifactError, LoadError, UnsupportedTypeError
from materializers.base import (
    WRITER_KEY,
    ArtifactReader,
    ArtifactWriter,
    Materializer,
    installed_versions,
    read_writer_record,
    versions_text,
)
from materializers.registry import registry


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _version_of(module: str) -> str | None:
    top = module.split(".")[0]
    try:
        return importlib_metadata.version(top)
    except importlib_metadata.PackageNotFoundError:
        return None


class PickleMaterializer(Materializer, register=False):
    """Any picklable object, with cloudpickle."""

    name = "cas.pickle"
    version = "1"
    packages = ("cloudpickle",)
    types = ()
    executes_code = True

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        data = cloudpickle.dumps(obj, protocol=5)
        try:
            # Loaded back now, in the process that made it (the caller's own object), so a pickle
            # that can never be loaded is refused at put rather than found a month later.
            pickle.loads(data)
        except Exception as exc:
            raise UnsupportedTypeError(
                f"{type(obj).__module__}.{type(obj).__qualname__} can be pickled but not unpickled "
                f"({type(exc).__name__}: {str(exc)[:300]}): it could never be loaded back; "
                "register a materializer for it, or store something that unpickles"
            ) from exc
        writer.write_bytes("object.pkl", data)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        data = reader.read_bytes("object.pkl")
        try:
            return pickle.loads(data)
        except pickle.UnpicklingError as exc:
            raise CorruptObjectError(f"stored pickle does not load: {exc}") from None
        except (ImportError, AttributeError) as exc:  # a module or class this process does not have
            raise self._missing(reader.metadata, exc) from exc

    def _missing(self, metadata: dict[str, Any], exc: ImportError | AttributeError) -> LoadError:
        module = exc.name if isinstance(exc, ImportError) else None
        if isinstance(exc, AttributeError) and isinstance(exc.obj, types.ModuleType):
            module = exc.obj.__name__  # the module is there, without the class the pickle names
        recorded = self.recorded_versions(metadata)
        tops = {module.partition(".")[0]} if module else set()
        installed = installed_versions(tuple(sorted({*self.packages, *recorded, *tops})))
        what = f"the module {module}" if module else "a module or class"
        return LoadError(
            f"the pickle needs {what}, which this process does not have ({type(exc).__name__}: "
            f"{str(exc)[:300]}); {versions_text(recorded, installed)}; install the versions it was "
            f"written with{f' (so that {module} is importable)' if module else ''} and load again",
            materializer=self.name, materializer_version=self.version, recorded=recorded, installed=installed,
            module=module,
        )  # fmt: skip

    def recorded_versions(self, metadata: dict[str, Any]) -> dict[str, str]:
        versions = dict(super().recorded_versions(metadata))
        library = metadata.get("library")
        if isinstance(library, dict):
            name, version = library.get("name"), library.get("version")
            found = read_writer_record({WRITER_KEY: {"packages": {name: version}}})[1] if isinstance(name, str) else {}
            versions.update(found)
        written = metadata.get("cloudpickle")
        if "cloudpickle" not in versions and isinstance(written, str):
            versions.update(read_writer_record({WRITER_KEY: {"packages": {"cloudpickle": written}}})[1])
        return versions

    def metadata(self, obj: Any) -> dict[str, Any]:
        module = type(obj).__module__
        facts: dict[str, Any] = {"python": _python(), "cloudpickle": cloudpickle.__version__}
        library = _version_of(module)
        if library is not None and module.split(".")[0] not in ("builtins", "__main__"):
            facts["library"] = {"name": module.split(".")[0], "version": library}
        return facts

    def check_environment(self, metadata: dict[str, Any], *, override: bool = False) -> None:
        written = metadata.get("python")
        if written != _python() and not override:
            raise IncompatibleArtifactError(
                f"this pickle was written by Python {written} and this is Python {_python()}: "
                "loading it may fail or misbehave (pass allow_python_mismatch=True to try anyway)"
            )

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        return object  # the pickle itself names its type


registry.register(PickleMaterializer)

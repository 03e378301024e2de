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
from importlib import metadata as importlib_metadata
from typing import Any

import cloudpickle

from cas.errors import CorruptObjectError, IncompatibleArtifactError
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
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
        writer.write_bytes("object.pkl", cloudpickle.dumps(obj, protocol=5))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        try:
            return cloudpickle.loads(reader.read_bytes("object.pkl"))
        except pickle.UnpicklingError as exc:
            raise CorruptObjectError(f"stored pickle does not load: {exc}") from None
        except ImportError as exc:  # the pickle names a module this process does not have
            raise IncompatibleArtifactError(f"the pickle needs {exc.name or exc}, which is not installed") from None

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

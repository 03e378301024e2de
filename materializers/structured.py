"""Dataclasses, with their fields through the plain-value encoding.

The class to rebuild is looked up by module and qualified name among the
modules already imported: cas never imports a module because stored data names
it. Import the module that defines the class before ``get``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Any

from cas.errors import CorruptObjectError, IncompatibleArtifactError, UnsupportedTypeError
from materializers import valuecodec
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.builtin import _PrefixedReader, _PrefixedWriter
from materializers.registry import registry


def class_facts(obj: Any) -> dict[str, Any]:
    t = type(obj)
    if "<locals>" in t.__qualname__:
        raise UnsupportedTypeError(f"{t.__qualname__} is defined inside a function: it can not be found again")
    return {"module": t.__module__, "qualname": t.__qualname__}


def find_class(metadata: dict[str, Any]) -> type:
    """The class named by ``module`` and ``qualname``, looked up only in what is already imported.

    Each name is looked up in a module's or class's own ``__dict__``, never with
    ``getattr``: a module's ``__getattr__`` (numpy's, for one) may import a
    submodule named by the stored data. Raises CorruptObjectError (names
    missing), IncompatibleArtifactError (not imported, or no such class).
    """
    module_name, qualname = metadata.get("module"), metadata.get("qualname")
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        raise CorruptObjectError("artifact metadata lacks the class's module and name")
    module = sys.modules.get(module_name)
    if not isinstance(module, types.ModuleType):
        raise IncompatibleArtifactError(
            f"import {module_name} before loading this artifact (cas never imports modules named by stored data)"
        )
    found: Any = module
    for part in qualname.split("."):
        if not isinstance(found, (types.ModuleType, type)):
            raise IncompatibleArtifactError(f"{module_name} has no class {qualname}")
        found = vars(found).get(part)
        if found is None:
            raise IncompatibleArtifactError(f"{module_name} has no class {qualname}")
    if not isinstance(found, type):
        raise IncompatibleArtifactError(f"{module_name}.{qualname} is not a class")
    return found


class DataclassMaterializer(Materializer, register=False):
    """A dataclass instance: its fields as plain values; the class must be importable.

    Loading rebuilds the instance the way pickle does, without ``__init__`` or
    ``__post_init__``: the stored values are the already-transformed ones, and
    an ``InitVar`` (never a field, so never stored) is not asked for again.
    Fields that hold other objects (arrays, frames, ...) are kept as a
    composite value under ``fields/``, each such leaf by its own materializer.
    """

    name = "cas.dataclass"
    version = "1"
    types = ()

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        try:
            data = valuecodec.encode(fields)
        except UnsupportedTypeError:
            registry.by_name("cas.value").save(fields, _PrefixedWriter(writer, "fields/"))
            return
        writer.write_bytes("fields.msgpack", data)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        if "fields.msgpack" in reader.paths():
            fields = valuecodec.decode(reader.read_bytes("fields.msgpack"))
        else:
            fields = registry.by_name("cas.value").load_checked(_PrefixedReader(reader, "fields/", {}), dict)
        if not isinstance(fields, dict):
            raise CorruptObjectError("dataclass fields are not a map")
        declared = {f.name: f for f in dataclasses.fields(type_)}
        unknown = [k for k in fields if k not in declared]
        if unknown:  # never set attributes the class does not declare (``__class__``, for one)
            raise IncompatibleArtifactError(f"stored fields {unknown[:5]!r} are not fields of {type_.__qualname__}")
        values = dict(fields)
        for name, field in declared.items():  # fields the class gained since: their defaults
            if name in values:
                continue
            if field.default is not dataclasses.MISSING:
                values[name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[name] = field.default_factory()
            else:
                raise IncompatibleArtifactError(f"{type_.__qualname__}.{name} is not stored and has no default")
        cls: Any = type_
        try:
            obj = cls.__new__(cls)  # as pickle does: no __init__, no __post_init__
        except TypeError as exc:
            raise IncompatibleArtifactError(
                f"{type_.__qualname__} can not be created without arguments: {exc}"
            ) from None
        for key, value in values.items():
            object.__setattr__(obj, key, value)  # frozen and slots classes too
        return obj

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {**class_facts(obj), "fields": [f.name for f in dataclasses.fields(obj)]}

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        cls = find_class(metadata)
        if not dataclasses.is_dataclass(cls):
            raise IncompatibleArtifactError(f"{type_name} is not a dataclass")
        return cls


registry.register(DataclassMaterializer)

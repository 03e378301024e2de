"""Finding the materializer for an object: exact type, then the MRO, then fallbacks.

Materializers of optional libraries (numpy, pandas, pyarrow, pydantic) are
known by the dotted names of the types they handle and imported only when an
object of such a type shows up, or an artifact names them: importing cas
never imports those libraries.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from typing import Any, TypeVar

from cas.errors import UnsupportedTypeError
from materializers.base import Materializer, type_name_of

M = TypeVar("M", bound=type[Materializer])

# (top-level package, class name) -> module that registers its materializer;
# libraries move their classes between submodules, so the package is enough.
_LAZY_TYPES = {
    ("numpy", "ndarray"): "materializers.numpy_array",
    ("numpy", "generic"): "materializers.numpy_array",
    ("numpy", "MaskedArray"): "materializers.numpy_array",
    ("pandas", "DataFrame"): "materializers.arrow",
    ("pandas", "Series"): "materializers.arrow",
    ("pyarrow", "Table"): "materializers.arrow",
    ("pydantic", "BaseModel"): "materializers.pydantic_model",
}
# materializer name -> (module, what to install when it is missing)
_LAZY_NAMES = {
    "cas.numpy": ("materializers.numpy_array", "numpy"),
    "cas.numpy.masked": ("materializers.numpy_array", "numpy"),
    "cas.pandas": ("materializers.arrow", "cas-store[pandas]"),
    "cas.arrow": ("materializers.arrow", "cas-store[pandas]"),
    "cas.pydantic": ("materializers.pydantic_model", "pydantic"),
    "cas.dataclass": ("materializers.structured", ""),
    "cas.pickle": ("materializers.pickled", ""),
}


class Registry:
    """Materializers by type and by name."""

    def __init__(self) -> None:
        self._by_type: dict[type, Materializer] = {}
        self._by_name: dict[str, Materializer] = {}
        self._lock = threading.Lock()

    def register(self, cls: M) -> M:
        """Register a materializer class (usable as a decorator); later registrations win."""
        if not cls.name:
            raise ValueError(f"{cls.__name__} must set a name")
        instance = cls()
        with self._lock:
            self._by_name[cls.name] = instance
            for t in cls.types:
                self._by_type[t] = instance
        return cls

    def for_object(self, obj: Any) -> Materializer:
        """The materializer for ``obj``'s type; UnsupportedTypeError if none."""
        t = type(obj)
        for base in t.__mro__:
            found = self._by_type.get(base)
            lazy = _LAZY_TYPES.get((base.__module__.partition(".")[0], base.__qualname__))
            if found is None and lazy is not None:
                # The library is loaded (obj is one of its objects): load its materializer.
                importlib.import_module(lazy)
                found = self._by_type.get(base)
            if found is not None and (base is t or found.subclasses):
                return found
        if dataclasses.is_dataclass(obj):
            return self.by_name("cas.dataclass")
        raise UnsupportedTypeError(
            f"no materializer for {type_name_of(t)}: register one (subclass cas.Materializer), "
            "or allow pickle (put(..., allow_pickle=True)) if you trust whoever will load it"
        )

    def by_name(self, name: str) -> Materializer:
        """The materializer registered as ``name``, importing an optional one on demand."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        if name in _LAZY_NAMES:
            module, install = _LAZY_NAMES[name]
            try:
                importlib.import_module(module)
            except ImportError as exc:
                hint = f": pip install '{install}'" if install else ""
                raise UnsupportedTypeError(f"the materializer {name!r} needs {exc.name}{hint}") from None
            found = self._by_name.get(name)
            if found is not None:
                return found
        raise UnsupportedTypeError(f"the materializer {name!r} is not available in this process")


registry = Registry()

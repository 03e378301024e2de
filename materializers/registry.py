"""Finding the materializer for a type (exact type, then the MRO) or by name."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from cas.errors import UnsupportedTypeError
from materializers.base import Materializer

M = TypeVar("M", bound=type[Materializer])


class Registry:
    """Materializers by type and by name."""

    def __init__(self) -> None:
        self._by_type: dict[type, Materializer] = {}
        self._by_name: dict[str, Materializer] = {}
        self._lock = threading.Lock()

    def register(self, cls: M) -> M:
        """Register a materializer class (usable as a decorator); later registrations win."""
        if not cls.name or not cls.types:
            raise ValueError(f"{cls.__name__} must set name and types")
        instance = cls()
        with self._lock:
            self._by_name[cls.name] = instance
            for t in cls.types:
                self._by_type[t] = instance
        return cls

    def for_object(self, obj: Any) -> Materializer:
        """The materializer for ``obj``'s type; UnsupportedTypeError if none."""
        t = type(obj)
        found = self._by_type.get(t)
        if found is not None:
            return found
        for base in t.__mro__[1:]:
            found = self._by_type.get(base)
            if found is not None:
                return found
        raise UnsupportedTypeError(
            f"no materializer for {t.__module__}.{t.__qualname__}: register one "
            "(subclass materializers.Materializer and call cas.register_materializer)"
        )

    def by_name(self, name: str) -> Materializer:
        found = self._by_name.get(name)
        if found is None:
            raise UnsupportedTypeError(f"the materializer {name!r} is not available in this process")
        return found


registry = Registry()

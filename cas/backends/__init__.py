"""Storage backends: where the bytes of a store live."""

from __future__ import annotations

import os
from typing import Any

from cas.backends.base import Backend, Sink
from cas.backends.fsspec_backend import FsspecBackend
from cas.backends.local import LocalBackend

__all__ = ["Backend", "FsspecBackend", "LocalBackend", "Sink", "backend_for"]


def backend_for(url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Backend:
    """The backend for a URL: a plain path or ``file://`` goes straight to disk."""
    text = os.fspath(url)
    if "://" not in text:
        return LocalBackend(text)
    if text.startswith("file://"):
        return LocalBackend(text[len("file://") :])
    return FsspecBackend(text, storage_options)

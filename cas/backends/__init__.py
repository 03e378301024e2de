"""Storage backends: where the bytes of a store live."""

from __future__ import annotations

import os
from typing import Any

from cas.backends.base import Backend, Sink, Timeouts
from cas.backends.fsspec_backend import FsspecBackend
from cas.backends.local import LocalBackend

__all__ = ["Backend", "FsspecBackend", "LocalBackend", "Sink", "Timeouts", "backend_for"]


def backend_for(
    url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, *, timeouts: Timeouts | None = None
) -> Backend:
    """The backend for a URL: a plain path or ``file://`` goes straight to disk.

    ``timeouts`` bound each call of a network backend (default: ``Timeouts.resolve()``,
    which reads ``CAS_TIMEOUT`` and ``CAS_DEADLINE``).
    """
    text = os.fspath(url)
    if "://" in text and not text.startswith("file://"):
        return FsspecBackend(text, storage_options, timeouts=timeouts)
    local = LocalBackend(text[len("file://") :] if text.startswith("file://") else text)
    local.timeouts = timeouts  # not used on disk; remotes opened from this store inherit them
    return local

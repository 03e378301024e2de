"""The store's configuration file (``config``, JSON): format version and settings fixed at init."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cas.backends.base import Backend
from cas.chunking import ChunkParams
from cas.codec import FORMAT_VERSION
from cas.errors import CorruptObjectError, StoreNotFoundError

CONFIG_KEY = "config"


@dataclass(frozen=True)
class StoreConfig:
    """Settings every writer of a store must share."""

    format: int = FORMAT_VERSION
    chunking: ChunkParams = field(default_factory=ChunkParams)
    compression_level: int = 1
    allow_pickle: bool = False
    #: gc keeps unreachable objects younger than this (seconds): see cas.gc.
    gc_grace: float = 3600.0

    def to_bytes(self) -> bytes:
        value = {
            "gc_grace": self.gc_grace,
            "allow_pickle": self.allow_pickle,
            "format": self.format,
            "chunking": self.chunking.to_config(),
            "compression_level": self.compression_level,
        }
        return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreConfig:
        try:
            value: dict[str, Any] = json.loads(data)
            fmt = int(value["format"])
            if fmt > FORMAT_VERSION:
                raise CorruptObjectError(
                    f"store format {fmt} is newer than this cas understands ({FORMAT_VERSION}): upgrade cas"
                )
            return cls(
                fmt,
                ChunkParams.from_config(value["chunking"]),
                int(value.get("compression_level", 1)),
                bool(value.get("allow_pickle", False)),
                float(value.get("gc_grace", 3600.0)),
            )
        except CorruptObjectError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(f"store config is invalid: {exc}", key=CONFIG_KEY) from None


def load_config(backend: Backend, *, create: bool) -> StoreConfig:
    """Read the store's config; create a default one when allowed and absent."""
    try:
        return StoreConfig.from_bytes(backend.read(CONFIG_KEY))
    except FileNotFoundError:
        if not create:
            raise StoreNotFoundError(f"no cas store at {backend.url}") from None
    config = StoreConfig()
    if not backend.create(CONFIG_KEY, config.to_bytes()):  # another process won the race
        return StoreConfig.from_bytes(backend.read(CONFIG_KEY))
    return config

"""The store's configuration file (``config``, JSON): format version and settings fixed at init.

Whoever can write a store can write its config, so every value is checked
on open, field by field, and a value out of range is refused with
:class:`InvalidConfigError` naming the field. The limits:

==================  =========================================================
``format``          an integer, 1 up to the newest format this cas reads (STORE_FORMAT)
``chunking``        FastCDC 2020; 256 B <= min <= avg <= max <= 16 MiB,
                    ``normalization`` 0..3, ``seed`` 0 <= seed < 2**64
``compression_level``  an integer within zstd's levels, -7..22
``allow_pickle``    a JSON boolean
``gc_grace``        seconds, finite, 0 <= grace <= 10 years
==================  =========================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cas import keys
from cas.backends.base import Backend
from cas.chunking import ChunkParams
from cas.codec import FORMAT_VERSION
from cas.errors import CorruptObjectError, InvalidConfigError, StoreNotFoundError, UnsupportedFormatError

CONFIG_KEY = keys.CONFIG_KEY
#: The newest store format this cas reads and writes. A new store starts at 1 (what older cas
#: reads); the first chunk-index consolidation raises it to 2 (chunk tables, FORMAT.md).
STORE_FORMAT = 2
#: The format whose stores may hold chunk tables (``midx/``) instead of some ``index/`` files.
TABLES_FORMAT = 2
#: A config is a few hundred bytes; anything much larger is not one.
MAX_CONFIG_SIZE = 64 << 10
#: zstd's levels this cas accepts (negative levels are zstd's fast modes).
COMPRESSION_LEVELS = range(-7, 23)
#: The longest gc grace period accepted: longer is as good as never collecting.
MAX_GC_GRACE = 10 * 365 * 86400.0
#: FastCDC's own bounds (pyfastcdc): min_size >= 256, max_size <= 16 MiB.
CHUNK_SIZES = (256, 16 << 20)


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

    def for_new_store(self) -> StoreConfig:
        """The settings a store made from this one takes: its chunking and compression, safe defaults else.

        What decides dedup travels (chunking, compression); policy does not:
        a clone never inherits ``allow_pickle`` or the gc grace period.
        """
        return StoreConfig(chunking=self.chunking, compression_level=self.compression_level)

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreConfig:
        """Parse and range-check a config; raises InvalidConfigError (a CorruptObjectError) naming the field."""
        if len(data) > MAX_CONFIG_SIZE:
            raise InvalidConfigError("config", f"store config is {len(data):,} bytes (at most {MAX_CONFIG_SIZE:,})")
        try:
            value: Any = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise CorruptObjectError(f"store config is not JSON: {exc}", key=CONFIG_KEY) from None
        if not isinstance(value, dict):
            raise InvalidConfigError("config", "store config is not a JSON object")
        fmt = _integer(value, "format", None)
        if fmt > STORE_FORMAT:
            raise UnsupportedFormatError(
                f"store format {fmt} is newer than this cas understands ({STORE_FORMAT}): upgrade cas"
            )
        if fmt < 1:
            raise InvalidConfigError("format", f"store config: format {fmt} does not exist")
        level = _integer(value, "compression_level", 1)
        if level not in COMPRESSION_LEVELS:
            raise InvalidConfigError(
                "compression_level",
                f"store config: compression_level {level} is outside zstd's "
                f"{COMPRESSION_LEVELS.start}..{COMPRESSION_LEVELS.stop - 1}",
            )
        allow_pickle = value.get("allow_pickle", False)
        if not isinstance(allow_pickle, bool):
            raise InvalidConfigError(
                "allow_pickle", f"store config: allow_pickle must be true or false, not {allow_pickle!r}"
            )
        grace = value.get("gc_grace", 3600.0)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= MAX_GC_GRACE:
            raise InvalidConfigError(
                "gc_grace", f"store config: gc_grace must be 0..{MAX_GC_GRACE:.0f} seconds, not {grace!r}"
            )  # NaN fails the range test too
        return cls(fmt, _chunking(value.get("chunking")), level, allow_pickle, float(grace))


def _integer(value: dict[str, Any], name: str, default: int | None) -> int:
    found = value.get(name, default)
    if found is None:
        raise InvalidConfigError(name, f"store config has no {name}")
    if isinstance(found, bool) or not isinstance(found, int):
        raise InvalidConfigError(name, f"store config: {name} must be an integer, not {found!r}")
    return found


def _chunking(value: Any) -> ChunkParams:
    if not isinstance(value, dict):
        raise InvalidConfigError("chunking", "store config: chunking must be an object")
    if value.get("algorithm") != "fastcdc2020":
        raise InvalidConfigError("chunking.algorithm", f"unknown chunking algorithm {value.get('algorithm')!r}")
    sizes = {k: _integer(value, k, None) for k in ("min_size", "avg_size", "max_size", "normalization", "seed")}
    low, high = CHUNK_SIZES
    if not low <= sizes["min_size"] <= sizes["avg_size"] <= sizes["max_size"] <= high:
        raise InvalidConfigError(
            "chunking", f"store config: chunking sizes must satisfy {low} <= min <= avg <= max <= {high}: {sizes}"
        )
    if not 0 <= sizes["normalization"] <= 3:
        raise InvalidConfigError("chunking.normalization", "store config: chunking normalization must be 0..3")
    if not 0 <= sizes["seed"] < 1 << 64:
        raise InvalidConfigError("chunking.seed", "store config: chunking seed must be 0 <= seed < 2**64")
    try:
        return ChunkParams.from_config(value)  # FastCDC checks its own, finer ranges
    except (ValueError, OverflowError, TypeError, KeyError) as exc:
        raise InvalidConfigError("chunking", f"store config: chunking is invalid: {exc}") from None


def load_config(backend: Backend, *, create: bool) -> StoreConfig:
    """Read the store's config; create a default one when allowed and absent.

    Raises StoreNotFoundError, InvalidConfigError (a value out of range) or
    CorruptObjectError (not a config at all).
    """
    try:
        return StoreConfig.from_bytes(backend.read(CONFIG_KEY))
    except FileNotFoundError:
        if not create:
            raise StoreNotFoundError(f"no cas store at {backend.url}") from None
    config = StoreConfig()
    if not backend.create(CONFIG_KEY, config.to_bytes()):  # another process won the race
        return StoreConfig.from_bytes(backend.read(CONFIG_KEY))
    return config


def raise_format(backend: Backend, to: int) -> StoreConfig:
    """Raise the store's ``format`` to ``to`` (no-op if it is there already); returns the config now stored.

    The config is rewritten whole and atomically, every other field kept as it was.
    A cas older than ``to`` then refuses to open the store (R19) instead of
    misreading it.
    """
    data = backend.read(CONFIG_KEY)
    current = StoreConfig.from_bytes(data)
    if current.format >= to:
        return current
    value = json.loads(data)
    value["format"] = to
    updated = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    stored = StoreConfig.from_bytes(updated)
    backend.write(CONFIG_KEY, updated)
    return stored

"""Runs: commit-like records of step executions, and the indexes that find them.

A run is a loose object (type ``run``) naming the step, its code identity,
parameters, input and output artifacts, parent runs and cache key. Beside the
objects, small index files make the questions cheap to answer; every one of
them can be rebuilt from the run objects (``RunIndex.rebuild``)::

    runlog/<YYYY-MM-DD>/<ended, µs, 20 digits>-<run hash>   every run, in time order
    cache/<2 hex>/<62 hex of cache key>                        the completed run to reuse
    produced/<artifact hash>/<run hash>                        completed runs that output it
    consumed/<artifact hash>/<run hash>                        runs that took it as input

Index files under ``produced/``, ``consumed/`` and ``runlog/`` are empty: the
key says everything. A ``cache/`` file holds a checksummed record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cas import canonical, codec
from cas.backends.base import Backend
from cas.errors import CorruptObjectError
from cas.hashing import short, to_hex
from cas.objects import _digest_field, _fail, _field, _header

STATUSES = ("completed", "failed", "cached")
#: Run times are POSIX seconds in [0, MAX_TIME): 1970 up to the year 3000. Anything else (NaN, infinities,
#: 1e300) is refused when a run is recorded and when one is read, so every page and log line can print it.
MAX_TIME = 32503680000.0  # 3000-01-01T00:00:00Z


def valid_time(t: object) -> bool:
    """Whether ``t`` can be a run's start or end time (a float or int, finite, 1970 <= t < 3000)."""
    return isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < MAX_TIME


@dataclass(frozen=True)
class Run:
    """One execution of a step (or a recorded cache hit)."""

    step: str
    code: bytes
    params: dict[str, Any]
    inputs: dict[str, bytes]
    outputs: dict[str, bytes]
    cache_key: bytes
    started: float
    ended: float
    status: str
    parents: tuple[bytes, ...] = ()
    cached_from: bytes | None = None
    returns: str = "single"  # how outputs map back to the return value: none, single, tuple, dict
    order: tuple[str, ...] = ()  # output names in return order (maps are stored sorted)
    environment: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] | None = None
    message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    hash: bytes = b""  # filled in once stored; not part of the encoding

    @property
    def id(self) -> str:
        return to_hex(self.hash)

    @property
    def short(self) -> str:
        return short(self.hash)

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "type": "run",
                "v": 1,
                "step": self.step,
                "code": self.code,
                "params": self.params,
                "inputs": self.inputs,
                "outputs": self.outputs,
                "cache_key": self.cache_key,
                "started": float(self.started),
                "ended": float(self.ended),
                "status": self.status,
                "parents": list(self.parents),
                "cached_from": self.cached_from,
                "returns": self.returns,
                "order": list(self.order or self.outputs),
                "environment": self.environment,
                "pipeline": self.pipeline,
                "message": self.message,
                "metadata": self.metadata,
                "error": self.error,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, run_hash: bytes, key: str = "run") -> Run:
        value = _header(canonical.decode(data, key=key), "run", key)
        fields = {
            "type", "v", "step", "code", "params", "inputs", "outputs", "cache_key", "started", "ended", "status",
            "parents", "cached_from", "returns", "order", "environment", "pipeline", "message", "metadata", "error",
        }  # fmt: skip
        if set(value) != fields:
            raise _fail(key, "run has missing or unexpected fields")
        status = _field(value, "status", str, key)
        if status not in STATUSES:
            raise _fail(key, f"unknown run status {status!r}")
        if value["returns"] not in ("none", "single", "tuple", "dict"):
            raise _fail(key, "unknown return kind")
        for name in ("message", "error"):
            if value[name] is not None and not isinstance(value[name], str):
                raise _fail(key, f"field {name!r} has the wrong type")
        if value["pipeline"] is not None and not isinstance(value["pipeline"], dict):
            raise _fail(key, "field 'pipeline' has the wrong type")
        for name in ("started", "ended"):
            if not valid_time(_field(value, name, float, key)):  # NaN fails every comparison
                raise _fail(key, f"run {name} time {value[name]!r} is outside 1970..3000")
        return cls(
            step=_field(value, "step", str, key),
            code=_digest_field(value["code"], key),
            params=_field(value, "params", dict, key),
            inputs=_hash_map(_field(value, "inputs", dict, key), key),
            outputs=_hash_map(_field(value, "outputs", dict, key), key),
            cache_key=_digest_field(value["cache_key"], key),
            started=_field(value, "started", float, key),
            ended=_field(value, "ended", float, key),
            status=status,
            parents=tuple(_digest_field(p, key) for p in _field(value, "parents", list, key)),
            cached_from=None if value["cached_from"] is None else _digest_field(value["cached_from"], key),
            returns=value["returns"],
            order=_order(_field(value, "order", list, key), value["outputs"], key),
            environment=_field(value, "environment", dict, key),
            pipeline=value["pipeline"],
            message=value["message"],
            metadata=_field(value, "metadata", dict, key),
            error=value["error"],
            hash=run_hash,
        )

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        status = "cache hit" if self.status == "cached" else self.status
        ins = ", ".join(f"{k}={short(v, 8)}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}={short(v, 8)}" for k, v in self.outputs.items())
        return f"{self.short} {when} {self.step} [{status}, {self.duration * 1000:.0f} ms] ({ins}) -> ({outs})"


def _order(order: list[Any], outputs: dict[str, Any], key: str) -> tuple[str, ...]:
    if sorted(order) != sorted(outputs) or len(set(order)) != len(order):
        raise _fail(key, "output order does not list the outputs")
    return tuple(order)


def _hash_map(value: dict[str, Any], key: str) -> dict[str, bytes]:
    return {name: _digest_field(h, key) for name, h in value.items()}


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _logged_run(key: str) -> bytes | None:
    """The run hash in a ``runlog/`` key (None for a stray file)."""
    _, _, run_hex = key.rsplit("/", 1)[-1].partition("-")
    try:
        raw = bytes.fromhex(run_hex)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


class RunIndex:
    """The index files next to run objects: time order, cache keys, producers, consumers."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @staticmethod
    def log_key(run: Run) -> str:
        """The run's ``runlog/`` key (the same in every store that holds the run)."""
        return f"runlog/{_day(run.ended)}/{int(run.ended * 1e6):020d}-{to_hex(run.hash)}"

    def add(self, run: Run, *, replace_cache: bool = True, cache: bool = True) -> None:
        """Index a stored run (its object is written first).

        The run log entry comes last, so a run that is in the log is fully
        indexed. ``replace_cache=False`` keeps a cache entry another run of the
        same key already holds (a copied run does not displace a local one);
        ``cache=False`` writes none (a run pulled from a remote not trusted for caching).
        """
        run_hex = to_hex(run.hash)
        for artifact in set(run.inputs.values()):
            self.backend.write(f"consumed/{to_hex(artifact)}/{run_hex}", b"")
        if run.status == "completed":
            for artifact in set(run.outputs.values()):
                self.backend.write(f"produced/{to_hex(artifact)}/{run_hex}", b"")
            entry = codec.seal(run.hash)
            if cache and replace_cache:
                self.backend.write(self.cache_entry_key(run.cache_key), entry)
            elif cache:
                self.backend.create(self.cache_entry_key(run.cache_key), entry)
        self.backend.write(self.log_key(run), b"")

    @staticmethod
    def cache_entry_key(cache_key: bytes) -> str:
        text = to_hex(cache_key)
        return f"cache/{text[:2]}/{text[2:]}"

    def cached(self, cache_key: bytes) -> bytes | None:
        """The run hash last recorded for a cache key, if any (not yet checked for completeness)."""
        return self.cached_at(self.cache_entry_key(cache_key))  # a damaged entry only costs a rerun

    def cached_at(self, key: str) -> bytes | None:
        """The run hash in the cache entry file ``key`` (None if unreadable)."""
        try:
            raw = codec.unseal(self.backend.read(key), key=key)
        except (FileNotFoundError, CorruptObjectError):
            return None
        return raw if len(raw) == 32 else None

    def forget_cache(self, cache_key: bytes) -> None:
        try:
            self.backend.delete(self.cache_entry_key(cache_key))
        except FileNotFoundError:
            pass

    def producers(self, artifact: bytes) -> list[bytes]:
        return self._hashes(f"produced/{to_hex(artifact)}/")

    def all_producers(self) -> dict[bytes, list[bytes]]:
        """artifact -> the completed runs that output it, for every artifact: one listing."""
        found: dict[bytes, list[bytes]] = {}
        for key in self.backend.list("produced/"):
            parts = key.split("/")
            try:
                artifact, run = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            except (ValueError, IndexError):
                continue
            if len(artifact) == 32 and len(run) == 32:
                found.setdefault(artifact, []).append(run)
        return found

    def consumers(self, artifact: bytes) -> list[bytes]:
        return self._hashes(f"consumed/{to_hex(artifact)}/")

    def _hashes(self, folder: str) -> list[bytes]:
        found = []
        for key in self.backend.list(folder):
            tail = key[len(folder) :]
            try:
                raw = bytes.fromhex(tail)
            except ValueError:
                continue
            if len(raw) == 32:
                found.append(raw)
        return sorted(found)

    def logged(self) -> dict[bytes, str]:
        """Every run in the log, with its key."""
        return {raw: key for key in self.backend.list("runlog/") if (raw := _logged_run(key)) is not None}

    def newest(self) -> Iterator[bytes]:
        """Run hashes, newest first (by end time)."""
        for key in sorted(self.backend.list("runlog/"), reverse=True):
            raw = _logged_run(key)
            if raw is not None:
                yield raw

    def remove(self, run: Run) -> None:
        """Take a run out of every index (its object stays until gc)."""
        run_hex = to_hex(run.hash)
        keys = [self.log_key(run)]
        keys += [f"consumed/{to_hex(a)}/{run_hex}" for a in set(run.inputs.values())]
        keys += [f"produced/{to_hex(a)}/{run_hex}" for a in set(run.outputs.values())]
        if self.cached(run.cache_key) == run.hash:
            keys.append(self.cache_entry_key(run.cache_key))
        for key in keys:
            try:
                self.backend.delete(key)
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        for folder in ("runlog/", "cache/", "produced/", "consumed/"):
            for key in list(self.backend.list(folder)):
                self.backend.delete(key)

"""Runs: the indexes that find the run objects (``Run``, whose encoding cas.objects owns).

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

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cas import codec, keys
from cas.backends.base import Backend
from cas.errors import CorruptObjectError
from cas.objects import MAX_TIME, STATUSES, Run, valid_time

__all__ = ["MAX_TIME", "STATUSES", "Run", "RunIndex", "valid_time"]  # Run and its rules live in cas.objects


def _logged_run(key: str) -> bytes | None:
    """The run hash in a ``runlog/`` key (None for a stray file)."""
    return keys.parse_runlog_key(key)


#: How ``RunIndex.add`` writes the cache entry of a completed run (``RunIndex.cache_policy``).
CACHE_POLICIES = ("replace", "claim", "none")


@dataclass
class CacheClaim:
    """What a ``claim`` found: ``winner`` is the run another writer recorded first (None: this run won)."""

    winner: bytes | None = None
    claimed: bool = False


class RunIndex:
    """The index files next to run objects: time order, cache keys, producers, consumers."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._local = threading.local()

    @contextmanager
    def cache_policy(self, policy: str) -> Iterator[CacheClaim]:
        """In this thread, ``add`` writes a completed run's cache entry as ``policy`` says.

        ``replace`` (the default): the run becomes the answer for its key.
        ``claim``: create-if-absent, so the first of two concurrent identical
        runs stays the answer; the yielded CacheClaim names the run that was
        there first (``winner``) when this one lost. ``none``: no entry (a
        duplicate run, recorded for the log only).
        """
        if policy not in CACHE_POLICIES:
            raise ValueError(f"cache policy must be one of {CACHE_POLICIES}, not {policy!r}")
        claim = CacheClaim()
        self._local.policy = (policy, claim)
        try:
            yield claim
        finally:
            self._local.policy = None

    @staticmethod
    def log_key(run: Run) -> str:
        """The run's ``runlog/`` key (the same in every store that holds the run)."""
        return keys.runlog_key(run.ended, run.hash)

    def add(self, run: Run, *, replace_cache: bool = True, cache: bool = True) -> None:
        """Index a stored run (its object is written first).

        The run log entry comes last, so a run that is in the log is fully
        indexed. ``replace_cache=False`` keeps a cache entry another run of the
        same key already holds (a copied run does not displace a local one);
        ``cache=False`` writes none (a run pulled from a remote not trusted for caching).
        """
        for artifact in set(run.inputs.values()):
            self.backend.write(keys.consumed_key(artifact, run.hash), b"")
        if run.status == "completed":
            for artifact in set(run.outputs.values()):
                self.backend.write(keys.produced_key(artifact, run.hash), b"")
            entry = codec.seal(run.hash)
            policy, claim = getattr(self._local, "policy", None) or ("replace", None)
            if not replace_cache:
                policy = "claim" if policy == "replace" else policy
            if cache and policy == "replace":
                self.backend.write(self.cache_entry_key(run.cache_key), entry)
            elif cache and policy == "claim":
                won = self.backend.create(self.cache_entry_key(run.cache_key), entry)
                if claim is not None:
                    claim.claimed = won
                    claim.winner = None if won else self.cached(run.cache_key)
        self.backend.write(self.log_key(run), b"")

    @staticmethod
    def cache_entry_key(cache_key: bytes) -> str:
        return keys.cache_key(cache_key)

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

    def set_cache(self, run: Run) -> None:
        """Make ``run`` the answer for its cache key (replacing whatever entry is there)."""
        self.backend.write(self.cache_entry_key(run.cache_key), codec.seal(run.hash))

    def forget_cache(self, cache_key: bytes) -> None:
        try:
            self.backend.delete(self.cache_entry_key(cache_key))
        except FileNotFoundError:
            pass

    def producers(self, artifact: bytes) -> list[bytes]:
        return self._hashes(keys.produced_folder(artifact), keys.parse_produced_key)

    def all_producers(self) -> dict[bytes, list[bytes]]:
        """artifact -> the completed runs that output it, for every artifact: one listing."""
        found: dict[bytes, list[bytes]] = {}
        for key in self.backend.list(keys.PRODUCED_FOLDER):
            link = keys.parse_produced_key(key)
            if link is not None:
                found.setdefault(link.artifact, []).append(link.run)
        return found

    def consumers(self, artifact: bytes) -> list[bytes]:
        return self._hashes(keys.consumed_folder(artifact), keys.parse_consumed_key)

    def _hashes(self, folder: str, parse: Callable[[str], keys.RunLink | None]) -> list[bytes]:
        links = (parse(key) for key in self.backend.list(folder))
        return sorted(link.run for link in links if link is not None)

    def logged(self) -> dict[bytes, str]:
        """Every run in the log, with its key."""
        return {raw: key for key in self.backend.list(keys.RUNLOG_FOLDER) if (raw := _logged_run(key)) is not None}

    def newest(self) -> Iterator[bytes]:
        """Run hashes, newest first (by end time)."""
        for key in sorted(self.backend.list(keys.RUNLOG_FOLDER), reverse=True):
            raw = _logged_run(key)
            if raw is not None:
                yield raw

    def remove(self, run: Run) -> None:
        """Take a run out of every index (its object stays until gc)."""
        stale = [self.log_key(run)]
        stale += [keys.consumed_key(a, run.hash) for a in set(run.inputs.values())]
        stale += [keys.produced_key(a, run.hash) for a in set(run.outputs.values())]
        if self.cached(run.cache_key) == run.hash:
            stale.append(self.cache_entry_key(run.cache_key))
        for key in stale:
            try:
                self.backend.delete(key)
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        for folder in (keys.RUNLOG_FOLDER, keys.CACHE_FOLDER, keys.PRODUCED_FOLDER, keys.CONSUMED_FOLDER):
            for key in list(self.backend.list(folder)):
                self.backend.delete(key)

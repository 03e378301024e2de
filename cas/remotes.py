"""Remotes: other stores this one pushes to, pulls from or reads through.

Kept in the store's ``remotes`` file (JSON), like the remotes of a git
repository's ``.git/config``: a setting of this store only, never copied by a
push or pull, and rewritten whole (atomically) on each change::

    {"origin": {"url": "s3://team-bucket/cas", "read_through": true, "trust_cache": false}}

A remote marked ``read_through`` is where ``get`` fetches what this store
lacks (at most one remote is). A remote marked ``trust_cache`` is one whose
runs may answer this store's ``@step`` cache lookups once pulled: runs pulled
from any other remote are copied for log and lineage only. Both marks are
choices of this store's user; nothing read from another store sets them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cas import keys
from cas.backends.base import Backend
from cas.errors import CorruptObjectError, InvalidArgumentError, RemoteNotFoundError
from cas.refs import check_label

REMOTES_KEY = keys.REMOTES_KEY


@dataclass(frozen=True, slots=True)
class Remote:
    """A named other store."""

    name: str
    url: str
    read_through: bool = False
    #: Runs pulled from it answer this store's cache lookups (see ``cas.sync``).
    trust_cache: bool = False


class RemoteList:
    """Reads and edits the ``remotes`` file of a store."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def all(self) -> dict[str, Remote]:
        """Every remote, by name."""
        try:
            data = self.backend.read(REMOTES_KEY)
        except FileNotFoundError:
            return {}
        try:
            value: dict[str, Any] = json.loads(data)
            if not isinstance(value, dict):
                raise ValueError("not an object")
            return {
                name: Remote(name, str(entry["url"]), _flag(entry, "read_through"), _flag(entry, "trust_cache"))
                for name, entry in value.items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(f"the remotes file is invalid: {exc}", key=REMOTES_KEY) from None

    def get(self, name: str | None = None) -> Remote:
        """The remote ``name``; without a name, ``origin`` or else the only remote."""
        remotes = self.all()
        if name is None:
            if "origin" in remotes:
                return remotes["origin"]
            if len(remotes) == 1:
                return next(iter(remotes.values()))
            if not remotes:
                raise RemoteNotFoundError("this store has no remotes: add one with `cas remote add NAME URL`")
            raise InvalidArgumentError(f"several remotes ({', '.join(sorted(remotes))}): name one")
        if not isinstance(name, str) or name not in remotes:
            raise RemoteNotFoundError(f"no remote named {name!r}")
        return remotes[name]

    def read_through(self) -> Remote | None:
        """The remote ``get`` reads missing objects from, if any."""
        return next((r for r in self.all().values() if r.read_through), None)

    def trusting_cache(self, url: str) -> bool:
        """Whether a remote at ``url`` (named or not) is marked ``trust_cache``."""
        wanted = _normal_url(url)
        return any(r.trust_cache and _normal_url(r.url) == wanted for r in self.all().values())

    def add(self, name: str, url: str, *, read_through: bool = False, trust_cache: bool = False) -> Remote:
        """Add (or replace) a remote; marking it read-through unmarks any other.

        ``trust_cache`` lets runs pulled from it answer this store's cache
        lookups (only mark a store whose every writer you trust).
        """
        check_label(name, "remote name")
        if not isinstance(url, str) or not url:
            raise InvalidArgumentError("a remote needs a URL or path")
        remotes = self.all()
        if read_through:
            remotes = {k: Remote(r.name, r.url, False, r.trust_cache) for k, r in remotes.items()}
        url = _normal_url(url)
        remote = Remote(name, url, read_through, trust_cache)
        remotes[name] = remote
        self._write(remotes)
        return remote

    def remove(self, name: str) -> None:
        remotes = self.all()
        if not isinstance(name, str) or name not in remotes:
            raise RemoteNotFoundError(f"no remote named {name!r}")
        del remotes[name]
        self._write(remotes)

    def _write(self, remotes: dict[str, Remote]) -> None:
        value = {
            r.name: {"url": r.url, "read_through": r.read_through, "trust_cache": r.trust_cache}
            for r in remotes.values()
        }
        self.backend.write(REMOTES_KEY, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def _flag(entry: dict[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):  # "false" is truthy: a mark is a JSON boolean or nothing
        raise TypeError(f"{key} must be true or false, not {value!r}")
    return value


def normal_url(url: str) -> str:
    """A remote's URL as stored: a local path made absolute (found from anywhere), a URL as given."""
    return url if "://" in url else os.path.abspath(url)


_normal_url = normal_url

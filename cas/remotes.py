"""Remotes: other stores this one pushes to, pulls from or reads through.

Kept in the store's ``remotes`` file (JSON), like the remotes of a git
repository's ``.git/config``: a setting of this store only, never copied by a
push or pull, and rewritten whole (atomically) on each change::

    {"origin": {"url": "s3://team-bucket/cas", "read_through": true}}

A remote marked ``read_through`` is where ``get`` fetches what this store
lacks (at most one remote is).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cas.backends.base import Backend
from cas.errors import CorruptObjectError, InvalidNameError, RefNotFoundError
from cas.refs import check_label

REMOTES_KEY = "remotes"


@dataclass(frozen=True, slots=True)
class Remote:
    """A named other store."""

    name: str
    url: str
    read_through: bool = False


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
                name: Remote(name, str(entry["url"]), bool(entry.get("read_through", False)))
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
                raise RefNotFoundError("this store has no remotes: add one with `cas remote add NAME URL`")
            raise InvalidNameError(f"several remotes ({', '.join(sorted(remotes))}): name one")
        if name not in remotes:
            raise RefNotFoundError(f"no remote named {name!r}")
        return remotes[name]

    def read_through(self) -> Remote | None:
        """The remote ``get`` reads missing objects from, if any."""
        return next((r for r in self.all().values() if r.read_through), None)

    def add(self, name: str, url: str, *, read_through: bool = False) -> Remote:
        """Add (or replace) a remote; marking it read-through unmarks any other."""
        check_label(name, "remote name")
        if not isinstance(url, str) or not url:
            raise InvalidNameError("a remote needs a URL or path")
        remotes = self.all()
        if read_through:
            remotes = {k: Remote(r.name, r.url, False) for k, r in remotes.items()}
        if "://" not in url:
            url = os.path.abspath(url)  # a local path, found from anywhere
        remote = Remote(name, url, read_through)
        remotes[name] = remote
        self._write(remotes)
        return remote

    def remove(self, name: str) -> None:
        remotes = self.all()
        if name not in remotes:
            raise RefNotFoundError(f"no remote named {name!r}")
        del remotes[name]
        self._write(remotes)

    def _write(self, remotes: dict[str, Remote]) -> None:
        value = {r.name: {"url": r.url, "read_through": r.read_through} for r in remotes.values()}
        self.backend.write(REMOTES_KEY, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())

"""Other stores: which store a remote argument names, whether its runs are trusted, and a clone's target.

push, pull and clone themselves are ``cas.sync.transfer`` between two
Repositories (``Store.push``, ``Store.pull``, ``cas.clone``); the read-through
remote is opened by ``Repository.read_through``.
"""

from __future__ import annotations

import os

from cas.backends import backend_for
from cas.config import CONFIG_KEY
from cas.errors import CasError, StoreExistsError, check_argument_type
from cas.keys import REFS_FOLDER
from cas.remotes import Remote, normal_url
from cas.repository import Repository, open_remote


def remote_name(repo: Repository, remote: str | os.PathLike[str] | None) -> tuple[bool, str | None]:
    """Whether ``remote`` means one of ``repo``'s remotes (None: the default one) rather than a URL or path,
    and that remote's name."""
    if remote is None or (isinstance(remote, str) and remote in repo.remotes.all()):
        return True, remote
    return False, None


def remote_url(repo: Repository, remote: str | os.PathLike[str] | None) -> str:
    """The URL ``remote`` means: a remote's name (None: ``origin``, or the only one), else a URL or path."""
    named, name = remote_name(repo, remote)
    if named:
        return repo.remotes.get(name).url
    check_argument_type(remote, (str, os.PathLike), "remote")
    return os.fspath(remote)  # type: ignore[arg-type]  # checked just above


def open_other(repo: Repository, remote: str | os.PathLike[str] | None, *, create: bool) -> Repository:
    """Open the store ``remote`` names (see ``remote_url``); with ``create``, create it like ``repo`` if absent."""
    return open_remote(remote_url(repo, remote), like=repo if create else None)


def trusts_cache(repo: Repository, remote: str | os.PathLike[str] | None, other_url: str) -> bool:
    """Whether the user marked this remote (by name, or any remote at its URL) as trusted for caching."""
    named, name = remote_name(repo, remote)
    return repo.remotes.get(name).trust_cache if named else repo.remotes.trusting_cache(other_url)


def create_like(source: Repository, target_url: str) -> None:
    """Create an empty store at ``target_url`` with ``source``'s chunking and compression but not its policy.

    Raises StoreExistsError if ``target_url`` already holds a store.
    """
    backend = backend_for(target_url)
    try:
        if not backend.create(CONFIG_KEY, source.config.for_new_store().to_bytes()):
            raise StoreExistsError(f"{target_url} already holds a store")
    finally:
        backend.close()


def clone_state(source: Repository, source_url: str, target: Repository) -> str:
    """What ``target`` is to a clone of ``source``: ``"clone"``, ``"unnamed"`` or ``"other"``.

    ``"clone"``: its ``origin`` is ``source_url`` (a clone, maybe interrupted:
    pulling from ``origin`` completes it). ``"unnamed"``: it holds no ref and no
    remote and has the config a clone of ``source`` starts with (a clone
    interrupted before it named its origin). ``"other"``: anything else.
    """
    try:
        remotes = target.remotes.all()
    except CasError:
        return "other"
    origin = remotes.get("origin")
    if origin is not None:
        return "clone" if origin.url == normal_url(source_url) else "other"
    if remotes or next(iter(target.backend.list(REFS_FOLDER)), None) is not None:
        return "other"
    if target.config.to_bytes() != source.config.for_new_store().to_bytes():
        return "other"
    return "unnamed"


__all__ = [
    "Remote",
    "clone_state",
    "create_like",
    "remote_name",
    "open_other",
    "open_remote",
    "remote_url",
    "trusts_cache",
]

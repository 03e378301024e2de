"""Removing what is no longer wanted: deleting versions and tags, pruning the run log.

gc, fsck and du are modules of their own (cas.gc, cas.fsck, cas.usage).
"""

from __future__ import annotations

import time
from datetime import timedelta

from cas import history
from cas.errors import InvalidArgumentError, InvalidNameError, RefNotFoundError, check_argument_type
from cas.refs import RefStore, parse_ref
from cas.repository import Repository


def delete(refs: RefStore, ref: str) -> list[str]:
    """Remove ``name@version`` (with its label and tags) or every version of ``name``.

    Only references go; the bytes are freed by ``gc`` once nothing else
    reaches them. Returns the refs removed. Raises RefNotFoundError, InvalidNameError.
    """
    spec = parse_ref(ref)
    if spec.selector is None:
        numbers = refs.version_numbers(spec.name)
        if not numbers:
            raise RefNotFoundError(f"no artifact named {spec.name!r}")
        removed = [r for n in numbers for r in refs.delete_version(spec.name, n)]
        for label in refs.labels(spec.name):
            refs.delete_label(spec.name, label)
            removed.append(f"{spec.name}@{label}")
        for tag in refs.tags(spec.name):
            refs.delete_tag(spec.name, tag)
            removed.append(f"{spec.name}@{tag}")
        return removed
    record = refs.resolve(spec)
    if record.number is None:
        raise InvalidNameError(f"{ref} is not a numbered version")
    if spec.selector not in (str(record.number), record.label):
        raise InvalidNameError(f"{ref} is a tag: remove it with untag")
    return refs.delete_version(spec.name, record.number)


def untag(refs: RefStore, ref: str) -> None:
    """Remove the tag ``name@tag`` (the version it pointed at stays)."""
    spec = parse_ref(ref)
    if spec.selector is None:
        raise InvalidNameError("untag needs name@tag")
    refs.delete_tag(spec.name, spec.selector)


def prune_runs(repo: Repository, *, older_than: float | timedelta | None = None, keep_last: int | None = None) -> int:
    """Drop runs from the run log, like git's reflog expiry: those older than ``older_than``
    (seconds or a timedelta), except the newest ``keep_last`` of each step. Returns how many.

    Their objects, and outputs nothing else needs, are freed by the next ``gc``.
    """
    if older_than is None and keep_last is None:
        raise InvalidArgumentError("prune_runs needs older_than, keep_last or both")
    check_argument_type(older_than, (int, float, timedelta, type(None)), "older_than")
    check_argument_type(keep_last, (int, type(None)), "keep_last")
    limit = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    cutoff = time.time() - limit if limit is not None else None
    seen: dict[str, int] = {}
    removed = 0
    for run in list(history.runs(repo)):
        seen[run.step] = seen.get(run.step, 0) + 1
        if keep_last is not None and seen[run.step] <= keep_last:
            continue
        if cutoff is not None and run.ended >= cutoff:
            continue
        repo.run_index.remove(run)
        removed += 1
    return removed

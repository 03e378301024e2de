"""The maintenance side of the Store: deleting refs, pruning runs, gc, fsck and du."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

from cas import fsck as fsck_module
from cas import gc as gc_module
from cas import usage as usage_module
from cas.errors import InvalidNameError, RefNotFoundError
from cas.fsck import FsckReport
from cas.gc import GcReport
from cas.refs import parse_ref
from cas.usage import Usage

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cas.config import StoreConfig
    from cas.refs import RefStore
    from cas.runs import Run, RunIndex
    from cas.store import Store


class Maintenance:
    """Mixed into Store: removing what is no longer wanted, and checking what is kept."""

    config: StoreConfig
    refs: RefStore
    run_index: RunIndex

    if TYPE_CHECKING:

        def runs(self, *, step: str | None = None) -> Iterator[Run]: ...

    def _store(self) -> Store:
        return self  # type: ignore[return-value]  # only ever mixed into Store

    def delete(self, ref: str) -> list[str]:
        """Remove ``name@version`` (with its label and tags) or every version of ``name``.

        Only references go; the bytes are freed by ``gc`` once nothing else
        reaches them. Returns the refs removed. Raises RefNotFoundError, InvalidNameError.
        """
        spec = parse_ref(ref)
        if spec.selector is None:
            numbers = self.refs.version_numbers(spec.name)
            if not numbers:
                raise RefNotFoundError(f"no artifact named {spec.name!r}")
            removed = [r for n in numbers for r in self.refs.delete_version(spec.name, n)]
            for label in self.refs.labels(spec.name):
                self.refs.delete_label(spec.name, label)
                removed.append(f"{spec.name}@{label}")
            for tag in self.refs.tags(spec.name):
                self.refs.delete_tag(spec.name, tag)
                removed.append(f"{spec.name}@{tag}")
            return removed
        record = self.refs.resolve(spec)
        if record.number is None:
            raise InvalidNameError(f"{ref} is not a numbered version")
        if spec.selector not in (str(record.number), record.label):
            raise InvalidNameError(f"{ref} is a tag: remove it with untag")
        return self.refs.delete_version(spec.name, record.number)

    def untag(self, ref: str) -> None:
        """Remove the tag ``name@tag`` (the version it pointed at stays)."""
        spec = parse_ref(ref)
        if spec.selector is None:
            raise InvalidNameError("untag needs name@tag")
        self.refs.delete_tag(spec.name, spec.selector)

    def prune_runs(self, *, older_than: float | timedelta | None = None, keep_last: int | None = None) -> int:
        """Drop runs from the run log, like git's reflog expiry: those older than ``older_than``
        (seconds or a timedelta), except the newest ``keep_last`` of each step. Returns how many.

        Their objects, and outputs nothing else needs, are freed by the next ``gc``.
        """
        if older_than is None and keep_last is None:
            raise InvalidNameError("prune_runs needs older_than, keep_last or both")
        limit = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        cutoff = time.time() - limit if limit is not None else None
        seen: dict[str, int] = {}
        removed = 0
        for run in list(self.runs()):
            seen[run.step] = seen.get(run.step, 0) + 1
            if keep_last is not None and seen[run.step] <= keep_last:
                continue
            if cutoff is not None and run.ended >= cutoff:
                continue
            self.run_index.remove(run)
            removed += 1
        return removed

    def gc(
        self, *, dry_run: bool = False, grace: float | timedelta | None = None, progress: bool | None = None
    ) -> GcReport:
        """Remove what no ref and no logged run reaches and that is older than ``grace``.

        ``grace`` defaults to the store's ``gc_grace`` setting (one hour). An artifact
        put without a name and used by no run is unreachable: gc removes it once it
        is older than the grace period. Raises IntegrityError if a ref is unreadable.
        """
        seconds = gc_module.grace_seconds(grace, self.config.gc_grace)
        return gc_module.collect(self._store(), dry_run=dry_run, grace=seconds, progress=progress)

    def fsck(self, *, repair: bool = False, progress: bool | None = None) -> FsckReport:
        """Verify every object, pack and reference; ``repair`` removes corrupt objects (never refs)."""
        return fsck_module.check(self._store(), repair=repair, progress=progress)

    def du(self, *, top: int = 10, progress: bool | None = None) -> Usage:
        """Counts and sizes by kind, logical vs stored bytes, dedup and compression ratios."""
        return usage_module.usage(self._store(), top=top, progress=progress)

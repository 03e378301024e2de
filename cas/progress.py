"""Progress reporting: library code sends events to the caller's callback and never draws anything itself.

A long operation (gc, fsck, du, push, pull, clone) runs in phases ("marking runs", "sweeping objects", ...).
Each phase sends a :class:`ProgressEvent` to the ``progress`` callback the caller passed: once when it starts
(``done == 0``), after each step, and once when it ends (``finished``). Without a callback (the default) nothing
is reported and nothing is written anywhere. The CLI renders the events as rich progress bars (cas/cli.py);
a test can simply collect them in a list.

We do not reuse ``fsspec.callbacks.Callback``: it models one transfer (a size and a value, branched per file),
while our operations are sequences of named phases; a plain callable taking a frozen event is smaller to
implement, to test and to document.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a named phase: ``done`` of ``total`` items (``total`` None when unknown)."""

    phase: str
    done: int
    total: int | None
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], None]
"""What ``progress=`` takes in ``Store.gc``, ``fsck``, ``du``, ``push``, ``pull`` and ``cas.clone``."""


class Phase:
    """``with Phase(progress, "marking runs", total) as phase: phase.advance()``; silent when progress is None.

    A value that is not callable (``False``, as callers passed before progress became a callback) is silent too.
    ``advance`` may be called from several threads (a transfer's workers): events go out one at a time, in order.
    """

    def __init__(self, progress: ProgressCallback | None, label: str, total: int | None = None) -> None:
        self._callback = progress if callable(progress) else None
        self.label = label
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._send(finished=False)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._send(finished=False)

    def add_to_total(self, n: int) -> None:
        """More items than counted at the start (say, a run found while walking runs)."""
        with self._lock:
            if self.total is not None:
                self.total += n

    def _send(self, *, finished: bool) -> None:
        if self._callback is not None:
            self._callback(ProgressEvent(self.label, self.done, self.total, finished))

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self._send(finished=True)

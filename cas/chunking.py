"""Content-defined chunking (FastCDC 2020) of buffers and streams.

A cut point depends only on the bytes since the previous cut. So a large buffer
can be cut in regions on several threads at once, then stitched: from the last
true cut before a region, cutting on until a cut coincides with one the region
found on its own gives exactly the cuts of one sequential pass.
"""

from __future__ import annotations

import queue
from dataclasses import asdict, dataclass
from typing import Any

from pyfastcdc import FastCDC


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """The chunker's settings; fixed per store (in its config) so cuts stay comparable."""

    min_size: int = 48 << 10
    avg_size: int = 48 << 10
    max_size: int = 256 << 10
    normalization: int = 1
    seed: int = 0

    def cutter(self) -> FastCDC:
        # A FastCDC instance must not be shared between threads; they are cheap.
        return FastCDC(
            self.avg_size,
            min_size=self.min_size,
            max_size=self.max_size,
            normalized_chunking=self.normalization,  # type: ignore[arg-type]
            seed=self.seed,
        )

    def to_config(self) -> dict[str, Any]:
        return {"algorithm": "fastcdc2020", **asdict(self)}

    @classmethod
    def from_config(cls, value: dict[str, Any]) -> ChunkParams:
        if value.get("algorithm") != "fastcdc2020":
            raise ValueError(f"unknown chunking algorithm {value.get('algorithm')!r}")
        fields = {k: int(value[k]) for k in ("min_size", "avg_size", "max_size", "normalization", "seed")}
        params = cls(**fields)
        params.cutter()  # validates the ranges
        return params


def cut_ends(params: ChunkParams, view: memoryview, start: int, end: int) -> list[int]:
    """Absolute end offsets of the chunks of ``view[start:end]`` cut on their own.

    The last end is ``end`` itself, a real cut only if ``end`` ends the data.
    """
    return [start + c.offset + c.length for c in params.cutter().cut_buf(view[start:end])]


def stitch(
    params: ChunkParams, view: memoryview, start: int, end: int, candidates: list[int], is_last: bool
) -> list[int]:
    """The cuts a sequential pass over all of ``view`` makes in ``(start, end]``.

    ``start`` is a true cut; ``candidates`` are the ends of ``view[r:end]`` cut on
    its own from some region start ``r``. Cutting on from ``start`` until one of
    our cuts is also a candidate makes both passes agree from there on (a cut
    depends only on the bytes since the previous cut). Without ``is_last`` the
    final end is a forced one and is left to the next region.
    """
    real = set(candidates if is_last else candidates[:-1])
    cuts: list[int] = []
    for chunk in params.cutter().cut_buf(view[start:end]):
        pos = start + chunk.offset + chunk.length
        cuts.append(pos)
        if pos in real:
            cuts += [c for c in candidates if c > pos]
            break
    if not is_last and cuts:
        cuts.pop()  # ends at the region's edge, or may: the next region cuts it again
    return cuts


class BufferPool:
    """A few large reusable buffers: reusing them avoids the cost of touching fresh memory."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(count):
            self._free.put(bytearray(size))

    def take(self) -> bytearray:
        return self._free.get()

    def give(self, buf: bytearray) -> None:
        self._free.put(buf)

"""``cas demo``: what the store does, in a few seconds, on a scratch store.

The pipeline demo (steps, caching, lineage) arrives with the run and CLI issues;
this one shows the engine: versions, dedup, small edits and verified reads.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cas


def _stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "refs" not in p.parts)


def run(say: Callable[[str], None] = print, size: int = 64 << 20) -> None:
    with tempfile.TemporaryDirectory(prefix="cas-demo-") as tmp:
        root = Path(tmp) / ".cas"
        with cas.open(root) as store:
            say(f"store: {root}")
            data = os.urandom(size)
            start = time.perf_counter()
            ref = store.put(data, "dataset")
            took = time.perf_counter() - start
            base = _stored_bytes(root)
            say(f"put {size >> 20} MiB as {ref} ({ref.short}) in {took:.2f} s: {base / 1e6:.1f} MB stored")

            start = time.perf_counter()
            again = store.put(data, "dataset")
            took = time.perf_counter() - start
            added = _stored_bytes(root) - base
            say(
                f"put the same bytes again as {again} in {took:.3f} s: same hash {again.hash == ref.hash}, "
                f"{added} new bytes"
            )

            edited = bytearray(data)
            rng = random.Random(0)
            for _ in range(16):
                at = rng.randrange(size - 4096)
                edited[at : at + 4096] = os.urandom(4096)
            before = _stored_bytes(root)
            third = store.put(
                bytes(edited), "dataset", version="v-edited", tags=["latest-good"], metadata={"edits": 16}
            )
            added = _stored_bytes(root) - before
            say(f"changed 16 x 4 KiB and put {third}: {added / 1e6:.2f} MB new ({100 * added / size:.2f}% of the size)")

            start = time.perf_counter()
            back = store.get("dataset@latest-good")
            took = time.perf_counter() - start
            say(
                f"get dataset@latest-good: {len(back) >> 20} MiB, verified and equal: {back == bytes(edited)} "
                f"({took:.2f} s)"
            )
            say("versions of dataset: " + ", ".join(str(r) for r in store.versions("dataset")))
            info = store.info("dataset@latest-good")
            say(
                f"info dataset@latest-good: {info.python_type}, {info.size} bytes in {info.chunks} chunks, "
                f"metadata {info.user_metadata}"
            )

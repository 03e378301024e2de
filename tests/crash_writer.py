"""A store writer for the crash tests: it works until it is killed, and journals what it committed.

Each operation is journaled only after it returned, so every journaled ref,
run and deletion was committed before the kill. A deletion is journaled
before it starts too: a kill in the middle may leave the version or not.
Journal lines: ``ref NAME@N ARTIFACT BLAKE3(payload)``, ``run RUN``,
``deleting NAME@N``, ``deleted NAME@N``, ``op NAME`` (started).
"""

from __future__ import annotations

import os
import random
from typing import IO

import blake3

import cas

NAMES = ("alpha", "beta", "gamma", "team/delta")


def _journal(f: IO[str], line: str) -> None:
    f.write(line + "\n")
    f.flush()  # the kernel keeps it through a SIGKILL: no fsync needed


def _payload(rng: random.Random, base: bytes) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(rng.randrange(0, 4096))  # inline in the tree
    if kind < 0.6:
        return rng.randbytes(rng.randrange(4096, 300_000))  # one loose object
    # chunked, sharing most chunks with every other large payload
    cut = rng.randrange(len(base))
    return base[:cut] + rng.randbytes(rng.randrange(1, 100_000)) + base[cut:]


def work(url: str, journal: str, seed: int, env: dict[str, str] | None = None, base_seed: int = 7) -> None:
    """Put, name, tag, record runs, delete and collect garbage until killed.

    ``env`` (credentials, endpoint) is set first: a forkserver's children
    inherit the environment it started with, not the test's current one.
    """
    os.environ.update(env or {})
    rng = random.Random(seed)
    base = random.Random(base_seed).randbytes(2 << 20)
    committed: list[tuple[str, str]] = []  # (ref, artifact)
    with open(journal, "a") as f, cas.open(url) as store:
        while True:
            op = rng.choices(["put", "unnamed", "run", "delete", "gc", "batch", "tag"], [8, 2, 3, 1, 1, 1, 1])[0]
            _journal(f, f"op {op}")
            if op == "put":
                data = _payload(rng, base)
                ref = store.put(data, rng.choice(NAMES))
                _journal(f, f"ref {ref.name}@{ref.number} {ref.hash} {blake3.blake3(data).hexdigest()}")
                committed.append((f"{ref.name}@{ref.number}", ref.hash))
            elif op == "unnamed":
                store.put(_payload(rng, base))
            elif op == "run" and committed:
                _, source = rng.choice(committed)
                out = store.put(_payload(rng, base))
                run = store.record_run(step="crash.step", inputs={"x": source}, outputs={"y": out.hash},
                                       params={"seed": rng.randrange(4)})  # fmt: skip
                _journal(f, f"run {run.id}")
            elif op == "delete" and committed:
                ref, _ = committed.pop(rng.randrange(len(committed)))
                _journal(f, f"deleting {ref}")
                store.delete(ref)
                _journal(f, f"deleted {ref}")
            elif op == "gc":
                store.gc(grace=0)
            elif op == "batch":
                with store.batch():
                    for i in range(rng.randrange(2, 20)):
                        store.put({"i": i, "seed": seed, "r": rng.random()})
            elif op == "tag" and committed:
                ref, _ = rng.choice(committed)
                store.tag(ref, "latest")


if __name__ == "__main__":
    import sys

    work(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    os._exit(0)

"""Crash consistency: a writer killed with SIGKILL at random moments, hundreds of times.

After every kill, every ref the writer journaled as committed still resolves
to its artifact and loads with the same bytes, every journaled run loads with
complete outputs, no cache hit points at missing data, and fsck finds nothing
corrupt or missing. When a store has taken its share of kills, gc (grace 0)
removes the leftovers (temp files, unreferenced objects and packs), after
which nothing is left to collect. ``CAS_CRASH_KILLS`` / ``CAS_CRASH_KILLS_S3``
set the number of kills (README: reliability).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import crash_writer
import pytest
from conftest import BUCKET

import cas
from cas.artifacts import is_complete

pytestmark = pytest.mark.slow  # hundreds of child processes, each killed mid-write

KILLS = {"local": int(os.environ.get("CAS_CRASH_KILLS", "200")), "s3": int(os.environ.get("CAS_CRASH_KILLS_S3", "10"))}
KILLS_PER_STORE = 15


@dataclass
class Journal:
    """What the killed writers committed, read back from their journal."""

    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref -> (artifact, blake3 of payload)
    runs: set[str] = field(default_factory=set)
    ops: int = 0

    @classmethod
    def read(cls, path: Path) -> Journal:
        journal = cls()
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut by the kill
            kind, _, rest = line.strip().partition(" ")
            if kind == "op":
                journal.ops += 1
            elif kind == "ref":
                ref, artifact, digest = rest.split()
                journal.refs[ref] = (artifact, digest)
            elif kind == "run":
                journal.runs.add(rest)
            elif kind == "deleting":
                journal.refs.pop(rest, None)  # maybe deleted, maybe not: no longer promised
        return journal


def verify(url: str, journal: Journal) -> None:
    with cas.open(url) as store:
        for ref, (artifact, digest) in journal.refs.items():
            assert store.resolve(ref).hash == artifact, ref
            assert blake3.blake3(store.get(ref)).hexdigest() == digest, ref
        for run_id in journal.runs:
            run = store.run(run_id)
            assert all(is_complete(store.repository, h) for h in run.outputs.values()), run_id
            hit = store.cached_run(run.cache_key)
            assert hit is None or all(is_complete(store.repository, h) for h in hit.outputs.values())
        report = store.fsck()
        assert report.ok, str(report)


def finish(url: str, journal: Journal) -> int:
    """gc with no grace removes every leftover; returns how many files it removed."""
    with cas.open(url) as store:
        report = store.gc(grace=0)
        assert report.missing == []
        if not url.startswith("s3://"):
            assert list(store.backend.list("tmp/")) == []
        again = store.gc(grace=0, dry_run=True)
        assert again.objects == 0, str(again)
        assert store.fsck().dangling == []
    verify(url, journal)
    return report.objects


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "s3":
        request.getfixturevalue("seaweed")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["cas", "blake3", "crash_writer"])
    rng = random.Random(0)
    kills, ops, collected = KILLS[kind], 0, 0
    url, journal_path = "", Path()
    for k in range(kills):
        if k % KILLS_PER_STORE == 0:
            if url:
                collected += finish(url, Journal.read(journal_path))
                ops += Journal.read(journal_path).ops
            url = str(tmp_path / f"store{k}") if kind == "local" else f"s3://{BUCKET}/{uuid.uuid4().hex}"
            journal_path = tmp_path / f"journal{k}"
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        writer = ctx.Process(target=crash_writer.work, args=(url, str(journal_path), rng.randrange(1 << 30), env))
        writer.start()
        time.sleep(rng.uniform(0.01, 0.3) if kind == "local" else rng.uniform(0.2, 2.5))
        os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        writer.join()
        assert writer.exitcode == -signal.SIGKILL, "the writer stopped by itself: see its output"
        verify(url, Journal.read(journal_path))
    collected += finish(url, Journal.read(journal_path))
    ops += Journal.read(journal_path).ops
    print(f"\n{kind}: {kills} kills survived, {ops} operations journaled, gc removed {collected} leftovers")
    assert ops > kills  # the writers got work done between kills

"""gc and time: the storage's clock, not this machine's (issue 21 items 3 and 6), and two passes at once (item 4).

Clock skew is a gc process whose ``time.time`` runs hours ahead; concurrent passes are real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_url

import cas
from cas.gc import GraceExceededWarning
from cas.keys import object_key
from cas.progress import ProgressEvent

ROOT = Path(__file__).resolve().parent.parent

#: A gc process whose clock is ``shift`` seconds ahead of everyone else's (argv: url, shift).
#: Once started it says "ready", then reads its grace period from stdin.
SKEWED_GC = textwrap.dedent(
    """
    import json, sys, time
    _real = time.time
    time.time = lambda: _real() + float(sys.argv[2])  # before cas is imported: every caller sees the skew
    import cas
    with cas.open(sys.argv[1]) as store:
        print("ready", flush=True)
        report = store.gc(grace=float(sys.stdin.readline()))
    print(json.dumps({"removed": report.objects, "kept_young": report.kept_young}))
    """
)


def _skewed_gc(url: str, shift: float, grace: Callable[[], float]) -> dict[str, int]:
    """Run the skewed gc; ``grace()`` is asked once it has started (its start-up is not part of any age)."""
    proc = subprocess.Popen([sys.executable, "-c", SKEWED_GC, url, str(shift)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() == "ready":
        proc.stdin.write(f"{grace()}\n")
        proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_gc_whose_clock_is_ahead_keeps_a_put_in_progress(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "s3":
        request.getfixturevalue("seaweed")
    url = make_url(kind, tmp_path)
    with cas.open(url) as store:
        old = store.put({"garbage": 1})  # unreachable...
        time.sleep(5)  # ...and 5 s older than the put below
        young = store.put(os.urandom(100_000))  # a put whose ref is not written yet
        written = time.monotonic()
        # Two hours ahead with a one-hour grace: by this machine's clock everything is old.
        assert _skewed_gc(url, 7200, lambda: 3600)["removed"] == 0
        assert store.backend.exists(object_key(bytes.fromhex(young.hash)))
        assert store.backend.exists(object_key(bytes.fromhex(old.hash)))
        # The storage's clock still tells what is old: with a grace between the two ages
        # (S3's timestamps are whole seconds), the skewed gc collects the old garbage only.
        report = _skewed_gc(url, 7200, lambda: time.monotonic() - written + 2.5)
        assert report["removed"] == 2  # the old artifact and its tree
        assert not store.backend.exists(object_key(bytes.fromhex(old.hash)))
        named = store.put(store.get(young.hash), "model")  # the put finishes: its ref names intact data
        assert named.hash == young.hash and len(store.get("model")) == 100_000
        assert store.fsck().ok


def test_a_pass_that_outlives_its_grace_stops_deleting(local_store: cas.Store) -> None:
    garbage = [local_store.put({"n": i}) for i in range(30)]
    time.sleep(1.2)  # older than the 1 s grace below

    def slow(event: ProgressEvent) -> None:
        if event.phase == "sweeping objects" and event.done == 0:
            time.sleep(1.5)  # a pass slower than its grace period

    with pytest.warns(GraceExceededWarning, match="grace period"):
        report = local_store.gc(grace=1.0, progress=slow)
    assert report.outlived_grace and report.objects == 0 and "stopped early" in str(report)
    for ref in garbage:
        assert local_store.backend.exists(object_key(bytes.fromhex(ref.hash)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same pass in time warns nothing and collects it all
        report = local_store.gc(grace=1.0)
    assert not report.outlived_grace and report.objects == 60
    assert local_store.fsck().ok


def test_a_pass_that_outlives_its_grace_keeps_the_pack_it_repacks(
    local_store: cas.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once out of time, a repack keeps the old pack beside the new one: both copies, nothing lost."""
    import cas.gc

    a, b = os.urandom(4 << 20), os.urandom(1 << 20)
    local_store.put(a + b, "both")
    local_store.put(b + b"!" * 5000, "b-only")
    local_store.delete("both")
    packs_before = set(local_store.backend.list("packs/"))
    time.sleep(1.2)
    real = cas.gc.rewrite_pack

    def slow_rewrite(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.5)  # the copy takes longer than the grace period
        return real(*args, **kwargs)

    monkeypatch.setattr(cas.gc, "rewrite_pack", slow_rewrite)
    with pytest.warns(GraceExceededWarning):
        report = local_store.gc(grace=1.0)
    assert report.outlived_grace
    assert packs_before <= set(local_store.backend.list("packs/"))  # the old pack stayed
    with cas.open(local_store.url) as fresh:
        assert fresh.get("b-only") == b + b"!" * 5000 and fresh.fsck().ok


# -- two passes at once -------------------------------------------------------------------
#: One gc pass in its own process, started at a given moment (argv: how, url, start time).
PASS = textwrap.dedent(
    """
    import sys, time
    import cas
    from cas.cli import main
    how, url, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start:  # both passes begin together, imports done
        time.sleep(0.001)
    if how == "library":
        with cas.open(url) as store:
            print(store.gc(grace=0))
    else:
        main(["--store", url, "gc", "--grace", "0"])
    """
)


def _make_work(store: cas.Store, round_: int, expected: dict[str, bytes]) -> None:
    """Garbage, a pack to repack (live and dead chunks), a dead pack, and values that must survive."""
    a, b = os.urandom(3 << 20), os.urandom(1 << 20)
    store.put(a + b, f"both{round_}")
    kept = b + round_.to_bytes(2, "little") * 3000
    store.put(kept, f"b-only{round_}")  # reuses b's chunks: the pack of "both" gets repacked
    expected[f"b-only{round_}"] = kept
    store.delete(f"both{round_}")
    store.put(os.urandom(2 << 20), f"unused-{round_}")
    store.delete(f"unused-{round_}")
    for i in range(40):
        store.put({"garbage": i, "round": round_})
        small = f"{round_}-{i}".encode() * 10
        store.put(small, f"small{round_}-{i % 4}")
        expected[f"small{round_}-{i % 4}"] = small


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_gc_passes_at_once_are_safe(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "s3":
        request.getfixturevalue("seaweed")
    url = make_url(kind, tmp_path)
    expected: dict[str, bytes] = {}
    rounds = 4 if kind == "local" else 2
    for round_ in range(rounds):
        with cas.open(url) as store:
            _make_work(store, round_, expected)
        start = f"{time.time() + 3.0}"  # time for both interpreters to import cas
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PASS, how, url, start],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )  # fmt: skip
            for how in ("library", "cli")
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "Traceback" not in err and "Error" not in err, err
        with cas.open(url) as store:
            for name, data in expected.items():
                assert store.get(name) == data, name
            report = store.fsck()
            assert report.ok, str(report)
    with cas.open(url) as store:
        assert store.gc(grace=0).repacked == 0  # the passes left nothing half done
        assert store.fsck().ok

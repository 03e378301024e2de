"""Runs from a store someone else writes: absurd times, refs to non-artifacts, deep and cyclic lineage.

Hostile records are planted as another writer of the store could: run objects
made with ``Run.to_bytes`` (so their hashes are valid), stored with
``put_object``, and index files written with the backend under the keys cas
uses. Then the victim's log, lineage and CLI must go on past them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas import codec
from cas.cli import main
from cas.hashing import to_hex
from cas.lineage import walk
from cas.objects import RefRecord
from cas.runs import Run, RunIndex

BAD_TIMES = [1e300, math.nan, math.inf, -math.inf, -1.0, 4e10]


def _keys(store: cas.Store) -> dict[str, int]:
    return {k: store.backend.size(k) for k in store.backend.list("")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[cas.Store]:
    with cas.open(tmp_path / "store") as opened:
        opened.put(1, "a")
        opened.put(2, "b")
        yield opened


def plant_run(store: cas.Store, template: Run, **changes: object) -> bytes:
    """A run object as a writer could store it (a valid hash), logged under a runlog key of its own."""
    data = replace(template, **changes).to_bytes()  # type: ignore[arg-type]
    run_hash = store.objects.put_object(data, loose=True)
    store.backend.write(f"runlog/2026-01-01/{99_999_999_999_999_999:020d}-{to_hex(run_hash)}", b"")
    return run_hash


@pytest.mark.parametrize(
    ("started", "ended"),
    [(None, t) for t in BAD_TIMES] + [(t, None) for t in BAD_TIMES] + [(2e9, 1e9), ("1", None), (True, None)],
)
def test_record_run_checks_everything_before_storing_anything(store: cas.Store, started: object, ended: object) -> None:
    before = _keys(store)
    with pytest.raises(cas.InvalidRunError):
        store.record_run(step="s", inputs={"x": "a"}, outputs={"y": "b"}, started=started, ended=ended)  # type: ignore[arg-type]
    assert _keys(store) == before  # no run object, no index entry


@pytest.mark.parametrize(
    "bad",
    [{"inputs": {"x": b"short"}}, {"code": b"x" * 31}, {"cache_key": b"k"}, {"parents": [b"p"]},
     {"cached_from": b"c" * 33}, {"returns": "many"}, {"order": ["z"]}],
)  # fmt: skip
def test_record_run_refuses_fields_no_reader_accepts(store: cas.Store, bad: dict[str, object]) -> None:
    before = _keys(store)
    with pytest.raises(cas.CasError):
        store.record_run(step="s", outputs={"y": "b"}, **bad)  # type: ignore[arg-type]
    assert _keys(store) == before


def test_valid_edge_times_are_kept(store: cas.Store) -> None:
    run = store.record_run(step="s", inputs={"x": "a"}, outputs={"y": "b"}, started=0.0, ended=32503679999.0)
    assert store.run(run.hash).ended == 32503679999.0
    future = time.time() + 3600  # ended given, started left out: started is never after ended
    assert store.record_run(step="s", outputs={"y": "b"}, ended=1e9).started == 1e9
    assert store.record_run(step="s", outputs={"y": "b"}, started=future).ended == future


@pytest.mark.parametrize("bad_time", BAD_TIMES)
def test_a_run_with_an_absurd_time_fails_alone(store: cas.Store, bad_time: float) -> None:
    good = store.record_run(step="good.step", inputs={"x": "a"}, outputs={"y": "b"})
    bad = plant_run(store, good, ended=bad_time, step="bad.step")
    plant_run(store, good, started=bad_time, step="bad.start")
    with pytest.raises(cas.CorruptObjectError):
        store.run(bad)
    entries = store.log()
    assert [r.step for r in entries] == ["good.step"]
    assert len(entries.skipped) == 2 and "1970..3000" in entries.skipped[0]
    assert [r.step for r in store.runs()] == ["good.step"]
    assert store.log("b")[0].run is not None  # the version log still finds its producer
    assert store.prune_runs(older_than=0) == 1  # maintenance goes on past it too


def test_cas_log_reports_what_it_skipped(store: cas.Store) -> None:
    good = store.record_run(step="good.step", inputs={"x": "a"}, outputs={"y": "b"})
    plant_run(store, good, ended=1e300)
    artifact = bytes.fromhex(store.resolve("a").hash)  # a runlog entry naming an artifact, not a run
    store.backend.write(f"runlog/2026-01-02/{1:020d}-{to_hex(artifact)}", b"")
    store.backend.write("runlog/2026-01-02/garbage", b"")  # a stray file: not a record at all
    for args in (["log"], ["log", "--oneline"], ["log", "--json"]):
        result = CliRunner().invoke(main, ["--store", store.url, *args])
        assert result.exit_code == 0, result.output
        assert "good.step" in result.stdout and "bad" not in result.stdout
        assert result.stderr.count("cas: skipped run") == 2, result.stderr


def test_the_version_log_skips_an_unreadable_version(store: cas.Store) -> None:
    store.put(3, "b")
    store.backend.write("refs/b/@v/1", b"not a ref record")
    with cas.open(store.url) as fresh:  # the writer's process remembers the record it wrote
        versions = fresh.log("b")
    assert [v.ref.version for v in versions] == [2] and versions.skipped and "b@1" in versions.skipped[0]


def _chain(store: cas.Store, length: int) -> cas.Ref:
    with store.batch():
        refs = [store.put(i) for i in range(length + 1)]
    for before, after in zip(refs, refs[1:], strict=False):
        store.record_run(step="chain.step", inputs={"x": before}, outputs={"y": after}, parents=[])
    return refs[-1]


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[cas.Store, cas.Ref]]:
    with cas.open(tmp_path_factory.mktemp("deep") / "store") as opened:
        yield opened, _chain(opened, 2000)


def test_a_lineage_2000_runs_deep_is_walked_and_printed(deep: tuple[cas.Store, cas.Ref]) -> None:
    store, last = deep
    graph = store.lineage(last)
    assert len(graph.runs()) == 2000 and len(graph.artifacts()) == 2001 and graph.truncated is None
    text = graph.to_text()
    assert text.count("chain.step") == 0 and text.count("step ") == 2000  # labels show the last part
    assert max(len(line) for line in text.splitlines()) < 200  # deep lines keep a bounded indent
    assert graph.to_dot().count(" -> ") == 4000 and graph.to_mermaid() and graph.to_json_text()
    down = store.lineage(store.log()[-1].inputs["x"].hex(), "down")
    assert len(down.runs()) == 2000
    for fmt in ("text", "json"):
        result = CliRunner().invoke(main, ["--store", store.url, "lineage", last.hash, "--format", fmt])
        assert result.exit_code == 0 and "RecursionError" not in result.output


def test_a_lineage_walk_is_bounded_and_says_so(deep: tuple[cas.Store, cas.Ref]) -> None:
    store, last = deep
    graph = store.lineage(last, limit=101)
    assert len(graph.nodes) <= 102 and graph.truncated and "stopped after 101 nodes" in graph.to_text()
    assert "stopped after" in graph.to_dot() and graph.to_json()["truncated"]
    assert len(store.lineage(last, depth=10).runs()) == 10


def test_cycles_in_runs_and_forged_index_entries_end(store: cas.Store) -> None:
    a, b = (bytes.fromhex(store.resolve(n).hash) for n in ("a", "b"))
    same = store.record_run(step="identity", inputs={"x": a}, outputs={"y": a})  # a run outputting its own input
    there = store.record_run(step="there", inputs={"x": a}, outputs={"y": b})
    back = store.record_run(step="back", inputs={"x": b}, outputs={"y": a})  # a -> b -> a
    # Forged index entries: "there" listed as producing its own input, "back" as consuming its output.
    store.backend.write(f"produced/{a.hex()}/{there.id}", b"")
    store.backend.write(f"consumed/{a.hex()}/{back.id}", b"")
    for root in ("a", "b"):
        for direction in ("up", "down"):
            graph = store.lineage(root, direction)
            assert {n.label.split()[0] for n in graph.runs()} <= {"identity", "there", "back"}
            assert graph.to_text() and graph.to_dot()
    up = store.lineage("a")
    assert {n.id for n in up.runs()} == {same.id, there.id, back.id}
    # "there" made b, not a: the forged produced/ entry draws no edge into a
    assert {e.source for e in up.edges if e.target == a.hex()} == {same.id, back.id}
    down = store.lineage("a", "down")
    assert {e.target for e in down.edges if e.source == a.hex()} == {same.id, there.id}


def test_a_bad_run_in_the_middle_of_a_lineage_is_skipped(store: cas.Store) -> None:
    made = store.record_run(step="made", inputs={"x": "a"}, outputs={"y": "b"})
    bad = plant_run(store, made, ended=math.nan)
    store.backend.write(f"produced/{store.resolve('b').hash}/{to_hex(bad)}", b"")
    graph = store.lineage("b")
    assert [n.id for n in graph.runs()] == [made.id] and len(graph.skipped) == 1
    assert "unreadable runs left out" in graph.to_text()


def test_walk_refuses_nothing_but_bounds_everything() -> None:
    """A hostile index claiming a million producers costs at most ``limit`` loads."""
    loads = []

    def load_run(h: bytes) -> Run:
        loads.append(h)
        raise cas.ObjectNotFoundError("gone")

    producers = [i.to_bytes(32, "big") for i in range(1_000_000)]
    graph = walk(bytes(32), "up", None, load_run, lambda _: producers, lambda _: [], lambda _: ("x", {}), limit=500)
    assert len(loads) < 500 and graph.truncated and len(graph.skipped) == len(loads)


def test_every_valid_time_has_a_twenty_digit_log_key(store: cas.Store) -> None:
    for t in (0.0, 32503679999.999):
        run = store.record_run(step="s", outputs={"y": "b"}, started=0.0, ended=t)
        stamp = RunIndex.log_key(run).rsplit("/", 1)[1].split("-")[0]
        assert len(stamp) == 20 and stamp.isdigit()


def test_a_version_with_an_absurd_time_still_prints(store: cas.Store) -> None:
    target = bytes.fromhex(store.resolve("b").hash)
    for number, created in ((2, 1e300), (3, math.nan)):
        store.backend.write(f"refs/b/@v/{number}", codec.seal(RefRecord(target, created, number).to_bytes()))
    for entry in store.log("b"):  # each version is listed (or, if a reader refuses its time, skipped)
        assert str(entry)
    result = CliRunner().invoke(main, ["--store", store.url, "log", "b"])
    assert result.exit_code == 0 and "b@1" in result.stdout

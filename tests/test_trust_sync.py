"""Pull, clone, push and read-through from a store someone else can write (issue 15, items 3, 4, 7, 9, 12).

Every attack writes hash-valid objects and ref files into the *source* store
the way any writer of it could (its own API, its encoders, its backend), then
checks the victim's side. Sources live on the local disk and on memory://;
one test runs the whole set against SeaweedFS S3. None of the data here
crosses the 1 MiB chunking threshold except ``BIG`` (2 MiB: chunked, packed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import _cleanup, _needs_server, make_url

import cas
from cas import codec
from cas.objects import RefRecord
from cas.refs import names_key
from cas.runs import Run

BIG = 2 << 20  # chunked into packs


@pytest.fixture(params=["local", "memory"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    _needs_server(request)
    url = make_url(request.param, tmp_path / "source")
    yield url
    _cleanup(url)


# -- what a writer of the source can do ------------------------------------------------
def plant_ref(store: cas.Store, key: str, record: RefRecord) -> None:
    """A ref file, sealed exactly as cas writes one."""
    store.backend.write(key, codec.seal(record.to_bytes()))


def plant_version(store: cas.Store, name: str, number: int, target: bytes) -> None:
    plant_ref(store, f"refs/{name}/@v/{number}", RefRecord(target, time.time(), number))
    store.backend.write(names_key(target, name, number), b"")


def raw(ref: cas.Ref) -> bytes:
    return bytes.fromhex(ref.hash)


def plant_run(store: cas.Store, run: Run, *, produced: bytes | None = None) -> bytes:
    """A run object (any field values the encoding takes), with the index files that find it."""
    run_hash = store.objects.put_object(run.to_bytes(), loose=True)
    store.backend.write(f"runlog/2026-01-01/{1:020d}-{run_hash.hex()}", b"")
    if produced is not None:
        store.backend.write(f"produced/{produced.hex()}/{run_hash.hex()}", b"")
    return run_hash


def a_run(**fields: object) -> Run:
    base: dict[str, object] = dict(
        step="x.y", code=bytes(32), params={}, inputs={}, outputs={}, cache_key=bytes(32),
        started=1.7e9, ended=1.7e9 + 1, status="completed", returns="none",
    )  # fmt: skip
    base.update(fields)
    return Run(**base)  # type: ignore[arg-type]


# -- item 3: tags and labels -------------------------------------------------------------
def test_a_pulled_tag_or_label_must_agree_with_its_version(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        one, two = src.put(b"one", "m"), src.put(b"two", "m")
        other = src.put(b"planted")  # hash-valid, unnamed
        plant_ref(src, "refs/m/@tag/prod", RefRecord(raw(other), time.time(), 1))  # says version 1
        plant_ref(src, "refs/m/@label/v9", RefRecord(raw(one), time.time(), 2, "v9"))  # version 2 is "two"
        plant_ref(src, "refs/m/@tag/ghost", RefRecord(raw(two), time.time(), 7))  # no version 7 anywhere
        plant_ref(src, "refs/m/@tag/good", RefRecord(raw(two), time.time(), 2))
    with cas.open(tmp_path / "victim") as victim:
        report = victim.pull(source_url)
        assert sorted(s.what for s in report.skipped) == ["m@ghost", "m@prod", "m@v9"]
        assert "version 1 is" in next(s.why for s in report.skipped if s.what == "m@prod")
        assert victim.get("m@good") == b"two" and victim.get("m@1") == b"one"
        for ref in ("m@prod", "m@v9", "m@ghost"):
            with pytest.raises(cas.RefNotFoundError):
                victim.resolve(ref)
        assert not victim.exists(other.hash)  # a skipped tag brings nothing
        assert "skipped m@prod" in str(report)
        assert not victim.pull(source_url).refs  # a later pull skips them again: nothing survives


def test_pulled_names_follow_the_rules_of_a_put_here(tmp_path: Path, source_url: str) -> None:
    """Look-alike, hex and case-twin names a writer planted in the source are not created here."""
    with cas.open(source_url) as src:
        data = src.put(b"planted")
        src.put(b"fine", "model")
        for name in ("m\u043edel", "deadbeef", "Model", "zero\u200bwidth"):  # Cyrillic o, hex, case twin, ZWSP
            plant_version(src, name, 1, raw(data))
        plant_ref(src, "refs/model/@tag/pr\u043ed", RefRecord(raw(src.resolve("model@1")), time.time(), 1))
    with cas.open(tmp_path / "victim") as victim:
        victim.put(b"mine", "model")
        report = victim.pull(source_url, on_conflict="rename")
        skipped = sorted(s.what for s in report.skipped)
        assert skipped == sorted(["m\u043edel@1", "deadbeef@1", "Model@1", "zero\u200bwidth@1", "model@pr\u043ed"])
        assert set(victim.names()) == {"model"} and victim.get("model@1") == b"mine"
    with cas.open(tmp_path / "legacy") as legacy:  # a name the destination already has still syncs
        plant_version(legacy, "deadbeef", 1, raw(legacy.put(b"old")))
        assert "deadbeef@1" not in [s.what for s in legacy.pull(source_url, on_conflict="skip").skipped]


def test_reading_a_remote_writes_nothing_there(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        src.put(np.arange(BIG // 8, dtype=np.float64), "big")
        keys = sorted(src.backend.list(""))
    with cas.open(tmp_path / "victim") as victim:
        victim.pull(source_url)
    cas.clone(source_url, tmp_path / "clone").close()
    with cas.open(tmp_path / "reader") as reader:
        reader.remotes.add("origin", source_url, read_through=True)
        assert reader.get("big").nbytes == BIG
    with cas.open(source_url) as src:
        assert sorted(src.backend.list("")) == keys


def test_a_tag_dated_in_the_future_is_refused_and_never_wins(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        src.put(b"one", "m")
        two = src.put(b"two", "m")
    with cas.open(tmp_path / "victim") as victim:
        victim.pull(source_url)
        victim.tag("m@1", "prod")
        with cas.open(source_url) as src:  # right target and version, but dated ten years ahead
            plant_ref(src, "refs/m/@tag/prod", RefRecord(raw(two), time.time() + 10 * 365 * 86400, 2))
            plant_ref(src, "refs/m/@tag/skew", RefRecord(raw(two), time.time() + 60, 2))  # within the skew
        report = victim.pull(source_url)
        assert [s.what for s in report.skipped] == ["m@prod"] and "ahead of this clock" in report.skipped[0].why
        assert victim.get("m@prod") == b"one" and victim.get("m@skew") == b"two"
        # One already here (an older cas copied it) loses to any valid tag, however old.
        plant_ref(victim, "refs/m/@tag/prod", RefRecord(raw(two), time.time() + 10 * 365 * 86400, 2))
        with cas.open(source_url) as src:
            src.tag("m@1", "prod")
        report = victim.pull(source_url)
        assert "m@prod" in report.refs and victim.get("m@prod") == b"one"


def test_a_poisoned_tag_does_not_spread_on_push(tmp_path: Path) -> None:
    with cas.open(tmp_path / "victim") as victim, cas.open(tmp_path / "team") as team:
        victim.put(b"one", "m")
        other = victim.put(b"other")
        # As an older cas would have copied them: a tag that lies about its version, one from the future.
        plant_ref(victim, "refs/m/@tag/liar", RefRecord(raw(other), time.time(), 1))
        plant_ref(victim, "refs/m/@tag/later", RefRecord(raw(victim.resolve("m@1")), time.time() + 1e8, 1))
        report = victim.push(team)
        assert report.refs == ["m@1"] and sorted(s.what for s in report.skipped) == ["m@later", "m@liar"]
        assert sorted(team.backend.list("refs/")) == ["refs/m/@v/1"]


# -- item 4: runs from another store and the cache -------------------------------------------
def threshold(n: int) -> int:
    CALLS.append(n)
    return n + 1


CALLS: list[int] = []


def forge_cached_run(src: cas.Store, tmp_path: Path) -> None:
    """A completed run under the victim's cache key for threshold(21), whose output is 999999."""
    with cas.open(tmp_path / "attacker") as scratch:  # the same code: the same key, as anyone can compute
        _, honest = scratch.step(threshold).call(21)
    forged = src.put(999999)
    src.record_run(
        step=honest.step, code=honest.code, params={"n": 21}, outputs={"output": forged},
        cache_key=honest.cache_key, returns="single", order=("output",),
    )  # fmt: skip
    src.put(b"something", "data")


def test_pulled_runs_answer_cache_lookups_only_from_a_trusted_remote(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        forge_cached_run(src, tmp_path)
    with cas.open(tmp_path / "victim") as victim:
        victim.remotes.add("origin", source_url)
        report = victim.pull()
        assert report.runs == 1 and len(victim.log()) == 1  # copied for log and lineage
        assert list(victim.backend.list("cache/")) == []
        CALLS.clear()
        assert victim.step(threshold)(21) == 22 and CALLS == [21]  # the body ran
        # The untrusted run is never laundered: pushed on, it is no cache entry there either.
        with cas.open(tmp_path / "team") as team:
            victim.push(team)
            assert len(team.log()) == 2 and victim.run_index.cached(victim.log()[0].cache_key) is not None
            forged = next(r for r in team.log() if r.outputs and team.get(r.outputs["output"].hex()) == 999999)
            assert team.cached_run(forged.cache_key) != forged
    with cas.open(tmp_path / "trusting") as trusting:  # the user's explicit choice: then it is a hit
        trusting.remotes.add("origin", source_url, trust_cache=True)
        trusting.pull()
        CALLS.clear()
        assert trusting.step(threshold)(21) == 999999 and CALLS == []


def test_rebuilding_the_run_index_does_not_make_pulled_runs_cache_hits(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        forge_cached_run(src, tmp_path)
    with cas.open(tmp_path / "victim") as victim:
        victim.remotes.add("origin", source_url)
        victim.pull()
        assert victim.rebuild_run_index() == 1
        CALLS.clear()
        assert victim.step(threshold)(21) == 22 and CALLS == [21]  # the forged run is no hit
        own = victim.log()[0]
        assert victim.rebuild_run_index() == 2  # the victim's own cache entry survives a rebuild
        assert victim.cached_run(own.cache_key) == own


def test_clone_and_read_through_do_not_trust_runs_unless_asked(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        forge_cached_run(src, tmp_path)
    CALLS.clear()
    with cas.clone(source_url, tmp_path / "clone") as copy:
        assert len(copy.log()) == 1 and not copy.remotes.get("origin").trust_cache
        assert copy.step(threshold)(21) == 22 and CALLS == [21]
    with cas.open(tmp_path / "reader") as reader:
        reader.remotes.add("origin", source_url, read_through=True)
        assert reader.get("data") == b"something"
        assert reader.step(threshold)(21) == 22 and CALLS == [21, 21]
    with cas.clone(source_url, tmp_path / "trusted", trust_cache=True) as copy:
        assert copy.remotes.get("origin").trust_cache
        assert copy.step(threshold)(21) == 999999 and CALLS == [21, 21]


def test_trust_marks_are_json_booleans(tmp_path: Path) -> None:
    with cas.open(tmp_path / "here") as here:
        here.backend.write("remotes", json.dumps({"o": {"url": "/x", "trust_cache": "false"}}).encode())
        with pytest.raises(cas.CorruptObjectError, match="trust_cache"):
            here.remotes.all()


# -- item 7: clone copies no policy; configs are range-checked ---------------------------------
def test_clone_takes_chunking_but_no_policy_from_the_source(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        src.put(b"x", "x")
        value = json.loads(src.config.to_bytes())
        value.update(allow_pickle=True, gc_grace=86400.0, compression_level=3)
        value["chunking"]["min_size"] = 32 << 10
        src.backend.write("config", json.dumps(value).encode())
    with cas.clone(source_url, tmp_path / "clone") as copy:
        assert not copy.config.allow_pickle and not copy.allow_pickle and copy.config.gc_grace == 3600.0
        assert copy.config.chunking.min_size == 32 << 10 and copy.config.compression_level == 3
        with pytest.raises(cas.UnsupportedTypeError):
            copy.put(object())  # no pickling by the source's say-so


def chunking(**change: int) -> dict[str, object]:
    value: dict[str, object] = {"algorithm": "fastcdc2020", "min_size": 4096, "avg_size": 8192, "max_size": 65536}
    return {**value, "normalization": 1, "seed": 0, **change}


BAD_CONFIGS = [
    ("gc_grace", {"gc_grace": -1e9}),
    ("gc_grace", {"gc_grace": "3600"}),
    ("gc_grace", {"gc_grace": float("nan")}),
    ("gc_grace", {"gc_grace": 1e300}),
    ("compression_level", {"compression_level": 99}),
    ("compression_level", {"compression_level": 1.5}),
    ("allow_pickle", {"allow_pickle": "yes"}),
    ("format", {"format": 0}),
    ("format", {"format": True}),
    ("chunking", {"chunking": chunking(min_size=1 << 20, avg_size=4096, max_size=8192)}),
    ("chunking", {"chunking": chunking(max_size=1 << 30)}),
    ("chunking.seed", {"chunking": chunking(seed=-1)}),
    ("chunking.normalization", {"chunking": chunking(normalization=9)}),
    ("chunking.algorithm", {"chunking": {"algorithm": "rabin"}}),
]


@pytest.mark.parametrize(("field", "change"), BAD_CONFIGS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_CONFIGS)])
def test_a_config_out_of_range_is_refused_naming_the_field(
    tmp_path: Path, source_url: str, field: str, change: dict[str, object]
) -> None:
    with cas.open(source_url) as src:
        src.put(b"x", "x")
        value = json.loads(src.config.to_bytes())
        value.update(change)
        src.backend.write("config", json.dumps(value).encode())  # json writes NaN as NaN, as Python reads it
    with pytest.raises(cas.InvalidConfigError) as caught:
        cas.open(source_url, create=False)
    assert caught.value.field == field and field.split(".")[-1] in str(caught.value)
    with pytest.raises(cas.InvalidConfigError):
        cas.clone(source_url, tmp_path / "clone")
    with cas.open(tmp_path / "victim") as victim, pytest.raises(cas.InvalidConfigError):
        victim.pull(source_url)


def test_a_config_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as s:
        s.put(b"x")
    for data in (b"[" * 100_000, b"x" * (1 << 20), b"[]", b"{}"):
        (tmp_path / "s" / "config").write_bytes(data)
        with pytest.raises(cas.CorruptObjectError):
            cas.open(tmp_path / "s", create=False)


# -- item 9: one bad record does not stop a pull or clone ---------------------------------------
def plant_bad_records(src: cas.Store) -> dict[str, bytes]:
    """Good refs a and b, and beside them everything that must be skipped."""
    src.put(b"alpha", "a")
    b = src.put(np.random.default_rng(1).bytes(BIG), "b")
    tree = src._artifact(b).tree
    plant_version(src, "c", 1, tree)  # a ref pointing at a tree, not an artifact
    packs = set(src.backend.list("packs/"))
    src.put(np.random.default_rng(2).bytes(BIG), "d")
    for key in set(src.backend.list("packs/")) - packs:  # d's chunks are gone (its index stays)
        src.backend.delete(key)
    plant_version(src, "e", 1, bytes(range(32)))  # a ref to nothing at all
    plant_ref(src, f"refs/e/@v/{'9' * 40}", RefRecord(raw(b), time.time(), None))  # no u64 holds that number
    bad_times = {}
    for label, when in (("huge", 1e300), ("nan", float("nan")), ("inf", float("inf"))):
        bad_times[label] = plant_run(src, a_run(outputs={"output": raw(b)}, ended=when), produced=raw(b))
    bad_times["missing"] = bytes(range(1, 33))
    src.backend.write(f"runlog/2026-01-01/{2:020d}-{bad_times['missing'].hex()}", b"")  # a run that is not there
    plant_run(src, a_run(step="good", outputs={"output": raw(b)}), produced=raw(b))
    return bad_times


def check_victim(victim: cas.Store, report: cas.TransferReport, bad_runs: dict[str, bytes]) -> None:
    assert victim.get("a") == b"alpha" and len(victim.get("b")) == BIG
    assert sorted(victim.names()) == ["a", "b"]
    skipped = {s.what: s.why for s in report.skipped}
    assert {"c@1", "d@1", "e@1", f"e@{'9' * 40}"} <= skipped.keys()
    assert "not an artifact" in skipped["c@1"] and "missing" in skipped["d@1"]
    for run_hash in bad_runs.values():
        assert f"run {run_hash.hex()[:12]}" in skipped
    assert [r.step for r in victim.log()] == ["good"]
    assert victim.fsck().ok


def test_one_bad_ref_run_or_object_does_not_stop_a_pull(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        bad_runs = plant_bad_records(src)
    with cas.open(tmp_path / "victim") as victim:
        report = victim.pull(source_url)
        check_victim(victim, report, bad_runs)
        assert "skipped c@1" in str(report)
        again = victim.pull(source_url)
        assert not again.refs and {s.what for s in again.skipped} >= {"c@1", "d@1", "e@1"}


def test_one_bad_ref_run_or_object_does_not_stop_a_clone(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        bad_runs = plant_bad_records(src)
    reports: list[cas.TransferReport] = []
    with cas.clone(source_url, tmp_path / "clone", on_report=reports.append) as copy:
        check_victim(copy, reports[0], bad_runs)


def test_a_named_pull_of_a_bad_ref_reports_it(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        plant_bad_records(src)
        plant_ref(src, "refs/a/@tag/broken", RefRecord(bytes(32), 0.0, 1))  # version 1 of a is another artifact
        src.backend.write("refs/a/@tag/rotten", b"not a sealed record")
    with cas.open(tmp_path / "victim") as victim:
        report = victim.pull(source_url, ["c@1", "a", "d"])
        assert report.refs == ["a@1"]
        assert {s.what for s in report.skipped} >= {"c@1", "d@1", "a@broken", "a@rotten"}


# -- item 12: read-through with a missing or damaged object -------------------------------------
def test_info_get_exists_log_through_read_through_raise_only_typed_errors(tmp_path: Path, source_url: str) -> None:
    with cas.open(source_url) as src:
        src.put(np.random.default_rng(3).bytes(BIG), "whole")
        packs = set(src.backend.list("packs/"))
        src.put(np.random.default_rng(4).bytes(BIG), "gone")
        gone = set(src.backend.list("packs/")) - packs
        src.put(np.random.default_rng(5).bytes(BIG), "rotten")
        rotten = set(src.backend.list("packs/")) - packs - gone
        for key in gone:
            src.backend.delete(key)
        for key in rotten:
            data = bytearray(src.backend.read(key))
            data[200] ^= 0xFF
            src.backend.write(key, bytes(data))
    with cas.open(tmp_path / "reader") as reader:
        reader.remotes.add("origin", source_url, read_through=True)
        info = reader.info("whole")  # nothing fetched yet: sizes come from the remote
        assert info.size == BIG and info.stored_size > 0
        assert reader.get("whole") is not None
        for name in ("gone", "rotten"):
            try:
                reader.info(name)  # the pack index still describes the lost chunks
            except cas.CasError:
                pass
            with pytest.raises(cas.CasError):
                reader.get(name)
            assert reader.exists(name) in (True, False)
            assert reader.log(name) == []
    with cas.open(source_url) as src:  # now the indexes go too: no size is known anywhere
        for key in list(src.backend.list("index/")):
            src.backend.delete(key)
    with cas.open(tmp_path / "reader2") as reader:
        reader.remotes.add("origin", source_url, read_through=True)
        with pytest.raises(cas.ObjectNotFoundError):
            reader.info("gone")  # was FileNotFoundError
        with pytest.raises(cas.ObjectNotFoundError):
            reader.get("gone")


# -- all of it once on S3 ---------------------------------------------------------------------
def test_every_attack_on_an_s3_source(tmp_path: Path, seaweed: object) -> None:
    url = make_url("s3", tmp_path)
    with cas.open(url) as src:
        bad_runs = plant_bad_records(src)
        forge_cached_run(src, tmp_path)
        m = src.put(b"m1", "m")
        plant_ref(src, "refs/m/@tag/prod", RefRecord(raw(src.put(b"other")), time.time(), 1))
        plant_ref(src, "refs/m/@tag/later", RefRecord(raw(m), time.time() + 1e6, 1))
        value = json.loads(src.config.to_bytes())
        value.update(allow_pickle=True)
        src.backend.write("config", json.dumps(value).encode())
    CALLS.clear()
    reports: list[cas.TransferReport] = []
    with cas.clone(url, tmp_path / "clone", on_report=reports.append) as copy:
        report = reports[0]
        assert {"m@prod", "m@later", "c@1", "d@1", "e@1"} <= {s.what for s in report.skipped}
        assert copy.get("a") == b"alpha" and copy.get("m@1") == b"m1" and not copy.allow_pickle
        assert copy.step(threshold)(21) == 22 and CALLS == [21]
        assert all(f"run {h.hex()[:12]}" in {s.what for s in report.skipped} for h in bad_runs.values())
        assert copy.fsck().ok
    with cas.open(tmp_path / "reader") as reader:
        reader.remotes.add("origin", url, read_through=True)
        assert reader.info("b").size == BIG
        with pytest.raises(cas.CasError):
            reader.get("d")


# -- the CLI shows what was skipped, and takes the trust marks ----------------------------------
def test_cli_reports_skipped_refs_and_takes_trust_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cas.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAS_STORE", raising=False)
    source = str(tmp_path / "source")
    with cas.open(source) as src:
        plant_bad_records(src)
    run = CliRunner().invoke
    here = ["--store", str(tmp_path / "here")]
    assert run(main, ["init", str(tmp_path / "here")]).exit_code == 0
    added = run(main, [*here, "remote", "add", "origin", source, "--trust-cache"])
    assert added.exit_code == 0 and "trusted for caching" in added.output
    with cas.open(tmp_path / "here") as store:
        assert store.remotes.get().trust_cache
    pulled = run(main, [*here, "pull"])
    assert pulled.exit_code == 1 and "skipped c@1" in pulled.output and "not an artifact" in pulled.output
    as_json = json.loads(run(main, [*here, "pull", "--json"]).output)
    assert any(s.startswith("c@1: ") for s in as_json["skipped"])
    cloned = run(main, ["clone", source, str(tmp_path / "copy"), "--trust-cache"])
    assert cloned.exit_code == 1 and "skipped d@1" in cloned.output and "2 names" in cloned.output
    with cas.open(tmp_path / "copy") as copy:
        assert copy.remotes.get().trust_cache

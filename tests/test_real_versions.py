"""Versions that say something (#16 item 7): a name gets a new version only when its content changes.

Putting what a name's latest version (the highest number not deleted) already
holds returns that version; different content, even an older version's, makes
a new latest; ``new_version=True`` forces one; a new label always makes one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas import codec
from cas.cli import main
from cas.objects import RefRecord


def _ref_keys(store: cas.Store) -> set[str]:
    return set(store.backend.list("refs/")) | set(store.backend.list("names/"))


def test_identical_reput_returns_the_latest_version(store: cas.Store) -> None:
    first = store.put({"weights": [1, 2, 3]}, "model")
    keys = _ref_keys(store)
    again = store.put({"weights": [1, 2, 3]}, "model")
    assert (again.number, again.hash, str(again)) == (1, first.hash, "model@1")
    assert _ref_keys(store) == keys  # no version file, no reverse-index entry
    assert [r.number for r in store.versions("model")] == [1]
    assert store.resolve("model") == again


def test_different_content_makes_a_new_version_and_older_content_a_newer_one(store: cas.Store) -> None:
    a = store.put(b"first", "m")
    b = store.put(b"second", "m")
    assert (a.number, b.number) == (1, 2)
    back = store.put(b"first", "m")  # a cache hit bringing back older content becomes the latest
    assert back.number == 3 and back.hash == a.hash
    assert store.get("m") == b"first"
    assert store.put(b"first", "m").number == 3


def test_new_version_forces_one(store: cas.Store) -> None:
    store.put(b"same", "m")
    forced = store.put(b"same", "m", new_version=True)
    assert forced.number == 2
    assert store.put(b"same", "m").number == 2
    with pytest.raises(cas.InvalidArgumentError):
        store.put(b"same", new_version=True)  # nothing to version without a name


def test_tags_move_on_an_identical_reput(store: cas.Store) -> None:
    store.put(b"one", "m", tags=["prod"])
    store.put(b"two", "m")
    store.put(b"one", "m", tags=["old"])  # differs from the latest: @3
    again = store.put(b"one", "m", tags=["prod", "best"])
    assert again.number == 3
    assert {t: store.resolve(f"m@{t}").number for t in ("prod", "best", "old")} == {"prod": 3, "best": 3, "old": 3}
    assert [r.number for r in store.versions("m")] == [1, 2, 3]


def test_a_new_label_always_makes_a_version_an_old_one_returns_its_own(store: cas.Store) -> None:
    store.put(b"a", "m")
    labelled = store.put(b"a", "m", version="v1")  # labels are immutable names of versions: a new one
    assert (labelled.number, str(labelled)) == (2, "m@v1")
    assert store.put(b"a", "m", version="v1").number == 2  # the label already names this content
    plain = store.put(b"a", "m")  # the latest (labelled) version holds it
    assert (plain.number, str(plain)) == (2, "m@v1")
    with pytest.raises(cas.RefExistsError):
        store.put(b"b", "m", version="v1")
    assert [r.number for r in store.versions("m")] == [1, 2]


def test_a_deleted_number_is_never_reused_and_the_latest_live_version_counts(store: cas.Store) -> None:
    store.put(b"a", "m")
    store.put(b"b", "m")
    store.delete("m@2")
    assert store.put(b"a", "m").number == 1  # @1 is the latest live version and holds it
    again = store.put(b"b", "m")
    assert again.number == 3 and store.get("m") == b"b"  # never @2 again


def test_another_writer_is_seen(store_url: str) -> None:
    with cas.open(store_url) as mine, cas.open(store_url) as theirs:
        mine.put(b"x", "m")
        assert theirs.put(b"y", "m").number == 2
        assert mine.put(b"y", "m").number == 2  # their newer version already holds it
        theirs.delete("m@2")
        assert mine.put(b"y", "m").number == 3  # the content of a deleted version: a new number
        assert mine.put(b"y", "m").number == 3


def test_an_unreadable_latest_version_counts_as_other_content(store: cas.Store) -> None:
    first = store.put(b"a", "m")
    record = RefRecord(bytes.fromhex(first.hash), 0.0, 1, None)  # says it is version 1, filed as 2
    store.backend.write("refs/m/@v/2", codec.seal(record.to_bytes()))
    store.backend.write("refs/m/@v/3", b"not a ref file")
    with cas.open(store.url) as fresh:
        made = fresh.put(b"a", "m")
        assert made.number == 4 and fresh.get("m") == b"a"
        assert fresh.put(b"a", "m").number == 4


def test_a_step_cache_hit_named_again_mints_no_version(local_store: cas.Store) -> None:
    @local_store.step
    def train(rate: float) -> list[float]:  # not a dict: one artifact whatever a step does with dicts
        return [rate * 2, rate * 3]

    first = local_store.put(train(0.5), "model")
    value, run = train.call(0.5)
    assert run.status == "cached"
    again = local_store.put(value, "model")
    assert (again.number, again.hash) == (1, first.hash)
    other = local_store.put(train(0.1), "model")
    assert other.number == 2
    assert local_store.put(train(0.5), "model").number == 3  # back to the first model: the latest changed


def test_cas_demo_twice_mints_a_version_only_when_an_output_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAS_STORE", raising=False)
    first = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    cached_run = first.output.split("\n2. ")[1].split("\n3. ")[0]
    assert "no new version" in cached_run and "new versions:" not in cached_run
    with cas.open(tmp_path / ".cas") as store:
        for name in ("demo/model", "demo/metrics"):
            versions = store.versions(name)
            # run 1 (lr 0.5) and run 3 (lr 0.1): one version per distinct output, none for the cached run
            assert [v.number for v in versions] == [1, 2] and versions[0].hash != versions[1].hash
    second = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "no new version" in second.output.split("\n2. ")[1].split("\n3. ")[0]
    with cas.open(tmp_path / ".cas") as store:
        for name in ("demo/model", "demo/metrics"):
            hashes = [v.hash for v in store.versions(name)]
            # lr 0.5 then 0.1 again: each version differs from the one before it
            assert len(hashes) == 4 and all(a != b for a, b in zip(hashes, hashes[1:], strict=False))


def test_cli_put_new_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    url = str(tmp_path / "store")
    runner = CliRunner()
    assert runner.invoke(main, ["init", url]).exit_code == 0

    def put(*extra: str) -> str:
        result = runner.invoke(main, ["--store", url, "put", "data.csv", "-n", "table", *extra])
        assert result.exit_code == 0, result.output
        return result.output.split()[0]

    assert put() == "table@1"
    assert put() == "table@1"
    assert put("--new-version") == "table@2"

"""Issue 17 item 5: ``get`` returns values and ``export`` writes files; ``log`` returns runs and ``history`` versions."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas.cli import main
from cas.runs import Run


def _made_by_steps(store: cas.Store) -> None:
    @store.step
    def produce(i: int) -> str:
        return f"v{i}"

    for i in range(2):
        store.put(produce(i), "thing")
    store.put("by hand", "thing")


def test_export_writes_a_file_and_returns_the_path(local_store: cas.Store, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"payload" * 100)
    local_store.put(source, "file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        written = local_store.export("file", tmp_path / "out.bin")
    assert written == tmp_path / "out.bin" and isinstance(written, Path)
    assert written.read_bytes() == source.read_bytes()


def test_export_writes_a_folder_and_any_artifact(local_store: cas.Store, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    local_store.put(folder, "tree")
    written = local_store.export("tree", tmp_path / "restored")
    assert (written / "a.txt").read_text() == "a" and (written / "sub" / "b.txt").read_text() == "b"
    value = local_store.put({"k": [1, 2]}, "value")  # a value's stored files can be exported too
    assert local_store.export(value, tmp_path / "value-files").exists()
    with pytest.raises(cas.ArgumentTypeError):
        local_store.export("tree", 42)  # type: ignore[arg-type]


def test_get_with_path_warns_and_still_writes(local_store: cas.Store, tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_text("hello")
    local_store.put(source, "file")
    with pytest.warns(DeprecationWarning, match=r"export\(ref, path\)") as caught:
        written = local_store.get("file", path=tmp_path / "out.txt")
    assert caught[0].filename == __file__  # points at the caller, not at cas
    assert written == tmp_path / "out.txt" and written.read_text() == "hello"


def test_get_returns_values_and_refuses_files_pointing_to_export(local_store: cas.Store, tmp_path: Path) -> None:
    local_store.put({"a": 1}, "value")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert local_store.get("value") == {"a": 1}
    source = tmp_path / "data.txt"
    source.write_text("hello")
    local_store.put(source, "file")
    with pytest.raises(cas.PathRequiredError, match="export"):
        local_store.get("file")


def test_history_returns_the_versions_with_their_producers(local_store: cas.Store) -> None:
    _made_by_steps(local_store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        versions = local_store.history("thing")
    assert all(isinstance(v, cas.VersionLog) for v in versions) and versions.skipped == []
    assert [str(v.ref) for v in versions] == ["thing@3", "thing@2", "thing@1"]
    assert versions[0].run is None and "put directly" in str(versions[0])
    assert [v.run.params for v in versions[1:] if v.run is not None] == [{"i": 1}, {"i": 0}]
    assert [str(v.ref) for v in local_store.history("thing", limit=1)] == ["thing@3"]
    assert [str(v.ref) for v in local_store.history("thing", step="produce")] == ["thing@2", "thing@1"]
    assert local_store.history("nothing-here") == []
    with pytest.raises(cas.InvalidNameError):
        local_store.history("../bad")


def test_log_of_a_name_warns_and_returns_what_history_returns(local_store: cas.Store) -> None:
    _made_by_steps(local_store)
    with pytest.warns(DeprecationWarning, match=r"history\('thing'\)") as caught:
        old = local_store.log("thing", limit=2)
    assert caught[0].filename == __file__
    assert old == local_store.history("thing", limit=2)
    assert [str(v.ref) for v in old] == ["thing@3", "thing@2"] and isinstance(old, cas.LogEntries)


def test_log_returns_runs_only(local_store: cas.Store) -> None:
    _made_by_steps(local_store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = local_store.log()
        filtered = local_store.log(step="produce", limit=1)
    assert len(runs) == 2 and all(isinstance(r, Run) for r in runs) and runs.skipped == []
    assert [r.params["i"] for r in runs] == [1, 0]
    assert len(filtered) == 1 and isinstance(filtered[0], Run)
    assert local_store.log(step="no-such-step") == []


def test_cli_log_of_a_name_keeps_its_output(local_store: cas.Store) -> None:
    _made_by_steps(local_store)
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI uses the new calls
        versions = runner.invoke(main, ["--store", local_store.url, "log", "thing", "--oneline"])
        runs = runner.invoke(main, ["--store", local_store.url, "log", "--json"])
    assert versions.exit_code == 0, versions.output
    assert [line.split()[1] for line in versions.output.splitlines()] == ["thing@3", "thing@2", "thing@1"]
    assert runs.exit_code == 0, runs.output
    assert '"step"' in runs.output and '"ref"' not in runs.output

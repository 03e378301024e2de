"""Every command through click's runner, with its error paths and JSON output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas.cli import main, parse_duration


@pytest.fixture
def cli(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAS_STORE", raising=False)
    runner = CliRunner()

    def invoke(*args: str, store: bool = True):  # type: ignore[no-untyped-def]
        full = ["--store", store_url, *args] if store else list(args)
        return runner.invoke(main, full, catch_exceptions=False)

    invoke("init", store_url, store=False)
    return invoke


def test_put_get_show_ls_tag_rm(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.bin").write_bytes(os.urandom(3 << 20))
    put = cli("put", "data.csv", "--name", "table", "--tag", "prod")
    assert put.exit_code == 0 and put.output.startswith("table@1 ")
    assert cli("put", str(folder), "-n", "tree").exit_code == 0
    got = cli("get", "table@prod", "-o", "copy.csv")
    assert got.exit_code == 0 and (tmp_path / "copy.csv").read_text() == "a,b\n1,2\n"
    assert cli("get", "tree", "-o", "restored").exit_code == 0
    assert (tmp_path / "restored" / "sub" / "x.bin").read_bytes() == (folder / "sub" / "x.bin").read_bytes()
    (tmp_path / "data.csv").unlink()
    assert cli("get", "table").exit_code == 0 and (tmp_path / "data.csv").exists()  # its own name by default
    shown = cli("show", "table")
    assert "pathlib" in shown.output and "table@1" in shown.output
    data = json.loads(cli("show", "table", "--json").output)
    assert data["materializer"] == "cas.path" and data["producer"] is None
    listing = json.loads(cli("ls", "--json").output)
    assert {r["name"] for r in listing} == {"table", "tree"}
    assert cli("tag", "table@1", "golden").exit_code == 0
    assert cli("get", "table@golden", "-o", "g.csv").exit_code == 0
    assert cli("tag", "table", "golden", "--delete").exit_code == 0
    assert cli("get", "table@golden", "-o", "g.csv").exit_code == 1
    removed = cli("rm", "table")
    assert removed.exit_code == 0 and "removed table@1" in removed.output
    assert cli("show", "table").exit_code == 1


def test_bytes_artifact_to_stdout(cli, store_url: str) -> None:  # type: ignore[no-untyped-def]
    with cas.open(store_url) as s:
        s.put(b"raw payload", "raw")
    out = cli("get", "raw")
    assert out.exit_code == 0 and out.output == "raw payload"


def test_log_lineage_gc_fsck_du(cli, store_url: str) -> None:  # type: ignore[no-untyped-def]
    with cas.open(store_url) as s:

        @s.step(name="double")
        def double(xs: list[int]) -> list[int]:
            return [2 * x for x in xs]

        s.put(double(list(range(10))), "doubled")
        s.put({"scratch": True}, "scratch")
    log = cli("log")
    assert log.exit_code == 0 and "double" in log.output
    entries = json.loads(cli("log", "--json").output)
    assert entries[0]["step"] == "double" and entries[0]["status"] == "completed"
    assert "double" in cli("log", "--oneline", "-n", "1").output
    versions = json.loads(cli("log", "doubled", "--json").output)
    assert versions[0]["ref"] == "doubled@1" and versions[0]["run"] == entries[0]["run"]
    assert cli("log", "--step", "nothing").output == ""
    for fmt, marker in (("text", "double"), ("dot", "digraph"), ("mermaid", "flowchart")):
        out = cli("lineage", "doubled", "--format", fmt)
        assert out.exit_code == 0 and marker in out.output
    graph = json.loads(cli("lineage", "doubled", "--format", "json").output)
    assert any(n["kind"] == "run" for n in graph["nodes"])
    assert cli("lineage", "doubled", "--down").exit_code == 0
    assert cli("rm", "scratch").exit_code == 0
    dry = json.loads(cli("gc", "--dry-run", "--grace", "0", "--json").output)
    assert dry["dry_run"] and dry["removed"]
    done = cli("gc", "--grace", "0")
    assert done.exit_code == 0 and "removed" in done.output
    fsck = json.loads(cli("fsck", "--json").output)
    assert fsck["ok"] is True
    assert cli("fsck").exit_code == 0
    usage = json.loads(cli("du", "--json").output)
    assert usage["logical_bytes"] > 0 and usage["largest"][0]["name"] == "doubled"
    assert "dedup" in cli("du").output


def test_errors_are_one_line_and_exit_1(cli, store_url: str) -> None:  # type: ignore[no-untyped-def]
    for args in (("get", "missing"), ("show", "bad//name"), ("rm", "missing@3"), ("log", "bad name")):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert "Traceback" not in result.output
        assert result.output.startswith("cas: error: ") and result.output.count("\n") == 1
    with cas.open(store_url) as s:
        s.put(object, "pickled", allow_pickle=True)
    result = cli("get", "pickled", "-o", "x.pkl")  # exporting the file is fine...
    assert result.exit_code == 0
    result = CliRunner().invoke(main, ["--store", store_url, "--debug", "get", "missing"])
    assert isinstance(result.exception, cas.RefNotFoundError)  # --debug lets the traceback through


def test_corrupt_store_fsck_exit_1(cli, store_url: str) -> None:  # type: ignore[no-untyped-def]
    with cas.open(store_url) as s:
        ref = s.put(b"z" * 10_000, "z")
        key = f"objects/{ref.hash[:2]}/{ref.hash[2:]}"
        s.backend.write(key, s.backend.read(key)[:-1] + b"!")
    result = cli("fsck")
    assert result.exit_code == 1 and "corrupt" in result.output
    assert cli("get", "z").exit_code == 1


def test_usage_errors_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("lineage").exit_code == 2
    assert cli("gc", "--grace", "soon").exit_code == 2
    assert cli("nonsense").exit_code == 2


def test_missing_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAS_STORE", raising=False)
    result = CliRunner().invoke(main, ["ls"])
    assert result.exit_code == 1 and "cas init" in result.output
    result = CliRunner().invoke(main, ["--store", str(tmp_path / "nowhere"), "ls"])
    assert result.exit_code == 1 and "no cas store" in result.output


def test_durations() -> None:
    assert parse_duration("0") == 0 and parse_duration("90") == 90 and parse_duration("15m") == 900
    assert parse_duration("2h") == 7200 and parse_duration("1.5d") == 129600 and parse_duration("1w") == 604800


def test_demo_in_a_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAS_STORE", raising=False)
    result = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    first, second, third = out.split("\n1. ")[1], out.split("\n2. ")[1], out.split("\n3. ")[1]
    assert first.split("\n2. ")[0].count("executed") == 5
    assert second.split("\n3. ")[0].count(" cache hit ") == 5  # the title says "cache hit" too
    third_block = third.split("\nlog")[0]
    assert third_block.count("cache hit") == 3 and third_block.count("executed") == 2
    assert "where demo/model came from" in out and "make_dataset" in out.split("came from")[1]
    assert (tmp_path / ".cas" / "config").is_file()  # the local default store


def test_remote_push_pull_clone(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.txt").write_text("alpha\n")
    assert cli("put", "a.txt", "-n", "a").exit_code == 0
    shared = str(tmp_path / "shared")
    added = cli("remote", "add", "origin", shared)
    assert added.exit_code == 0 and "origin" in added.output
    listed = json.loads(cli("remote", "list", "--json").output)
    assert listed == [{"name": "origin", "url": shared, "read_through": False, "trust_cache": False}]
    pushed = cli("push")
    assert pushed.exit_code == 0 and "1 refs" in pushed.output
    assert "up to date" in cli("push", "origin", "a").output
    report = json.loads(cli("push", "--json").output)
    assert report["objects"] == 0 and report["unchanged"] == 1
    cloned = cli("clone", shared, str(tmp_path / "copy"), store=False)
    assert cloned.exit_code == 0 and "1 names" in cloned.output
    copy = ["--store", str(tmp_path / "copy")]
    assert cli(*copy, "get", "a", "-o", "back.txt", store=False).exit_code == 0
    assert (tmp_path / "back.txt").read_text() == "alpha\n"
    (tmp_path / "b.txt").write_text("beta\n")
    assert cli(*copy, "put", "b.txt", "-n", "a", store=False).exit_code == 0
    assert cli(*copy, "push", store=False).exit_code == 0
    assert "1 refs" in cli("pull").output
    (tmp_path / "c.txt").write_text("gamma\n")
    assert cli("put", "c.txt", "-n", "a").exit_code == 0  # a@3 here
    assert cli(*copy, "put", "a.txt", "-n", "a", "--version", "x", store=False).exit_code == 0  # a@3 there
    assert cli(*copy, "push", store=False).exit_code == 0
    conflict = cli("pull")
    assert conflict.exit_code == 1 and "a@3" in conflict.output
    renamed = cli("push", "--on-conflict", "rename")
    assert renamed.exit_code == 0 and "a@3 -> a@4" in renamed.output
    assert cli("remote", "remove", "origin").exit_code == 0
    missing = CliRunner().invoke(main, ["--store", str(tmp_path / "copy"), "remote", "remove", "nope"])
    assert missing.exit_code == 1 and "no remote" in missing.output


def test_visualize_and_ui_help(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("first line\nsecond line\n")
    assert cli("put", "notes.txt", "-n", "notes").exit_code == 0
    shown = cli("visualize", "notes")
    assert shown.exit_code == 0 and "files" in shown.output and "text/html" in shown.output
    helped = cli("ui", "--help")
    assert helped.exit_code == 0 and "127.0.0.1" in helped.output and "only this machine" in helped.output

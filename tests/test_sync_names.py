"""Ref names that break the naming rules (#21 item 16): refused on pull, removable with ``cas rm``.

Such files are planted on disk (no cas writes them): a name with an escape
sequence, ``a@b``, ``-rf``, a trailing dot, and a label ``a@b``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas.cli import main

BAD_NAMES = ["\x1b[31mred", "a@b", "-rf", "x."]


def _plant(root: Path) -> str:
    """A store at ``root`` with ``ok@1``, and copies of its ref (and reverse-index entry) under each bad name."""
    with cas.open(root) as store:
        target = store.put(b"payload", "ok").hash
    entry = next((root / "names").glob("*/ok"))
    for bad in BAD_NAMES:
        shutil.copytree(root / "refs" / "ok", root / "refs" / bad)
        shutil.copytree(entry, entry.parent / bad)
    (root / "refs" / "ok" / "@label").mkdir()
    shutil.copy(root / "refs" / "ok" / "@v" / "1", root / "refs" / "ok" / "@label" / "a@b")
    return target


def _ref_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / "refs")) for p in (root / "refs").rglob("*") if p.is_file())


def test_pull_refuses_names_that_break_the_rules_and_copies_the_rest(tmp_path: Path) -> None:
    _plant(tmp_path / "src")
    with cas.open(tmp_path / "dst") as dst:
        report = dst.pull(str(tmp_path / "src"))
        assert report.refs == ["ok@1"]
        assert dst.get("ok") == b"payload"
    skipped = {s.what for s in report.skipped}
    assert skipped == {f"{bad}@1" for bad in BAD_NAMES} | {"ok@a@b"}, report.skipped
    assert all(s.why for s in report.skipped)
    assert _ref_files(tmp_path / "dst") == ["ok/@v/1"]


def test_cli_pull_names_the_refused_refs_without_letting_them_reach_the_terminal(tmp_path: Path) -> None:
    _plant(tmp_path / "src")
    cas.open(tmp_path / "dst").close()
    result = CliRunner().invoke(main, ["--store", str(tmp_path / "dst"), "pull", str(tmp_path / "src")])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\\x1b[31mred@1" in result.output
    for shown in ("a@b@1", "-rf@1", "x.@1", "ok@a@b"):
        assert f"skipped {shown}" in result.output, result.output


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_cas_rm_removes_a_name_that_breaks_the_rules(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "store"
    target = _plant(root)
    result = CliRunner().invoke(main, ["--store", str(root), "rm", "--", bad])
    assert result.exit_code == 0, result.output
    assert f"{bad}@1" in result.output.replace("\\x1b", "\x1b")
    assert not (root / "refs" / bad / "@v" / "1").exists()
    assert not (root / "names" / target / bad / "@v" / "1").exists()  # its reverse-index entry goes too
    assert (root / "names" / target / "ok" / "@v" / "1").exists()
    remaining = _ref_files(root)
    assert "ok/@v/1" in remaining and all(f.startswith("ok/") or f.split("/")[0] in BAD_NAMES for f in remaining)
    with cas.open(root) as store:
        assert store.get("ok") == b"payload"


def test_cas_rm_removes_a_label_that_breaks_the_rules_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _plant(root)
    result = CliRunner().invoke(main, ["--store", str(root), "rm", "ok@a@b"])
    assert result.exit_code == 0, result.output
    assert not (root / "refs" / "ok" / "@label" / "a@b").exists()
    assert (root / "refs" / "ok" / "@v" / "1").exists()


def test_cas_rm_of_a_bad_name_the_store_lacks_still_says_why(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _plant(root)
    result = CliRunner().invoke(main, ["--store", str(root), "rm", "--", "-absent"])
    assert result.exit_code == 1 and "must not begin" in result.output
    result = CliRunner().invoke(main, ["--store", str(root), "rm", "../ok"])  # never a path outside refs/
    assert result.exit_code == 1
    assert (root / "refs" / "ok" / "@v" / "1").exists()

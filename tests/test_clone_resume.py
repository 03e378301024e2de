"""An interrupted ``cas clone``, run again, completes itself (#21 item 17).

A clone writes objects first and refs last, so what an interruption leaves is
a store with ``origin`` set and some packs: running the same clone again pulls
what is missing. A store that is not a clone of that source is still refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas.cli import main


def _source(root: Path, *, artifacts: int = 3, size: int = 1 << 10) -> dict[str, bytes]:
    values = {f"data{i}": os.urandom(size) for i in range(artifacts)}
    with cas.open(root) as store:
        for name, value in values.items():
            store.put(value, name)
    return values


def _clone(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["clone", *args])
    return result.exit_code, result.output


def _check(target: Path, values: dict[str, bytes]) -> None:
    with cas.open(target, create=False) as store:
        assert sorted(store.names()) == sorted(values)
        for name, value in values.items():
            assert store.get(name) == value
        assert store.fsck().ok
        assert store.remotes.get("origin").url == str(target.parent / "src")


def test_a_clone_interrupted_before_its_refs_completes_when_run_again(tmp_path: Path) -> None:
    values = _source(tmp_path / "src")
    code, output = _clone(str(tmp_path / "src"), str(tmp_path / "copy"))
    assert code == 0, output
    shutil.rmtree(tmp_path / "copy" / "refs")  # what a kill before the last step leaves: objects, no refs
    shutil.rmtree(tmp_path / "copy" / "names")
    code, output = _clone(str(tmp_path / "src"), str(tmp_path / "copy"))
    assert code == 0, output
    assert "completed the clone" in output
    _check(tmp_path / "copy", values)


def test_a_clone_interrupted_before_it_named_its_origin_completes(tmp_path: Path) -> None:
    values = _source(tmp_path / "src")
    with cas.open(tmp_path / "src") as src:
        cas.remoting.create_like(src.repository, str(tmp_path / "copy"))  # the clone's first step, alone
    code, output = _clone(str(tmp_path / "src"), str(tmp_path / "copy"))
    assert code == 0, output
    _check(tmp_path / "copy", values)


def test_a_clone_of_another_store_or_a_store_in_use_is_still_refused(tmp_path: Path) -> None:
    _source(tmp_path / "src")
    _source(tmp_path / "other")
    code, _ = _clone(str(tmp_path / "other"), str(tmp_path / "copy"))
    assert code == 0
    code, output = _clone(str(tmp_path / "src"), str(tmp_path / "copy"))
    assert code == 1 and "not a clone of" in output
    with cas.open(tmp_path / "mine") as store:
        store.put(b"my own work", "notes")
    code, output = _clone(str(tmp_path / "src"), str(tmp_path / "mine"))
    assert code == 1 and "not a clone of" in output
    with cas.open(tmp_path / "mine") as store:
        assert list(store.names()) == ["notes"] and store.remotes.all() == {}


@pytest.mark.slow  # a clone process of ~60 MiB, killed while it copies
def test_a_killed_clone_completes_when_run_again(tmp_path: Path) -> None:
    # 120 MiB: more than one pack (64 MiB each), so a kill once the first is in place interrupts the copy
    values = _source(tmp_path / "src", artifacts=24, size=5 << 20)
    cli = str(Path(sys.executable).parent / "cas")
    target = tmp_path / "copy"
    process = subprocess.Popen([cli, "clone", str(tmp_path / "src"), str(target)], start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if (target / "packs").is_dir() and any(f.is_file() for f in (target / "packs").rglob("*")):
            break  # the first pack is in place: the rest, and every ref, are still to come
        time.sleep(0.005)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if killed:
        with cas.open(target, create=False) as partial:
            assert sorted(partial.names()) != sorted(values)  # really interrupted
    code, output = _clone(str(tmp_path / "src"), str(target))
    assert code == 0, output
    _check(target, values)


def test_the_library_clone_completes_an_interrupted_clone_too(tmp_path: Path) -> None:
    values = _source(tmp_path / "src")
    cas.clone(tmp_path / "src", tmp_path / "copy").close()
    shutil.rmtree(tmp_path / "copy" / "refs")  # interrupted before its refs
    shutil.rmtree(tmp_path / "copy" / "names")
    reports: list[cas.TransferReport] = []
    cas.clone(str(tmp_path / "src"), tmp_path / "copy", on_report=reports.append).close()
    assert reports and not reports[0].skipped
    _check(tmp_path / "copy", values)
    _source(tmp_path / "other", artifacts=1)
    with pytest.raises(cas.StoreExistsError, match="not a clone of"):
        cas.clone(tmp_path / "other", tmp_path / "copy")

"""The library's edges: what `import cas` pulls in, what it prints (nothing), what it exports, its version, progress."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

import cas
from cas.cli import main

ROOT = Path(__file__).resolve().parent.parent
OURS = ("cas", "materializers")
# The Repository's parts, which Store exposes for plumbing: their types belong to the layer below the public API.
PARTS = {"backend", "config", "objects", "refs", "run_index", "repository"}


def _fill(store: cas.Store, tmp_path: Path) -> None:
    """A store with something to gc (an unreachable artifact), to fsck, to count and to push."""
    store.put(b"kept" * 1000, "data")
    store.put({"a": [1, 2, 3]}, "value")
    (tmp_path / "file.txt").write_bytes(b"a file\n" * 100)
    store.put(tmp_path / "file.txt", "file")
    store.put(b"dropped" * 1000, "scratch")
    store.delete("scratch")

    @store.step(name="double")
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42 and double(21) == 42  # the second call is a cache hit: a run with cached_from


def _every_operation(tmp_path: Path, progress: cas.ProgressCallback | None = None) -> None:
    with cas.open(tmp_path / "store", create=True) as store:
        _fill(store, tmp_path)
        assert store.get("data") == b"kept" * 1000
        store.gc(grace=0, progress=progress)
        assert store.fsck(progress=progress).ok
        store.du(progress=progress)
        store.push(tmp_path / "remote", progress=progress)
        store.pull(tmp_path / "remote", progress=progress)
    with cas.clone(tmp_path / "remote", tmp_path / "cloned", progress=progress) as copy:
        assert copy.get("value") == {"a": [1, 2, 3]}


# -- the import graph --------------------------------------------------------------


def test_benchmarks_is_not_an_installed_package() -> None:
    line = re.search(r"^packages = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line is not None
    packages = re.findall(r'"([^"]+)"', line.group(1))
    assert "cas" in packages and not any(p == "benchmarks" or p.startswith("benchmarks.") for p in packages)


def test_using_cas_never_imports_benchmarks_and_prints_nothing(tmp_path: Path) -> None:
    # A fresh interpreter: this test session itself imports benchmarks.seaweed (the SeaweedFS fixture).
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_boundaries import _every_operation
        _every_operation(Path({str(tmp_path)!r}))
        leaked = sorted(m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks."))
        assert not leaked, leaked
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_the_library_writes_nothing_even_on_a_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, progress bars went to stderr whenever it was a terminal.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _every_operation(tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- the public surface -------------------------------------------------------------


def test_the_version_is_the_installed_metadata() -> None:
    assert cas.__version__ == importlib.metadata.version("cas-store")
    assert "__version__" in cas.__all__


def _own_class(name: str, module: ModuleType) -> type | None:
    """The cas or materializers class ``name`` means in ``module``'s annotations (also TYPE_CHECKING imports)."""
    candidates = [module, *(m for n, m in list(sys.modules.items()) if n.split(".")[0] in OURS and m is not None)]
    for place in candidates:
        found = vars(place).get(name)
        if isinstance(found, type) and found.__module__.split(".")[0] in OURS:
            return found
    return None


def _public_callables() -> list[tuple[str, object]]:
    members = [(f"Store.{n}", m) for n, m in inspect.getmembers(cas.Store) if not n.startswith("_") and n not in PARTS]
    return members + [(n, getattr(cas, n)) for n in cas.__all__ if inspect.isfunction(getattr(cas, n))]


def _returned_classes() -> dict[type, str]:
    """Every cas class a public method or property returns, and the dataclasses' field types, one level down."""
    found: dict[type, str] = {}
    for where, member in _public_callables():
        function = member.fget if isinstance(member, property) else member
        if not callable(function):
            continue
        annotation = inspect.signature(function).return_annotation
        module = sys.modules[function.__module__]
        for name in re.findall(r"[A-Za-z_]\w*", str(annotation)):
            cls = _own_class(name, module)
            if cls is not None:
                found.setdefault(cls, where)
    for cls in list(found):
        if dataclasses.is_dataclass(cls):
            for field in dataclasses.fields(cls):
                for name in re.findall(r"[A-Za-z_]\w*", str(field.type)):
                    inner = _own_class(name, sys.modules[cls.__module__])
                    if inner is not None:
                        found.setdefault(inner, f"{cls.__name__}.{field.name}")
    return found


def test_every_type_a_public_method_returns_is_exported() -> None:
    returned = _returned_classes()
    assert {cas.GcReport, cas.FsckReport, cas.Usage, cas.TransferReport, cas.LineageNode} <= set(returned)
    exported = {id(getattr(cas, n)) for n in cas.__all__}  # under its own name or a clearer one (LineageNode)
    missing = {f"{cls.__name__} (from {where})" for cls, where in returned.items() if id(cls) not in exported}
    assert not missing


def test_all_names_what_the_package_has() -> None:
    assert [n for n in cas.__all__ if not hasattr(cas, n)] == []
    assert len(set(cas.__all__)) == len(cas.__all__)


# -- progress ----------------------------------------------------------------------


def test_the_progress_callback_hears_every_phase(tmp_path: Path) -> None:
    events: list[cas.ProgressEvent] = []
    _every_operation(tmp_path, events.append)
    phases = [e.phase for e in events if e.finished]
    for expected in ("marking runs", "marking artifacts", "sweeping objects", "checking objects", "pushing objects"):
        assert expected in phases, phases
    assert "pulling objects" in phases  # pull and clone
    open_phases: dict[str, int] = {}
    for event in events:
        if event.phase not in open_phases:
            assert event.done == 0 and not event.finished, event  # a phase opens at 0
            open_phases[event.phase] = 0
        assert event.done >= open_phases[event.phase]  # and only moves forward
        assert event.total is None or event.done <= event.total
        open_phases[event.phase] = event.done
        if event.finished:
            del open_phases[event.phase]
    assert open_phases == {}  # every phase ends, once
    for phase in ("sweeping objects", "marking runs"):  # every item counted (runs reached through cached_from too)
        last = [e for e in events if e.phase == phase and e.finished][-1]
        assert last.done == last.total and last.done > 0, last


def test_a_failing_callback_stops_the_operation(tmp_path: Path) -> None:
    def refuse(event: cas.ProgressEvent) -> None:
        raise KeyboardInterrupt

    with cas.open(tmp_path / "store", create=True) as store:
        _fill(store, tmp_path)
        with pytest.raises(KeyboardInterrupt):
            store.fsck(progress=refuse)


def test_the_cli_draws_bars_on_a_terminal_and_nothing_when_piped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cas.open(tmp_path / "store", create=True) as store:
        _fill(store, tmp_path)
    args = ["--store", str(tmp_path / "store"), "fsck"]
    piped = CliRunner().invoke(main, args, catch_exceptions=False)
    assert piped.exit_code == 0 and piped.stderr == ""
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the output as a terminal
    terminal = CliRunner().invoke(main, args, catch_exceptions=False)
    assert terminal.exit_code == 0 and "checking objects" in terminal.stderr
    quiet = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert quiet.exit_code == 0 and quiet.stderr == ""

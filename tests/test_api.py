"""The public API is what __all__ says, and the error tree is as documented."""

import subprocess
import sys
import types
from pathlib import Path

import cas


def test_all_is_honest() -> None:
    for name in cas.__all__:
        assert hasattr(cas, name), name
    public = {n for n in dir(cas) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(cas, n), types.ModuleType)}
    assert public - modules - set(cas.__all__) == set()


def test_errors_share_one_root_and_builtins() -> None:
    for name in cas.__all__:
        obj = getattr(cas, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, cas.CasError)
    assert issubclass(cas.ObjectNotFoundError, KeyError)
    assert issubclass(cas.RefNotFoundError, cas.ObjectNotFoundError)
    assert issubclass(cas.CorruptObjectError, cas.IntegrityError)
    assert issubclass(cas.InvalidNameError, ValueError)
    assert issubclass(cas.RefExistsError, FileExistsError)


def test_import_does_not_pull_optional_libraries() -> None:
    code = "import sys, cas; print(sorted(m for m in ('numpy', 'pandas', 'pyarrow', 's3fs') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_arrays_do_not_pull_numpy_ma(tmp_path: Path) -> None:
    """numpy.ma costs ~20 ms to import: only a masked array's materializer needs it."""
    code = (
        "import sys, numpy as np, cas\n"
        f"with cas.open({str(tmp_path / 's')!r}) as s:\n"
        "    s.put(np.arange(1 << 18, dtype=np.float64), 'a')\n"
        "    assert s.get('a').sum() == (1 << 18) * ((1 << 18) - 1) / 2\n"
        "print('numpy.ma' in sys.modules)\n"
        "s = cas.open(" + repr(str(tmp_path / "s")) + ")\n"
        "s.put(np.ma.masked_array([1.0, 2.0], mask=[True, False]), 'm')\n"
        "print(s.get('m').mask.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "[True,", "False]"]


def test_cli_smoke(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = str(tmp_path / "s")
    (tmp_path / "f.txt").write_text("hello")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cas.cli", "--store", store, *args]
        return subprocess.run(command, capture_output=True, text=True)

    assert run("init", store).returncode == 0
    put = run("put", str(tmp_path / "f.txt"), "--name", "greeting")
    assert put.returncode == 0 and put.stdout.startswith("greeting@1")
    got = run("get", "greeting", "-o", str(tmp_path / "out.txt"))
    assert got.returncode == 0 and (tmp_path / "out.txt").read_text() == "hello"
    bad = run("get", "missing", "-o", str(tmp_path / "x"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "missing" in bad.stderr

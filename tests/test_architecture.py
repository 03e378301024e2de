"""The shape of the code: every module imports on its own, no cas import hides in a function body,
and the storage layer does not depend on the value layer (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cas", "materializers")

#: Imports of a cas or materializers module inside a function body that are allowed, with why.
ALLOWED_DEFERRED = {
    # The web UI needs flask, an optional extra: only ``cas ui`` imports it.
    ("cas/cli.py", "cas.ui.app"),
    # The demo builds a sample store (and imports numpy): only ``cas demo`` needs it.
    ("cas/cli.py", "cas.demo"),
    # Materializer classes register themselves when defined, and the registry imports the base class.
    ("materializers/base.py", "materializers.registry"),
    # valuecodec is imported by structured, whose find_class checks a class can be found again.
    ("materializers/valuecodec.py", "materializers.structured"),
}

#: The storage layer: it stores and reads bytes, refs and runs, and never needs a materializer.
STORAGE = ("cas.gc", "cas.fsck", "cas.objectstore", "cas.refs", "cas.runs", "cas.repository", "cas.visualrecords")
VALUE_LAYER = ("materializers", "cas.visualize", "cas.store", "cas.steps")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The module names an import statement imports (a submodule for ``from package import submodule``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return submodules or [base]


def _module_level_imports(module: str) -> set[str]:
    """What ``module`` imports when it is imported (``if TYPE_CHECKING:`` blocks and function bodies left out)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(_imported(node, module))
            elif isinstance(node, ast.If):
                visit(node.orelse if _is_type_checking(node) else [*node.body, *node.orelse])
            elif isinstance(node, ast.Try):
                visit([*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)])
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(ast.parse(MODULES[module].read_text()).body)
    return found


def _ours(name: str) -> bool:
    return name.split(".")[0] in (*PACKAGES, "benchmarks")


@pytest.mark.slow  # a fresh interpreter (or a probe process) per case
def test_every_module_imports_alone_in_any_order() -> None:
    names = sorted(MODULES)
    random.Random().shuffle(names)
    script = f"""
import importlib, sys
failed = []
for name in {names!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("cas", "materializers", "benchmarks")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional library (flask, pydantic...) not installed
        if (exc.name or "").split(".")[0] in ("cas", "materializers", "benchmarks"):
            failed.append(f"{{name}}: {{exc!r}}")
    except Exception as exc:
        failed.append(f"{{name}}: {{exc!r}}")
print(json.dumps(failed))
""".replace("import importlib, sys", "import importlib, json, sys")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"import order: {names}"


def test_no_cas_import_hides_in_a_function_body() -> None:
    found = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    for name in _imported(inner, module):
                        if _ours(name):
                            found.add((path.relative_to(ROOT).as_posix(), name))
    assert found - ALLOWED_DEFERRED == set()
    assert ALLOWED_DEFERRED - found == set(), "an allowed deferred import no longer exists: drop it from the list"


def test_no_import_cycle_between_modules() -> None:
    """Package ``__init__`` facades aside (``import cas`` gives the public API), imports form no cycle."""
    graph = {m: {i for i in _module_level_imports(m) if i in MODULES} for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_storage_does_not_depend_on_values() -> None:
    """gc, fsck, the object store, refs and runs never import materializers or visualization drawing."""
    for start in STORAGE:
        seen: set[str] = set()
        pending = [start]
        while pending:
            module = pending.pop()
            if module in seen or module not in MODULES:
                continue
            seen.add(module)
            for name in _module_level_imports(module):
                if name in MODULES and MODULES[name].name == "__init__.py" and name != module:
                    continue  # a package facade (``from cas import x``) is not a dependency on all of it
                assert not name.startswith(VALUE_LAYER), f"{start} reaches {name} (through {module})"
                pending.append(name)

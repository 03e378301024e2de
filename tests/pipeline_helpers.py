"""Running tests/pipeline_example.py in a child process and reading which step bodies ran; shared by the run and sync tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def run_example(store: Path, trace: Path, *args: str) -> str:
    """Run the example pipeline on ``store`` in a fresh interpreter; return what it printed."""
    env = {**os.environ, "CAS_STORE": str(store), "CAS_TEST_TRACE": str(trace), "PYTHONPATH": f"{ROOT}:{TESTS}"}
    out = subprocess.run(
        [sys.executable, str(TESTS / "pipeline_example.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def executed(trace: Path) -> list[str]:
    """The step bodies that ran since the last call, in order (the trace is then cleared)."""
    lines = trace.read_text().split() if trace.exists() else []
    trace.unlink(missing_ok=True)
    return lines

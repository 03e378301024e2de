"""Shared fixtures: every backend test runs on the local disk and on ``memory://``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

import cas
from cas.backends import Backend, FsspecBackend, LocalBackend

BACKENDS = ["local", "memory"]


def make_url(kind: str, tmp_path: Path) -> str:
    if kind == "local":
        return str(tmp_path / "store")
    if kind == "memory":
        return f"memory://cas-test-{uuid.uuid4().hex}"
    raise ValueError(kind)


def _cleanup(url: str) -> None:
    if url.startswith("memory://"):
        fs = fsspec.filesystem("memory")
        root = url[len("memory://") :]
        if fs.exists(root):
            fs.rm(root, recursive=True)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = make_url(request.param, tmp_path)
    yield url
    _cleanup(url)


@pytest.fixture
def store(store_url: str) -> Iterator[cas.Store]:
    with cas.open(store_url) as s:
        yield s


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = make_url(request.param, tmp_path)
    b: Backend = LocalBackend(url) if request.param == "local" else FsspecBackend(url)
    yield b
    b.close()
    _cleanup(url)


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[cas.Store]:
    with cas.open(tmp_path / "store") as s:
        yield s

"""Shared fixtures: every backend test runs on the local disk, on ``memory://`` and on S3 (SeaweedFS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

import cas
from benchmarks.seaweed import SeaweedFS
from cas.backends import Backend, FsspecBackend, LocalBackend

BACKENDS = ["local", "memory", "s3"]
BUCKET = "cas-tests"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedFS]:
    """One SeaweedFS server for the whole run; credentials and endpoint go in the AWS variables."""
    server = SeaweedFS()
    server.start(bucket=BUCKET)
    with server.aws_environment():
        yield server
    server.remove()


def make_url(kind: str, tmp_path: Path) -> str:
    if kind == "local":
        return str(tmp_path / "store")
    if kind == "memory":
        return f"memory://cas-test-{uuid.uuid4().hex}"
    if kind == "s3":
        return f"s3://{BUCKET}/{uuid.uuid4().hex}"
    raise ValueError(kind)


def _cleanup(url: str) -> None:
    if url.startswith("s3://"):
        return  # the server's folder goes at the end of the session
    if url.startswith("memory://"):
        fs = fsspec.filesystem("memory")
        root = url[len("memory://") :]
        if fs.exists(root):
            fs.rm(root, recursive=True)


def _needs_server(request: pytest.FixtureRequest) -> None:
    if request.param == "s3":
        request.getfixturevalue("seaweed")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    _needs_server(request)
    url = make_url(request.param, tmp_path)
    yield url
    _cleanup(url)


@pytest.fixture
def store(store_url: str) -> Iterator[cas.Store]:
    with cas.open(store_url) as s:
        yield s


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    _needs_server(request)
    url = make_url(request.param, tmp_path)
    b: Backend = LocalBackend(url) if request.param == "local" else FsspecBackend(url)
    yield b
    b.close()
    _cleanup(url)


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[cas.Store]:
    with cas.open(tmp_path / "store") as s:
        yield s

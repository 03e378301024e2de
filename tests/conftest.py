"""Shared fixtures: every backend test runs on the local disk, on ``memory://`` and on S3 (SeaweedFS)."""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import fsspec
import pytest

import cas
from benchmarks.seaweed import SeaweedFS  # not installed: pytest puts the checkout on sys.path
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on S3 is ``slow``: it needs the SeaweedFS server (seconds to start) and each request is a round trip."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "seaweed" in getattr(item, "fixturenames", ()) or any(isinstance(p, str) and p == "s3" for p in params):
            item.add_marker(pytest.mark.slow)


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


@contextmanager
def fresh_store(kind: str, tmp_path: Path) -> Iterator[cas.Store]:
    """An empty store of its own on one backend, removed on exit (an S3 store goes with the server's folder)."""
    folder = tmp_path / uuid.uuid4().hex
    url = make_url(kind, folder)
    try:
        with cas.open(url) as s:
            yield s
    finally:
        _cleanup(url)
        shutil.rmtree(folder, ignore_errors=True)


StoreFactory = Callable[[], AbstractContextManager[cas.Store]]


@pytest.fixture(params=BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """For hypothesis tests: ``with new_store() as store:`` gives each example an empty store of its own.

    A store from a function-scoped fixture would be shared by every example of the test,
    making each example depend on the ones hypothesis happened to run before it.
    """
    _needs_server(request)
    return functools.partial(fresh_store, request.param, tmp_path)


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

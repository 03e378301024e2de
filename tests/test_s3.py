"""S3 specifics, against real SeaweedFS servers: configuration, conditional writes, many writers, faults."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import BUCKET

import cas
from benchmarks.seaweed import KEY, SECRET, SeaweedFS  # not installed: pytest puts the checkout on sys.path
from cas.backends import FsspecBackend

pytestmark = pytest.mark.slow  # real SeaweedFS servers, started and stopped


def test_credentials_and_endpoint_from_the_environment(seaweed: SeaweedFS) -> None:
    # The session fixture put them in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL.
    with cas.open(f"s3://{BUCKET}/{uuid.uuid4().hex}") as store:
        assert store.get(store.put(b"env", "e")) == b"env"


def test_storage_options_pass_through(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": seaweed.endpoint}}
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    with cas.open(url, storage_options=options) as store:
        store.put(b"explicit", "x")
    monkeypatch.setenv("CAS_STORE", url)
    monkeypatch.setenv("CAS_STORAGE_OPTIONS", json.dumps(options))
    with cas.open() as store:
        assert store.get("x") == b"explicit"


def test_a_backend_without_conditional_writes_is_refused(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"

    def careless_create(self: FsspecBackend, key: str, data: bytes) -> bool:
        self._write(key, data)  # what a server that ignores If-None-Match does
        return True

    monkeypatch.setattr(FsspecBackend, "_create", careless_create)
    with pytest.raises(cas.BackendError, match="create-if-absent"):
        cas.open(url)  # a new store: its config is the first write, checked before it
    with cas.open(url, single_writer=True) as store:  # the explicit way out
        assert store.put(b"alone", "x").number == 1


def _writer(url: str, worker: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    shared = bytes(range(256)) * 8192  # 2 MiB shared by every writer
    done = []
    with cas.open(url) as store:
        for i in range(4):
            ref = store.put(shared + f"{worker}-{i}".encode(), "shared")
            done.append((ref.number, ref.hash))
    queue.put(done)


def test_four_processes_share_one_bucket(seaweed: SeaweedFS) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    cas.open(url).close()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, queue)) for w in range(4)]
    for p in procs:
        p.start()
    results = [item for _ in procs for item in queue.get(timeout=180)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(n for n, _ in results) == list(range(1, 17))
    with cas.open(url) as store:
        for number, digest in results:
            assert store.resolve(f"shared@{number}").hash == digest
            assert store.get(f"shared@{number}")[:2] == bytes(range(2))
        assert store.fsck().ok


@pytest.fixture
def own_server() -> Iterator[SeaweedFS]:
    server = SeaweedFS()
    server.start(bucket="faults")
    yield server
    server.remove()


def test_server_stopping_mid_put_then_coming_back(own_server: SeaweedFS) -> None:
    options = {
        "key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": own_server.endpoint},
        # Fail fast while the server is down: one try per call in botocore, short timeouts.
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1, "read_timeout": 10},
    }  # fmt: skip
    url = "s3://faults/store"
    data = os.urandom(48 << 20)
    with cas.open(url, storage_options=options) as store:
        store.backend.retries = 2  # fail fast while the server is down
        store.backend.fs.retries = 1  # s3fs's own retry loop too
        outcome: list[BaseException | cas.Ref] = []

        def put() -> None:
            try:
                outcome.append(store.put(data, "big"))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=put)
        thread.start()
        time.sleep(0.3)
        own_server.stop(kill=True)
        thread.join(timeout=120)
        (result,) = outcome
        if isinstance(result, cas.Ref):
            pytest.skip("the put finished before the server stopped")
        assert isinstance(result, cas.BackendError), repr(result)  # a clear, typed error
        own_server.start(bucket="faults")
        assert not store.exists("big")  # nothing partial is visible
        store.backend.retries = 6
        ref = store.put(data, "big")  # the same put succeeds once the server is back
        assert ref.number == 1 and store.get("big") == data
        assert store.fsck().ok

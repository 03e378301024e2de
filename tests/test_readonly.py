"""Read-only credentials (#21 item 15): opening never writes; every reading command works; a write is refused, typed.

The S3 test runs its own SeaweedFS with two identities: a writer and a reader
whose actions are only Read and List.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cas
from benchmarks.seaweed import KEY, SECRET, SeaweedFS
from cas.backends import FsspecBackend, Timeouts, fsspec_backend
from cas.ui.app import create_app

BUCKET = "cas-readonly"
READER_KEY, READER_SECRET = "cas-reader-key", "cas-reader-secret"


class TwoIdentitySeaweedFS(SeaweedFS):
    """SeaweedFS whose S3 gateway knows a writer (the usual test keys) and a reader (Read, List)."""

    def command(self) -> list[str]:
        config = self.dir / "s3.json"
        identities = [
            {"name": "writer", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
             "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
            {"name": "reader", "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
             "actions": ["Read", "List"]},
        ]  # fmt: skip
        config.write_text(json.dumps({"identities": identities}))
        return [*super().command(), f"-s3.config={config}"]


@pytest.fixture(scope="module")
def server() -> Iterator[TwoIdentitySeaweedFS]:
    weed = TwoIdentitySeaweedFS()
    weed.start(bucket=BUCKET)
    yield weed
    weed.remove()


def _options(server: SeaweedFS, key: str, secret: str) -> dict[str, Any]:
    return {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": server.endpoint}}


@pytest.mark.slow
def test_read_only_credentials_read_everything_and_a_write_is_refused(
    server: TwoIdentitySeaweedFS, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    with cas.open(url, storage_options=_options(server, KEY, SECRET)) as store:
        store.put(b"weights v1", "model")
        store.put(b"weights v2", "model")
        store.tag("model@2", "prod")
        store.put(folder, "files")

    reader = _options(server, READER_KEY, READER_SECRET)
    with cas.open(url, create=False, storage_options=reader) as store:  # opening: reads only
        assert sorted(store.names()) == ["files", "model"]
        assert store.get("model@prod") == b"weights v2"
        assert [r.number for r in store.versions("model")] == [1, 2]
        store.export("files", tmp_path / "out")
        assert (tmp_path / "out" / "a.txt").read_text() == "alpha"
        assert store.fsck().ok
        store.log()
        with pytest.raises(cas.AccessDeniedError) as caught:
            store.put(b"not allowed", "model")
        assert isinstance(caught.value, PermissionError) and server.endpoint in str(caught.value)

        # cas ui: every page answers
        client = create_app(store).test_client()
        for page in ("/", "/artifacts", "/names/model", "/runs", "/store"):
            response = client.get(page, follow_redirects=True)
            assert response.status_code == 200, (page, response.data[:300])

    env = {**os.environ, "CAS_STORE": url, "AWS_ACCESS_KEY_ID": READER_KEY, "AWS_SECRET_ACCESS_KEY": READER_SECRET,
           "AWS_ENDPOINT_URL": server.endpoint}  # fmt: skip
    cli = str(Path(sys.executable).parent / "cas")
    for args in (["ls"], ["log", "model"], ["log"], ["show", "model"], ["get", "model@1"], ["fsck"], ["du"],
                 ["lineage", "model"], ["get", "files", "-o", str(tmp_path / "cli-out")]):  # fmt: skip
        done = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    done = subprocess.run([cli, "tag", "model@1", "old"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "access denied" in done.stderr, done.stderr
    # The credentials in CAS_STORAGE_OPTIONS instead, with the URL in CAS_STORE
    env = {**os.environ, "CAS_STORE": url, "CAS_STORAGE_OPTIONS": json.dumps(reader)}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(key, None)
    done = subprocess.run([cli, "ls"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "model" in done.stdout, done.stderr


def test_the_create_check_is_made_once_per_endpoint_and_path_before_the_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes: list[tuple[str, str]] = []
    monkeypatch.setattr(FsspecBackend, "_probe_create", lambda self: probes.append((self.endpoint, self.root)))
    monkeypatch.setattr(FsspecBackend, "_write", lambda self, key, data: None)
    monkeypatch.setattr(fsspec_backend, "_CHECKED_CREATE", set())
    path = f"s3://bucket/{uuid.uuid4().hex}"

    def backend(endpoint: str, url: str = path) -> FsspecBackend:
        options = {"client_kwargs": {"endpoint_url": endpoint}, "key": "k", "secret": "s"}
        return FsspecBackend(url, options, timeouts=Timeouts(deadline=5))

    first = backend("http://127.0.0.1:1")
    assert probes == []  # opening a backend writes nothing
    first.write("a", b"x")
    first.write("b", b"x")
    backend("http://127.0.0.1:1").write("c", b"x")  # same endpoint and path: checked already
    backend("http://127.0.0.1:2").write("d", b"x")  # same URL, another server: checked again
    backend("http://127.0.0.1:1", path + "/other").write("e", b"x")
    assert [p[0] for p in probes] == ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:1"]
    single = backend("http://127.0.0.1:3")
    single.skip_create_check()  # single_writer
    single.write("f", b"x")
    assert len(probes) == 3

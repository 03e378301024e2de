"""The Ray sweep, run in a child process inside a network namespace of its own (see tests/test_ray.py).

Prints one JSON line: the results of two sweeps (Refs and values), the
statuses of the runs each made, and every listening socket's local address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import distributed_steps as ds
import ray

import cas


def main(url: str) -> None:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
        store = cas.open(url)
        s = ds.steps_of(store)

        @ray.remote
        def task(fn, *args):  # type: ignore[no-untyped-def]
            return fn(*args)

        def submit(fn, *args):  # type: ignore[no-untyped-def]
            return task.remote(fn, *args)

        out = {}
        for sweep in ("first", "second"):
            before = {r.hash for r in store.log()}
            finals = ray.get(ds.sweep_refs(submit, s))
            values = ray.get([task.remote(ds.run_values, s, st) for st in ds.SETTINGS])
            out[sweep] = {
                "results": [store.get(r) for r in finals],
                "values": values,
                "statuses": sorted(r.status for r in store.log() if r.hash not in before),
                "finals": [r.hash for r in finals],
            }
        ds.check_store(store, [cas.Ref(h) for h in out["second"]["finals"]])
        out["listening"] = [line.split()[3] for line in listening.splitlines() if line.strip()]
        print(json.dumps(out))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

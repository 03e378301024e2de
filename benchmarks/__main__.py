"""``python -m benchmarks``: run the workloads, print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from benchmarks import engine, gc_scale, maintenance, named, reads, runs, s3, scale, sync, torch_checkpoint, values
from benchmarks import requests as requests_bench
from benchmarks.harness import peak_rss_mib, print_table

ALL = {
    **engine.WORKLOADS,
    **values.WORKLOADS,
    **named.WORKLOADS,
    **runs.WORKLOADS,
    **maintenance.WORKLOADS,
    **s3.WORKLOADS,
    **sync.WORKLOADS,
    **torch_checkpoint.WORKLOADS,
    **scale.WORKLOADS,
    **requests_bench.WORKLOADS,
    **gc_scale.WORKLOADS,
    **reads.WORKLOADS,
}
engine.WORKLOADS.update(scale.WORKLOADS, **requests_bench.WORKLOADS)  # engine.run looks workloads up there
engine.WORKLOADS.update(gc_scale.WORKLOADS)
engine.WORKLOADS.update(named.WORKLOADS)
engine.WORKLOADS.update(reads.WORKLOADS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, one minute (the CI smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(ALL),
        help="run one workload",
    )
    parser.add_argument("--size", type=float, default=None, help="payload size in MiB (default 1024, quick 32)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 5, quick 2)")
    parser.add_argument("--scale-max", type=float, default=None, help="scale: largest store in chunks (default 1e5)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"), help="where to write results")
    args = parser.parse_args(argv)
    size = int((args.size or (32 if args.quick else 1024)) * (1 << 20))
    repeats = args.repeats or (2 if args.quick else 5)
    names = args.only or list(ALL)
    scale.configure(scale_max=int(args.scale_max) if args.scale_max else None, quick=args.quick)
    started = time.time()
    rows = engine.run(names, size, repeats)
    print_table(rows)
    print(
        f"\npeak RSS {peak_rss_mib():.0f} MiB; {time.time() - started:.0f} s; size {size >> 20} MiB, {repeats} runs per side"
    )
    result = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "size": size,
        "repeats": repeats,
        "rows": [r.to_json() for r in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.report results.json``: the results as the Markdown table the README quotes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| workload | median | min .. max | reference (same run) | ratio | target | met | stored bytes |",
        "|---|---:|---:|---|---:|---|---|---:|",
    ]
    for r in result["rows"]:
        ref = f"{_num(r['ref_value'])} {r['unit']} {r['reference']}" if r["ref_value"] is not None else r["reference"]
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        met = "" if r["passed"] is None else ("yes" if r["passed"] else "**no**")
        stored = f"{r['stored_bytes']:,}" if r["stored_bytes"] is not None else ""
        lines.append(
            f"| {r['workload']} | {_num(r['value'])} {r['unit']} | {_num(r['low'])} .. {_num(r['high'])} | {ref} "
            f"| {ratio} | {r['target']} | {met} | {stored} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "benchmarks/results.json")
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

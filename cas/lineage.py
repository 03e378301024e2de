"""Lineage graphs: walking runs up to where an artifact came from, or down to what used it."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cas.hashing import short, to_hex
from cas.runs import Run


@dataclass(frozen=True)
class Node:
    id: str  # full hex hash
    kind: str  # "artifact" or "run"
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str  # the input or output name


@dataclass
class LineageGraph:
    """Artifacts and runs, with edges input -> run -> output (always in data-flow direction)."""

    root: str
    direction: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def runs(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "run"]

    def artifacts(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "artifact"]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, **n.attrs} for n in self.nodes.values()],
            "edges": [{"source": e.source, "target": e.target, "label": e.label} for e in self.edges],
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def to_text(self) -> str:
        """An indented tree from the root, as ``cas lineage`` prints it."""
        up = self.direction == "up"
        children: dict[str, list[tuple[str, str]]] = {}
        for e in self.edges:
            parent, child = (e.target, e.source) if up else (e.source, e.target)
            children.setdefault(parent, []).append((child, e.label))
        lines: list[str] = []
        seen: set[str] = set()

        def visit(node_id: str, label: str, prefix: str, last: bool, top: bool) -> None:
            node = self.nodes[node_id]
            text = f"{label}: {node.label}" if label else node.label
            if node.kind == "run":
                text += f" [{node.attrs.get('status', '')}]"
            else:
                text += f"  {node_id[:12]}"
            again = node_id in seen and node.kind == "run"
            lines.append(
                prefix + ("" if top else ("└─ " if last else "├─ ")) + text + (" (see above)" if again else "")
            )
            if again:
                return
            seen.add(node_id)
            kids = sorted(children.get(node_id, []), key=lambda item: item[1])
            inner = prefix + ("" if top else ("   " if last else "│  "))
            for i, (child, edge_label) in enumerate(kids):
                visit(child, edge_label if node.kind == "run" else "", inner, i == len(kids) - 1, False)

        visit(self.root, "", "", True, True)
        return "\n".join(lines)

    def to_dot(self) -> str:
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for n in self.nodes.values():
            shape = "box" if n.kind == "run" else "ellipse"
            lines.append(f'  "{n.id[:12]}" [label={_dot_quote(n.label)}, shape={shape}];')
        for e in self.edges:
            lines.append(f'  "{e.source[:12]}" -> "{e.target[:12]}" [label={_dot_quote(e.label)}];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        lines = ["flowchart LR"]
        for n in self.nodes.values():
            text = n.label.replace('"', "'")
            lines.append(f'  n{n.id[:12]}["{text}"]' if n.kind == "run" else f'  n{n.id[:12]}(["{text}"])')
        for e in self.edges:
            label = e.label.replace('"', "'").replace("|", "/")
            lines.append(f"  n{e.source[:12]} -->|{label}| n{e.target[:12]}")
        return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def walk(
    root: bytes,
    direction: str,
    depth: int | None,
    load_run: Callable[[bytes], Run],
    producers: Callable[[bytes], list[bytes]],
    consumers: Callable[[bytes], list[bytes]],
    describe: Callable[[bytes], tuple[str, dict[str, Any]]],
) -> LineageGraph:
    """Breadth-first from an artifact; ``depth`` counts runs away from it."""
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    graph = LineageGraph(to_hex(root), direction)

    def add_artifact(h: bytes) -> None:
        key = to_hex(h)
        if key not in graph.nodes:
            label, attrs = describe(h)
            graph.nodes[key] = Node(key, "artifact", label, attrs)

    add_artifact(root)
    queue: deque[tuple[bytes, int]] = deque([(root, 0)])
    seen_runs: set[bytes] = set()
    while queue:
        artifact, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        run_hashes = producers(artifact) if direction == "up" else consumers(artifact)
        for run_hash in run_hashes:
            if run_hash in seen_runs:
                continue
            seen_runs.add(run_hash)
            run = load_run(run_hash)
            run_id = to_hex(run_hash)
            graph.nodes[run_id] = Node(
                run_id,
                "run",
                f"{run.step.rsplit('.', 1)[-1]} {short(run_hash, 8)}",
                {"step": run.step, "status": run.status, "started": run.started, "ended": run.ended},
            )
            for name, h in run.inputs.items():
                add_artifact(h)
                graph.edges.append(Edge(to_hex(h), run_id, name))
                if direction == "up":
                    queue.append((h, level + 1))
            for name, h in run.outputs.items():
                add_artifact(h)
                graph.edges.append(Edge(run_id, to_hex(h), name))
                if direction == "down":
                    queue.append((h, level + 1))
    return graph

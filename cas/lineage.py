"""Lineage graphs: walking runs up to where an artifact came from, or down to what used it.

Every walk here is iterative and bounded: a chain of thousands of runs is
ordinary, and the index files a walk follows come from whoever writes the
store, so they may claim cycles (a run listed as producing its own input).
Each run and each artifact is expanded once, a run an index entry names is
followed only if it really has that artifact among its outputs (or inputs,
going down), and a walk stops at ``MAX_NODES`` nodes, saying so.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cas.errors import CasError, InvalidArgumentError, check_argument_type
from cas.hashing import short, to_hex
from cas.runs import Run

#: A lineage walk stops after this many nodes (artifacts, runs and skipped runs), nearest first.
MAX_NODES = 20_000
#: ``to_text`` indents at most this many levels; deeper lines keep the last ones, after a marker.
MAX_INDENT = 32


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
    #: Why the walk stopped before the end (None: the graph is complete).
    truncated: str | None = None
    #: One line per run the walk could not read and left out.
    skipped: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What a reader of this graph should be told: truncation, skipped runs."""
        found = [self.truncated] if self.truncated else []
        if self.skipped:
            found.append(f"{len(self.skipped)} unreadable runs left out: " + "; ".join(self.skipped[:5])
                         + (" ..." if len(self.skipped) > 5 else ""))  # fmt: skip
        return [" ".join(note.split()) for note in found]  # one line each, whatever the messages hold

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
            "truncated": self.truncated,
            "skipped": self.skipped,
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def to_text(self) -> str:
        """An indented tree from the root, as ``cas lineage`` prints it (then any notes)."""
        up = self.direction == "up"
        children: dict[str, list[tuple[str, str]]] = {}
        for e in self.edges:
            parent, child = (e.target, e.source) if up else (e.source, e.target)
            children.setdefault(parent, []).append((child, e.label))
        lines: list[str] = []
        seen: set[str] = set()
        # Depth first with an explicit stack (a chain of runs can be thousands deep):
        # (node, edge label, prefix, is the last child, is the root, depth).
        stack: list[tuple[str, str, str, bool, bool, int]] = [(self.root, "", "", True, True, 0)]
        while stack:
            node_id, label, prefix, last, top, level = stack.pop()
            node = self.nodes[node_id]
            text = f"{label}: {node.label}" if label else node.label
            if node.kind == "run":
                text += f" [{node.attrs.get('status', '')}]"
            else:
                text += f"  {node_id[:12]}"
            again = node_id in seen and node.kind == "run"
            shown = prefix if len(prefix) <= 3 * MAX_INDENT else f"[{level}] …" + prefix[-3 * MAX_INDENT :]
            lines.append(shown + ("" if top else ("└─ " if last else "├─ ")) + text + (" (see above)" if again else ""))
            if again:
                continue
            seen.add(node_id)
            kids = sorted(children.get(node_id, []), key=lambda item: item[1])
            inner = prefix + ("" if top else ("   " if last else "│  "))
            if len(inner) > 6 * MAX_INDENT:
                inner = inner[-3 * MAX_INDENT - 3 :]  # only the tail is ever shown: keep the prefix short
            for i in reversed(range(len(kids))):
                child, edge_label = kids[i]
                stack.append((child, edge_label if node.kind == "run" else "", inner, i == len(kids) - 1, False,
                              level + 1))  # fmt: skip
        lines += [f"({note})" for note in self.notes()]
        return "\n".join(lines)

    def to_dot(self) -> str:
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for n in self.nodes.values():
            shape = "box" if n.kind == "run" else "ellipse"
            lines.append(f'  "{n.id[:12]}" [label={_dot_quote(n.label)}, shape={shape}];')
        for e in self.edges:
            lines.append(f'  "{e.source[:12]}" -> "{e.target[:12]}" [label={_dot_quote(e.label)}];')
        lines += [f"  // {note}" for note in self.notes()]
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
        lines += [f"  %% {note}" for note in self.notes()]
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
    *,
    limit: int = MAX_NODES,
) -> LineageGraph:
    """Breadth-first from an artifact; ``depth`` counts runs away from it, ``limit`` caps the nodes.

    A run that can not be read is left out and listed in ``skipped``; one an
    index file names for an artifact it does not output (or, going down, take
    as input) is ignored.
    """
    if direction not in ("up", "down"):
        raise InvalidArgumentError("direction must be 'up' or 'down'")
    check_argument_type(depth, (int, float, type(None)), "depth")
    check_argument_type(limit, (int, float), "limit")
    up = direction == "up"
    graph = LineageGraph(to_hex(root), direction)

    ignored = 0  # runs an index entry named for an artifact they do not output (or take as input)

    def full() -> bool:
        if len(graph.nodes) + len(graph.skipped) + ignored < limit:
            return False
        graph.truncated = (
            f"stopped after {limit:,} nodes, nearest first: the lineage goes on (pass a depth to see less)"
        )
        return True

    def add_artifact(h: bytes) -> bool:
        key = to_hex(h)
        if key in graph.nodes:
            return True
        if full():
            return False
        label, attrs = describe(h)
        graph.nodes[key] = Node(key, "artifact", label, attrs)
        return True

    add_artifact(root)
    queue: deque[tuple[bytes, int]] = deque([(root, 0)])
    expanded: set[bytes] = {root}  # each artifact is asked for its runs once
    seen_runs: set[bytes] = set()  # in the graph, or unreadable
    loaded: dict[bytes, Run] = {}  # read, but named by an index entry they do not match
    while queue and graph.truncated is None:
        artifact, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        for run_hash in producers(artifact) if up else consumers(artifact):
            if run_hash in seen_runs:
                continue
            if full():
                break
            run = loaded.get(run_hash)
            if run is None:
                try:
                    run = load_run(run_hash)
                except CasError as exc:
                    seen_runs.add(run_hash)
                    graph.skipped.append(f"run {short(run_hash)}: {exc}")
                    continue
            if artifact not in (run.outputs if up else run.inputs).values():
                if run_hash not in loaded:  # a stray or forged index entry: maybe another artifact's real one
                    loaded[run_hash] = run
                    ignored += 1
                continue
            seen_runs.add(run_hash)
            run_id = to_hex(run_hash)
            graph.nodes[run_id] = Node(
                run_id,
                "run",
                f"{run.step.rsplit('.', 1)[-1][:80]} {short(run_hash, 8)}",
                {"step": run.step, "status": run.status, "started": run.started, "ended": run.ended},
            )
            for name, h in run.inputs.items():
                if not add_artifact(h):
                    break
                graph.edges.append(Edge(to_hex(h), run_id, name))
                if up and h not in expanded:
                    expanded.add(h)
                    queue.append((h, level + 1))
            for name, h in run.outputs.items():
                if not add_artifact(h):
                    break
                graph.edges.append(Edge(run_id, to_hex(h), name))
                if not up and h not in expanded:
                    expanded.add(h)
                    queue.append((h, level + 1))
    return graph

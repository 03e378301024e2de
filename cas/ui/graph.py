"""Lineage graphs drawn as SVG on the server: layered left to right, every node a link."""

from __future__ import annotations

import html
from collections import defaultdict

from cas.lineage import LineageGraph

NODE_W, NODE_H, GAP_X, GAP_Y = 190, 44, 70, 18


def layers(graph: LineageGraph) -> dict[str, int]:
    """Each node's column: its longest distance from a source along the data flow.

    Iterative (a chain of runs can be thousands deep); an edge that would close
    a cycle (only a forged store holds one) is ignored.
    """
    incoming: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        if e.source in graph.nodes:
            incoming[e.target].append(e.source)
    depth: dict[str, int] = {}
    on_path: set[str] = set()
    for start in graph.nodes:
        if start in depth:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]  # (node, how many of its parents were looked at)
        on_path.add(start)
        while stack:
            node, i = stack[-1]
            parents = incoming.get(node, [])
            if i < len(parents):
                stack[-1] = (node, i + 1)
                parent = parents[i]
                if parent not in depth and parent not in on_path:
                    on_path.add(parent)
                    stack.append((parent, 0))
                continue
            stack.pop()
            on_path.discard(node)
            depth[node] = 1 + max((depth[p] for p in parents if p in depth), default=-1)
    return depth


def to_svg(graph: LineageGraph, link: dict[str, str]) -> str:
    """The graph as an SVG document; ``link`` maps node ids to the URLs they open."""
    column = layers(graph)
    rows: dict[int, list[str]] = defaultdict(list)
    for node_id in sorted(graph.nodes, key=lambda n: (column[n], graph.nodes[n].label)):
        rows[column[node_id]].append(node_id)
    pos = {}
    for col, ids in rows.items():
        for row, node_id in enumerate(ids):
            pos[node_id] = (20 + col * (NODE_W + GAP_X), 20 + row * (NODE_H + GAP_Y))
    width = 40 + (max(rows, default=0) + 1) * (NODE_W + GAP_X)
    height = 40 + max((len(ids) for ids in rows.values()), default=1) * (NODE_H + GAP_Y)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='lineage' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}'><defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' "
             "markerWidth='7' markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#777'/></marker></defs>"]  # fmt: skip
    for e in graph.edges:
        if e.source not in pos or e.target not in pos:
            continue
        (sx, sy), (tx, ty) = pos[e.source], pos[e.target]
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, tx, ty + NODE_H / 2
        mid = (x1 + x2) / 2
        parts.append(f"<path d='M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}' fill='none' stroke='#999' "
                     f"marker-end='url(#arrow)'><title>{html.escape(e.label)}</title></path>")  # fmt: skip
    for node_id, (x, y) in pos.items():
        node = graph.nodes[node_id]
        is_run = node.kind == "run"
        fill = "#fff4d6" if is_run else "#e4eefc"
        stroke = "#d49a00" if is_run else "#4a7bd0"
        extra = " root" if node_id == graph.root else ""
        label = node.label if len(node.label) <= 28 else node.label[:27] + "…"
        sub = node.attrs.get("status", "") if is_run else node_id[:12]
        parts.append(
            f"<a href='{html.escape(link.get(node_id, '#'))}' class='node {node.kind}{extra}' data-id='{node_id}'>"
            f"<rect x='{x}' y='{y}' rx='{4 if is_run else 10}' width='{NODE_W}' height='{NODE_H}' fill='{fill}' "
            f"stroke='{stroke}' stroke-width='{3 if extra else 1.5}'/>"
            f"<text x='{x + 8}' y='{y + 18}' font-size='13'>{html.escape(label)}</text>"
            f"<text x='{x + 8}' y='{y + 35}' font-size='11' fill='#666'>{html.escape(str(sub))}</text>"
            f"<title>{html.escape(node.label)}</title></a>"
        )
    parts.append("</svg>")
    return "".join(parts)

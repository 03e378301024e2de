"""Visualizations of stored values: small HTML, SVG, PNG, Markdown or CSV documents.

A materializer's ``visualize(obj)`` returns a list of these; the store keeps
them as content-addressed objects beside the artifact (``cas.visualize``).
Every value that goes into HTML or SVG is escaped here, and the UI still
shows HTML in a sandboxed frame and SVG as an image, so a stored
visualization can never run code in a browser.
"""

from __future__ import annotations

import heapq
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cas.errors import InvalidArgumentError
from cas.visualrecords import MEDIA_TYPES

#: How much of a value a preview shows.
HEAD_BYTES = 2048
TREE_ITEMS = 50
TREE_DEPTH = 4


@dataclass(frozen=True)
class Visualization:
    """One rendering of a value: a name ("summary", "histogram"...), a media type and the bytes."""

    name: str
    media_type: str
    data: bytes

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise InvalidArgumentError(f"unsupported visualization media type {self.media_type!r}")


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[Any] | None = None) -> str:
    """An escaped HTML table."""
    out = ["<table>"]
    if header is not None:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def html_doc(*parts: str) -> bytes:
    return ("<!doctype html><meta charset='utf-8'>" + "".join(parts)).encode()


def summary(facts: Sequence[tuple[str, Any]]) -> Visualization:
    return Visualization("summary", "text/html", html_doc(html_table(facts)))


def text_head(data: bytes, *, name: str = "head") -> Visualization:
    """The first bytes as text (UTF-8 if they decode, else a hex dump)."""
    head = data[:HEAD_BYTES]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\n".join(head[i : i + 16].hex(" ") for i in range(0, min(len(head), 512), 16))
    more = f"\n... ({len(data) - len(head):,} more bytes)" if len(data) > len(head) else ""
    return Visualization(name, "text/plain", (text + more).encode("utf-8", "replace"))


def brief(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to about ``limit`` characters, at a cost bounded by ``limit`` whatever the value.

    Stored values are untrusted: an int of a million digits (whose ``repr`` is
    refused above 4,300 digits, and quadratic below), a long string, a huge or
    deep container are all shown in part, never converted whole.
    """
    text = _brief(value, limit, 3)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _brief(v: Any, limit: int, depth: int) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 4 * limit:
        return f"<int of about {int(v.bit_length() * math.log10(2)) + 1:,} digits>"  # more than could be shown
    if isinstance(v, (str, bytes, bytearray)) and len(v) > limit:
        return repr(v[:limit]) + "..."
    containers = (list, tuple, set, frozenset, dict)
    if not isinstance(v, containers):
        try:
            return repr(v)
        except Exception as exc:  # noqa: BLE001  a repr that fails is shown as such, never raised
            return f"<{type(v).__name__}: {type(exc).__name__}>"
    if depth == 0:
        return f"<{type(v).__name__} of {len(v):,} items>"
    parts: list[str] = []
    used = 0
    items = v.items() if isinstance(v, dict) else v
    for item in items:
        if used > limit:
            break
        part = f"{_brief(item[0], limit, depth - 1)}: {_brief(item[1], limit, depth - 1)}" if isinstance(v, dict) \
            else _brief(item, limit, depth - 1)  # fmt: skip
        parts.append(part)
        used += len(part) + 2
    body = ", ".join(parts) + (", ..." if len(parts) < len(v) else "")
    if isinstance(v, dict):
        return "{" + body + "}"
    if isinstance(v, list):
        return "[" + body + "]"
    if isinstance(v, tuple):
        return "(" + body + ("," if len(v) == 1 else "") + ")"
    if not v:
        return f"{type(v).__name__}()"
    return "{" + body + "}" if isinstance(v, set) else f"frozenset({{{body}}})"


def readable_tree(value: Any) -> Visualization:
    """A nested container as indented text, truncated in length and depth (iterative: any nesting works)."""
    lines: list[str] = []
    stack: list[tuple[Any, int, str | None]] = [(value, 0, "")]  # (value, indent, label; None: a line as is)
    while stack and len(lines) < TREE_ITEMS * 4:
        v, indent, label = stack.pop()
        pad = "  " * indent
        if label is None:
            lines.append(f"{pad}{v}")
            continue
        if isinstance(v, dict) and indent < TREE_DEPTH:
            lines.append(f"{pad}{label}{type(v).__name__} ({len(v)} items)")
            shown = [
                (item, indent + 1, f"{brief(k, 80)}: ")
                for _, (k, item) in zip(range(TREE_ITEMS), v.items(), strict=False)
            ]
        elif isinstance(v, (list, tuple, set, frozenset)) and indent < TREE_DEPTH:
            lines.append(f"{pad}{label}{type(v).__name__} ({len(v)} items)")
            # a set has no order: show its smallest items by their brief form, without sorting it all
            first = heapq.nsmallest(TREE_ITEMS, v, key=brief) if isinstance(v, (set, frozenset)) else v[:TREE_ITEMS]
            shown = [(item, indent + 1, "") for item in first]
        else:
            lines.append(f"{pad}{label}{brief(v)}")
            continue
        if len(v) > TREE_ITEMS:
            stack.append((f"  ... {len(v) - TREE_ITEMS} more", indent, None))
        stack.extend(reversed(shown))
    return Visualization("tree", "text/plain", "\n".join(lines).encode("utf-8", "replace"))


def svg_histogram(values: Any, *, bins: int = 30, width: int = 480, height: int = 200) -> Visualization:
    """A histogram of finite numbers as an SVG bar chart (numpy does the counting)."""
    import numpy as np

    finite = values[np.isfinite(values)] if values.dtype.kind in "fc" else values
    finite = finite.real if finite.dtype.kind == "c" else finite
    counts, edges = np.histogram(finite.astype(np.float64), bins=bins) if finite.size else (np.zeros(bins), [0, 1])
    top = max(int(counts.max()), 1)
    bar = width / len(counts)
    rects = []
    for i, c in enumerate(counts):
        h = (height - 30) * int(c) / top
        rects.append(f"<rect x='{i * bar:.1f}' y='{height - 20 - h:.1f}' width='{max(bar - 1, 1):.1f}' "
                     f"height='{h:.1f}' fill='#4a7bd0'><title>{int(c)}</title></rect>")  # fmt: skip
    lo, hi = float(edges[0]), float(edges[-1])
    label = f"<text x='0' y='{height - 4}' font-size='11'>{lo:.4g}</text>"
    label += f"<text x='{width}' y='{height - 4}' font-size='11' text-anchor='end'>{hi:.4g}</text>"
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}'>{''.join(rects)}{label}</svg>")  # fmt: skip
    return Visualization("histogram", "image/svg+xml", svg.encode())


def png_image(array: Any) -> Visualization | None:
    """A 2-D (gray) or HxWx3/4 (color) array as a PNG, scaled to 0..255; None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    import numpy as np

    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        a = np.nan_to_num((a - lo) / ((hi - lo) or 1.0) * 255).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(a))
    if max(image.size) > 512:
        image.thumbnail((512, 512))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return Visualization("image", "image/png", out.getvalue())


def finite_stats(values: Any) -> list[tuple[str, Any]]:
    """min, max, mean, std of the finite values of a numeric array."""
    import numpy as np

    if values.dtype.kind not in "biuf" or values.size == 0:
        return []
    data = values.astype(np.float64, copy=False)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return [("finite values", 0)]
    return [("min", f"{finite.min():.6g}"), ("max", f"{finite.max():.6g}"), ("mean", f"{finite.mean():.6g}"),
            ("std", f"{finite.std():.6g}"), ("non-finite", int(data.size - finite.size))]  # fmt: skip


def is_image_like(shape: tuple[int, ...]) -> bool:
    return (len(shape) == 2 and min(shape) >= 8) or (len(shape) == 3 and shape[2] in (3, 4) and min(shape[:2]) >= 8)


def nice_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**exp:.1f} {'BKMGT'[exp]}{'iB' if exp else ''}"

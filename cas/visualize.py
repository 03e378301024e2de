"""Visualizations of artifacts, kept beside them: computed on request, stored once, collected with them.

The stored form (a record per artifact listing the objects that hold its
documents) is ``cas.visualrecords``, at the storage level, so that gc keeps
the record, and the objects it lists, exactly as long as it keeps the
artifact. This module is the value-level half: computing visualizations
with the artifact's materializer, and storing them. A plain put never
computes any: ``put(..., visualize=True)``, ``Store.visualizations(ref, save=True)``
and ``cas visualize`` do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cas.errors import CasError
from cas.hashing import short
from cas.objects import Artifact, Tree
from cas.objectstore import ObjectStore
from cas.visualrecords import MAX_ITEMS, VisualizationRecord, read_record, write_record
from materializers.registry import registry
from materializers.visuals import Visualization, html_doc, html_table, nice_size

#: A stored visualization bigger than this is not read (the record says how big each is).
MAX_DOCUMENT = 32 << 20


def stored(objects: ObjectStore, artifact: bytes) -> list[Visualization] | None:
    """The visualizations stored for an artifact (each object verified), or None.

    None too if a document is bigger than ``MAX_DOCUMENT`` or not the size its record says.
    """
    record = read_record(objects.backend, artifact)
    if record is None or any(size > MAX_DOCUMENT for _, _, _, size in record.items):
        return None
    found = []
    for n, m, d, size in record.items:
        try:
            data = objects.get_object(d)
        except CasError:
            return None
        if len(data) != size:
            return None
        found.append(Visualization(n, m, data))
    return found


def compute(
    objects: ObjectStore, artifact: bytes, load: Callable[[bytes], Any], *, max_bytes: int | None = None
) -> list[Visualization]:
    """Visualizations from the artifact's materializer, plus a listing of its files.

    ``load`` loads the artifact's value (never a pickle: ``Store.get`` with
    ``trust_pickle=False``). Pickles are never loaded for this (that would run
    their code): they get the listing only, as does anything whose materializer
    can not load here, anything bigger than ``max_bytes`` (declared or stored),
    and a value its materializer fails to draw (a note says why).
    """
    art = Artifact.from_bytes(objects.get_object(artifact), key=f"artifact {short(artifact)}")
    found: list[Visualization] = []
    try:
        mat = registry.by_name(art.materializer)
        if not mat.executes_code and mat.can_load(art.materializer_version) and art.materializer != "cas.path":
            tree = Tree.from_bytes(objects.get_object(art.tree), key=f"tree {short(art.tree)}")
            size = max(art.size, sum(e.size for e in tree.entries))
            if max_bytes is not None and size > max_bytes:
                found = [note(f"not loaded for a preview: {nice_size(size)} is over the {nice_size(max_bytes)} limit")]
            else:
                found = list(mat.visualize(load(artifact)))
    except CasError:
        found = []
    except Exception as exc:  # noqa: BLE001  a library drawing odd stored data: a view is optional, the page is not
        found = [note(f"could not draw this value: {type(exc).__name__}")]
    return found + compute_listing(objects, artifact)


def note(text: str) -> Visualization:
    """A one-line explanation shown where a visualization would be."""
    return Visualization("note", "text/plain", text.encode("utf-8", "replace"))


def compute_listing(objects: ObjectStore, artifact: bytes) -> list[Visualization]:
    """The artifact's files, sizes and chunk counts, from its tree alone."""
    art = Artifact.from_bytes(objects.get_object(artifact), key=f"artifact {short(artifact)}")
    tree = Tree.from_bytes(objects.get_object(art.tree), key=f"tree {short(art.tree)}")
    rows = [(e.path, nice_size(e.size), len(e.chunks) if e.data is None else "inline") for e in tree.entries[:500]]
    more = f"<p>... and {len(tree.entries) - 500} more files</p>" if len(tree.entries) > 500 else ""
    return [Visualization("files", "text/html", html_doc(html_table(rows, ["file", "size", "chunks"]), more))]


def save(objects: ObjectStore, artifact: bytes, visualizations: list[Visualization]) -> VisualizationRecord:
    """Store the documents as objects, then the record that lists them (the record last)."""
    items = []
    for v in visualizations[:MAX_ITEMS]:
        d = objects.put_object(v.data, loose=True)
        items.append((v.name, v.media_type, d, len(v.data)))
    record = VisualizationRecord(artifact, tuple(items))
    write_record(objects.backend, record)
    return record


__all__ = ["MAX_DOCUMENT", "compute", "compute_listing", "note", "save", "stored"]

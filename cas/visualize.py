"""Visualizations of artifacts, kept beside them: computed on request, stored once, collected with them.

Layout::

    visualizations/<2 hex>/<62 hex of the artifact>   a sealed record: name, media type, object of each

The documents themselves are ordinary loose objects (content addressed, so an
identical histogram is stored once). The record names an artifact, so gc
keeps it, and the objects it lists, exactly as long as it keeps the artifact.
A plain put never computes any: ``put(..., visualize=True)``,
``Store.visualizations(ref, save=True)`` and ``cas visualize`` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cas import canonical, codec
from cas.errors import CasError, CorruptObjectError
from cas.hashing import short, to_hex
from cas.objects import Artifact, Tree, _digest_field, _fail, _field, _header
from materializers.registry import registry
from materializers.visuals import MEDIA_TYPES, Visualization, html_doc, html_table, nice_size

if TYPE_CHECKING:
    from cas.store import Store

FOLDER = "visualizations/"
MAX_ITEMS = 64
#: A stored visualization bigger than this is not read (the record says how big each is).
MAX_DOCUMENT = 32 << 20


def record_key(artifact: bytes) -> str:
    text = to_hex(artifact)
    return f"{FOLDER}{text[:2]}/{text[2:]}"


def artifact_of_key(key: str) -> bytes | None:
    """The artifact a record key names, or None for a stray file."""
    try:
        raw = bytes.fromhex(key[len(FOLDER) : len(FOLDER) + 2] + key[len(FOLDER) + 3 :])
    except ValueError:
        return None
    return raw if len(raw) == 32 and key[len(FOLDER) + 2 : len(FOLDER) + 3] == "/" else None


@dataclass(frozen=True)
class VisualizationRecord:
    """Which objects hold an artifact's visualizations."""

    artifact: bytes
    items: tuple[tuple[str, str, bytes, int], ...]  # (name, media type, object, size)

    def to_bytes(self) -> bytes:
        return canonical.encode({"type": "visualizations", "v": 1, "artifact": self.artifact,
                                 "items": [{"name": n, "media_type": m, "object": d, "size": s}
                                           for n, m, d, s in self.items]})  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes, key: str = "visualizations") -> VisualizationRecord:
        value = _header(canonical.decode(data, key=key), "visualizations", key)
        if set(value) != {"type", "v", "artifact", "items"}:
            raise _fail(key, "visualization record has missing or unexpected fields")
        items = _field(value, "items", list, key)
        if len(items) > MAX_ITEMS:
            raise _fail(key, "too many visualizations")
        parsed = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"name", "media_type", "object", "size"}:
                raise _fail(key, "malformed visualization entry")
            media = _field(item, "media_type", str, key)
            if media not in MEDIA_TYPES:
                raise _fail(key, f"unknown media type {media[:40]!r}")
            size = _field(item, "size", int, key)
            if size < 0:
                raise _fail(key, "negative size")
            parsed.append((_field(item, "name", str, key)[:100], media, _digest_field(item["object"], key), size))
        return cls(_digest_field(value["artifact"], key), tuple(parsed))


def read_record(store: Store, artifact: bytes) -> VisualizationRecord | None:
    """The stored record of an artifact's visualizations, if any (a damaged one counts as none)."""
    key = record_key(artifact)
    try:
        record = VisualizationRecord.from_bytes(codec.unseal(store.backend.read(key), key=key), key=key)
    except FileNotFoundError:
        return None
    except CorruptObjectError:
        return None  # recomputed on request; fsck reports it
    return record if record.artifact == artifact else None


def stored(store: Store, artifact: bytes) -> list[Visualization] | None:
    """The visualizations stored for an artifact (each object verified), or None.

    None too if a document is bigger than ``MAX_DOCUMENT`` or not the size its record says.
    """
    record = read_record(store, artifact)
    if record is None or any(size > MAX_DOCUMENT for _, _, _, size in record.items):
        return None
    found = []
    for n, m, d, size in record.items:
        try:
            data = store.objects.get_object(d)
        except CasError:
            return None
        if len(data) != size:
            return None
        found.append(Visualization(n, m, data))
    return found


def compute(store: Store, artifact: bytes, *, max_bytes: int | None = None) -> list[Visualization]:
    """Visualizations from the artifact's materializer, plus a listing of its files.

    Pickles are never loaded for this (that would run their code): they get
    the listing only, as does anything whose materializer can not load here,
    anything bigger than ``max_bytes`` (declared or stored), and a value its
    materializer fails to draw (a note says why).
    """
    art = Artifact.from_bytes(store.objects.get_object(artifact), key=f"artifact {short(artifact)}")
    found: list[Visualization] = []
    try:
        mat = registry.by_name(art.materializer)
        if not mat.executes_code and mat.can_load(art.materializer_version) and art.materializer != "cas.path":
            tree = Tree.from_bytes(store.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
            size = max(art.size, sum(e.size for e in tree.entries))
            if max_bytes is not None and size > max_bytes:
                found = [note(f"not loaded for a preview: {nice_size(size)} is over the {nice_size(max_bytes)} limit")]
            else:
                value: Any = store.get(to_hex(artifact), trust_pickle=False)
                found = list(mat.visualize(value))
    except CasError:
        found = []
    except Exception as exc:  # noqa: BLE001  a library drawing odd stored data: a view is optional, the page is not
        found = [note(f"could not draw this value: {type(exc).__name__}")]
    return found + compute_listing(store, artifact)


def note(text: str) -> Visualization:
    """A one-line explanation shown where a visualization would be."""
    return Visualization("note", "text/plain", text.encode("utf-8", "replace"))


def compute_listing(store: Store, artifact: bytes) -> list[Visualization]:
    """The artifact's files, sizes and chunk counts, from its tree alone."""
    art = Artifact.from_bytes(store.objects.get_object(artifact), key=f"artifact {short(artifact)}")
    tree = Tree.from_bytes(store.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
    rows = [(e.path, nice_size(e.size), len(e.chunks) if e.data is None else "inline") for e in tree.entries[:500]]
    more = f"<p>... and {len(tree.entries) - 500} more files</p>" if len(tree.entries) > 500 else ""
    return [Visualization("files", "text/html", html_doc(html_table(rows, ["file", "size", "chunks"]), more))]


def save(store: Store, artifact: bytes, visualizations: list[Visualization]) -> VisualizationRecord:
    """Store the documents as objects, then the record that lists them (the record last)."""
    items = []
    for v in visualizations[:MAX_ITEMS]:
        d = store.objects.put_object(v.data, loose=True)
        items.append((v.name, v.media_type, d, len(v.data)))
    record = VisualizationRecord(artifact, tuple(items))
    write_record(store, record)
    return record


def write_record(store: Store, record: VisualizationRecord) -> None:
    """Write a record (after the objects it lists): sealed, since it is not named by its hash."""
    store.backend.write(record_key(record.artifact), codec.seal(record.to_bytes()))

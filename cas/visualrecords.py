"""The stored record of an artifact's visualizations: which objects hold them (storage level).

Layout::

    visualizations/<2 hex>/<62 hex of the artifact>   a sealed record: name, media type, object of each

The documents themselves are ordinary loose objects. gc, fsck and sync read
these records without the value layer: drawing a visualization is
``cas.visualize``'s job, keeping one alive is this module's.
"""

from __future__ import annotations

from cas import codec, keys
from cas.backends.base import Backend
from cas.errors import CorruptObjectError
from cas.objects import MAX_VISUALIZATIONS as MAX_ITEMS
from cas.objects import MEDIA_TYPES, VisualizationRecord

__all__ = ["FOLDER", "MAX_ITEMS", "MEDIA_TYPES", "VisualizationRecord", "artifact_of_key", "read_record",
           "record_key", "write_record"]  # fmt: skip

FOLDER = keys.VISUALIZATIONS_FOLDER


def record_key(artifact: bytes) -> str:
    """The key of an artifact's visualizations record."""
    return keys.visualization_key(artifact)


def artifact_of_key(key: str) -> bytes | None:
    """The artifact a record key names, or None for a stray file."""
    return keys.parse_visualization_key(key)


def read_record(backend: Backend, artifact: bytes) -> VisualizationRecord | None:
    """The stored record of an artifact's visualizations, if any (a damaged one counts as none)."""
    key = record_key(artifact)
    try:
        record = VisualizationRecord.from_bytes(codec.unseal(backend.read(key), key=key), key=key)
    except FileNotFoundError:
        return None
    except CorruptObjectError:
        return None  # recomputed on request; fsck reports it
    return record if record.artifact == artifact else None


def write_record(backend: Backend, record: VisualizationRecord) -> None:
    """Write a record (after the objects it lists): sealed, since it is not named by its hash."""
    backend.write(record_key(record.artifact), codec.seal(record.to_bytes()))

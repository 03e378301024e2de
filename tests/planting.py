"""Planting objects the way another writer of a store could: hash-valid, through the store's own encoders."""

from __future__ import annotations

from typing import Any

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter


def plant(store: cas.Store, files: dict[str, bytes], materializer: str, python_type: str,
          metadata: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Put hash-valid files and an artifact naming them, as another writer would; return the artifact's hash."""
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, python_type, materializer, "1", tree.size, metadata or {}, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)

"""du: where the bytes go, and how much dedup and compression save."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cas import codec, keys
from cas.errors import CasError, check_argument_type
from cas.gc import mark
from cas.objects import Artifact
from cas.progress import ProgressCallback
from cas.refs import RefSpec

if TYPE_CHECKING:
    from cas.repository import Repository


@dataclass
class Usage:
    """Counts and sizes by kind; logical vs unique vs stored bytes; the largest names."""

    counts: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    logical_bytes: int = 0  # every version of every name, at full size
    unique_bytes: int = 0  # distinct content, uncompressed
    stored_bytes: int = 0  # what objects/, packs/ and index/ take
    largest: list[tuple[str, int, int]] = field(default_factory=list)  # (name, versions, logical bytes)

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def __str__(self) -> str:
        lines = [f"{'kind':18} {'count':>10} {'bytes':>16}"]
        for kind in sorted(self.counts):
            lines.append(f"{kind:18} {self.counts[kind]:>10,} {self.sizes[kind]:>16,}")
        lines.append(
            f"logical {self.logical_bytes:,} B, unique {self.unique_bytes:,} B, stored {self.stored_bytes:,} B: "
            f"dedup {self.dedup_ratio:.2f}x, compression {self.compression_ratio:.2f}x"
        )
        for name, versions, size in self.largest:
            lines.append(f"  {name}: {versions} versions, {size:,} B")
        return "\n".join(lines)


def usage(store: Repository, *, top: int = 10, progress: ProgressCallback | None = None) -> Usage:
    """Measure the store (reads indexes and small objects, not chunk data)."""
    check_argument_type(top, int, "top")
    result = Usage()
    backend = store.backend
    marks = mark(store.objects, store.refs, store.run_index, strict=False, progress=progress)
    for key in backend.list(keys.OBJECTS_FOLDER):
        h = keys.parse_object_key(key)
        kind = marks.kinds.get(h, "blob" if h in marks.chunks else "unreachable") if h else "stray"
        size = backend.size(key)
        result.counts[kind] += 1
        result.sizes[kind] += size
        result.stored_bytes += size
        if kind == "blob":  # a small file's single chunk: count its uncompressed size
            result.unique_bytes += codec.parse_header(backend.read_range(key, 0, codec.HEADER_SIZE), key=key).raw_size
    store.objects.refresh_index()
    for pack_id, entries in store.objects.pack_entries().items():
        result.counts["pack"] += 1
        try:
            size = backend.size(keys.pack_key(pack_id))
        except FileNotFoundError:
            continue
        result.sizes["pack"] += size
        result.stored_bytes += size
        result.counts["chunk"] += len(entries)
        result.sizes["chunk"] += sum(e.raw_size for e in entries)
        result.unique_bytes += sum(e.raw_size for e in entries)
    for key in backend.list(keys.INDEX_FOLDER):
        result.counts["pack index"] += 1
        result.sizes["pack index"] += backend.size(key)
        result.stored_bytes += backend.size(key)
    for prefix in (keys.REFS_FOLDER, keys.RUNLOG_FOLDER, keys.CACHE_FOLDER, keys.CHUNKMAPS_FOLDER):
        result.counts[prefix.rstrip("/")] = sum(1 for k in backend.list(prefix) if not keys.is_gone_key(k))
    per_name = []
    for name in store.names():
        total = 0
        numbers = store.refs.version_numbers(name)
        for number in numbers:
            target = store.refs.resolve(RefSpec(name, str(number))).target
            try:
                total += marks.artifact_sizes.get(target) or Artifact.from_bytes(store.objects.get_object(target)).size
            except CasError:
                continue
        per_name.append((name, len(numbers), total))
        result.logical_bytes += total
    result.largest = sorted(per_name, key=lambda item: -item[2])[:top]
    return result

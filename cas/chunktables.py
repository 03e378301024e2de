"""Chunk tables: sorted, immutable index files over many packs (``midx/<table id>``).

A table maps chunk digests to their place in a pack, for all the packs it
covers, sorted by digest with a fan-out table in front (git's multi-pack-index),
so that a lookup reads two small ranges of one file, whatever the number of
packs and chunks. Layout (integers little endian; FORMAT.md, *Chunk tables*)::

    header   32 bytes  "CASMIDX1", u32 version (1), u32 fan-out bits b, u64 packs P, u64 entries N
    fanout   2^b x u64 fanout[i] = entries whose digest's first b bits are <= i
    packs    P x 40    pack id (32 bytes, ascending) and the pack's size (u64)
    entries  N x 64    digest (32, ascending, unique), u32 pack ordinal, u8 codec,
                       3 zero bytes, u64 offset, u64 stored, u64 raw size

A table's id is the BLAKE3 digest of all its bytes. Read whole (small
tables, gc, fsck) it is verified against its id; read by ranges, each row is
a claim that the chunk read through it confirms (its own hash), and every
number is range-checked before it is used.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cas.backends.base import Backend
from cas.errors import CorruptObjectError
from cas.hashing import digest, short
from cas.keys import table_key
from cas.objects import PackEntry

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"CASMIDX1"
VERSION = 1
HEADER = struct.Struct("<8sIIQQ")
PACK_ROW = 40
ENTRY_ROW = 64
MIN_BITS = 8
MAX_BITS = 24
#: Rows per fan-out bucket a writer aims at (a lookup reads one bucket).
BUCKET_TARGET = 8
#: A bucket of more rows than this is refused: honest tables hold a few dozen at most.
MAX_BUCKET = 4096
#: Tables up to this size are read whole (and verified) when first used.
READ_WHOLE = 1 << 20
#: Fan-outs up to this size are kept in memory once read.
KEEP_FANOUT = 1 << 20
#: Batch lookups read a table whole (in slices) when that is less than this many bytes per digest.
BYTES_PER_LOOKUP = 16 << 10
_SLICE_ROWS = 1 << 16


@functools.cache
def numpy() -> ModuleType:
    """numpy, imported when a table is first built or read (``import cas`` stays light)."""
    import numpy

    return numpy


@functools.cache
def entry_dtype() -> Any:
    """The numpy dtype of a row (every byte named, so numpy keeps the 64-byte layout)."""
    return numpy().dtype(
        {
            "names": ["digest", "pack", "codec", "zero", "offset", "stored", "raw_size"],
            "formats": ["S32", "<u4", "u1", "V3", "<u8", "<u8", "<u8"],
            "offsets": [0, 32, 36, 37, 40, 48, 56],
            "itemsize": ENTRY_ROW,
        }
    )


@dataclass(frozen=True, slots=True)
class Located:
    """A chunk's place as a table states it."""

    pack: bytes
    entry: PackEntry


def fanout_bits(entries: int) -> int:
    """Fan-out width for ``entries`` rows: about BUCKET_TARGET rows per bucket."""
    bits = MIN_BITS
    while bits < MAX_BITS and (entries >> bits) > BUCKET_TARGET:
        bits += 1
    return bits


def build(packs: dict[bytes, tuple[int, Sequence[PackEntry]]]) -> bytes:
    """The bytes of a table over ``packs`` (pack id -> (pack size, entries)); a digest in two packs is kept once."""
    np = numpy()
    pack_ids = sorted(packs)
    parts = [rows_of(packs[pack_id][1], ordinal) for ordinal, pack_id in enumerate(pack_ids)]
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=entry_dtype())
    return build_from_rows(rows, [(p, packs[p][0]) for p in pack_ids])


def rows_of(entries: Sequence[PackEntry], ordinal: int) -> np.ndarray:
    """Table rows (entry_dtype()) for one pack's entries, the pack being number ``ordinal`` of the table."""
    np = numpy()
    rows = np.zeros(len(entries), dtype=entry_dtype())
    if entries:
        rows["digest"] = [e.digest for e in entries]
        rows["pack"] = ordinal
        rows["codec"] = [e.codec for e in entries]
        rows["offset"] = [e.offset for e in entries]
        rows["stored"] = [e.stored for e in entries]
        rows["raw_size"] = [e.raw_size for e in entries]
    return rows


def build_from_rows(rows: np.ndarray, packs: Sequence[tuple[bytes, int]]) -> bytes:
    """The bytes of a table from rows (entry_dtype(), pack ordinals into ``packs``, which is sorted)."""
    np = numpy()
    rows = rows[np.argsort(rows["digest"], kind="stable")]
    if len(rows) > 1:
        keep = np.ones(len(rows), dtype=bool)
        keep[1:] = rows["digest"][1:] != rows["digest"][:-1]
        rows = rows[keep]
    bits = fanout_bits(len(rows))
    prefix = _prefixes(_digest_bytes(rows), bits)
    fanout = np.cumsum(np.bincount(prefix, minlength=1 << bits), dtype="<u8")
    pack_table = b"".join(p + size.to_bytes(8, "little") for p, size in packs)
    header = HEADER.pack(MAGIC, VERSION, bits, len(packs), len(rows))
    return b"".join([header, fanout.astype("<u8").tobytes(), pack_table, rows.tobytes()])


def _digest_bytes(rows: np.ndarray) -> np.ndarray:
    """The digests of rows as an (n, 32) array of bytes."""
    np = numpy()
    whole = rows if rows.flags.c_contiguous else rows.copy()
    return whole.view(np.uint8).reshape(-1, ENTRY_ROW)[:, :32]


def _prefixes(digests: np.ndarray, bits: int) -> np.ndarray:
    """The first ``bits`` bits of each digest (rows of 32 uint8) as integers."""
    np = numpy()
    top = (
        digests[:, 0].astype(np.uint32) << 24
        | digests[:, 1].astype(np.uint32) << 16
        | digests[:, 2].astype(np.uint32) << 8
        | digests[:, 3].astype(np.uint32)
    )
    return (top >> (32 - bits)).astype(np.int64)


def _prefix(d: bytes, bits: int) -> int:
    return int.from_bytes(d[:4], "big") >> (32 - bits)


class ChunkTable:
    """One table in a store, read by ranges (or whole, when small)."""

    def __init__(self, backend: Backend, table_id: bytes) -> None:
        self.backend = backend
        self.id = table_id
        self.key = table_key(table_id)
        self._lock = threading.Lock()
        self._whole: memoryview | None = None
        self._fanout: np.ndarray | None = None
        self._pack_ids: dict[int, tuple[bytes, int]] = {}
        head = self._read(0, HEADER.size, exact=False)
        if len(head) < HEADER.size:
            raise self._corrupt("shorter than its header")
        magic, version, bits, packs, entries = HEADER.unpack(head)
        if magic != MAGIC or version != VERSION:
            raise self._corrupt("not a chunk table (magic or version)")
        if not MIN_BITS <= bits <= MAX_BITS or packs > 1 << 32:
            raise self._corrupt("fan-out width or pack count out of range")
        self.bits = bits
        self.pack_count = packs
        self.entry_count = entries
        self.fanout_at = HEADER.size
        self.packs_at = self.fanout_at + 8 * (1 << bits)
        self.entries_at = self.packs_at + PACK_ROW * packs
        self.size = self.entries_at + ENTRY_ROW * entries
        if self.size <= READ_WHOLE:
            self._load_whole()

    # -- reading -------------------------------------------------------------
    def _corrupt(self, why: str) -> CorruptObjectError:
        return CorruptObjectError(f"chunk table {short(self.id)}: {why}", key=self.key)

    def _read(self, offset: int, length: int, *, exact: bool = True) -> bytes | memoryview:
        if self._whole is not None:
            data: bytes | memoryview = self._whole[offset : offset + length]
        else:
            data = self.backend.read_range(self.key, offset, length)
        if exact and len(data) != length:
            raise self._corrupt("truncated")
        return data

    def _load_whole(self) -> None:
        np = numpy()
        data = self.backend.read(self.key)
        if len(data) != self.size:
            raise self._corrupt(f"{len(data)} bytes where its header implies {self.size}")
        if digest(data) != self.id:
            raise self._corrupt("its bytes do not match its id")
        self._whole = memoryview(data)
        self._fanout = self._checked_fanout(np.frombuffer(data, "<u8", 1 << self.bits, self.fanout_at))

    def _checked_fanout(self, fanout: np.ndarray) -> np.ndarray:
        np = numpy()
        if len(fanout) and (np.any(np.diff(fanout.astype(np.int64)) < 0) or int(fanout[-1]) != self.entry_count):
            raise self._corrupt("fan-out table not ascending or not ending at the entry count")
        return fanout

    def _bucket(self, prefix: int) -> tuple[int, int]:
        """Rows [start, end) whose digests begin with ``prefix``."""
        np = numpy()
        if self._fanout is None and 8 * (1 << self.bits) <= KEEP_FANOUT:
            raw = self._read(self.fanout_at, 8 * (1 << self.bits))
            self._fanout = self._checked_fanout(np.frombuffer(raw, "<u8").copy())
        if self._fanout is not None:
            end = int(self._fanout[prefix])
            start = int(self._fanout[prefix - 1]) if prefix else 0
        else:
            at = self.fanout_at + 8 * (prefix - 1) if prefix else self.fanout_at
            cells = self._read(at, 16 if prefix else 8)
            values = np.frombuffer(cells, "<u8")
            start, end = (int(values[0]), int(values[1])) if prefix else (0, int(values[0]))
        if not 0 <= start <= end <= self.entry_count or end - start > MAX_BUCKET:
            raise self._corrupt("a fan-out bucket is out of range")
        return start, end

    def _rows(self, start: int, end: int) -> np.ndarray:
        np = numpy()
        raw = self._read(self.entries_at + ENTRY_ROW * start, ENTRY_ROW * (end - start))
        return np.frombuffer(raw, entry_dtype())

    def pack(self, ordinal: int) -> tuple[bytes, int]:
        """The id and size of the pack a row's ordinal names."""
        if not 0 <= ordinal < self.pack_count:
            raise self._corrupt("a row names a pack the table does not list")
        with self._lock:
            found = self._pack_ids.get(ordinal)
        if found is None:
            raw = bytes(self._read(self.packs_at + PACK_ROW * ordinal, PACK_ROW))
            found = (raw[:32], int.from_bytes(raw[32:], "little"))
            with self._lock:
                self._pack_ids[ordinal] = found
        return found

    def _located(self, rows: np.ndarray, i: int) -> Located:
        np = numpy()
        row = rows[i]
        codec, stored = int(row["codec"]), int(row["stored"])
        if codec not in (0, 1) or stored < 16:
            raise self._corrupt("a row has an unknown codec or is under 16 bytes")
        d = rows.view(np.uint8).reshape(-1, ENTRY_ROW)[i, :32].tobytes()
        entry = PackEntry(d, int(row["offset"]), stored, int(row["raw_size"]), codec)
        return Located(self.pack(int(row["pack"]))[0], entry)

    def lookup(self, d: bytes) -> Located | None:
        """Where the table says chunk ``d`` is, or None."""
        np = numpy()
        start, end = self._bucket(_prefix(d, self.bits))
        if start == end:
            return None
        rows = self._rows(start, end)
        i = int(np.searchsorted(rows["digest"], np.array([d], dtype="S32"))[0])
        if i < len(rows) and rows.view(np.uint8).reshape(-1, ENTRY_ROW)[i, :32].tobytes() == d:
            return self._located(rows, i)
        return None

    def lookup_many(self, digests: Iterable[bytes]) -> dict[bytes, Located]:
        """Where the table says each chunk is (those it lacks are left out)."""
        np = numpy()
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        if self._whole is None and ENTRY_ROW * self.entry_count > BYTES_PER_LOOKUP * len(wanted):
            found = {}
            for d in wanted:
                loc = self.lookup(d)
                if loc is not None:
                    found[d] = loc
            return found
        keys = np.array(wanted, dtype="S32")
        found = {}
        for start in range(0, self.entry_count, _SLICE_ROWS):
            rows = self._rows(start, min(start + _SLICE_ROWS, self.entry_count))
            lo = int(np.searchsorted(keys, rows["digest"][0]))
            hi = int(np.searchsorted(keys, rows["digest"][-1], side="right"))
            if lo == hi:
                continue
            at = np.searchsorted(rows["digest"], keys[lo:hi])
            for j, i in enumerate(at.tolist()):
                if i < len(rows):
                    d = wanted[lo + j]
                    if rows.view(np.uint8).reshape(-1, ENTRY_ROW)[i, :32].tobytes() == d:
                        found[d] = self._located(rows, i)
        return found

    def find_prefix(self, prefix: str) -> set[bytes]:
        """Digests in the table that start with ``prefix`` (hex, at least 6 digits)."""
        np = numpy()
        bits = 4 * len(prefix)
        value = int(prefix, 16)
        if bits >= self.bits:
            first = last = value >> (bits - self.bits)
        else:
            first = value << (self.bits - bits)
            last = ((value + 1) << (self.bits - bits)) - 1
        found: set[bytes] = set()
        for bucket in range(first, last + 1):
            start, end = self._bucket(bucket)
            rows = self._rows(start, end).view(np.uint8).reshape(-1, ENTRY_ROW)
            found.update(d for i in range(end - start) if (d := rows[i, :32].tobytes()).hex().startswith(prefix))
        return found

    # -- reading whole (gc, fsck, consolidation) ----------------------------------
    def verify(self) -> None:
        """Read the whole table and check it: id, sizes, order, fan-out, pack ordinals (CorruptObjectError)."""
        np = numpy()
        if self._whole is None:
            self._load_whole()
        rows = self.all_rows()
        digests = rows["digest"]
        if len(rows) > 1 and not np.all(digests[1:] > digests[:-1]):
            raise self._corrupt("rows are not in ascending, unique digest order")
        if len(rows) and int(rows["pack"].max()) >= self.pack_count:
            raise self._corrupt("a row names a pack the table does not list")
        if np.any(~np.isin(rows["codec"], (0, 1))) or np.any(rows["stored"] < 16):
            raise self._corrupt("a row has an unknown codec or is under 16 bytes")
        prefix = _prefixes(_digest_bytes(rows), self.bits)
        expected = np.cumsum(np.bincount(prefix, minlength=1 << self.bits))
        assert self._fanout is not None
        if not np.array_equal(expected, self._fanout.astype(np.int64)):
            raise self._corrupt("the fan-out table disagrees with the rows")
        ids = [self.pack(i)[0] for i in range(self.pack_count)]
        if ids != sorted(set(ids)):
            raise self._corrupt("packs are not in ascending, unique order")

    def all_rows(self) -> np.ndarray:
        """Every row (reads the whole table once; verified against the id)."""
        if self._whole is None:
            self._load_whole()
        return self._rows(0, self.entry_count)

    def pack_list(self) -> list[tuple[bytes, int]]:
        """Every pack the table covers: (id, size)."""
        raw = bytes(self._read(self.packs_at, PACK_ROW * self.pack_count))
        return [(raw[i : i + 32], int.from_bytes(raw[i + 32 : i + 40], "little")) for i in range(0, len(raw), PACK_ROW)]

    def entries_by_pack(self) -> dict[bytes, list[PackEntry]]:
        """Every row as a PackEntry, grouped by pack and sorted by offset (reads the whole table)."""
        np = numpy()
        rows = self.all_rows()
        packs = self.pack_list()
        if len(rows) and (
            int(rows["pack"].max()) >= len(packs)
            or not np.isin(rows["codec"], (0, 1)).all()
            or int(rows["stored"].min()) < 16
        ):
            raise self._corrupt("a row is out of range")
        rows = rows[np.lexsort((rows["offset"], rows["pack"]))]
        digests = _digest_bytes(rows).tobytes()
        made = [
            PackEntry(digests[32 * i : 32 * i + 32], offset, stored, raw_size, codec)
            for i, (offset, stored, raw_size, codec) in enumerate(
                zip(
                    rows["offset"].tolist(),
                    rows["stored"].tolist(),
                    rows["raw_size"].tolist(),
                    rows["codec"].tolist(),
                    strict=True,
                )
            )
        ]
        grouped: dict[bytes, list[PackEntry]] = {p: [] for p, _ in packs}
        bounds = (
            np.searchsorted(rows["pack"], np.arange(len(packs) + 1)).tolist() if len(rows) else [0] * (len(packs) + 1)
        )
        for ordinal, (pack_id, _) in enumerate(packs):
            grouped[pack_id] = made[bounds[ordinal] : bounds[ordinal + 1]]
        return grouped

"""What an Arrow IPC file declares, read from its flatbuffers before Arrow reads any of it.

An Arrow array's length is a number in the file: a null column, a struct
without children, or the parent of a run-end-encoded column needs no stored
bytes per value, so 394 bytes can declare 2^27 rows that become 1 GiB once
converted to pandas; and a compressed body can declare any size it inflates
to. So before pyarrow reads a stored file, :func:`check_declared` walks the
file's footer and each batch's message (the same blocks pyarrow's file reader
follows) and refuses it unless:

* no body is compressed (cas writes Arrow files uncompressed);
* the declared values (the sum of the length of every array node, nested
  children and dictionaries included, plus one per node) are at most
  ``max(MIN_VALUES, VALUES_PER_BYTE * file size)``.

After pyarrow has read the file (zero-copy) and validated it,
:func:`check_views` counts what string, binary and list views stand for once
copied out (views may overlap) against the same limit.

Eight values per byte is the density of a boolean column without nulls, the
densest that stores every value; a null column of a real frame is paid for
by the frame's other columns. Both limits are module attributes a process may
change. Only the few fields needed are read (flatbuffers layout: a root
offset, tables found through a vtable of field offsets, vectors prefixed by
their length); every offset is bounds-checked.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cas.errors import CorruptObjectError, DeclaredSizeError

#: Declared Arrow values allowed per byte of the stored file (see the module docstring).
VALUES_PER_BYTE = 8
#: Declared Arrow values any file may have, however small.
MIN_VALUES = 1 << 22

_MAGIC = b"ARROW1"
_HEADER_DICTIONARY = 2
_HEADER_RECORD_BATCH = 3
_BLOCK = 24  # struct Block { offset: long; metaDataLength: int; (pad); bodyLength: long }
_NODE = 16  # struct FieldNode { length: long; null_count: long }


def _type_ids(*names: str) -> frozenset[int]:
    """The ids of pyarrow's types by constructor name; pyarrow < 16 has no view types (and reads none)."""
    ids = set()
    for name in names:
        make = getattr(pa, name, None)
        if make is not None:
            ids.add((make(pa.null()) if "list" in name else make()).id)
    return frozenset(ids)


_BYTE_VIEWS = _type_ids("string_view", "binary_view")
_LIST_VIEWS = _type_ids("list_view", "large_list_view")


class _Flat:
    """Bounds-checked reads of one flatbuffer held in ``data[start:end]``."""

    def __init__(self, data: memoryview, start: int, end: int) -> None:
        if not 0 <= start <= end <= len(data):
            raise _bad("a flatbuffer lies outside the file")
        self.data, self.start, self.end = data, start, end

    def _read(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if not self.start <= pos <= self.end - size:
            raise _bad("a flatbuffer offset points outside its buffer")
        value: int = struct.unpack_from(fmt, self.data, pos)[0]
        return value

    def root(self) -> int:
        return self.start + self._read("<I", self.start)

    def field(self, table: int, index: int) -> int | None:
        """The position of a table's field, or None when absent."""
        vtable = table - self._read("<i", table)
        vtable_size = self._read("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self._read("<H", vtable + slot)
        return table + offset if offset else None

    def scalar(self, table: int, index: int, fmt: str) -> int:
        pos = self.field(table, index)
        return 0 if pos is None else self._read(fmt, pos)

    def target(self, table: int, index: int) -> int | None:
        """Where an offset field (a table or a vector) points, or None when absent."""
        pos = self.field(table, index)
        return None if pos is None else pos + self._read("<I", pos)

    def vector(self, table: int, index: int, item_size: int) -> tuple[int, int]:
        """(position of the first item, number of items) of a vector of structs; (0, 0) when absent."""
        pos = self.target(table, index)
        if pos is None:
            return 0, 0
        count = self._read("<I", pos)
        if count * item_size > self.end - pos - 4:
            raise _bad("a flatbuffer vector runs past its buffer")
        return pos + 4, count

    def i64(self, pos: int) -> int:
        return self._read("<q", pos)

    def i32(self, pos: int) -> int:
        return self._read("<i", pos)


def _bad(why: str) -> CorruptObjectError:
    return CorruptObjectError(f"stored Arrow file is malformed: {why}")


def _batch_values(data: memoryview, offset: int, meta_length: int) -> int:
    """The declared values of the record or dictionary batch whose message starts at ``offset``."""
    file = _Flat(data, 0, len(data))
    if not 0 <= offset <= len(data) - 8:
        raise _bad("a batch lies outside the file")
    start, length = offset + 4, file.i32(offset)
    if length == -1:  # continuation marker, then the length
        start, length = offset + 8, file.i32(offset + 4)
    if length < 0 or start + length > offset + meta_length or meta_length > len(data) - offset:
        raise _bad("a batch's message runs past its block")
    message = _Flat(data, start, start + length)
    root = message.root()
    kind = message.scalar(root, 1, "<B")
    header = message.target(root, 2)
    if header is None:
        raise _bad("a batch message has no header")
    if kind == _HEADER_DICTIONARY:
        header = message.target(header, 1)
        if header is None:
            raise _bad("a dictionary batch has no data")
    elif kind != _HEADER_RECORD_BATCH:
        raise _bad(f"a batch block holds a message of type {kind}")
    if message.field(header, 3) is not None:
        raise CorruptObjectError("stored Arrow file has a compressed body (cas writes Arrow files uncompressed)")
    first, count = message.vector(header, 1, _NODE)
    values = count
    for i in range(count):
        declared = message.i64(first + i * _NODE)
        if declared < 0:
            raise _bad("a negative array length")
        values += declared
    return values


def check_declared(data: bytes | memoryview) -> None:
    """Refuse an Arrow IPC file declaring more values than its size allows, or a compressed one.

    Raises DeclaredSizeError (too many values for the bytes) or CorruptObjectError
    (not an Arrow file, compressed, or offsets out of bounds). Reads only
    flatbuffer metadata: nothing is allocated in proportion to what is declared.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    if size < 18 or bytes(view[:6]) != _MAGIC or bytes(view[-6:]) != _MAGIC:
        raise _bad("no Arrow file magic")
    footer_length = struct.unpack_from("<i", view, size - 10)[0]
    if not 0 < footer_length <= size - 18:
        raise _bad("bad footer length")
    footer = _Flat(view, size - 10 - footer_length, size - 10)
    root = footer.root()
    allowed = max(MIN_VALUES, VALUES_PER_BYTE * size)
    values = 0
    for index in (2, 3):  # dictionaries, then record batches
        first, count = footer.vector(root, index, _BLOCK)
        for i in range(count):
            block = first + i * _BLOCK
            values += _batch_values(view, footer.i64(block), footer.i32(block + 8))
            if values > allowed:
                raise DeclaredSizeError(
                    f"stored Arrow file of {size:,} bytes declares more than {allowed:,} values "
                    f"(limit: materializers.arrow_ipc.VALUES_PER_BYTE = {VALUES_PER_BYTE} per byte, "
                    f"at least MIN_VALUES = {MIN_VALUES:,})"
                )


def _has_views(t: pa.DataType) -> bool:
    if t.id in _BYTE_VIEWS or t.id in _LIST_VIEWS:
        return True
    if isinstance(t, pa.ExtensionType):
        return _has_views(t.storage_type)
    if isinstance(t, pa.DictionaryType):
        return _has_views(t.value_type)
    if isinstance(t, pa.RunEndEncodedType):
        return _has_views(t.value_type)
    return any(_has_views(t.field(i).type) for i in range(t.num_fields))


def _view_values(arr: pa.Array, allowed: int) -> int:
    """The values the views in ``arr`` (and below) stand for, once copied out; stops past ``allowed``."""
    t = arr.type
    if isinstance(arr, pa.ExtensionArray):
        return _view_values(arr.storage, allowed)
    if t.id in _BYTE_VIEWS:
        # Each view is 16 bytes, its length first (validated: within its data buffer, so not negative).
        views = arr.buffers()[1]
        if views is None or not len(arr):
            return 0
        lengths = np.frombuffer(views, dtype="<i4", count=4 * (arr.offset + len(arr)))[4 * arr.offset :: 4]
        return int(lengths.sum(dtype=np.int64))
    if t.id in _LIST_VIEWS:
        values = int(pc.sum(pc.list_value_length(arr)).as_py() or 0)
        if values > allowed:
            return values
        # Copying out what the views reference costs no more than was just allowed.
        return values + _view_values(pc.list_flatten(arr), allowed - values)
    if isinstance(arr, pa.DictionaryArray):
        return _view_values(arr.dictionary, allowed)
    if isinstance(arr, pa.RunEndEncodedArray):
        return _view_values(arr.values, allowed)
    if isinstance(arr, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray, pa.MapArray)):
        return _view_values(arr.values, allowed)
    if isinstance(arr, pa.StructArray):
        children = [arr.field(i) for i in range(t.num_fields)]
    elif isinstance(arr, pa.UnionArray):
        children = [arr.field(i) for i in range(t.num_fields)]
    else:
        return 0
    total = 0
    for child in children:
        total += _view_values(child, allowed - total)
        if total > allowed:
            break
    return total


def check_views(table: pa.Table, size: int) -> None:
    """Refuse a (validated) table whose string, binary or list views stand for more values than allowed.

    Views may overlap: n views of one stored megabyte become n megabytes when
    converted. Costs nothing for a table without view types.
    Raises DeclaredSizeError.
    """
    if not any(_has_views(t) for t in table.schema.types):
        return
    allowed = max(MIN_VALUES, VALUES_PER_BYTE * size)
    total = 0
    for column in table.columns:
        if not _has_views(column.type):
            continue
        for chunk in column.chunks:
            total += _view_values(chunk, allowed - total)
            if total > allowed:
                raise DeclaredSizeError(
                    f"stored Arrow file of {size:,} bytes has views standing for more than {allowed:,} values "
                    f"(limit: materializers.arrow_ipc.VALUES_PER_BYTE = {VALUES_PER_BYTE} per byte, "
                    f"at least MIN_VALUES = {MIN_VALUES:,})"
                )

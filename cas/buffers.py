"""A ``bytes`` result filled in place, so large reads allocate (and touch) memory once."""

from __future__ import annotations

import ctypes
import io
import platform
from collections.abc import Callable

_CPYTHON = platform.python_implementation() == "CPython"
if _CPYTHON:
    _new = ctypes.pythonapi.PyBytes_FromStringAndSize
    _new.restype = ctypes.py_object
    _new.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    _address = ctypes.pythonapi.PyBytes_AsString
    _address.restype = ctypes.c_void_p
    _address.argtypes = [ctypes.py_object]


def filled_bytes(size: int, fill: Callable[[memoryview], None]) -> bytes:
    """Return a new ``bytes`` of ``size`` whose contents ``fill`` writes through a view.

    On CPython the object is created uninitialized and written before anyone
    else can see it (its hash is not computed yet), which saves a copy and a
    pass of zeroing over fresh memory. Elsewhere, BytesIO hands over its buffer.
    """
    if size == 0:
        fill(memoryview(bytearray()))
        return b""
    if _CPYTHON:
        result: bytes = _new(None, size)
        array = (ctypes.c_char * size).from_address(_address(result))
        view = memoryview(array).cast("B")
        try:
            fill(view)
        finally:
            view.release()
        return result
    out = io.BytesIO()
    out.seek(size - 1)
    out.write(b"\0")
    with out.getbuffer() as view:
        fill(view)
    return out.getvalue()

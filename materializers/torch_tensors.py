"""torch tensors as safetensors files, written and read here with every size checked.

One tensor is one file, ``tensor.safetensors``: the safetensors layout (an
8-byte little-endian header length, a JSON header, then the data), readable by
the safetensors library and any tool that reads the format. The header's
``__metadata__`` (str -> str) holds what safetensors has no field for: cas's
format version, the torch dtype, the shape, the layout, ``requires_grad``,
whether it was an ``nn.Parameter``, and the device it was saved from.

- dtypes: every dtype with a safetensors name is stored under it (bfloat16, the
  float8 variants, the unsigned ints, complex64...); complex128 and complex32
  are stored as their float64/float16 pairs (a trailing dimension of 2), and
  float4_e2m1fn_x2 as its bytes (U8): the torch dtype in ``__metadata__`` says
  what they are. Quantized and sub-byte ``bits``/``intN`` dtypes are refused.
- Non-contiguous tensors (and conjugate or negative views) are stored
  contiguous and come back equal, with contiguous strides.
- Sparse tensors (COO, CSR, CSC, BSR, BSC) store their component tensors in
  the same file (``indices``/``values``, ``crow_indices``/``col_indices``/
  ``values``...); loading checks their invariants (indices within the shape).
- A CUDA (or other device) tensor is copied to the CPU at save, the device
  recorded; it comes back on the CPU (the loading machine may have no such
  device: move it with ``.to(device)``). Meta tensors have no data and are refused.
- The autograd graph and ``.grad`` are not stored: a tensor that required
  grad comes back as a leaf that requires grad.

A dict or OrderedDict of tensors (a ``state_dict``) goes through ``cas.value``,
which stores each tensor as a leaf by this materializer: one safetensors file
per tensor, so a re-saved checkpoint stores only the tensors that changed.

Reading never uses the safetensors library or ``torch.load``: the file is read
into one buffer and each component is a view of it (no copy), after the header
has been checked (JSON, exact keys, dtypes from a fixed table, shapes, offsets
contiguous and within the file, sizes consistent with the stored file size).
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import torch

from cas.errors import CorruptObjectError, DeclaredSizeError, UnsupportedTypeError
from materializers import visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization

FILE = "tensor.safetensors"
FORMAT = "1"
#: safetensors' own bound on the JSON header (100 MB); a tensor's header is a few hundred bytes.
MAX_HEADER = 100_000_000
ALIGN = 16  # data starts at a multiple of 16 (safetensors pads to 8): every dtype is viewed in place

# torch dtype name -> (safetensors dtype, trailing dimension added to the stored shape, or 0)
_DTYPES: dict[str, tuple[str, int]] = {
    "float64": ("F64", 0), "float32": ("F32", 0), "float16": ("F16", 0), "bfloat16": ("BF16", 0),
    "int64": ("I64", 0), "int32": ("I32", 0), "int16": ("I16", 0), "int8": ("I8", 0),
    "uint64": ("U64", 0), "uint32": ("U32", 0), "uint16": ("U16", 0), "uint8": ("U8", 0), "bool": ("BOOL", 0),
    "complex64": ("C64", 0), "complex128": ("F64", 2), "complex32": ("F16", 2),
    "float8_e4m3fn": ("F8_E4M3", 0), "float8_e5m2": ("F8_E5M2", 0), "float8_e4m3fnuz": ("F8_E4M3FNUZ", 0),
    "float8_e5m2fnuz": ("F8_E5M2FNUZ", 0), "float8_e8m0fnu": ("F8_E8M0", 0), "float4_e2m1fn_x2": ("U8", 0),
}  # fmt: skip
# the torch dtypes of this torch (older versions lack some), by name; never getattr on a stored name
_TORCH: dict[str, torch.dtype] = {n: d for n in _DTYPES if isinstance(d := getattr(torch, n, None), torch.dtype)}
_NAMES = {d: n for n, d in _TORCH.items()}
_ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
             "U16": 2, "U8": 1, "BOOL": 1, "C64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1,
             "F8_E5M2FNUZ": 1, "F8_E8M0": 1}  # fmt: skip

# layout -> its component tensors, in file order
_LAYOUTS: dict[str, tuple[str, ...]] = {
    "strided": ("data",),
    "sparse_coo": ("indices", "values"),
    "sparse_csr": ("crow_indices", "col_indices", "values"),
    "sparse_csc": ("ccol_indices", "row_indices", "values"),
    "sparse_bsr": ("crow_indices", "col_indices", "values"),
    "sparse_bsc": ("ccol_indices", "row_indices", "values"),
}
_LAYOUT_OF = {getattr(torch, name): name for name in _LAYOUTS}
_META_KEYS = {"cas.torch", "dtype", "shape", "layout", "requires_grad", "parameter", "device", "coalesced"}


def _dtype_name(t: torch.Tensor) -> str:
    name = _NAMES.get(t.dtype)
    if name is None:
        raise UnsupportedTypeError(
            f"a torch tensor of dtype {t.dtype} can not be stored natively (quantized and sub-byte dtypes have "
            "no safetensors form): convert it (t.dequantize(), t.to(torch.uint8)...), or allow pickle"
        )
    return name


def _components(t: torch.Tensor, layout: str) -> list[tuple[str, torch.Tensor]]:
    if layout == "strided":
        return [("data", t)]
    if layout == "sparse_coo":
        return [("indices", t._indices()), ("values", t._values())]
    if layout in ("sparse_csr", "sparse_bsr"):
        return [("crow_indices", t.crow_indices()), ("col_indices", t.col_indices()), ("values", t.values())]
    return [("ccol_indices", t.ccol_indices()), ("row_indices", t.row_indices()), ("values", t.values())]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor with the same values, with no lazy conjugate or negation."""
    if t.requires_grad:
        t = t.detach()
    if t.device.type != "cpu":
        t = t.to("cpu")
    return t.resolve_conj().resolve_neg().contiguous()


def _as_bytes(t: torch.Tensor) -> np.ndarray:
    """The bytes of a contiguous CPU tensor, as a uint8 numpy array sharing its memory."""
    if t.numel() == 0:
        return np.empty(0, np.uint8)
    return t.reshape(-1).view(torch.uint8).numpy()


def encode(t: torch.Tensor) -> bytearray:
    """The safetensors file of one tensor (dense or sparse); UnsupportedTypeError for what it can not hold."""
    layout = _LAYOUT_OF.get(t.layout)
    if layout is None:
        raise UnsupportedTypeError(f"torch tensors of layout {t.layout} can not be stored natively; allow pickle")
    if t.device.type == "meta":
        raise UnsupportedTypeError("a meta tensor has no data to store")
    name = _dtype_name(t)
    if t.is_quantized or t.is_nested:
        raise UnsupportedTypeError("quantized and nested tensors can not be stored natively; allow pickle")
    meta = {
        "cas.torch": FORMAT,
        "dtype": name,
        "shape": json.dumps(list(t.shape)),
        "layout": layout,
        "requires_grad": "true" if t.requires_grad else "false",
        "parameter": "true" if isinstance(t, torch.nn.Parameter) else "false",
        "device": str(t.device),
    }
    if layout == "sparse_coo":
        meta["coalesced"] = "true" if t.is_coalesced() else "false"
    parts = [(key, _plain(part)) for key, part in _components(t, layout)]
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    datas = []
    for key, part in parts:
        part_name = _dtype_name(part)
        st_dtype, extra = _DTYPES[part_name]
        data = _as_bytes(part)
        shape = [*part.shape, extra] if extra else list(part.shape)
        header[key] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
        datas.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % ALIGN)
    out = bytearray(8 + len(text) + offset)
    out[:8] = len(text).to_bytes(8, "little")
    out[8 : 8 + len(text)] = text
    view = np.frombuffer(out, np.uint8)
    at = 8 + len(text)
    for data in datas:
        view[at : at + data.nbytes] = data
        at += data.nbytes
    return out


def _exact_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise CorruptObjectError("safetensors header repeats a key")
    return found


def _parse_header(buf: memoryview, size: int) -> tuple[dict[str, str], dict[str, Any], int]:
    """The checked ``__metadata__``, tensor entries and data start of a safetensors file of ``size`` bytes."""
    if size < 8:
        raise CorruptObjectError(f"a safetensors file of {size} bytes has no header")
    length = int.from_bytes(buf[:8], "little")
    if length > MAX_HEADER or 8 + length > size:
        raise DeclaredSizeError(f"safetensors header declares {length} bytes; the file has {size}")
    try:
        header = json.loads(bytes(buf[8 : 8 + length]), object_pairs_hook=_exact_pairs)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptObjectError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise CorruptObjectError("safetensors header is not a map with __metadata__")
    meta = header.pop("__metadata__")
    if not all(type(k) is str and type(v) is str for k, v in meta.items()):
        raise CorruptObjectError("safetensors __metadata__ is not a map of strings")
    start = 8 + length
    data_len = size - start
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CorruptObjectError(f"safetensors entry {key!r} is malformed")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ST_SIZES or not isinstance(shape, list) or not isinstance(offsets, list):
            raise CorruptObjectError(f"safetensors entry {key!r} has an unknown dtype or a malformed shape")
        if not _is_shape(shape):
            raise CorruptObjectError(f"safetensors entry {key!r} has an invalid shape")
        if len(offsets) != 2 or not all(type(n) is int for n in offsets) or not 0 <= offsets[0] <= offsets[1]:
            raise CorruptObjectError(f"safetensors entry {key!r} has invalid data offsets")
        if offsets[1] - offsets[0] != math.prod(shape) * _ST_SIZES[dtype]:
            raise DeclaredSizeError(f"safetensors entry {key!r} declares a shape its data offsets do not hold")
        spans.append((offsets[0], offsets[1], key))
    at = 0  # the safetensors rule: the entries, by offset, tile the data exactly (no gap, no overlap)
    for begin, end, key in sorted(spans):
        if begin != at:
            raise CorruptObjectError(f"safetensors entry {key!r} overlaps another or leaves a gap")
        at = end
    if at != data_len:
        raise DeclaredSizeError(f"safetensors data is {data_len} bytes; its entries declare {at}")
    return meta, header, start


def _is_shape(shape: Any) -> bool:
    """At most 64 sizes, each and their product below 2**63 (what torch can index)."""
    if not isinstance(shape, list) or len(shape) > 64 or not all(type(n) is int and 0 <= n < 2**63 for n in shape):
        return False
    return math.prod(n for n in shape if n) < 2**63


def _flag(meta: dict[str, str], key: str) -> bool:
    value = meta.get(key, "false")
    if value not in ("true", "false"):
        raise CorruptObjectError(f"safetensors metadata {key!r} is not true or false")
    return value == "true"


def _shape(text: str | None) -> list[int]:
    try:
        shape = json.loads(text or "")
    except (json.JSONDecodeError, RecursionError):
        raise CorruptObjectError("safetensors metadata 'shape' is not a JSON list") from None
    if not _is_shape(shape):
        raise CorruptObjectError("safetensors metadata 'shape' is not a list of sizes")
    return shape


def _view(raw: torch.Tensor, start: int, entry: dict[str, Any], dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    """The component at ``entry``'s offsets of ``raw`` (the file's bytes) as ``dtype``, without a copy when aligned."""
    begin, end = entry["data_offsets"]
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != end - begin:
        raise DeclaredSizeError(f"a {dtype} tensor of shape {shape} is {nbytes} bytes; the file holds {end - begin}")
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    part = raw[start + begin : start + end]
    if (start + begin) % dtype.itemsize:
        part = part.clone()  # a file not written by cas: misaligned for an in-place view
    if dtype == torch.bool and int(part.max()) > 1:
        raise CorruptObjectError("a stored bool tensor holds bytes other than 0 and 1")
    return part.view(dtype).reshape(shape)


def decode(raw: torch.Tensor) -> torch.Tensor:
    """The tensor of a safetensors file held in ``raw`` (uint8, the whole file); CorruptObjectError if malformed."""
    meta, entries, start = _parse_header(memoryview(raw.numpy()), raw.numel())  # type: ignore[arg-type]
    if meta.get("cas.torch") != FORMAT or not set(meta) <= _META_KEYS:
        raise CorruptObjectError(f"safetensors file is not cas.torch format {FORMAT}")
    name, layout = meta.get("dtype", ""), meta.get("layout", "")
    if name not in _DTYPES or layout not in _LAYOUTS:
        raise CorruptObjectError(f"stored tensor has an unknown dtype {name[:40]!r} or layout {layout[:40]!r}")
    if name not in _TORCH:
        raise UnsupportedTypeError(f"this torch ({torch.__version__}) has no dtype {name}")
    dtype = _TORCH[name]
    shape = _shape(meta.get("shape"))
    if list(entries) != list(_LAYOUTS[layout]):
        raise CorruptObjectError(f"a {layout} tensor's file holds {sorted(entries)[:8]}")
    parts = {}
    for key, entry in entries.items():
        if key == "values" or layout == "strided":
            part_dtype = dtype
        else:  # index components: int64 or int32, as torch makes them
            part_dtype = {"I64": torch.int64, "I32": torch.int32}.get(entry["dtype"], torch.int64)
            if entry["dtype"] not in ("I64", "I32"):
                raise CorruptObjectError(f"sparse index component {key} is {entry['dtype']}")
        st_dtype, extra = _DTYPES[_NAMES[part_dtype]]
        stored = entry["shape"]
        if entry["dtype"] != st_dtype or (extra and (not stored or stored[-1] != extra)):
            raise CorruptObjectError(f"component {key} is stored as {entry['dtype']}, not as {name} is")
        part_shape = stored[:-1] if extra else stored
        parts[key] = _view(raw, start, entry, part_dtype, part_shape)
    return _assemble(layout, parts, shape, meta)


def _assemble(layout: str, parts: dict[str, torch.Tensor], shape: list[int], meta: dict[str, str]) -> torch.Tensor:
    try:
        if layout == "strided":
            t = parts["data"]
            if list(t.shape) != shape:
                raise CorruptObjectError(f"stored tensor shape {list(t.shape)} is not the recorded {shape}")
        elif layout == "sparse_coo":
            t = torch.sparse_coo_tensor(
                parts["indices"], parts["values"], shape, is_coalesced=False, check_invariants=True
            )
        else:
            compressed, plain = _LAYOUTS[layout][:2]
            make = torch.sparse_compressed_tensor
            with warnings.catch_warnings():  # "support is in beta state", once per process: not the reader's concern
                warnings.simplefilter("ignore", UserWarning)
                t = make(parts[compressed], parts[plain], parts["values"], shape, layout=getattr(torch, layout),
                         check_invariants=True)  # fmt: skip
    except RuntimeError as exc:  # torch's invariant checks: indices out of range, unsorted, ...
        raise CorruptObjectError(f"stored {layout} tensor is invalid: {str(exc)[:300]}") from None
    if layout == "sparse_coo" and _flag(meta, "coalesced"):
        t = t.coalesce()  # torch would trust a stored claim of sorted, unique indices: make it true
    requires_grad = _flag(meta, "requires_grad")
    if requires_grad and not (t.dtype.is_floating_point or t.dtype.is_complex):
        raise CorruptObjectError(f"a {t.dtype} tensor can not require grad")
    if _flag(meta, "parameter"):
        return torch.nn.Parameter(t, requires_grad=requires_grad)
    return t.requires_grad_(requires_grad) if requires_grad else t


def read_file(reader: ArtifactReader, path: str) -> torch.Tensor:
    """Read a whole stored file into a fresh uint8 tensor (its size is the stored size: nothing declared)."""
    size = reader.size(path)
    raw = torch.empty(size, dtype=torch.uint8)
    if size:
        reader.read_into(path, memoryview(raw.numpy()))  # type: ignore[arg-type]
    return raw


class TorchTensorMaterializer(Materializer):
    """torch.Tensor and nn.Parameter: one safetensors file (see the module docstring)."""

    name = "cas.torch"
    version = "1"
    packages = ("torch",)
    types = (torch.Tensor,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        if type(obj) not in (torch.Tensor, torch.nn.Parameter):
            raise UnsupportedTypeError(
                f"{type(obj).__module__}.{type(obj).__qualname__} is a tensor subclass cas can not restore as "
                "itself; store it with allow_pickle=True, or convert it with torch.Tensor(...)/.as_subclass"
            )
        writer.write_bytes(FILE, encode(obj))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        if reader.paths() != [FILE]:
            raise CorruptObjectError(f"a cas.torch artifact holds {reader.paths()[:5]}, not just {FILE}")
        try:
            return decode(read_file(reader, FILE))
        except RuntimeError as exc:  # torch refusing what the checks let through (a stride that overflows...)
            raise CorruptObjectError(f"stored tensor does not load: {str(exc)[:300]}") from None

    def metadata(self, obj: Any) -> dict[str, Any]:
        facts: dict[str, Any] = {"shape": list(obj.shape), "dtype": str(obj.dtype).removeprefix("torch."),
                                 "layout": str(obj.layout).removeprefix("torch."), "device": str(obj.device)}  # fmt: skip
        if obj.layout == torch.strided:
            facts["nbytes"] = obj.numel() * obj.element_size()
        if obj.requires_grad:
            facts["requires_grad"] = True
        return facts

    def visualize(self, obj: Any) -> list[Visualization]:
        facts: list[tuple[str, Any]] = [(k, v) for k, v in self.metadata(obj).items() if k != "nbytes"]
        if obj.layout == torch.strided:
            facts.append(("size", visuals.nice_size(obj.numel() * obj.element_size())))
            if obj.numel() and (obj.dtype.is_floating_point or obj.dtype in (torch.int64, torch.int32, torch.uint8)):
                values = _plain(obj).to(torch.float64).numpy()
                facts += visuals.finite_stats(values)
                found = [visuals.summary(facts)]
                if values.ndim == 1:
                    found.append(visuals.svg_histogram(values))
                return found
        else:
            facts.append(("stored values", int(obj._nnz()) if obj.layout == torch.sparse_coo else obj.values().numel()))
        return [visuals.summary(facts)]

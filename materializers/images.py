"""PIL images: PNG where PNG holds the image exactly, raw pixels otherwise.

``image.png`` is written for the modes PNG stores losslessly (1, L, LA, P,
RGB, RGBA, I;16), and only after decoding it back gave the same mode, size,
pixels and palette; any other image (F, I, I;16B, CMYK, YCbCr, LAB, HSV...)
is stored as ``image.raw``, Pillow's raw bytes of its mode. ``image.msgpack``
records the format, mode, size and the image's ``info`` (the values cas
encodes; keys whose values it can not are dropped and listed in the
artifact's metadata as ``dropped_info``). The str values of ``info`` also go
into the PNG as text chunks, so any PNG reader sees them.

A ``get`` returns a plain ``PIL.Image.Image`` (an opened ``PngImageFile``
or ``JpegImageFile`` is stored as its pixels: its file format is not kept).

Loading checks the recorded width x height against ``Image.MAX_IMAGE_PIXELS``
and, for PNG, against the size in the PNG's header, before any pixel is
decoded; raw bytes must be exactly what the mode and size need.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, PngImagePlugin

from cas.errors import CasError, CorruptObjectError, DeclaredSizeError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.visuals import Visualization

_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
#: Modes stored as raw bytes (Pillow's modes other than the palette ones, whose palette raw bytes do not hold).
_RAW_MODES = frozenset({"1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F",
                        "I;16", "I;16B", "I;16L", "I;16N"})  # fmt: skip
#: Keys of ``info`` Pillow's PNG writer reads as options (everything else str-valued becomes a text chunk).
_PNG_OPTIONS = ("dpi", "transparency", "icc_profile", "gamma")


def _row_bytes(mode: str, width: int) -> int:
    if mode == "1":
        return (width + 7) // 8
    return len(Image.new(mode, (1, 1)).tobytes()) * width


def _check_pixels(size: Any) -> tuple[int, int]:
    if not (isinstance(size, list) and len(size) == 2 and all(type(n) is int and n >= 0 for n in size)):
        raise CorruptObjectError("stored image size is not two non-negative ints")
    width, height = size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max(width, 1) * max(height, 1) > limit:
        raise DeclaredSizeError(
            f"stored image declares {width:,} x {height:,} pixels, more than PIL.Image.MAX_IMAGE_PIXELS = {limit:,}"
        )
    return width, height


def _png(img: Any, info: dict[str, Any]) -> bytes | None:
    """The image as PNG bytes, if decoding them gives the same image back; else None."""
    if img.mode not in _PNG_MODES:
        return None
    chunks = PngImagePlugin.PngInfo()
    for key, value in info.items():
        if isinstance(key, str) and isinstance(value, str) and key not in _PNG_OPTIONS and 0 < len(key) < 80:
            try:
                key.encode("latin-1")
                chunks.add_text(key, value)
            except UnicodeEncodeError:
                continue
    options = {k: info[k] for k in _PNG_OPTIONS if k in info}
    out = io.BytesIO()
    try:
        img.save(out, format="PNG", pnginfo=chunks, **options)
    except (OSError, ValueError, TypeError, KeyError):
        try:  # an option Pillow refuses: the pixels alone (info is restored from image.msgpack)
            out = io.BytesIO()
            img.save(out, format="PNG", pnginfo=chunks)
        except (OSError, ValueError, TypeError, KeyError):
            return None
    data = out.getvalue()
    back = Image.open(io.BytesIO(data))
    back.load()
    if back.mode != img.mode or back.size != img.size or back.tobytes() != img.tobytes():
        return None
    if img.mode == "P" and back.getpalette(None) != img.getpalette(None):
        return None
    return data


class ImageMaterializer(Materializer):
    """PIL.Image.Image (and its subclasses, as plain images): PNG, or raw bytes for modes PNG can not hold."""

    name = "cas.pil"
    version = "1"
    packages = ("pillow",)
    types = (Image.Image,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        obj.load()
        info = {key: value for key, value in obj.info.items() if _encodes(value)}
        png = _png(obj, info)
        if png is None and obj.mode not in _RAW_MODES:
            raise UnsupportedTypeError(f"a PIL image of mode {obj.mode} is neither PNG nor raw in cas")
        try:
            encoded = valuecodec.encode(
                {"format": "raw" if png is None else "png", "mode": obj.mode, "size": list(obj.size), "info": info}
            )
        except CasError as exc:
            raise UnsupportedTypeError(f"PIL image info is not a value cas encodes: {exc}") from None
        writer.write_bytes("image.msgpack", encoded)
        if png is None:
            writer.write_bytes("image.raw", obj.tobytes())
        else:
            writer.write_bytes("image.png", png)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta = valuecodec.decode(reader.read_bytes("image.msgpack"))
        if not isinstance(meta, dict) or set(meta) != {"format", "mode", "size", "info"}:
            raise CorruptObjectError("stored image description is not one cas writes")
        fmt, mode, info = meta["format"], meta["mode"], meta["info"]
        width, height = _check_pixels(meta["size"])
        if not isinstance(info, dict):
            raise CorruptObjectError("stored image info is not a map")
        if fmt == "raw":
            if mode not in _RAW_MODES:
                raise CorruptObjectError(f"stored raw image mode {str(mode)[:20]!r} is not one cas writes")
            expected = _row_bytes(mode, width) * height
            if reader.size("image.raw") != expected:
                raise CorruptObjectError(f"stored raw image is {reader.size('image.raw'):,} bytes, {mode} "
                                         f"{width} x {height} is {expected:,}")  # fmt: skip
            img = Image.frombytes(mode, (width, height), reader.read_bytes("image.raw"))
        elif fmt == "png":
            if mode not in _PNG_MODES:
                raise CorruptObjectError(f"stored PNG image mode {str(mode)[:20]!r} is not one cas writes")
            img = self._decode_png(reader.read_bytes("image.png"), mode, (width, height))
        else:
            raise CorruptObjectError("stored image format is not one cas writes")
        img.info = dict(info)
        return img

    @staticmethod
    def _decode_png(data: bytes, mode: str, size: tuple[int, int]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                opened = Image.open(io.BytesIO(data), formats=["PNG"])  # reads the header only
                if opened.size != size or opened.mode != mode:
                    raise CorruptObjectError(
                        f"stored PNG is {opened.mode} {opened.size[0]} x {opened.size[1]}, its description says "
                        f"{mode} {size[0]} x {size[1]}"
                    )
                opened.load()
                return opened.copy()  # a plain Image, not tied to the PNG's bytes
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DeclaredSizeError(f"stored PNG is a decompression bomb: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL reports broken files with these
            raise CorruptObjectError(f"stored PNG does not decode: {type(exc).__name__}: {exc}") from None

    def metadata(self, obj: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"mode": obj.mode, "size": list(obj.size)}
        dropped = [str(k) for k, v in obj.info.items() if not _encodes(v)]
        if dropped:
            found["dropped_info"] = dropped[:100]
        return found

    def visualize(self, obj: Any) -> list[Visualization]:
        facts = [("mode", obj.mode), ("size", f"{obj.size[0]} x {obj.size[1]}"),
                 ("info", ", ".join(str(k) for k in list(obj.info)[:30]) or "-")]  # fmt: skip
        found = [visuals.summary(facts)]
        image = _preview(obj)
        if image is not None:
            found.append(image)
        return found


def _encodes(value: Any) -> bool:
    try:
        valuecodec.encode(value)
    except CasError:
        return False
    return True


def _preview(img: Any) -> Visualization | None:
    """A PNG of at most 512 x 512 pixels, converted to a mode a browser shows."""
    try:
        shown = img if img.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else img.convert("RGB")
    except (ValueError, OSError):
        return None
    if max(shown.size) > 512:
        shown = shown.copy()
        shown.thumbnail((512, 512))
    if 0 in shown.size:
        return None
    out = io.BytesIO()
    shown.save(out, format="PNG")
    return Visualization("image", "image/png", out.getvalue())

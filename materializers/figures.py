"""matplotlib Figures, stored as what they draw: a PNG and an SVG.

A figure object is a tree of artists holding callbacks, transforms and
references to the rest of the program: there is no data format for it, only
pickle. So ``put(fig)`` stores its images, ``figure.png`` (at the figure's
dpi) and ``figure.svg``, and ``get`` returns the PNG as a
``PIL.Image.Image`` whose ``info["svg"]`` holds the SVG text. The figure
object itself round-trips only with pickle consent:
``put(fig, materializer="cas.pickle", allow_pickle=True)``, loaded with
``trust_pickle=True`` (the explicit materializer wins over this one).

The images are written without the dates and version strings matplotlib
puts in them by default, and with a fixed SVG id salt, so drawing the same
figure again gives the same bytes (and dedups). Loading decodes the PNG as
:mod:`materializers.images` does (its header checked against the recorded
size and ``Image.MAX_IMAGE_PIXELS`` first); the SVG is only checked to be
UTF-8 text, never parsed or rendered here.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from PIL import Image

from cas.errors import CorruptObjectError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.images import ImageMaterializer, _check_pixels
from materializers.visuals import Visualization

#: The SVG id salt: matplotlib's default is random per process.
_SVG_SALT = "cas"


def _draw(fig: Any) -> tuple[bytes, bytes]:
    png, svg = io.BytesIO(), io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT}):
        fig.savefig(png, format="png", metadata={"Software": None})
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png.getvalue(), svg.getvalue()


class FigureMaterializer(Materializer):
    """matplotlib.figure.Figure, as PNG and SVG images; ``get`` returns a PIL Image (the SVG in its info)."""

    name = "cas.matplotlib.figure"
    version = "1"
    packages = ("matplotlib", "pillow")
    types = (Figure,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        png, svg = _draw(obj)
        size = list(Image.open(io.BytesIO(png)).size)
        writer.write_bytes("figure.msgpack", valuecodec.encode({"size": size}))
        writer.write_bytes("figure.png", png)
        writer.write_bytes("figure.svg", svg)

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        meta = valuecodec.decode(reader.read_bytes("figure.msgpack"))
        if not isinstance(meta, dict) or set(meta) != {"size"}:
            raise CorruptObjectError("stored figure description is not one cas writes")
        width, height = _check_pixels(meta["size"])
        image = ImageMaterializer._decode_png(reader.read_bytes("figure.png"), "RGBA", (width, height))
        try:
            svg = reader.read_bytes("figure.svg").decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptObjectError("stored figure SVG is not UTF-8 text") from None
        image.info = {"svg": svg}
        return image

    def metadata(self, obj: Any) -> dict[str, Any]:
        width, height = obj.get_size_inches()
        titles = [ax.get_title() for ax in obj.axes[:20]]
        return {"size_inches": [float(width), float(height)], "dpi": float(obj.dpi), "axes": len(obj.axes),
                "titles": [t[:200] for t in titles if t]}  # fmt: skip

    def visualize(self, obj: Any) -> list[Visualization]:
        if isinstance(obj, Figure):
            png, svg = _draw(obj)
        else:  # the loaded value: the PNG as an Image, the SVG in its info
            out = io.BytesIO()
            obj.save(out, format="PNG")
            png, svg = out.getvalue(), str(obj.info.get("svg", "")).encode()
        found = [Visualization("image", "image/png", png)]
        if svg:
            found.append(Visualization("svg", "image/svg+xml", svg))
        found.append(visuals.summary([("pixels", f"{Image.open(io.BytesIO(png)).size}")]))
        return found

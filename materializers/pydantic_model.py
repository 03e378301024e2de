"""pydantic models, through their own JSON (validated again on load)."""

from __future__ import annotations

from typing import Any

import pydantic

from cas.errors import IncompatibleArtifactError
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.structured import class_facts, find_class


class PydanticMaterializer(Materializer):
    """A pydantic model; the class must be importable (see materializers.structured)."""

    name = "cas.pydantic"
    version = "1"
    packages = ("pydantic",)
    types = (pydantic.BaseModel,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes("model.json", obj.model_dump_json().encode())

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        return type_.model_validate_json(reader.read_bytes("model.json"))  # type: ignore[attr-defined]

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {**class_facts(obj), "fields": list(type(obj).model_fields)}

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        cls = find_class(metadata)
        if not issubclass(cls, pydantic.BaseModel):
            raise IncompatibleArtifactError(f"{type_name} is not a pydantic model")
        return cls

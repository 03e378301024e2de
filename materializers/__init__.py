"""Materializers: how Python objects become files in an artifact, and back."""

# cas first: materializers need cas.errors, whose package imports cas.store,
# which imports materializers' submodules. So ``import materializers`` works
# before ``import cas`` (a custom materializer's first line).
import cas  # noqa: F401, I001
from materializers import builtin as _builtin  # noqa: E402, F401, I001  (registers the built-ins last)
from materializers.base import ArtifactReader, ArtifactWriter, Materializer, type_name_of
from materializers.registry import Registry, registry

__all__ = ["ArtifactReader", "ArtifactWriter", "Materializer", "Registry", "registry", "type_name_of"]

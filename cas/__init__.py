"""cas: a content-addressed artifact store with a git-like model.

import cas
store = cas.open()                 # ./.cas, found like git finds .git
ref = store.put(b"...", "dataset") # dataset@1
data = store.get("dataset")
"""

from cas.errors import (
    AmbiguousRefError,
    BackendError,
    CasError,
    CorruptObjectError,
    DeclaredSizeError,
    DestinationExistsError,
    ExpansionLimitError,
    IncompatibleArtifactError,
    IntegrityError,
    InvalidConfigError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidRunError,
    LoadError,
    NonPortablePathError,
    ObjectNotFoundError,
    PathRequiredError,
    ReadOnlyStoreError,
    RefConflictError,
    RefExistsError,
    RefNotFoundError,
    SourceNotFoundError,
    SpecialFileError,
    StoreNotFoundError,
    UnsafeDestinationError,
    UnsupportedTypeError,
    UntrustedPickleError,
)
from cas.history import VersionLog
from cas.lineage import LineageGraph
from cas.remotes import Remote
from cas.remoting import clone
from cas.runs import Run
from cas.steps import Step, pipeline, step
from cas.store import ArtifactInfo, FileInfo, Ref, Store, open
from cas.sync import RefConflict, TransferReport
from materializers.base import Materializer
from materializers.registry import registry as _registry

__version__ = "0.1.0"


def register_materializer(cls: type[Materializer]) -> type[Materializer]:
    """Register a materializer class for its types (usable as a decorator)."""
    return _registry.register(cls)


__all__ = [
    "AmbiguousRefError",
    "ArtifactInfo",
    "BackendError",
    "CasError",
    "CorruptObjectError",
    "DeclaredSizeError",
    "DestinationExistsError",
    "ExpansionLimitError",
    "FileInfo",
    "IncompatibleArtifactError",
    "IntegrityError",
    "InvalidConfigError",
    "InvalidMetadataError",
    "InvalidNameError",
    "InvalidRunError",
    "LineageGraph",
    "LoadError",
    "Materializer",
    "NonPortablePathError",
    "ObjectNotFoundError",
    "PathRequiredError",
    "ReadOnlyStoreError",
    "Ref",
    "RefConflict",
    "RefConflictError",
    "RefExistsError",
    "Remote",
    "RefNotFoundError",
    "Run",
    "SourceNotFoundError",
    "SpecialFileError",
    "Step",
    "Store",
    "StoreNotFoundError",
    "TransferReport",
    "UnsafeDestinationError",
    "UnsupportedTypeError",
    "UntrustedPickleError",
    "VersionLog",
    "__version__",
    "clone",
    "open",
    "pipeline",
    "register_materializer",
    "step",
]

"""cas: a content-addressed artifact store with a git-like model.

import cas
store = cas.open()                 # ./.cas, found like git finds .git
ref = store.put(b"...", "dataset") # dataset@1
data = store.get("dataset")
"""

import importlib.metadata

from cas.consolidate import ConsolidationReport
from cas.errors import (
    AccessDeniedError,
    AmbiguousRefError,
    ArgumentTypeError,
    BackendError,
    BackendTimeoutError,
    CasError,
    CorruptObjectError,
    DeclaredSizeError,
    DestinationExistsError,
    ExpansionLimitError,
    IncompatibleArtifactError,
    InputGoneError,
    IntegrityError,
    InvalidArgumentError,
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
    RemoteNotFoundError,
    SourceNotFoundError,
    SpecialFileError,
    StepOutputError,
    StoreExistsError,
    StoreNotFoundError,
    UnsafeDestinationError,
    UnsupportedFormatError,
    UnsupportedTypeError,
    UntrustedPickleError,
    UntrustedTypesError,
    WrongObjectKindError,
)
from cas.filesystem import CasFileSystem
from cas.fsck import FsckReport
from cas.gc import GcReport
from cas.history import LogEntries, VersionLog
from cas.lineage import Edge as LineageEdge
from cas.lineage import LineageGraph
from cas.lineage import Node as LineageNode
from cas.progress import ProgressCallback, ProgressEvent
from cas.remotes import Remote, RemoteList
from cas.runs import Run
from cas.steps import Step, pipeline, step
from cas.store import ArtifactInfo, FileInfo, Ref, Store, clone, open
from cas.sync import RefConflict, Skipped, TransferReport
from cas.trees import TreeReader
from cas.usage import Usage
from materializers.base import Materializer
from materializers.registry import registry as _registry
from materializers.visuals import Visualization


def _installed_version() -> str:
    """The version pip installed (pyproject.toml's); ``0+unknown`` in a checkout that was never installed."""
    try:
        return importlib.metadata.version("cas-store")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()


def register_materializer(cls: type[Materializer]) -> type[Materializer]:
    """Register a materializer class for its types (usable as a decorator)."""
    return _registry.register(cls)


__all__ = [
    "AccessDeniedError",
    "AmbiguousRefError",
    "ArgumentTypeError",
    "ArtifactInfo",
    "BackendError",
    "BackendTimeoutError",
    "CasError",
    "CasFileSystem",
    "CorruptObjectError",
    "DeclaredSizeError",
    "DestinationExistsError",
    "ExpansionLimitError",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "ConsolidationReport",
    "IncompatibleArtifactError",
    "InputGoneError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidMetadataError",
    "InvalidNameError",
    "InvalidRunError",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LoadError",
    "LogEntries",
    "Materializer",
    "NonPortablePathError",
    "ObjectNotFoundError",
    "PathRequiredError",
    "ProgressCallback",
    "ProgressEvent",
    "ReadOnlyStoreError",
    "Ref",
    "RefConflict",
    "RefConflictError",
    "RefExistsError",
    "RefNotFoundError",
    "Remote",
    "RemoteList",
    "RemoteNotFoundError",
    "Run",
    "Skipped",
    "SourceNotFoundError",
    "SpecialFileError",
    "Step",
    "StepOutputError",
    "Store",
    "StoreExistsError",
    "StoreNotFoundError",
    "TransferReport",
    "TreeReader",
    "UnsafeDestinationError",
    "UnsupportedFormatError",
    "UnsupportedTypeError",
    "UntrustedPickleError",
    "UntrustedTypesError",
    "Usage",
    "VersionLog",
    "Visualization",
    "WrongObjectKindError",
    "__version__",
    "clone",
    "open",
    "pipeline",
    "register_materializer",
    "step",
]

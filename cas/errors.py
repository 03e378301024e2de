"""The exceptions raised by cas.

Every error derives from :class:`CasError`; where a built-in exception has the
same meaning, the error inherits it too, so ``except KeyError`` keeps working::

    CasError
    ├── IntegrityError                  stored bytes do not match their hash
    │   └── CorruptObjectError (+ValueError)  bytes that do not decode at all
    │       ├── SpecialFileError         a folder store's key is a FIFO, device, socket, folder or link
    │       ├── InvalidConfigError       a store config value out of range (names the field)
    │       └── DeclaredSizeError        declared sizes out of proportion to the stored bytes
    ├── ExpansionLimitError             a tree re-uses its chunks beyond the reader's limit
    ├── ObjectNotFoundError (+KeyError)  no object with that hash
    │   └── RefNotFoundError             no artifact under that name/version
    ├── AmbiguousRefError (+ValueError)  a hash prefix matching several objects, or also a name
    ├── InvalidNameError (+ValueError)   a name, version, tag or path breaking a rule
    │   ├── NonPortablePathError         a tree path unsafe on some file system (.git, CON, a:b, x., A/a)
    │   └── UnsafeDestinationError       a restore would go through a link or outside its target
    ├── DestinationExistsError (+FileExistsError)  a restore target exists (wrong kind, or no --force)
    ├── RefExistsError (+FileExistsError)  an immutable version already taken
    │   └── RefConflictError             push/pull: a version that differs on the other side
    ├── StoreNotFoundError (+FileNotFoundError)
    ├── SourceNotFoundError (+FileNotFoundError)  a file or folder to put is missing
    ├── InvalidMetadataError (+ValueError)  metadata that is not plain data
    ├── UnsupportedTypeError (+TypeError)  no materializer for a Python type
    ├── UntrustedPickleError             loading a pickle needs trust_pickle=True
    ├── IncompatibleArtifactError        written by a materializer or Python this one can not read
    │   └── LoadError                    verified bytes this process cannot turn back into an object
    ├── PathRequiredError (+TypeError)   a file tree artifact needs ``path=``
    ├── InvalidRunError (+ValueError)    record_run arguments that make no valid run (times, hashes)
    ├── ReadOnlyStoreError (+PermissionError)  a write through a read-only view (``cas ui``)
    └── BackendError (+OSError)          the storage backend failed
"""

from __future__ import annotations

from collections.abc import Sequence


class CasError(Exception):
    """Root of every error raised by cas."""


class IntegrityError(CasError):
    """Stored bytes do not hash to the address they were read from."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class CorruptObjectError(IntegrityError, ValueError):
    """Stored bytes are malformed: bad header, truncated, or an invalid encoding."""


class InvalidConfigError(CorruptObjectError):
    """A store's config holds a value out of range (a negative gc grace, an unknown compression level...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, key="config")
        self.field = field


class DeclaredSizeError(CorruptObjectError):
    """Stored data declares sizes out of proportion to the bytes actually stored (a memory bomb).

    Raised before anything is allocated; the message names the limit and how to change it.
    """


class SpecialFileError(CorruptObjectError):
    """A key of a folder store is not a regular file (a FIFO, device, socket, folder or symbolic link).

    Its content is never read: a FIFO would block, a device or a link could
    lead anywhere. Like any damaged entry, it fails only what needs it.
    """


class ExpansionLimitError(CasError):
    """A tree declares far more bytes than the distinct data it is made of.

    A tree may list the same chunk many times (a file of zeros is one chunk
    repeated), so a tiny stored object can expand into a huge value. Reads
    refuse a tree larger than ``max(expansion_allowance, max_expansion x its
    distinct bytes)``; raise the limits with ``cas.open(max_expansion=...,
    expansion_allowance=...)`` (``max_expansion=float("inf")`` lifts it).
    """


class ObjectNotFoundError(CasError, KeyError):
    """No object with the requested hash exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RefNotFoundError(ObjectNotFoundError):
    """A name, version or tag that does not exist."""


class AmbiguousRefError(CasError, ValueError):
    """A hash prefix that matches more than one object, or that is also a name in the store."""


class InvalidNameError(CasError, ValueError):
    """A name, version label, tag or tree path that breaks a naming rule."""


class NonPortablePathError(InvalidNameError):
    """A tree path that is valid but not safe to write on every file system.

    ``.git`` in any case, a Windows device name (``CON``, ``nul.txt``), a ``:``
    (an NTFS stream), a trailing dot or space, or two paths that differ only
    in case or Unicode normalization.
    """


class UnsafeDestinationError(InvalidNameError):
    """A restore would write through a symlink or a non-folder in the destination, or outside it."""


class DestinationExistsError(CasError, FileExistsError):
    """A restore target exists and is the wrong kind, or would be replaced without ``force``."""


class RefExistsError(CasError, FileExistsError):
    """An immutable ref (an explicit version) already exists with another target."""


class RefConflictError(RefExistsError):
    """A push or pull met versions, labels or tags the other store holds with other artifacts."""

    def __init__(self, message: str, conflicts: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts)


class StoreNotFoundError(CasError, FileNotFoundError):
    """No store exists at the given location."""


class SourceNotFoundError(CasError, FileNotFoundError):
    """A file or folder given to ``put`` does not exist."""


class InvalidMetadataError(CasError, ValueError):
    """Metadata must be a dict of str keys and plain values (None, bool, int, float, str, bytes, lists, dicts)."""


class UnsupportedTypeError(CasError, TypeError):
    """No materializer handles the given Python type."""


class UntrustedPickleError(CasError):
    """Loading a pickled artifact would run code from the store: it needs ``trust_pickle=True``."""


class IncompatibleArtifactError(CasError):
    """An artifact written by a materializer version or Python this process can not safely read."""


class LoadError(IncompatibleArtifactError):
    """Verified bytes that this process cannot turn back into an object.

    Not damage: the materializer that wrote them is not registered here, its
    library is missing or another version, or a pickle names a module or class
    this process lacks. The attributes say what the artifact recorded and
    what is installed; the message says what to do. ``except
    IncompatibleArtifactError`` catches it too.
    """

    def __init__(
        self,
        message: str,
        *,
        artifact: str | None = None,
        materializer: str | None = None,
        materializer_version: str | None = None,
        recorded: dict[str, str] | None = None,
        installed: dict[str, str | None] | None = None,
        module: str | None = None,
    ) -> None:
        super().__init__(message)
        self.artifact = artifact  # the ref or short hash, once known
        self.materializer = materializer
        self.materializer_version = materializer_version
        self.recorded = dict(recorded or {})  # library -> version the artifact was written with
        self.installed = dict(installed or {})  # library -> version here (None: not installed)
        self.module = module  # the module to import for a custom materializer, or the one a pickle needs

    def about(self, artifact: str) -> LoadError:
        """The same error, its message starting with the artifact it is about."""
        return type(self)(
            f"cannot load {artifact}: {self}",
            artifact=artifact,
            materializer=self.materializer,
            materializer_version=self.materializer_version,
            recorded=self.recorded,
            installed=self.installed,
            module=self.module,
        )


class PathRequiredError(CasError, TypeError):
    """Restoring a file or directory artifact needs a destination ``path``."""


class InvalidRunError(CasError, ValueError):
    """``record_run`` arguments that make no valid run: a time that is not finite or outside 1970..3000, a bad hash."""


class ReadOnlyStoreError(CasError, PermissionError):
    """A write attempted through a read-only view of a store (what ``cas ui`` reads through)."""


class BackendError(CasError, OSError):
    """The storage backend failed in a way cas cannot recover from."""

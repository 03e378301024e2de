"""The exceptions raised by cas.

Every error derives from :class:`CasError`; where a built-in exception has the
same meaning, the error inherits it too, so ``except KeyError`` keeps working::

    CasError
    ├── IntegrityError                  stored bytes do not match their hash
    │   └── CorruptObjectError (+ValueError)  bytes that do not decode at all
    ├── ObjectNotFoundError (+KeyError)  no object with that hash
    │   └── RefNotFoundError             no artifact under that name/version
    ├── AmbiguousRefError (+ValueError)  a hash prefix matching several objects
    ├── InvalidNameError (+ValueError)   a name, version, tag or path breaking a rule
    ├── RefExistsError (+FileExistsError)  an immutable version already taken
    │   └── RefConflictError             push/pull: a version that differs on the other side
    ├── StoreNotFoundError (+FileNotFoundError)
    ├── SourceNotFoundError (+FileNotFoundError)  a file or folder to put is missing
    ├── InvalidMetadataError (+ValueError)  metadata that is not plain data
    ├── UnsupportedTypeError (+TypeError)  no materializer for a Python type
    ├── UntrustedPickleError             loading a pickle needs trust_pickle=True
    ├── IncompatibleArtifactError        written by a materializer or Python this one can not read
    ├── PathRequiredError (+TypeError)   a file tree artifact needs ``path=``
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


class ObjectNotFoundError(CasError, KeyError):
    """No object with the requested hash exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RefNotFoundError(ObjectNotFoundError):
    """A name, version or tag that does not exist."""


class AmbiguousRefError(CasError, ValueError):
    """A hash prefix that matches more than one object."""


class InvalidNameError(CasError, ValueError):
    """A name, version label, tag or tree path that breaks a naming rule."""


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


class PathRequiredError(CasError, TypeError):
    """Restoring a file or directory artifact needs a destination ``path``."""


class BackendError(CasError, OSError):
    """The storage backend failed in a way cas cannot recover from."""

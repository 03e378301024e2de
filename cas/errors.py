"""The exceptions raised by cas: one class per meaning, all under :class:`CasError`.

Where a built-in exception has the same meaning, the error inherits it too, so
``except KeyError`` keeps working. A class marked *compat* also derives from
the class cas raised for that case before it had its own meaning, so
``except`` clauses written against the old class keep working for one more
release; catch the new class (or its built-in parent) instead::

    CasError
    ├── IntegrityError                  stored bytes do not match their hash
    │   └── CorruptObjectError (+ValueError)  bytes that do not decode at all
    │       ├── SpecialFileError         a folder store's key is a FIFO, device, socket, folder or link
    │       ├── InvalidConfigError       a store config value out of range (names the field)
    │       ├── DeclaredSizeError        declared sizes out of proportion to the stored bytes
    │       └── UnsupportedFormatError   a store, header or schema version newer than this cas (compat)
    ├── ExpansionLimitError             a tree re-uses its chunks beyond the reader's limit
    ├── ObjectNotFoundError (+KeyError)  no object with that hash
    │   ├── RefNotFoundError             no artifact under that name/version
    │   │   └── RemoteNotFoundError      no remote of that name, or none at all (compat)
    │   ├── WrongObjectKindError         the object exists but is another kind (a tree, not an artifact) (compat)
    │   └── InputGoneError               a step's input was collected while the step ran
    ├── AmbiguousRefError (+ValueError)  a hash prefix matching several objects, or also a name
    ├── InvalidArgumentError (+ValueError)  an argument out of its domain (a negative grace, an unknown option)
    │   ├── ArgumentTypeError (+TypeError)  an argument of a type the call does not take
    │   ├── InvalidNameError             a name, version, tag, hash or path breaking a rule
    │   │   ├── NonPortablePathError     a tree path unsafe on some file system (.git, CON, a:b, x., A/a)
    │   │   └── UnsafeDestinationError   a restore would go through a link or outside its target
    │   ├── InvalidMetadataError         metadata that is not plain data
    │   └── InvalidRunError              record_run arguments that make no valid run (times, hashes, fields)
    ├── DestinationExistsError (+FileExistsError)  a restore target exists (wrong kind, or no --force)
    ├── RefExistsError (+FileExistsError)  an immutable version already taken
    │   ├── RefConflictError             push/pull: a version that differs on the other side
    │   └── StoreExistsError             clone: the destination already holds a store (compat)
    ├── StoreNotFoundError (+FileNotFoundError)
    ├── SourceNotFoundError (+FileNotFoundError)  a file or folder to put is missing
    ├── UnsupportedTypeError (+TypeError)  no materializer for a Python type
    ├── StepOutputError (+TypeError)    a step returned values that do not match its declared outputs
    ├── UntrustedPickleError             loading a pickle needs trust_pickle=True
    ├── IncompatibleArtifactError        written by a materializer or Python this one can not read
    │   └── LoadError                    verified bytes this process cannot turn back into an object
    │       └── UntrustedTypesError      a stored model names types cas does not trust (never loaded)
    ├── PathRequiredError (+TypeError)   a file tree artifact has no value: ``export`` writes it
    ├── ReadOnlyStoreError (+PermissionError)  a write through a read-only view (``cas ui``)
    └── BackendError (+OSError)          the storage backend failed
        ├── BackendTimeoutError (+TimeoutError)  no answer within the timeout or deadline
        └── AccessDeniedError (+PermissionError)  the storage refused these credentials (a write, read-only)

The compat parents, and why each is kept:

- ``UnsupportedFormatError`` under ``CorruptObjectError``: cas raised
  CorruptObjectError for a newer store or object before, and the readers that
  fall back on another copy, skip a damaged entry or let fsck report it catch
  CorruptObjectError; as a subclass a newer object keeps being handled the
  same way everywhere (never trusted, never decoded).
- ``RemoteNotFoundError`` under ``RefNotFoundError``: push, pull and clone
  raise RefNotFoundError for a missing name too, so code around them that
  catches RefNotFoundError (or KeyError) keeps catching a missing remote.
- ``WrongObjectKindError`` under ``ObjectNotFoundError``: ``get``, ``info``,
  ``reader`` and ``run`` raised ObjectNotFoundError (a KeyError) for a hash of
  the wrong kind; for the artifact asked for, there is indeed none.
  (``lineage`` of such a hash drew a "missing" node; it now raises it too.)
- ``StoreExistsError`` under ``RefExistsError``: ``clone`` raised
  RefExistsError (a FileExistsError) when the destination holds a store.

``InvalidArgumentError`` can not keep a compat parent: it is the base of
``InvalidNameError``, which bad options, flags and argument combinations
raised before; ``except ValueError`` catches both, old and new.
``InvalidMetadataError`` and ``InvalidRunError`` moved under it and stay
ValueErrors. ``ArgumentTypeError`` is what escaped before as a bare
TypeError or AttributeError (a number for a path, ``None`` for a ref); it is
a TypeError too.
"""

from __future__ import annotations

from collections.abc import Sequence

from cas.keys import CONFIG_KEY


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
        super().__init__(message, key=CONFIG_KEY)
        self.field = field


class DeclaredSizeError(CorruptObjectError):
    """Stored data declares sizes out of proportion to the bytes actually stored (a memory bomb).

    Raised before anything is allocated; the message names the limit and how to change it.
    """


class UnsupportedFormatError(CorruptObjectError):
    """A store config, object header or object schema version newer than this cas understands: upgrade cas.

    Not damage, but never read either. Derives from CorruptObjectError, which
    was raised before, so every reader treats it as it did.
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


class RemoteNotFoundError(RefNotFoundError):
    """No remote of the given name, or a store with no remote (or several) when none is named.

    Derives from RefNotFoundError, which was raised before, for one release.
    """


class WrongObjectKindError(ObjectNotFoundError):
    """A hash that names an object of another kind than the call needs (a tree given for an artifact).

    Derives from ObjectNotFoundError, which was raised before, for one release.
    """


class InputGoneError(ObjectNotFoundError):
    """A step's input artifact (or its tree or a chunk) was removed while the step ran: no run is recorded."""


class AmbiguousRefError(CasError, ValueError):
    """A hash prefix that matches more than one object, or that is also a name in the store."""


class InvalidArgumentError(CasError, ValueError):
    """An argument outside what the call accepts: a negative grace, an unknown option value, a bad size."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of a type the call does not take (a number for a path, a list for a name...)."""


def check_argument_type(value: object, types: type | tuple[type, ...], what: str) -> None:
    """Raise ArgumentTypeError unless ``value`` is one of ``types`` (``what`` names the argument)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _flat(types)):
        names = " or ".join(t.__name__ for t in _flat(types))
        raise ArgumentTypeError(f"{what} must be {names}, not {type(value).__name__}")


def _flat(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


class InvalidNameError(InvalidArgumentError):
    """A name, version label, tag, hash or tree path that breaks a naming rule."""


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


class StoreExistsError(RefExistsError):
    """A clone destination that already holds a store.

    Derives from RefExistsError (a FileExistsError), which was raised before, for one release.
    """


class StoreNotFoundError(CasError, FileNotFoundError):
    """No store exists at the given location."""


class SourceNotFoundError(CasError, FileNotFoundError):
    """A file or folder given to ``put`` does not exist."""


class InvalidMetadataError(InvalidArgumentError):
    """Metadata must be a dict of str keys and plain values (None, bool, int, float, str, bytes, lists, dicts)."""


class UnsupportedTypeError(CasError, TypeError):
    """No materializer handles the given Python type."""


class StepOutputError(CasError, TypeError):
    """A step returned values that do not match the outputs it declares."""


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


class UntrustedTypesError(LoadError):
    """A stored model names types outside cas's trusted list: building them could run code chosen by the store.

    cas writes a model with such types as a pickle (with consent), never in a
    data format, so the file comes from elsewhere or from a cas with another
    list: it is never loaded, with or without ``trust_pickle``.
    """


class PathRequiredError(CasError, TypeError):
    """A file or directory artifact has no value to ``get``: ``export(ref, path)`` writes its files."""


class InvalidRunError(InvalidArgumentError):
    """``record_run`` arguments that make no valid run: a time not finite or outside 1970..3000, a bad hash, fields not plain data."""


class ReadOnlyStoreError(CasError, PermissionError):
    """A write attempted through a read-only view of a store (what ``cas ui`` reads through)."""


class BackendError(CasError, OSError):
    """The storage backend failed in a way cas cannot recover from."""


class BackendTimeoutError(BackendError, TimeoutError):
    """A backend call got no answer within its timeout or deadline (names the endpoint and the operation)."""


class AccessDeniedError(BackendError, PermissionError):
    """The storage refused the operation to these credentials (a write with read-only credentials)."""

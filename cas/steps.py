"""``@cas.step``: run a function once per distinct input, and record every call as a run.

A call's cache key hashes the step's name, its code (its source and that of
``depends_on``), its parameters, the content hashes of its inputs and an
optional salt. Arguments that are plain, small values (None, bool, int,
float, str, bytes, and lists and str-keyed dicts of them, up to 64 KiB) are
*parameters*, kept by value in the run; every other argument is an *input*,
stored as an artifact (identical content is stored once, so re-storing an
input costs a hash, not a copy) and named by its hash.

What a step returns is one output artifact, whatever its type (a dict too),
unless the step returns a tuple or declares several ``outputs``: then each
element is an output of its own. The artifact is the one ``store.put`` makes
of the same value, so naming a step's result (``store.put(result, "model")``)
links the name to the run that produced it.

Errors raised by the step's own machinery (hashing inputs, storing outputs,
loading a cache hit) name the step and keep their class; an exception raised
by the step's function propagates unchanged.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import platform
import re
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cas import artifacts, canonical
from cas.destination import unsafe_file_name
from cas.errors import (
    CasError,
    IncompatibleArtifactError,
    PathRequiredError,
    StepOutputError,
    UnsupportedTypeError,
    UntrustedPickleError,
)
from cas.hashing import digest
from materializers.base import type_name_of

if TYPE_CHECKING:
    from cas.runs import Run
    from cas.store import Ref, Store

PARAM_MAX_BYTES = 64 << 10
#: How a step given no store opens one: ``cas.open``, set by ``cas.store`` (which builds on this module).
_open_default_store: Callable[[], Store] | None = None
_pipeline: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("cas_pipeline", default=None)


def current_pipeline() -> dict[str, Any] | None:
    """The pipeline execution the current code runs in, if any."""
    return _pipeline.get()


@contextmanager
def pipeline(name: str) -> Iterator[dict[str, Any]]:
    """Group the runs made inside the block as one execution of pipeline ``name``."""
    execution = {"name": name, "id": uuid.uuid4().hex, "started": time.time()}
    token = _pipeline.set(execution)
    try:
        yield execution
    finally:
        _pipeline.reset(token)


class Provenance:
    """Remembers which artifact objects in memory were loaded from or stored as.

    An argument found here is a step *input* (linked to the run that made it)
    even when it is a plain value. Its hash is reused as is only when the
    object can not have changed since (immutable values, read-only arrays);
    anything else is hashed again by content, so mutating an output in place
    never yields a stale cache hit.
    """

    _MAX = 4096

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, bytes]] = {}

    def remember(self, obj: Any, artifact: bytes) -> None:
        try:
            ref: Any = weakref.ref(obj)
        except TypeError:
            if sys.getsizeof(obj) > (1 << 20):
                return  # too big to keep alive just for this
            ref = obj
        if len(self._entries) >= self._MAX:
            self._entries.pop(next(iter(self._entries)))
        self._entries[id(obj)] = (ref, artifact)

    def lookup(self, obj: Any) -> bytes | None:
        entry = self._entries.get(id(obj))
        if entry is None:
            return None
        ref, artifact = entry
        alive = ref() if isinstance(ref, weakref.ref) else ref
        return artifact if alive is obj else None


def unchangeable(value: Any) -> bool:
    """Whether a value can not have been modified in place since it was remembered."""
    t = type(value)
    if value is None or t in (bool, int, float, complex, str, bytes):
        return True
    if t is tuple or t is frozenset:
        return all(unchangeable(v) for v in value)
    flags = getattr(value, "flags", None)  # numpy arrays marked read-only
    return flags is not None and type(value).__name__ == "ndarray" and not flags.writeable


def code_hash(fn: Callable[..., Any], depends_on: Sequence[Callable[..., Any]] = ()) -> bytes:
    """Hash of the step's source plus the sources of its declared dependencies."""
    parts = [_source(fn)] + sorted(_source(dep) for dep in depends_on)
    return digest("\0".join(parts).encode("utf-8", "surrogatepass"))


def _source(fn: Callable[..., Any]) -> str:
    target = inspect.unwrap(fn)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            return repr(target)
        # No source (a REPL, a frozen app): the bytecode and constants still identify the code.
        return hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()


def is_parameter(value: Any) -> bool:
    """Plain small values are parameters; everything else is an input artifact."""
    if not _plain(value, 0):
        return False
    try:
        return len(canonical.encode(value)) <= PARAM_MAX_BYTES
    except canonical.EncodingError:
        return False


def _plain(value: Any, depth: int) -> bool:
    if depth > 16:
        return False
    t = type(value)
    if value is None or t in (bool, float, str, bytes):
        return True
    if t is int:
        return -(2**63) <= value < 2**64
    if t is list:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def cache_key(step: str, code: bytes, params: dict[str, Any], inputs: dict[str, bytes], salt: str | None) -> bytes:
    """The key under which a completed run of this exact call is found again."""
    return digest(
        canonical.encode(
            {"step": step, "code": code, "params": params, "inputs": inputs, "salt": salt, "scheme": "cas-step-1"}
        )
    )


def environment(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Python, platform, and versions of the given distributions."""
    found = {}
    for name in sorted(set(packages)):
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": found}


def split_outputs(result: Any, names: Sequence[str] | None, step: str = "the step") -> tuple[str, dict[str, Any]]:
    """(return kind, {name: value}) for a step's return value.

    A value is one output ("single"), a dict too; a tuple is one output per
    element ("tuple"); with several declared ``names`` the step must return a
    tuple of that length or a dict with exactly those keys ("dict").
    Raises TypeError for a result that does not match the declared names.
    """
    if result is None and not names:
        return "none", {}
    if names:
        if len(names) == 1:
            return "single", {names[0]: result}
        if isinstance(result, tuple) and len(result) == len(names):
            return "tuple", dict(zip(names, result, strict=True))
        if type(result) is dict and len(result) == len(names) and set(result) == set(names):
            return "dict", dict(result)  # the order the step returned, which join_outputs gives back
        raise StepOutputError(
            f"step {step!r} declares outputs {list(names)} but returned {type_name_of(type(result))}: "
            f"return a tuple of {len(names)} values, or a dict with exactly those keys"
        )
    if type(result) is tuple:
        return "tuple", {f"output_{i}": v for i, v in enumerate(result)}
    return "single", {"output": result}


def join_outputs(kind: str, values: dict[str, Any]) -> Any:
    """The inverse of split_outputs (``values`` in the run's ``order``).

    "dict" is also what runs recorded before a returned dict became one
    output used for every str-keyed dict: they still join back into the dict.
    """
    if kind == "none":
        return None
    if kind == "single":
        (value,) = values.values()
        return value
    if kind == "tuple":
        return tuple(values.values())
    return dict(values)


def restated(exc: CasError, message: str) -> CasError:
    """A copy of ``exc`` (same class, same attributes) with another message; raise it ``from exc``."""
    copy = type(exc).__new__(type(exc))
    copy.__dict__.update(exc.__dict__)
    copy.args = (message,)
    return copy


_PICKLE_HINTS = re.compile(r": register |, or allow pickle| can only be stored with allow_pickle")


class Step:
    """A function whose calls are cached on content and recorded as runs.

    ``allow_pickle`` is the step's pickle policy. ``True`` means "I trust the
    outputs this step stored here": its outputs and inputs that no
    materializer handles are stored with cloudpickle, and a cache hit loads
    the step's pickled outputs (which runs their code). That trusts whoever
    can write runs and cache entries in this store (the cache answers only
    from runs recorded here or pulled from a remote marked ``trust_cache``).
    ``None`` (the default) stores as the store's ``allow_pickle`` says, and
    loads a pickled cached output only if the store was opened with
    ``trust_pickle=True``; ``False`` never stores a pickle.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        store: Store | None = None,
        name: str | None = None,
        cache: bool = True,
        salt: str | None = None,
        ignore: Sequence[str] = (),
        depends_on: Sequence[Callable[..., Any]] = (),
        expires_after: float | timedelta | None = None,
        outputs: Sequence[str] | None = None,
        allow_pickle: bool | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.cache = cache
        self.salt = salt
        self.ignore = frozenset(ignore)
        self.depends_on = tuple(depends_on)
        self.expires_after = expires_after.total_seconds() if isinstance(expires_after, timedelta) else expires_after
        self.outputs = tuple(outputs) if outputs else None
        self.allow_pickle = allow_pickle
        self._store = store
        self._signature = inspect.signature(fn)
        self._code: bytes | None = None
        functools.update_wrapper(self, fn)

    @property
    def code(self) -> bytes:
        if self._code is None:
            self._code = code_hash(self.fn, self.depends_on)
        return self._code

    @property
    def store(self) -> Store:
        if self._store is None:
            if _open_default_store is None:
                raise CasError("no store: pass store= to the step, or import cas (whose cas.open opens one)")
            self._store = _open_default_store()
        return self._store

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)[0]

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, Run]:
        """Call the step; return its result and the run recorded for this call.

        Raises what the function raises (unchanged, after recording a failed
        run); from the step's own work, errors naming the step: UnsupportedTypeError
        (an input or output no materializer stores, and pickle not allowed),
        UntrustedPickleError (a cached output is a pickle the step does not trust),
        TypeError (a result that does not match the declared ``outputs``),
        IntegrityError, BackendError.
        """
        store = self.store
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params: dict[str, Any] = {}
        inputs: dict[str, bytes] = {}
        for arg, value in bound.arguments.items():
            if arg in self.ignore:
                continue
            known = store.provenance.lookup(value)
            if known is not None and unchangeable(value):
                inputs[arg] = known
            elif known is None and is_parameter(value):
                params[arg] = value
            else:
                inputs[arg] = self._store_input(store, arg, value)
        key = cache_key(self.name, self.code, params, inputs, self.salt)
        started = time.time()
        if self.cache:
            hit = store.cached_run(key, expires_after=self.expires_after)
            values = self._load_hit(store, hit) if hit is not None else None
            if hit is not None and values is not None:
                run = store.record_run(
                    step=self.name, code=self.code, params=params, inputs=inputs, outputs=hit.outputs,
                    cache_key=key, status="cached", cached_from=hit.hash, returns=hit.returns, order=hit.order,
                    started=started, environment=hit.environment,
                )  # fmt: skip
                return join_outputs(hit.returns, values), run
        try:
            result = self.fn(*args, **kwargs)
            kind, values = split_outputs(result, self.outputs, self.name)
            refs = {name: self._store_output(store, name, value, len(values) > 1) for name, value in values.items()}
            for name, value in values.items():
                store.provenance.remember(value, bytes.fromhex(refs[name].hash))
        except BaseException as exc:
            store.record_run(
                step=self.name, code=self.code, params=params, inputs=inputs, outputs={}, cache_key=key,
                status="failed", started=started, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            raise
        packages = [p for name in refs for p in artifacts.materializer_packages(store.repository, refs[name])]
        run = store.record_run(
            step=self.name, code=self.code, params=params, inputs=inputs,
            outputs={name: bytes.fromhex(ref.hash) for name, ref in refs.items()},
            cache_key=key, status="completed", returns=kind, order=tuple(values), started=started,
            environment=environment(packages),
        )  # fmt: skip
        return result, run

    # -- the step's own work: its errors speak of the step ------------------------
    def _pickles(self, store: Store) -> bool:
        """Whether this step stores with cloudpickle what no materializer handles."""
        return store.allow_pickle if self.allow_pickle is None else self.allow_pickle

    def _store_input(self, store: Store, arg: str, value: Any) -> bytes:
        """Store an input argument (to hash it) under the step's pickle policy."""
        try:
            return bytes.fromhex(store.put(value, allow_pickle=self.allow_pickle).hash)
        except UnsupportedTypeError as exc:
            if self._pickles(store):
                raise restated(
                    exc, f"step {self.name!r} can not store argument {arg!r} to hash it, even with pickle: {exc}"
                ) from exc
            raise restated(
                exc,
                f"step {self.name!r} got a {type_name_of(type(value))} as argument {arg!r}, "
                f"{_unstorable(exc, value)}; a step stores each input to hash it: "
                "register a materializer for it (subclass cas.Materializer), decorate the step with "
                "@cas.step(allow_pickle=True) to store it with cloudpickle, "
                f"or leave it out of the cache key with @cas.step(ignore=[{arg!r}])",
            ) from exc
        except CasError as exc:
            raise restated(exc, f"step {self.name!r}, storing argument {arg!r} to hash it: {exc}") from exc
        except Exception as exc:
            _note(exc, f"(raised while step {self.name!r} stored argument {arg!r} to hash it)")
            raise

    def _store_output(self, store: Store, name: str, value: Any, several: bool) -> Ref:
        """Store one output under the step's pickle policy; return its Ref."""
        what = f"returned, as output {name!r}, a" if several else "returned a"
        try:
            return store.put(value, allow_pickle=self.allow_pickle)
        except UnsupportedTypeError as exc:
            if self._pickles(store):
                raise restated(exc, f"step {self.name!r} {what} {type_name_of(type(value))}, "
                                    f"which can not be stored even with pickle: {exc}") from exc  # fmt: skip
            raise restated(
                exc,
                f"step {self.name!r} {what} {type_name_of(type(value))}, {_unstorable(exc, value)}: "
                "register a materializer for it (subclass cas.Materializer), or decorate "
                "the step with @cas.step(allow_pickle=True) to store it with cloudpickle "
                "(its cache hits then load it, trusting whoever can write runs in this store)",
            ) from exc
        except CasError as exc:
            raise restated(exc, f"step {self.name!r}, storing output {name!r}: {exc}") from exc
        except Exception as exc:
            _note(exc, f"(raised while step {self.name!r} stored output {name!r})")
            raise

    def _load_hit(self, store: Store, hit: Run) -> dict[str, Any] | None:
        """The outputs of a cache hit, or None if this process can not load them (then the step runs again)."""
        if not _fits(self.outputs, hit.returns, hit.order):
            return None  # not a shape this step returns (a run recorded by hand under its key): recompute
        trust = True if self.allow_pickle else None  # None: as the store was opened
        values = {}
        for name in hit.order:
            try:
                values[name] = store.get(hit.outputs[name].hex(), trust_pickle=trust)  # remembered by get
            except UntrustedPickleError as exc:
                output = f" {name!r}" if len(hit.order) > 1 else ""
                raise restated(
                    exc,
                    f"step {self.name!r} has a cached output{output} that is a pickle: loading it runs code "
                    "chosen by whoever wrote the run. Decorate the step with @cas.step(allow_pickle=True) "
                    "to trust the outputs this step stored in this store (or open the store with trust_pickle=True)",
                ) from exc
            except PathRequiredError:  # a file or folder the step returned: its files, in a new folder
                values[name] = restore_to_new_folder(store, hit.outputs[name])
            except IncompatibleArtifactError:
                return None  # written by a materializer or Python this process can not read: recompute
            except CasError as exc:
                raise restated(exc, f"step {self.name!r}, loading cached output {name!r}: {exc}") from exc
        return values


def restore_to_new_folder(store: Store, artifact: bytes) -> Path:
    """Write a file or folder artifact into a new temporary folder; return the Path of the file or folder.

    What a cache hit gives back for a step that returned a ``pathlib.Path``:
    the same files under the stored base name (if it is a plain, safe name,
    else the short hash), never at a path the store chooses.
    """
    info = store.info(artifact.hex())
    stored = info.metadata.get("name")
    name = str(stored) if unsafe_file_name(stored) is None else info.ref.short
    folder = Path(tempfile.mkdtemp(prefix="cas-step-output-"))
    return store.export(info.ref, folder / name)


def _fits(declared: tuple[str, ...] | None, kind: str, order: tuple[str, ...]) -> bool:
    """Whether a run's outputs have a shape the step can return (join_outputs needs it)."""
    if (kind == "none" and order) or (kind == "single" and len(order) != 1):
        return False
    if declared is None:
        return True
    return order == declared if kind != "dict" else sorted(order) == sorted(declared)


def _note(exc: BaseException, text: str) -> None:
    """Add a line to the traceback of an error that is not ours (Python 3.11+; the message stays)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(text)


def _unstorable(exc: UnsupportedTypeError, value: Any) -> str:
    """Why ``value`` was refused, in the materializer's words without its advice about put."""
    reason = _PICKLE_HINTS.split(str(exc), maxsplit=1)[0]
    if reason == f"no materializer for {type_name_of(type(value))}":
        return "which no materializer handles"
    return f"which cas can not store without pickle ({reason})"


def set_default_store_opener(opener: Callable[[], Store]) -> None:
    """Set how a step given no store opens one (``cas.store`` sets ``cas.open``)."""
    global _open_default_store
    _open_default_store = opener


def step(
    fn: Callable[..., Any] | None = None,
    *,
    store: Store | None = None,
    name: str | None = None,
    cache: bool = True,
    salt: str | None = None,
    ignore: Sequence[str] = (),
    depends_on: Sequence[Callable[..., Any]] = (),
    expires_after: float | timedelta | None = None,
    outputs: Sequence[str] | None = None,
    allow_pickle: bool | None = None,
) -> Any:
    """Decorate a function as a cached, recorded step (``@step`` or ``@step(...)``).

    Without ``store`` the step uses ``cas.open()`` (found like git finds .git) on first call.
    ``allow_pickle=True``: "I trust the outputs this step stored here" (see ``Step``).
    """
    options = {
        "store": store, "name": name, "cache": cache, "salt": salt, "ignore": ignore,
        "depends_on": depends_on, "expires_after": expires_after, "outputs": outputs,
        "allow_pickle": allow_pickle,
    }  # fmt: skip

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, **options)  # type: ignore[arg-type]

    if fn is not None:
        return wrap(fn)
    return wrap

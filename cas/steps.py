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
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from cas import artifacts, canonical
from cas.destination import unsafe_file_name
from cas.errors import (
    CasError,
    IncompatibleArtifactError,
    InputGoneError,
    InvalidNameError,
    ObjectNotFoundError,
    PathRequiredError,
    StepOutputError,
    UnsupportedTypeError,
    UntrustedPickleError,
)
from cas.hashing import digest, from_hex, short
from cas.objects import Artifact, Tree
from materializers.base import type_name_of

if TYPE_CHECKING:
    from cas.repository import Repository
    from cas.runs import Run
    from cas.store import Ref, Store

PARAM_MAX_BYTES = 64 << 10
#: The run metadata key a duplicate run names the run it duplicates by (hex): see ``Step.call``.
DUPLICATE_OF = "cas.duplicate_of"
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


#: Types whose objects take no weak reference (found out once each).
_NO_WEAKREF: set[type] = set()


class Provenance:
    """Remembers which artifact objects in memory were loaded from or stored as.

    An argument found here is a step *input* (linked to the run that made it)
    even when it is a plain value. Its hash is reused as is only when the
    object can not have changed since (immutable values, read-only arrays), or
    provably has not: a writeable numpy array of up to ``FINGERPRINT_MAX``
    bytes whose dtype, shape and bytes hash as they did when it was
    remembered. Anything else is hashed again by content (stored again), so
    mutating an output in place never yields a stale cache hit.
    """

    _MAX = 4096

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, bytes, bytes | None]] = {}

    def remember(self, obj: Any, artifact: bytes) -> None:
        t = type(obj)
        ref: Any = obj
        if t not in _NO_WEAKREF:
            try:
                ref = weakref.ref(obj)
            except TypeError:
                _NO_WEAKREF.add(t)  # (dict, list, int, ...: asked once per type, an exception is slow)
        if ref is obj and sys.getsizeof(obj) > (1 << 20):
            return  # too big to keep alive just for this
        if len(self._entries) >= self._MAX:
            self._entries.pop(next(iter(self._entries)))
        self._entries[id(obj)] = (ref, artifact, None if unchangeable(obj) else fingerprint(obj))

    def lookup(self, obj: Any) -> bytes | None:
        """The artifact ``obj`` was loaded from or stored as (it may have changed since)."""
        entry = self._entries.get(id(obj))
        if entry is None:
            return None
        ref, artifact, _ = entry
        alive = ref() if isinstance(ref, weakref.ref) else ref
        return artifact if alive is obj else None

    def unchanged(self, obj: Any) -> bytes | None:
        """The remembered artifact of ``obj`` if it is still what that artifact holds, else None."""
        artifact = self.lookup(obj)
        if artifact is None:
            return None
        if unchangeable(obj):
            return artifact
        remembered = self._entries[id(obj)][2]
        return artifact if remembered is not None and fingerprint(obj) == remembered else None


#: Writeable arrays up to this size are fingerprinted when remembered (a hash of their bytes).
FINGERPRINT_MAX = 16 << 20


def fingerprint(value: Any) -> bytes | None:
    """A hash of a numpy array's dtype, shape and bytes (None for anything else, or too big to hash each time)."""
    t = type(value)
    if t.__name__ != "ndarray" or t.__module__ != "numpy":
        return None
    try:
        if value.dtype.hasobject or value.nbytes > FINGERPRINT_MAX or not value.flags.c_contiguous:
            return None
        hasher = blake3.blake3(repr((value.dtype.str, value.dtype.descr, value.shape)).encode() + b"\0")
        hasher.update(memoryview(value).cast("B"))
        return hasher.digest()
    except (TypeError, ValueError, AttributeError):
        return None


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
    """The key under which a completed run of this exact call is found again.

    An argument in both ``params`` and ``inputs`` (a plain value that an
    earlier step output) is keyed by its value alone: the same call has the
    same key in a process that does not know where the value came from.
    """
    keyed = {arg: h for arg, h in inputs.items() if arg not in params}
    return digest(
        canonical.encode(
            {"step": step, "code": code, "params": params, "inputs": keyed, "salt": salt, "scheme": "cas-step-1"}
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

    # -- pickling: a step travels to Dask and Ray workers ----------------------------
    def __reduce__(self) -> str | tuple[Any, ...]:
        """By reference when the step is importable under its name, else by value (fn, options, code hash).

        The store travels as its URL and options (``Store.__reduce__``); the
        code hash computed here goes along, so a worker that can not read the
        source (a function defined in a notebook) keys its calls the same way.
        """
        if _importable(self):
            return str(self.__dict__["__qualname__"])
        options = {
            "store": self._store, "name": self.name, "cache": self.cache, "salt": self.salt,
            "ignore": tuple(self.ignore), "depends_on": self.depends_on, "expires_after": self.expires_after,
            "outputs": self.outputs, "allow_pickle": self.allow_pickle,
        }  # fmt: skip
        return (_rebuild_step, (self.fn, options, self.code))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)[0]

    def ref(self, *args: Any, **kwargs: Any) -> Any:
        """Call the step and return the Refs of its outputs, shaped as its result (a Ref, tuple or dict of Refs).

        What to pass between Dask or Ray tasks: a Ref pickles in a few bytes
        and a step given one takes it as the artifact it names (recorded by
        hash, loaded where the step runs), so every worker computes the same
        cache key and the lineage edge to the producing run is kept. A cache
        hit loads nothing: it only checks that the outputs are all stored.
        """
        refs, _ = self._call(args, kwargs, load=False)
        return refs

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, Run]:
        """Call the step; return its result and the run recorded for this call.

        A ``cas.Ref`` argument is the artifact it names: its hash is the input,
        and the function gets the loaded value (a cache hit loads nothing).
        When another process recorded the same call while this one ran, the
        result is that run's (the cache keeps the first), and this run is
        recorded with ``metadata["cas.duplicate_of"]`` naming it.

        Raises what the function raises (unchanged, after recording a failed
        run); from the step's own work, errors naming the step: UnsupportedTypeError
        (an input or output no materializer stores, and pickle not allowed),
        UntrustedPickleError (a cached output is a pickle the step does not trust),
        TypeError (a result that does not match the declared ``outputs``),
        InputGoneError (an input was collected while the step ran: no run is recorded),
        IntegrityError, BackendError.
        """
        return self._call(args, kwargs, load=True)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, load: bool) -> tuple[Any, Run]:
        store = self.store
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params: dict[str, Any] = {}
        inputs: dict[str, bytes] = {}
        given: dict[str, Ref] = {}  # arguments that are Refs: loaded only if the function runs
        stored: set[bytes] = set()  # inputs this call just put (a put freshens them)
        for arg, value in bound.arguments.items():
            if arg in self.ignore:
                continue
            if isinstance(value, artifacts.Ref):
                inputs[arg] = _ref_digest(self.name, arg, value)
                given[arg] = value
                continue
            known = store.provenance.lookup(value)
            same = store.provenance.unchanged(value) if known is not None else None
            if is_parameter(value):
                params[arg] = value  # keyed by its value, wherever it came from (it may have crossed workers)
                if known is None:
                    continue
            if same is not None:
                inputs[arg] = same  # (a plain value also in params: a lineage edge, left out of the key)
            else:
                inputs[arg] = self._store_input(store, arg, value)
                stored.add(inputs[arg])
        key = cache_key(self.name, self.code, params, inputs, self.salt)
        started = time.time()
        policy = "replace"  # no cache lookup: this run becomes the answer
        if self.cache:
            hit, policy = self._lookup(store, key)
            if hit is not None:
                found = self._hit_result(store, key, hit, load)
                if found is not None:
                    run = store.record_run(
                        step=self.name, code=self.code, params=params, inputs=inputs, outputs=hit.outputs,
                        cache_key=key, status="cached", cached_from=hit.hash, returns=hit.returns, order=hit.order,
                        started=started, environment=hit.environment, parents=hit.parents,
                    )  # fmt: skip
                    return found, run
        guard = InputGuard(store.repository, set(inputs.values()) - stored, store.config.gc_grace, fresh=stored)
        try:
            for arg, ref in given.items():
                bound.arguments[arg] = self._load_input(store, arg, ref)
            call_args, call_kwargs = (bound.args, bound.kwargs) if given else (args, kwargs)
            with guard:
                result = self.fn(*call_args, **call_kwargs)
            kind, values = split_outputs(result, self.outputs, self.name)
            refs = {name: self._store_output(store, name, value, len(values) > 1) for name, value in values.items()}
            for name, value in values.items():
                store.provenance.remember(value, bytes.fromhex(refs[name].hash))
            guard.check()  # every input still stored, and fresh for gc's grace period, before the run names it
        except InputGoneError as exc:
            raise restated(exc, f"step {self.name!r}: {exc}") from exc
        except BaseException as exc:
            store.record_run(
                step=self.name, code=self.code, params=params, inputs=inputs, outputs={}, cache_key=key,
                status="failed", started=started, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            raise
        packages = [p for name in refs for p in artifacts.materializer_packages(store.repository, refs[name])]
        record = functools.partial(
            store.record_run, step=self.name, code=self.code, params=params, inputs=inputs,
            outputs={name: bytes.fromhex(ref.hash) for name, ref in refs.items()},
            cache_key=key, status="completed", returns=kind, order=tuple(values), started=started,
            environment=environment(packages),
        )  # fmt: skip
        winner = self._first(store, key) if policy == "claim" else None
        if winner is None:
            with store.run_index.cache_policy(policy) as claim:
                run = record()
            if claim.winner is not None:  # another process recorded this call in the last moment
                winner = self._first(store, key)
                if winner is None or winner.hash == run.hash:
                    store.run_index.set_cache(run)  # the entry named no usable run: this one replaces it
                    winner = None
        else:  # another process recorded this call while it ran here: the cache keeps that one
            with store.run_index.cache_policy("none"):
                run = record(metadata={DUPLICATE_OF: winner.hash.hex()})
        if winner is not None:
            found = self._hit_result(store, key, winner, load)
            if found is not None:
                return found, run
        if not load:
            return join_outputs(kind, refs), run
        return result, run

    def _lookup(self, store: Store, key: bytes) -> tuple[Run | None, str]:
        """The completed run cached under ``key`` (None if none), and how a new run then writes the entry.

        ``claim`` when there is no entry (a concurrent identical run may record
        first: the first keeps the entry), ``replace`` when there is one this
        call will not use (expired, not completed, unreadable).
        """
        run_hash = store.run_index.cached(key)
        if run_hash is None:
            return None, "claim"
        try:
            run = store.run(run_hash)
        except CasError:
            store.run_index.forget_cache(key)
            return None, "claim"
        if run.status != "completed" or run.cache_key != key:
            return None, "replace"
        if self.expires_after is not None and time.time() - run.ended > self.expires_after:
            return None, "replace"
        return run, "replace"

    def _first(self, store: Store, key: bytes) -> Run | None:
        """The completed run another writer cached under ``key`` since this call looked (None if none)."""
        run_hash = store.run_index.cached(key)
        if run_hash is None:
            return None
        try:
            run = store.run(run_hash)
        except CasError:
            return None
        return run if run.status == "completed" and run.cache_key == key else None

    def _hit_result(self, store: Store, key: bytes, hit: Run, load: bool) -> Any:
        """A cached run's result (values, or Refs if not ``load``); None if it can not be used (then the step runs).

        Outputs found missing drop the cache entry, so no later call is answered
        with them either; damaged ones raise IntegrityError naming the step.
        """
        try:
            if not load:
                if not _fits(self.outputs, hit.returns, hit.order):
                    return None
                if not all(artifacts.is_complete(store.repository, h) for h in hit.outputs.values()):
                    store.run_index.forget_cache(key)
                    return None
                return join_outputs(hit.returns, {n: artifacts.Ref(hit.outputs[n].hex()) for n in hit.order})
            values = self._load_hit(store, hit)
        except ObjectNotFoundError:
            if store.run_index.cached(key) == hit.hash:
                store.run_index.forget_cache(key)
            return None
        return join_outputs(hit.returns, values) if values is not None else None

    def _load_input(self, store: Store, arg: str, ref: Ref) -> Any:
        """The value of a Ref argument, loaded under the step's pickle policy."""
        trust = True if self.allow_pickle else None
        try:
            return store.get(ref.hash, trust_pickle=trust)
        except PathRequiredError:
            return restore_to_new_folder(store, bytes.fromhex(ref.hash))
        except CasError as exc:
            raise restated(exc, f"step {self.name!r}, loading argument {arg!r} ({ref}): {exc}") from exc

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
            except ObjectNotFoundError:
                raise  # gone (collected): the caller drops the entry and runs the step
            except CasError as exc:
                raise restated(exc, f"step {self.name!r}, loading cached output {name!r}: {exc}") from exc
        return values


def _importable(step: Step) -> bool:
    """Whether ``module.qualname`` names this very step (then it pickles by reference)."""
    module_name = getattr(step, "__module__", None)
    qualname = getattr(step, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or module_name == "__main__":
        return False
    found: Any = sys.modules.get(module_name)
    if found is None or "<locals>" in qualname:
        return False
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is step


def _rebuild_step(fn: Callable[..., Any], options: dict[str, Any], code: bytes) -> Step:
    """A step unpickled by value: the same function and options, and the code hash the sender computed."""
    rebuilt = Step(fn, **options)
    rebuilt._code = code
    return rebuilt


def _ref_digest(step: str, arg: str, ref: Ref) -> bytes:
    """The artifact hash a Ref argument names (InvalidNameError if it is no full hash)."""
    try:
        return from_hex(ref.hash)
    except (CasError, ValueError, TypeError):
        raise InvalidNameError(
            f"step {step!r}: argument {arg!r} is a Ref whose hash is not 64 hex digits: {ref.hash!r:.80}"
        ) from None


class InputGuard:
    """Keeps a running step's inputs fresh for gc, and checks that they are all still stored at its end.

    gc removes what nothing reaches once it is older than the grace period; a
    step's inputs are reached by its run only once the run is recorded. While
    the function runs, a timer thread refreshes the inputs (artifact, tree and
    chunks: their files' timestamps) every quarter of the grace period, the
    first time at once for inputs this call did not just store; ``check``
    refreshes once more unless that was done within the last quarter, and
    raises InputGoneError if an input is gone.
    """

    def __init__(self, repo: Repository, inputs: set[bytes], grace: float, *, fresh: Iterable[bytes] = ()) -> None:
        self._repo = repo
        self._interval = max(grace / 4, 0.05)
        self._all = set(inputs) | set(fresh)
        self._stale = set(inputs)  # not refreshed yet by this call
        self._last = time.monotonic()
        self._closures: dict[bytes, set[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> InputGuard:
        if self._all:
            self._thread = threading.Thread(target=self._loop, name="cas-step-inputs", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        wait = 0.0 if self._stale else self._interval
        while not self._stop.wait(wait):
            try:
                self.refresh()
            except BaseException as exc:  # noqa: BLE001 - reported by check
                self._error = exc
                return
            wait = self._interval

    def refresh(self) -> None:
        """Freshen every input's objects now; InputGoneError if one is gone."""
        started = time.monotonic()
        wanted: set[bytes] = set()
        for d in sorted(self._all):
            wanted |= self._closure(d)
        gone = self._repo.objects.freshen_chunks(wanted)
        if gone:
            raise InputGoneError(f"{len(gone)} objects of the step's inputs were removed while it ran "
                                 f"(gc, or a deletion), e.g. {short(min(gone))}")  # fmt: skip
        self._stale.clear()
        self._last = started

    def _closure(self, d: bytes) -> set[bytes]:
        """An input artifact's objects: itself, its tree and its chunks (read once: they never change)."""
        found = self._closures.get(d)
        if found is None:
            try:
                art = Artifact.from_bytes(self._repo.objects.get_object(d), key=f"artifact {short(d)}")
                tree = Tree.from_bytes(self._repo.objects.get_object(art.tree), key=f"tree {short(art.tree)}")
            except ObjectNotFoundError:
                raise InputGoneError(f"input {short(d)} was removed while the step ran (gc, or a deletion)") from None
            found = {d, art.tree} | {c for entry in tree.entries for c, _ in entry.chunks}
            self._closures[d] = found
        return found

    def check(self) -> None:
        """Before the run is recorded: every input still stored and fresh (InputGoneError if not)."""
        self.__exit__()
        if not self._all:
            return
        if isinstance(self._error, InputGoneError):
            raise self._error
        if self._error is not None or self._stale or time.monotonic() - self._last > self._interval:
            self.refresh()


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

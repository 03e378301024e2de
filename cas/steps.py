"""``@cas.step``: run a function once per distinct input, and record every call as a run.

A call's cache key hashes the step's name, its code (its source and that of
``depends_on``), its parameters, the content hashes of its inputs and an
optional salt. Arguments that are plain, small values (None, bool, int,
float, str, bytes, and lists and str-keyed dicts of them, up to 64 KiB) are
*parameters*, kept by value in the run; every other argument is an *input*,
stored as an artifact (identical content is stored once, so re-storing an
input costs a hash, not a copy) and named by its hash.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import platform
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

from cas import canonical
from cas.hashing import digest

if TYPE_CHECKING:
    from cas.runs import Run
    from cas.store import Store

PARAM_MAX_BYTES = 64 << 10
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


def split_outputs(result: Any, names: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    """(return kind, {name: value}) for a step's return value."""
    if result is None and not names:
        return "none", {}
    if names:
        if len(names) == 1:
            return "single", {names[0]: result}
        if not isinstance(result, tuple) or len(result) != len(names):
            raise TypeError(f"the step declares outputs {list(names)} but returned {type(result).__name__}")
        return "tuple", dict(zip(names, result, strict=True))
    if type(result) is tuple:
        return "tuple", {f"output_{i}": v for i, v in enumerate(result)}
    if type(result) is dict and result and all(type(k) is str for k in result):
        return "dict", dict(result)
    return "single", {"output": result}


def join_outputs(kind: str, values: dict[str, Any]) -> Any:
    """The inverse of split_outputs."""
    if kind == "none":
        return None
    if kind == "single":
        (value,) = values.values()
        return value
    if kind == "tuple":
        return tuple(values.values())
    return dict(values)


class Step:
    """A function whose calls are cached on content and recorded as runs."""

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
    ) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.cache = cache
        self.salt = salt
        self.ignore = frozenset(ignore)
        self.depends_on = tuple(depends_on)
        self.expires_after = expires_after.total_seconds() if isinstance(expires_after, timedelta) else expires_after
        self.outputs = tuple(outputs) if outputs else None
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
            from cas.store import open as open_store

            self._store = open_store()
        return self._store

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)[0]

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, Run]:
        """Call the step; return its result and the run recorded for this call."""
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
                inputs[arg] = bytes.fromhex(store.put(value).hash)
        key = cache_key(self.name, self.code, params, inputs, self.salt)
        started = time.time()
        if self.cache:
            hit = store.cached_run(key, expires_after=self.expires_after)
            if hit is not None:
                values = {name: store.get(hit.outputs[name].hex()) for name in hit.order}  # remembered by get
                run = store.record_run(
                    step=self.name, code=self.code, params=params, inputs=inputs, outputs=hit.outputs,
                    cache_key=key, status="cached", cached_from=hit.hash, returns=hit.returns, order=hit.order,
                    started=started, environment=hit.environment,
                )  # fmt: skip
                return join_outputs(hit.returns, values), run
        try:
            result = self.fn(*args, **kwargs)
            kind, values = split_outputs(result, self.outputs)
            refs = {name: store.put(value) for name, value in values.items()}
            for name, value in values.items():
                store.provenance.remember(value, bytes.fromhex(refs[name].hash))
        except BaseException as exc:
            store.record_run(
                step=self.name, code=self.code, params=params, inputs=inputs, outputs={}, cache_key=key,
                status="failed", started=started, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            raise
        packages = [p for name in refs for p in store.materializer_packages(refs[name])]
        run = store.record_run(
            step=self.name, code=self.code, params=params, inputs=inputs,
            outputs={name: bytes.fromhex(ref.hash) for name, ref in refs.items()},
            cache_key=key, status="completed", returns=kind, order=tuple(values), started=started,
            environment=environment(packages),
        )  # fmt: skip
        return result, run


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
) -> Any:
    """Decorate a function as a cached, recorded step (``@step`` or ``@step(...)``).

    Without ``store`` the step uses ``cas.open()`` (found like git finds .git) on first call.
    """
    options = {
        "store": store, "name": name, "cache": cache, "salt": salt, "ignore": ignore,
        "depends_on": depends_on, "expires_after": expires_after, "outputs": outputs,
    }  # fmt: skip

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, **options)  # type: ignore[arg-type]

    if fn is not None:
        return wrap(fn)
    return wrap

"""Every decoder of stored bytes, fed hostile input: only cas's own typed errors may come out.

Used by ``test_hostile.py`` (hypothesis) and runnable under atheris (libFuzzer)::

    python tests/fuzz_decoders.py -runs=100000 -rss_limit_mb=1024 -timeout=5

which exits non-zero on any other exception, a hang or a memory blow-up.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # pragma: no cover - under atheris: coverage feedback from cas's own code
    import atheris

    with atheris.instrument_imports(include=["cas", "materializers"]):
        import cas  # noqa: F401
        import materializers  # noqa: F401
        import materializers.numpy_array  # noqa: F401

import collections  # noqa: E402
import datetime  # noqa: E402
import decimal  # noqa: E402
import enum  # noqa: E402
import fractions  # noqa: E402
import uuid  # noqa: E402
import zoneinfo  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import cas
from cas import canonical, codec
from cas.config import StoreConfig
from cas.objects import Artifact, ChunkMap, FileEntry, PackEntry, PackIndex, RefRecord, Tree, kind_of, kind_of_stored
from cas.remotes import RemoteList
from cas.runs import Run
from materializers import registry, valuecodec

ZERO = bytes(32)


class _OneFile:
    """A backend holding one key, for the decoders that read through a backend."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, key: str) -> bytes:
        return self.data


class _Files:
    """A materializer reader over hostile files."""

    def __init__(self, files: dict[str, bytes], metadata: dict[str, Any] | None = None) -> None:
        self.files = files
        self.metadata = metadata or {}

    def paths(self) -> list[str]:
        return sorted(self.files)

    def size(self, path: str) -> int:
        return len(self.files[path])

    def read_bytes(self, path: str) -> bytes:
        if path not in self.files:
            raise cas.CorruptObjectError(f"no file {path!r}")
        return self.files[path]

    def read_into(self, path: str, dest: memoryview) -> None:
        data = self.read_bytes(path)
        if len(data) != len(dest):
            raise cas.CorruptObjectError("size mismatch")
        dest[:] = data


def _load(name: str, files: dict[str, bytes], type_: type) -> Any:
    return registry.by_name(name).load_checked(_Files(files), type_)  # type: ignore[arg-type]


def _numpy(data: bytes) -> Any:
    half = len(data) // 2
    return _load("cas.numpy", {"meta": data[:half], "data": data[half:]}, np.ndarray)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "header": lambda d: codec.parse_header(d),
    "object": lambda d: codec.decode(d),
    "sealed": lambda d: codec.unseal(d, key="fuzz"),
    "canonical msgpack": lambda d: canonical.decode(d),
    "tree": lambda d: Tree.from_bytes(d),
    "artifact": lambda d: Artifact.from_bytes(d),
    "pack index": lambda d: PackIndex.from_bytes(d),
    "chunk map": lambda d: ChunkMap.from_bytes(d),
    "ref": lambda d: RefRecord.from_bytes(d),
    "run": lambda d: Run.from_bytes(d, ZERO),
    "kind": lambda d: kind_of(d),
    "kind of stored": lambda d: kind_of_stored(d),
    "value": lambda d: valuecodec.decode(d),
    "value with leaves": lambda d: valuecodec.decode(d, lambda n: n),
    "config": lambda d: StoreConfig.from_bytes(d),
    "remotes": lambda d: RemoteList(_OneFile(d)).all(),  # type: ignore[arg-type]
    "value materializer": lambda d: _load("cas.value", {"value.msgpack": d}, list),
    "composite value": lambda d: _load("cas.value", {"composite.msgpack": d}, list),
    "dataclass fields": lambda d: _load("cas.value", {"fields.msgpack": d}, dict),
    "str": lambda d: _load("cas.str", {"data.txt": d}, str),
    "numpy": _numpy,
}


def check(data: bytes) -> None:
    """Run every decoder on ``data``; anything but a CasError propagates."""
    for decode in DECODERS.values():
        try:
            decode(data)
        except cas.CasError:
            pass


class _Seed(enum.Enum):
    A = "a"


_SeedPoint = collections.namedtuple("_SeedPoint", "x y")


def _everyday_values() -> list[Any]:
    """One value of each ext type 8-19."""
    tz = datetime.timezone(datetime.timedelta(hours=-3))
    return [
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=zoneinfo.ZoneInfo("UTC")),
        datetime.datetime(2024, 1, 2, tzinfo=tz),
        datetime.date(2024, 1, 2),
        datetime.time(1, 2, 3, tzinfo=tz),
        datetime.timedelta(days=-1, seconds=3),
        decimal.Decimal("-1.25E+3"),
        uuid.UUID(int=5),
        fractions.Fraction(-(2**70), 3),
        collections.OrderedDict(a=1.5),
        collections.defaultdict(list, {1: [2]}),
        collections.deque([1, 2], maxlen=4),
        _Seed.A,
        _SeedPoint(1, (2,)),
    ]


def seeds() -> list[bytes]:
    """Valid encodings of every kind: starting points for mutation."""
    tree = Tree((FileEntry("a/b.bin", 10, ((ZERO, 10),), hash=ZERO), FileEntry("c", 2, (), data=b"hi")))
    artifact = Artifact(ZERO, "builtins.bytes", "cas.bytes", "1", 10, {"length": 10}, {"user": [1, 2]})
    run = Run("step", ZERO, {"p": 1}, {"x": ZERO}, {"y": ZERO}, ZERO, 1.0, 2.0, "completed")
    meta = valuecodec.encode({"descr": "<f8", "shape": [2], "order": "C", "scalar": False, "subclass": None})
    tree_v2 = Tree((FileEntry("a/b.bin", 20, ((ZERO, 10), (ZERO, 10))), FileEntry("c", 2, (), data=b"hi")))
    found = [
        tree.to_bytes(),
        tree_v2.to_bytes(),
        artifact.to_bytes(),
        run.to_bytes(),
        PackIndex((PackEntry(ZERO, 0, 40, 24, 0),)).to_bytes(),
        ChunkMap(ZERO, 10, ((ZERO, 10),)).to_bytes(),
        RefRecord(ZERO, 1.0, 1, "v1").to_bytes(),
        valuecodec.encode({"a": (1, 2.5, {3, 4}), 5: [None, True, b"x", 2**70, 1j]}),
        valuecodec.encode(_everyday_values()),
        StoreConfig().to_bytes(),
        b'{"origin": {"url": "/x", "read_through": true}}',
        meta + bytes(16),
    ]
    header, payload = codec.encode(tree.to_bytes() * 20, compress=True)
    found.append(header + bytes(payload))
    found.append(codec.seal(RefRecord(ZERO, 1.0, 1, None).to_bytes()))
    return found


def main() -> None:  # pragma: no cover - run by atheris in a subprocess
    import atheris

    def one(data: bytes) -> None:
        check(data)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()

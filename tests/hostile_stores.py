"""Random hash-valid but hostile stores, for tests/test_hostile_store.py.

``build(path, seed, kinds)`` makes a small legitimate store (named bytes, a
value, a chunked numpy array, a folder, two ``@step`` runs with cache
entries, a tag), then applies hostile mutations, each written the way any
writer of the store could: hash-valid objects made with cas's own encoders
(``to_bytes``, ``put_object``, ``codec.seal``, ``backend.write``), or, for a
folder store, files a writer with file-system access can make. Each mutation
is one small function in ``MUTATIONS``, documented with what a hostile writer
does; it returns a line saying exactly what it planted.

Some mutations are refused at decode (an absolute tree path, say): that is
fine, most pass the decoders and reach the code behind them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

import cas
from cas import canonical, codec, steps
from cas.hashing import digest
from cas.keys import chunkmap_key
from cas.objects import Artifact, ChunkMap, FileEntry, RefRecord, Tree
from cas.objectstore import object_key
from cas.refs import names_key
from cas.runs import Run
from materializers import valuecodec

ARRAY_ROWS = 300_000  # 2.4 MB of float64: above the 1 MiB chunking threshold, so the array is chunked
VICTIM_PAYLOAD_SEED = 15  # the bytes a victim puts after a pull (a chunk map may be planted for them)


def double(x: int) -> int:
    """The victim's step: a planted cache entry must never make it return anything but 2 * x."""
    return x * 2


def total(arr: Any) -> float:
    return float(np.asarray(arr).sum())


def victim_payload(size: int) -> bytes:
    """The bytes the victim puts after pulling: known to the writer, who plants a chunk map for them."""
    return random.Random(VICTIM_PAYLOAD_SEED).randbytes(size)


class Evil:
    """Unpickling this creates a file: proof that a load ran the store's code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@dataclass
class Legit:
    """What the legitimate part of the store holds."""

    artifacts: dict[str, bytes]  # name -> artifact hash
    trees: dict[str, bytes]  # name -> tree hash
    chunks: list[tuple[bytes, int]]  # the array's chunks (hash, size), in pack files
    runs: list[Run]  # the two step runs: double(21), total(arr)


@dataclass
class Hostile:
    """A store being made hostile, and the record of what was planted."""

    store: cas.Store
    root: Path  # the store's folder
    sandbox: Path  # a folder outside the store: absolute paths the writer names point in here
    rng: random.Random
    legit: Legit
    planted: list[str] = field(default_factory=list)
    fifos: list[Path] = field(default_factory=list)
    #: Mutations whose content fsck must report as a problem (not ``ok``).
    must_flag: list[str] = field(default_factory=list)

    # -- writing the way any writer can ---------------------------------------------
    def obj(self, raw: bytes) -> bytes:
        return self.store.objects.put_object(raw, loose=True)

    def tree(self, entries: list[FileEntry]) -> bytes:
        unique = {e.path: e for e in entries}
        return self.obj(Tree.of(unique.values()).to_bytes())

    def artifact(self, tree: bytes, *, materializer: str = "cas.bytes", python_type: str = "builtins.bytes",
                 size: int = 0, metadata: dict[str, Any] | None = None) -> bytes:  # fmt: skip
        art = Artifact(tree, python_type, materializer, "1", size, metadata or {}, {})
        return self.obj(art.to_bytes())

    def ref(self, name: str, target: bytes, *, kind: str = "v", selector: str | None = None,
            number: int | None = None, label: str | None = None, created: float | None = None) -> None:  # fmt: skip
        """Write a ref file (and, for a version, its reverse-index entry) for ``name``."""
        if kind == "v":
            number = number if number is not None else 1
            selector = str(number)
        created = created if created is not None else 1.7e9 + self.rng.random()
        record = RefRecord(target, created, number, label)
        self.store.backend.write(f"refs/{name}/@{kind}/{selector}", codec.seal(record.to_bytes()))
        if kind == "v":
            self.store.backend.write(names_key(target, name, selector or ""), b"")

    def run(self, base: Run | None = None, *, cache: bool = False, **changes: Any) -> bytes:
        """Store a run (the legit double run with ``changes``) and index it as the recorder would."""
        run = replace(base or self.legit.runs[0], **changes)
        run_hash = self.obj(run.to_bytes())  # == run.hash, computed from the same bytes
        backend = self.store.backend
        for artifact in set(run.inputs.values()):
            backend.write(f"consumed/{artifact.hex()}/{run_hash.hex()}", b"")
        if run.status == "completed":
            for artifact in set(run.outputs.values()):
                backend.write(f"produced/{artifact.hex()}/{run_hash.hex()}", b"")
        if cache:
            backend.write(cache_file(run.cache_key), codec.seal(run_hash))
        backend.write(_log_key(run.ended, run_hash), b"")
        return run_hash

    def bytes_artifact(self, data: bytes) -> bytes:
        """A well-formed cas.bytes artifact holding ``data`` inline."""
        tree = self.tree([FileEntry("data", len(data), data=data)])
        return self.artifact(tree, size=len(data), metadata={"length": len(data)})

    def big_chunk(self) -> tuple[bytes, int]:
        return max(self.legit.chunks, key=lambda c: c[1])

    def random_hash(self) -> bytes:
        return self.rng.randbytes(32)

    def name(self, prefix: str) -> str:
        return f"{prefix}{self.rng.randrange(10**6)}"


def cache_file(cache_key: bytes) -> str:
    """Where a cache entry lives (FORMAT.md: ``cache/<2 hex>/<62 hex>``)."""
    return f"cache/{cache_key.hex()[:2]}/{cache_key.hex()[2:]}"


def _log_key(ended: float, run_hash: bytes) -> str:
    """The run log key a writer would make; odd times get a day and micro-seconds a path can hold."""
    micros = int(ended * 1e6) if math.isfinite(ended) and abs(ended) < 1e15 else 0
    return f"runlog/2026-01-01/{max(micros, 0):020d}-{run_hash.hex()}"


# -- the mutations: each plants one kind of hostile content, and says what ------------------


def huge_file_size(h: Hostile) -> str:
    """A tree entry declaring a 2^40-byte file made of one real chunk said to be 2^40 bytes long."""
    chunk, _ = h.big_chunk()
    size = 1 << 40
    tree = h.tree([FileEntry("data", size, ((chunk, size),), hash=h.random_hash())])
    name = h.name("huge")
    h.ref(name, h.artifact(tree, size=size, metadata={"length": size}))
    h.must_flag.append("huge_file_size")
    return f"{name}: cas.bytes with a 2^40-byte file of one mis-sized chunk"


def chunk_size_mismatch(h: Hostile) -> str:
    """A file listing real chunks with sizes one byte off what is stored."""
    chunks = [(d, n + (1 if i % 2 else -1)) for i, (d, n) in enumerate(h.legit.chunks[:4])]
    size = sum(n for _, n in chunks)
    tree = h.tree([FileEntry("data", size, tuple(chunks), hash=h.random_hash())])
    name = h.name("offbyone")
    h.ref(name, h.artifact(tree, size=size, metadata={"length": size}))
    h.must_flag.append("chunk_size_mismatch")
    return f"{name}: cas.bytes whose chunk sizes are one byte off"


def chunk_reuse_bomb(h: Hostile) -> str:
    """A tiny tree listing one big chunk thousands of times (1 GiB out of one stored chunk)."""
    chunk, n = h.big_chunk()
    count = (1 << 30) // n
    size = count * n
    tree = h.tree([FileEntry("data", size, ((chunk, n),) * count, hash=h.random_hash())])
    name = h.name("reuse")
    as_array = h.rng.random() < 0.5
    if as_array:
        meta = valuecodec.encode({"descr": "|u1", "shape": [size], "order": "C", "scalar": False, "subclass": False})
        tree = h.tree([FileEntry("data", size, ((chunk, n),) * count, hash=h.random_hash()),
                       FileEntry("meta", len(meta), data=meta)])  # fmt: skip
        art = h.artifact(tree, materializer="cas.numpy", python_type="numpy.ndarray", size=size,
                         metadata={"dtype": "uint8", "shape": [size], "nbytes": size})  # fmt: skip
    else:
        art = h.artifact(tree, size=size, metadata={"length": size})
    h.ref(name, art)
    return f"{name}: {'numpy' if as_array else 'bytes'} of one {n}-byte chunk listed {count} times"


def array_shape_bomb(h: Hostile) -> str:
    """A numpy artifact whose meta declares a shape of 2^40 float64 over a few bytes of data."""
    names = []
    for shape in ([1 << 40], [1 << 20, 1 << 20], [-1], [2**63], [0, 1 << 62]):
        meta = valuecodec.encode({"descr": "<f8", "shape": shape, "order": "C", "scalar": False, "subclass": False})
        tree = h.tree([FileEntry("data", 8, data=bytes(8)), FileEntry("meta", len(meta), data=meta)])
        names.append(h.name("shape"))
        h.ref(names[-1], h.artifact(tree, materializer="cas.numpy", python_type="numpy.ndarray", size=8,
                                    metadata={"dtype": "float64", "shape": shape, "nbytes": 8}))  # fmt: skip
    return f"{', '.join(names)}: numpy metas declaring shapes 2^40, 2^20 x 2^20, -1, 2^63, 0 x 2^62 over 8 bytes"


def arrow_null_bomb(h: Hostile) -> str:
    """A few hundred bytes of Arrow IPC declaring a 2^27-row null column (1 GiB loaded), as a table and a frame."""
    import pyarrow as pa

    table = pa.table({"x": pa.nulls(1 << 27)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    arrow = FileEntry("table.arrow", len(data), data=data)
    meta = {"rows": 1 << 27, "columns": ["x"], "dtypes": ["null"]}
    h.ref("nulls-table", h.artifact(h.tree([arrow]), materializer="cas.arrow", python_type="pyarrow.lib.Table",
                                    size=len(data), metadata=meta))  # fmt: skip
    facts = valuecodec.encode({"series": False, "name": None, "labels": None})
    tree = h.tree([arrow, FileEntry("pandas.msgpack", len(facts), data=facts)])
    h.ref("nulls-frame", h.artifact(tree, materializer="cas.pandas", python_type="pandas.core.frame.DataFrame",
                                    size=len(data) + len(facts), metadata=meta))  # fmt: skip
    return f"nulls-table, nulls-frame: a {len(data)}-byte Arrow file with a 2^27-row null column"


def huge_int_value(h: Hostile) -> str:
    """A cas.value holding an int of 5,000 digits (str() of it raises in Python 3.11+)."""
    name = h.name("bigint")
    h.store.put({"n": 10**5000, "xs": [10**4500]}, name)
    return f"{name}: a value with 5,000-digit ints"


def dangling_ref(h: Hostile) -> str:
    """A version pointing at an artifact that is not in the store."""
    name = h.name("dangling")
    h.ref(name, h.random_hash())
    return f"{name}@1 -> a missing hash"


def wrong_kind_ref(h: Hostile) -> str:
    """Versions pointing at a tree, a run, a pack chunk and a loose blob instead of an artifact."""
    for kind, target in [("tree", h.legit.trees["blob"]), ("run", h.legit.runs[0].hash),
                         ("chunk", h.legit.chunks[0][0]), ("blob", h.obj(b"just bytes"))]:  # fmt: skip
        h.ref(f"wrongkind-{kind}", target)
    return "wrongkind-tree, -run, -chunk, -blob @1 -> a tree, a run, a pack chunk, a loose blob"


def artifact_tree_wrong_kind(h: Hostile) -> str:
    """Artifacts whose tree is a run, another artifact, a chunk or missing."""
    for kind, target in [("run", h.legit.runs[0].hash), ("artifact", h.legit.artifacts["blob"]),
                         ("chunk", h.legit.chunks[0][0]), ("missing", h.random_hash())]:  # fmt: skip
        h.ref(f"badtree-{kind}", h.artifact(target, size=5))
    return "badtree-run, -artifact, -chunk, -missing: artifacts whose tree is a run, an artifact, a chunk, missing"


def lineage_cycle(h: Hostile) -> str:
    """Runs whose inputs and outputs form a cycle (A -> B -> A) and a run that outputs its own input."""
    a, b = h.legit.artifacts["blob"], h.legit.artifacts["cfg"]
    base = h.legit.runs[0]
    h.run(base, step="cycle.one", inputs={"x": a}, outputs={"y": b}, order=("y",), cache_key=h.random_hash())
    h.run(base, step="cycle.two", inputs={"x": b}, outputs={"y": a}, order=("y",), cache_key=h.random_hash())
    h.run(base, step="cycle.self", inputs={"x": a}, outputs={"x": a}, order=("x",), cache_key=h.random_hash())
    return "runs blob -> cfg -> blob, and blob -> blob"


def dangling_run_links(h: Hostile) -> str:
    """A run whose parents, inputs, outputs and cached_from are missing, or not runs."""
    base = h.legit.runs[0]
    run = h.run(base, step="dangling.run", parents=(h.random_hash(), h.legit.artifacts["blob"]),
                inputs={"x": h.random_hash()}, outputs={"y": h.random_hash()}, order=("y",),
                cached_from=h.rng.choice([h.random_hash(), h.legit.artifacts["blob"], base.hash]),
                status=h.rng.choice(["completed", "cached"]), cache_key=h.random_hash())  # fmt: skip
    return f"run {run.hex()[:12]} with missing parents, inputs, outputs and cached_from"


def deep_lineage(h: Hostile) -> str:
    """A chain of 600 runs, each consuming the previous one's output (legitimate, but deep)."""
    base = h.legit.runs[0]
    previous = h.legit.artifacts["blob"]
    for i in range(600):
        out = h.bytes_artifact(f"link {i}".encode())
        h.run(base, step="chain", inputs={"x": previous}, outputs={"y": out}, order=("y",),
              params={"i": i}, cache_key=h.random_hash(), ended=1.7e9 + i, started=1.7e9 + i)  # fmt: skip
        previous = out
    name = h.name("chained")
    h.ref(name, previous)
    return f"{name}: the end of a 600-run chain"


def odd_run_times(h: Hostile) -> str:
    """Runs with NaN, infinite, huge, negative and far-future start and end times."""
    values = [math.nan, math.inf, -math.inf, 1e300, -1e300, -5.0, 4e10, 1e18]
    for value in values:
        h.run(step="odd.time", started=value, ended=value, cache_key=h.random_hash(), params={"t": repr(value)})
    h.run(step="odd.time", started=4e10, ended=-4e10, cache_key=h.random_hash())
    return f"runs started and ended at each of {values}, and one ending before it started"


def odd_ref_times(h: Hostile) -> str:
    """Versions and tags created at NaN, infinity, 1e300, a negative or a far-future time."""
    values = [math.nan, math.inf, -math.inf, 1e300, -1.0, 4e10]
    for i, value in enumerate(values, 1):
        h.ref("oddtime", h.legit.artifacts["blob"], number=i, created=value)
        h.ref("oddtime", h.legit.artifacts["blob"], kind="tag", selector=f"t{i}", number=i, created=value)
    value = h.rng.choice(values)
    h.ref("cfg", h.legit.artifacts["cfg"], kind="tag", selector="prod", number=1, created=value)
    return f"oddtime@1..6 and tags created at {values}; cfg@prod at {value!r}"


def lying_tag(h: Hostile) -> str:
    """A tag and a label whose target disagrees with the version number they claim."""
    h.ref("cfg", h.legit.artifacts["blob"], kind="tag", selector="latest", number=1, created=4e9)
    h.ref("cfg", h.legit.artifacts["arr"], kind="label", selector="v9", number=1)
    return "cfg@latest and cfg@v9 claim version 1 but name other artifacts"


def odd_version_numbers(h: Hostile) -> str:
    """Version files numbered 0, 2^64-1 or with leading zeros, and a record whose number disagrees with its key."""
    name = h.name("numbers")
    target = h.legit.artifacts["blob"]
    for selector in ("0", "007", str(2**64 - 1)):
        record = RefRecord(target, 1.7e9, int(selector) or None, None)
        h.store.backend.write(f"refs/{name}/@v/{selector}", codec.seal(record.to_bytes()))
    h.ref(name, target, number=5, selector="2")
    h.store.backend.write(f"refs/{name}/@v/3", codec.seal(RefRecord(target, 1.7e9, 99, "x").to_bytes()))
    return f"{name}: versions 0, 007, 2^64-1, and 3 saying it is 99"


ODD_NAMES = [
    "{hex64}", "{hex8}", "m\u043edel", "zero\u200bwidth", "rtl\u202eexe.txt", "CON", "nul", "Model", "caf\u00e9",
    "cafe\u0301", "a..b", ".hidden", "-dash", "x.lock", "trail.", "with space", "colon:name", "a" * 300,
    "deep/" * 40 + "x",
]  # fmt: skip


def odd_names(h: Hostile) -> str:
    """Names spelling another artifact's hash or prefix, look-alikes, Windows-reserved and rule-breaking names."""
    other = h.legit.artifacts["arr"]
    planted = []
    for template in ODD_NAMES:
        name = template.format(hex64=other.hex(), hex8=other.hex()[:8])
        try:
            h.ref(name, h.legit.artifacts["blob"])
        except (cas.CasError, OSError, ValueError):
            planted.append(f"{name[:20]!r} (backend refused the key)")
            continue
        planted.append(repr(name[:20]))
    return "names " + ", ".join(planted) + " -> blob"


TREE_PATHS = [".git/config", "CON", "nul.txt", "x.", "y ", "file.txt:stream", "A", "a", "\u202egnp.exe",
              "a" * 255, "../x", "/abs", "x/../../y", "C:/win", "dir/..", ".cas/config"]  # fmt: skip


def odd_tree_paths(h: Hostile) -> str:
    """Folder artifacts whose files have Windows-reserved, git-internal, look-alike, clashing or escaping paths."""
    # An absolute path points into the sandbox: should a decoder ever let it through, the test stays contained.
    candidates = [str(h.sandbox / "home" / "abs") if p == "/abs" else p for p in TREE_PATHS]
    groups = [[p] for p in candidates] + [["A", "a", "x.", "CON"], sorted(h.rng.sample(candidates, 4))]
    for i, paths in enumerate(groups):
        entries = [FileEntry(p, 2, data=b"hi").to_value() for p in sorted(set(paths))]
        tree = h.obj(canonical.encode({"type": "tree", "v": 1, "entries": entries}))  # by hand: the decoder refuses
        h.ref(f"paths{i}", h.artifact(tree, materializer="cas.path", python_type="pathlib.PosixPath", size=2 * len(paths),
                                      metadata={"kind": "directory", "name": f"paths{i}"}))  # fmt: skip
    return f"paths0..{len(groups) - 1}: folders with files {groups}"


def path_artifact_name(h: Hostile) -> str:
    """cas.path artifacts whose metadata name is absolute, escaping, a dot file or too long (``cas get`` without -o)."""
    choices = [str(h.sandbox / "home" / ".bashrc"), "../../escaped.txt", "../beside.txt", ".bashrc", "", "a/b/c", ".",
               "..", "x" * 300, str(h.sandbox / "home"), "~/.profile", "CON"]  # fmt: skip
    tree = h.tree([FileEntry("payload.sh", 11, data=b"echo owned\n")])
    for i, choice in enumerate(choices):
        kind = h.rng.choice(["file", "directory"])
        h.ref(f"pathname{i}", h.artifact(tree, materializer="cas.path", python_type="pathlib.PosixPath", size=11,
                                         metadata={"kind": kind, "name": choice}))  # fmt: skip
    return f"pathname0..{len(choices) - 1}: cas.path artifacts whose metadata names are {choices}"


def duplicate_tree_entries(h: Hostile) -> str:
    """A tree listing the same path twice, and a file that is also a folder (made by hand)."""
    entries = [FileEntry("a", 1, data=b"1").to_value(), FileEntry("a", 1, data=b"2").to_value(),
               FileEntry("a/b", 1, data=b"3").to_value()]  # fmt: skip
    tree = h.obj(canonical.encode({"type": "tree", "v": 1, "entries": entries}))
    name = h.name("dupes")
    h.ref(name, h.artifact(tree, materializer="cas.path", python_type="pathlib.PosixPath", size=3,
                           metadata={"kind": "directory", "name": name}))  # fmt: skip
    return f"{name}: a tree with 'a' twice and 'a/b'"


def wrong_whole_file_hash(h: Hostile) -> str:
    """A chunked file whose whole-file hash is that of other bytes (fsck should notice)."""
    chunks = tuple(h.legit.chunks)
    size = sum(n for _, n in chunks)
    tree = h.tree([FileEntry("data", size, chunks, hash=digest(b"something else"))])
    name = h.name("wronghash")
    h.ref(name, h.artifact(tree, size=size, metadata={"length": size}))
    h.must_flag.append("wrong_whole_file_hash")
    return f"{name}: the array's chunks under another file's whole hash"


def poisoned_chunk_map(h: Hostile) -> str:
    """A chunk map for the bytes the victim will put later, pointing at the chunks of other bytes."""
    size = sum(n for _, n in h.legit.chunks)
    target = digest(victim_payload(size))
    h.store.backend.write(chunkmap_key(target), codec.seal(ChunkMap(target, size, tuple(h.legit.chunks)).to_bytes()))
    return f"chunk map for the victim's {size}-byte payload pointing at the array's chunks"


def forged_cache_hit(h: Hostile) -> str:
    """Completed runs answering double(21) and double(22) (a call not run yet) with 999999, made the cache entries."""
    base = h.legit.runs[0]
    fake = {"result": bytes.fromhex(h.store.put(999999).hash)}
    h.run(base, outputs=fake, order=("result",), cache=True, ended=4e9, started=4e9)
    params = {**base.params, "x": 22}
    key = steps.cache_key(base.step, base.code, params, base.inputs, None)
    h.run(base, outputs=fake, order=("result",), params=params, cache_key=key, cache=True)
    return "runs answering double(21)'s and double(22)'s cache keys with 999999"


def planted_cache_entries(h: Hostile) -> str:
    """Cache files pointing at an artifact, a missing hash, a run of another key, or holding garbage."""
    key = cache_file(h.legit.runs[1].cache_key)
    payloads = [codec.seal(h.legit.artifacts["blob"]), codec.seal(h.random_hash()), codec.seal(h.legit.runs[0].hash),
                codec.seal(b"short"), b"garbage"]  # fmt: skip
    h.store.backend.write(key, h.rng.choice(payloads))
    for payload in payloads:
        h.store.backend.write(cache_file(h.random_hash()), payload)
    return "total(arr)'s cache entry replaced; entries for other keys naming an artifact, nothing, another run, junk"


def unknown_materializer(h: Hostile) -> str:
    """Artifacts naming an unknown materializer, a module to import, or a far-future materializer version."""
    tree = h.legit.trees["blob"]
    choices = [("evil.mod", "os.system", "1"), ("cas.bytes", "os.system", "1"), ("cas.bytes", "builtins.bytes", "999"),
               ("cas.dataclass", "numpy.f2py.x", "1"), ("cas.pydantic", "numpy.f2py.x", "1")]  # fmt: skip
    for i, (materializer, python_type, version) in enumerate(choices):
        art = Artifact(tree, python_type, materializer, version, 5,
                       {"module": "numpy", "qualname": "f2py.crackfortran", "length": 5}, {})  # fmt: skip
        h.ref(f"unknown{i}", h.obj(art.to_bytes()))
    return f"unknown0..{len(choices) - 1}: (materializer, type, version) {choices}, module numpy, qualname f2py.*"


def pickle_artifact(h: Hostile) -> str:
    """A cloudpickle artifact that creates a file when loaded (no reader may load it without trust_pickle)."""
    marker = h.sandbox / "home" / "PICKLE_RAN"
    data = pickle.dumps(Evil(str(marker)))
    tree = h.tree([FileEntry("object.pkl", len(data), data=data)])
    name = h.name("pickled")
    h.ref(name, h.artifact(tree, materializer="cas.pickle", python_type="builtins.object", size=len(data),
                           metadata={"python": "3.12", "cloudpickle": "3.0.0"}))  # fmt: skip
    return f"{name}: a pickle that touches {marker.name} when loaded"


def odd_metadata(h: Hostile) -> str:
    """Artifact metadata that is deeply nested, huge, or full of odd keys and values."""
    deep: Any = 1
    for _ in range(h.rng.choice([50, 200, 2000])):
        deep = [deep]
    meta = {"kind": h.rng.choice(["directory", "file", 5, None]), "name": h.rng.choice([5, None, ["x"], "\u202e"]),
            "length": h.rng.choice([-1, 2**64 - 1, "x"]), "deep": deep, "big": "x" * 200_000}  # fmt: skip
    name = h.name("meta")
    try:
        raw = Artifact(h.legit.trees["blob"], "builtins.bytes", "cas.bytes", "1", 5, meta, {"u": deep}).to_bytes()
    except Exception:  # the encoder refuses the depth: a writer packs it by hand
        raw = msgpack.packb({"type": "artifact", "v": 1, "tree": h.legit.trees["blob"], "python_type": "builtins.bytes",
                             "materializer": "cas.bytes", "materializer_version": "1", "size": 5, "metadata": meta,
                             "user_metadata": {}})  # fmt: skip
    h.ref(name, h.obj(raw))
    return f"{name}: metadata nested {_depth(deep)} deep, with odd kind, name and length"


def _depth(value: Any) -> int:
    n = 0
    while isinstance(value, list):
        value, n = value[0], n + 1
    return n


def hostile_config(h: Hostile) -> str:
    """A well-formed store config that allows pickles and has a gc grace of -10^9 s (a clone must not inherit it)."""
    value = json.loads(h.store.backend.read("config"))
    value.update(allow_pickle=True, gc_grace=-1e9)
    h.store.backend.write("config", json.dumps(value).encode())
    return "config with allow_pickle=True, gc_grace=-1e9"


def absurd_config(h: Hostile) -> str:
    """A store config with infinite or huge gc grace, out-of-range compression and absurd chunk sizes."""
    value = {"format": 1, "allow_pickle": True, "gc_grace": h.rng.choice([math.inf, math.nan, 1e300]),
             "compression_level": h.rng.choice([999, -100]),
             "chunking": h.rng.choice([{"min_size": 1, "avg_size": 2, "max_size": 4, "normalization": 1, "seed": 0},
                                       {"min_size": 1 << 40, "avg_size": 1 << 41, "max_size": 1 << 42,
                                        "normalization": 1, "seed": 0}])}  # fmt: skip
    h.store.backend.write("config", json.dumps(value).encode())
    return f"config {value}"


def odd_index_files(h: Hostile) -> str:
    """Run log, produced and consumed entries naming artifacts, trees or missing hashes instead of runs."""
    art = h.legit.artifacts["blob"]
    b = h.store.backend
    b.write(f"runlog/2026-01-01/00000000000000000001-{art.hex()}", b"")
    b.write(f"runlog/9999-99-99/99999999999999999999-{h.random_hash().hex()}", b"")
    b.write("runlog/stray", b"not empty")
    b.write(f"produced/{art.hex()}/{h.legit.trees['blob'].hex()}", b"")
    b.write(f"consumed/{art.hex()}/{h.random_hash().hex()}", b"")
    b.write(f"names/{art.hex()}/ghost/@v/1", b"")
    return "run log entries naming an artifact and a missing run; produced/consumed naming non-runs"


def special_files(h: Hostile) -> str:
    """(folder store) Refs and objects that are symlinks to /dev/zero or outside the store, or FIFOs."""
    outside = h.sandbox / "home" / "secret.txt"
    objects = [h.legit.artifacts["cfg"], h.legit.trees["blob"], h.legit.artifacts["folder"]]
    for kind, obj in zip(("zero", "outside", "fifo"), objects, strict=True):
        ref = h.root / "refs" / f"special-{kind}" / "@v" / "1"
        ref.parent.mkdir(parents=True, exist_ok=True)
        for path in (ref, h.root / object_key(obj)):
            path.unlink(missing_ok=True)
            if kind == "fifo":
                os.mkfifo(path)
                h.fifos.append(path)
            else:
                path.symlink_to("/dev/zero" if kind == "zero" else outside)
    return "refs special-zero/-outside/-fifo, and the objects of cfg, blob's tree and folder: /dev/zero, outside, FIFO"


Mutation = Callable[[Hostile], str]

MUTATIONS: list[Mutation] = [
    huge_file_size, chunk_size_mismatch, chunk_reuse_bomb, array_shape_bomb, arrow_null_bomb, huge_int_value,
    dangling_ref, wrong_kind_ref, artifact_tree_wrong_kind, lineage_cycle, dangling_run_links, deep_lineage,
    odd_run_times, odd_ref_times, lying_tag, odd_version_numbers, odd_names, odd_tree_paths, path_artifact_name,
    duplicate_tree_entries, wrong_whole_file_hash, poisoned_chunk_map, forged_cache_hit, planted_cache_entries,
    unknown_materializer, pickle_artifact, odd_metadata, hostile_config, absurd_config, odd_index_files, special_files,
]  # fmt: skip
BY_NAME = {m.__name__: m for m in MUTATIONS}
#: What random mixes draw from: a refused config makes the whole store unreadable, so it is tried on its own.
MIXABLE = [m for m in MUTATIONS if m not in (hostile_config, absurd_config)]


def legit_store(path: Path, sandbox: Path) -> tuple[cas.Store, Legit]:
    """A small store with one artifact of each common materializer, two step runs and a tag."""
    store = cas.open(path)
    store.put(b"hello", "blob")
    store.put({"a": 1, "b": [1.5, "x"]}, "cfg", tags=["prod"])
    store.put(np.arange(ARRAY_ROWS, dtype=np.float64), "arr")
    folder = sandbox / "src"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "sub" / "run.sh").chmod(0o755)
    store.put(folder, "folder")
    cas.step(double, store=store)(21)
    cas.step(total, store=store)(store.get("arr"))
    artifacts = {n: bytes.fromhex(store.resolve(n).hash) for n in ("blob", "cfg", "arr", "folder")}
    trees = {n: bytes.fromhex(store.info(n).tree) for n in artifacts}
    arr_tree = Tree.from_bytes(store.objects.get_object(trees["arr"]))
    chunks = list(next(e for e in arr_tree.entries if e.path == "data").chunks)
    runs = sorted(store.runs(), key=lambda r: r.step)  # double, total
    return store, Legit(artifacts, trees, chunks, runs)


def build(path: Path, sandbox: Path, seed: int, kinds: list[str] | None = None, count: int = 4) -> Hostile:
    """Make a hostile store at ``path``: ``kinds`` (names in MUTATIONS), else ``count`` random ones from ``seed``."""
    rng = random.Random(seed)
    store, legit = legit_store(path, sandbox)
    hostile = Hostile(store, Path(path), sandbox, rng, legit)
    chosen = [BY_NAME[k] for k in kinds] if kinds is not None else rng.sample(MIXABLE, count)
    for mutation in chosen:
        try:
            hostile.planted.append(f"{mutation.__name__}: {mutation(hostile)}")
        except (cas.CasError, OSError, ValueError) as exc:  # the backend refused to write it: nothing to attack
            hostile.planted.append(f"{mutation.__name__}: not planted ({type(exc).__name__}: {exc})")
    store.close()
    return hostile

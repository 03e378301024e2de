"""Dataclasses come back with exactly the stored field values (issue 16, item 3); import order (item 9)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter
from materializers import valuecodec

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Scaled:
    x: float

    def __post_init__(self) -> None:
        self.x = self.x * 100


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True)
class Slotted:
    a: int
    b: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlotted:
    a: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", self.a + 1)


@dataclasses.dataclass
class WithInitVar:
    total: int = dataclasses.field(init=False)
    parts: dataclasses.InitVar[list[int]]

    def __post_init__(self, parts: list[int]) -> None:
        self.total = sum(parts)


@dataclasses.dataclass
class Holder:
    label: str
    array: np.ndarray
    inner: Scaled | None = None


@dataclasses.dataclass
class Grown:
    x: int
    added: int = 7
    items: list[int] = dataclasses.field(default_factory=lambda: [1])


@dataclasses.dataclass
class Required:
    x: int
    y: int


def plant(store: cas.Store, files: dict[str, bytes], python_type: str, metadata: dict[str, object]) -> str:
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, python_type, "cas.dataclass", "1", tree.size, metadata, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)


def test_post_init_runs_once(local_store: cas.Store) -> None:
    value = Scaled(x=1.0)
    assert value.x == 100.0
    local_store.put(value, "scaled")
    back = local_store.get("scaled")
    assert type(back) is Scaled and back.x == 100.0


def test_frozen_and_slots(local_store: cas.Store) -> None:
    for value in (Frozen("a", ("x", "y")), Slotted(3, [1, 2]), FrozenSlotted(1)):
        back = local_store.get(local_store.put(value))
        assert type(back) is type(value) and back == value
    back = local_store.get(local_store.put(FrozenSlotted(1)))
    assert back.a == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.a = 5  # type: ignore[misc]
    assert not hasattr(local_store.get(local_store.put(Slotted(1))), "__dict__")


def test_init_var_without_default(local_store: cas.Store) -> None:
    ref = local_store.put(WithInitVar(parts=[1, 2, 3]), "initvar")
    back = local_store.get(ref)
    assert type(back) is WithInitVar and back.total == 6
    assert local_store.get("initvar").total == 6


def test_nested_in_containers(local_store: cas.Store) -> None:
    value = {"a": [Scaled(1.0), Frozen("f")], "b": (Slotted(2, [3]),), "c": WithInitVar(parts=[4])}
    back = local_store.get(local_store.put(value))
    assert back["a"][0].x == 100.0 and back["a"][1] == Frozen("f")
    assert back["b"][0] == Slotted(2, [3]) and back["c"].total == 4


def test_fields_holding_an_array_above_the_chunk_size(local_store: cas.Store) -> None:
    array = np.arange(300_000, dtype=np.float64)  # 2.4 MiB: chunked
    value = Holder("big", array, Scaled(2.0))
    ref = local_store.put(value, "holder")
    assert local_store.info(ref).size > 1 << 20
    back = local_store.get("holder")
    assert type(back) is Holder and back.label == "big" and back.inner == value.inner
    assert back.inner is not None and back.inner.x == 200.0
    np.testing.assert_array_equal(back.array, array)
    listed = local_store.get(local_store.put([value, {"k": value}]))
    np.testing.assert_array_equal(listed[1]["k"].array, array)


def test_old_artifacts_load_the_same(local_store: cas.Store) -> None:
    # The layout written before this change: fields.msgpack, version 1.
    facts = {"module": __name__, "qualname": "Scaled"}
    ref = plant(local_store, {"fields.msgpack": valuecodec.encode({"x": 5.0})}, f"{__name__}.Scaled", facts)
    assert local_store.get(ref).x == 5.0
    # Plain dataclasses still store exactly one fields.msgpack (no format change).
    info = local_store.info(local_store.put(Scaled(1.0)))
    assert [f.path for f in info.files] == ["fields.msgpack"] and info.materializer_version == "1"


def test_missing_fields_take_defaults_or_are_refused(local_store: cas.Store) -> None:
    facts = {"module": __name__, "qualname": "Grown"}
    ref = plant(local_store, {"fields.msgpack": valuecodec.encode({"x": 1})}, f"{__name__}.Grown", facts)
    assert local_store.get(ref) == Grown(1, 7, [1])
    facts = {"module": __name__, "qualname": "Required"}
    ref = plant(local_store, {"fields.msgpack": valuecodec.encode({"x": 1})}, f"{__name__}.Required", facts)
    with pytest.raises(cas.IncompatibleArtifactError, match="no default"):
        local_store.get(ref)


def test_init_var_names_and_unknown_fields_are_refused(local_store: cas.Store) -> None:
    facts = {"module": __name__, "qualname": "WithInitVar"}
    for fields in ({"total": 1, "parts": [1]}, {"total": 1, "__class__": "x"}):
        ref = plant(local_store, {"fields.msgpack": valuecodec.encode(fields)}, f"{__name__}.WithInitVar", facts)
        with pytest.raises(cas.IncompatibleArtifactError, match="not fields"):
            local_store.get(ref)


def test_composite_fields_that_are_not_a_map_are_corrupt(local_store: cas.Store) -> None:
    facts = {"module": __name__, "qualname": "Scaled"}
    ref = plant(local_store, {"fields/value.msgpack": valuecodec.encode([1, 2])}, f"{__name__}.Scaled", facts)
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(ref)
    ref = plant(local_store, {"other": b"x"}, f"{__name__}.Scaled", facts)
    with pytest.raises(cas.CasError):
        local_store.get(ref)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    "code",
    [
        "import materializers; import cas; print(cas.Store, materializers.registry.by_name('cas.value'))",
        "from materializers import Materializer; import cas; assert cas.Materializer is Materializer",
        "import materializers.base; import cas",
        "import materializers.structured; import cas",
        "import cas; import materializers; print(materializers.Materializer)",
    ],
)
def test_import_order(code: str) -> None:
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_custom_materializer_written_before_importing_cas(tmp_path: Path) -> None:
    result = run_python(f"""
        from materializers import Materializer

        class Celsius:
            def __init__(self, degrees):
                self.degrees = degrees

        class CelsiusMaterializer(Materializer):
            name = "test.celsius"
            types = (Celsius,)

            def save(self, obj, writer):
                writer.write_bytes("c", str(obj.degrees).encode())

            def load(self, reader, type_):
                return Celsius(float(reader.read_bytes("c")))

        import cas
        store = cas.open({str(tmp_path / "s")!r}, create=True)
        print(store.get(store.put(Celsius(21.5), "t")).degrees)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "21.5"

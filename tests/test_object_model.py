"""The object model: every kind is declared once (cas.schema) and that one declaration encodes and decodes it.

Parametrized over the registry (``cas.objects.KINDS``): each kind round-trips, keeps its golden bytes,
and refuses a missing, an extra or a wrongly typed field with CorruptObjectError. A run's id is the
digest of its bytes, before and after it is stored.
"""

from __future__ import annotations

from typing import Any

import pytest

import cas
from cas import canonical, objects
from cas.errors import CorruptObjectError, UnsupportedFormatError
from cas.hashing import digest, to_hex
from cas.objects import (
    KINDS,
    OBJECT_KINDS,
    Artifact,
    ChunkMap,
    Encoded,
    FileEntry,
    PackEntry,
    PackIndex,
    RefRecord,
    Run,
    StoredObject,
    Tree,
    VisualizationRecord,
)

H = digest(b"chunk")
G = digest(b"other")

#: One instance of every kind, with every optional field set (so a wrong type is always detectable).
SAMPLES: dict[str, Encoded] = {
    "tree": Tree((FileEntry("a/big.bin", 10, ((H, 4), (G, 6)), hash=G), FileEntry("small.txt", 5, data=b"hello"))),
    "artifact": Artifact(H, "builtins.bytes", "cas.bytes", "1", 15, {"length": 15}, {"k": [1, 2.5]}),
    "run": Run(
        step="pipeline.train",
        code=H,
        params={"lr": 0.1, "epochs": 3},
        inputs={"data": G},
        outputs={"model": H, "score": G},
        cache_key=G,
        started=1700000000.25,
        ended=1700000002.5,
        status="completed",
        parents=(G,),
        cached_from=H,
        returns="tuple",
        order=("score", "model"),
        environment={"python": "3.12"},
        pipeline={"name": "p", "id": "1"},
        message="m",
        metadata={"k": [1, 2.5]},
        error="none really",
    ),  # fmt: skip
    "packindex": PackIndex((PackEntry(H, 0, 30, 14, 0), PackEntry(G, 30, 20, 100, 1))),
    "ref": RefRecord(H, 1700000000.5, 3, "v1.0"),
    "chunkmap": ChunkMap(G, 10, ((H, 4), (G, 6))),
    "visualizations": VisualizationRecord(H, (("files", "text/html", G, 120),)),
}

#: Digests of canonical bytes, computed with the encoders as they were before the schemas (issue 17).
#: Changing one means changing the on-store format: bump the version and record it in FORMAT.md.
GOLDEN = {
    "packindex": "9c89a9657a74085450ffb2e2ebcbfdca30b835b1e054ece4126d1fe1223028d9",
    "ref": "74981529373745b6432e64544199c2b77c27df68f327796325c78d506f7b5f79",
    "chunkmap": "1f29c2cc1ef084fbfa77cc333b18b3e75f2b6c9f536bac805b690bd7e6b15bea",
    "visualizations": "03dfa15c08830ac2524a04e0244996eabc34a5752c5264b5d655ff1abb3b7ebd",
}
GOLDEN_RUN = "647f348f6695b4998ab110f590d9f8a0492320286489e4725191a86787a7401e"

#: Values of every msgpack type: for each field, those of another type than the good value must be refused.
OF_EVERY_TYPE: list[Any] = [True, 7, 1.5, "x", b"x", [], {}]


def test_the_registry_holds_every_kind_once() -> None:
    assert set(KINDS) == {"tree", "artifact", "run", "packindex", "ref", "chunkmap", "visualizations"}
    assert set(SAMPLES) == set(KINDS)
    assert OBJECT_KINDS == {"tree", "artifact", "run", "packindex"}
    for tag, cls in KINDS.items():
        assert cls.schema.tag == tag and cls.schema.version == (2 if tag == "tree" else 1)
        assert isinstance(SAMPLES[tag], cls)


@pytest.mark.parametrize("tag", sorted(KINDS))
def test_each_kind_round_trips_through_its_schema(tag: str) -> None:
    sample = SAMPLES[tag]
    data = sample.to_bytes()
    again = KINDS[tag].from_bytes(data)
    assert again == sample and again.to_bytes() == data
    assert objects.decode(data) == sample
    assert objects.kind_of(data) == tag
    value = canonical.decode(data)
    assert value["type"] == tag and value["v"] == 1
    assert set(value) == {"type", "v"} | {f.name for f in KINDS[tag].schema.fields}


@pytest.mark.parametrize("tag", sorted(GOLDEN))
def test_golden_bytes_of_each_sealed_kind_and_pack_index(tag: str) -> None:
    assert to_hex(digest(SAMPLES[tag].to_bytes())) == GOLDEN[tag]


def test_golden_run() -> None:
    assert to_hex(digest(SAMPLES["run"].to_bytes())) == GOLDEN_RUN


def _fields(tag: str) -> list[tuple[str, str]]:
    return [(tag, f.name) for f in KINDS[tag].schema.fields]


ALL_FIELDS = [pair for tag in sorted(KINDS) for pair in _fields(tag)]


def _value(tag: str) -> dict[str, Any]:
    value = canonical.decode(SAMPLES[tag].to_bytes())
    assert isinstance(value, dict)
    return value


def _refused(tag: str, value: dict[str, Any]) -> None:
    data = canonical.encode(value)
    with pytest.raises(CorruptObjectError):
        KINDS[tag].from_bytes(data, key="planted")
    with pytest.raises(CorruptObjectError):
        objects.decode(data)


@pytest.mark.parametrize(("tag", "name"), ALL_FIELDS)
def test_a_missing_field_is_refused(tag: str, name: str) -> None:
    value = _value(tag)
    del value[name]
    _refused(tag, value)


@pytest.mark.parametrize("tag", sorted(KINDS))
def test_an_extra_field_is_refused(tag: str) -> None:
    _refused(tag, {**_value(tag), "extra": 1})


@pytest.mark.parametrize(("tag", "name"), ALL_FIELDS)
def test_a_field_of_another_type_is_refused(tag: str, name: str) -> None:
    good = _value(tag)[name]
    assert good is not None  # the samples set every optional field
    for wrong in OF_EVERY_TYPE:
        if type(wrong) is not type(good):
            _refused(tag, {**_value(tag), name: wrong})


@pytest.mark.parametrize("tag", sorted(KINDS))
def test_header_is_checked(tag: str) -> None:
    for bad in ({"v": 0}, {"v": True}, {"v": "1"}, {"type": "blob"}, {"type": 1}):
        _refused(tag, {**_value(tag), **bad})
    other = next(t for t in KINDS if t != tag)
    with pytest.raises(CorruptObjectError, match=f"expected a {tag} object"):
        KINDS[tag].from_bytes(SAMPLES[other].to_bytes())
    with pytest.raises(UnsupportedFormatError):  # newer than this cas: still a CorruptObjectError
        KINDS[tag].from_bytes(canonical.encode({**_value(tag), "v": KINDS[tag].schema.version + 1}))


def test_nested_records_refuse_missing_extra_and_wrong_fields() -> None:
    tree, vis = _value("tree"), _value("visualizations")
    for entries in (
        [{"path": "x", "size": 1}],
        [{"path": "x", "size": 1, "data": b"x", "hash": H}],
        [{"path": "x", "size": 1, "data": "x"}],
        [{"path": "x", "size": 1, "hash": H, "chunks": [[H, 1]], "extra": 1}],
    ):
        _refused("tree", {**tree, "entries": entries})
    item = vis["items"][0]
    for items in ([{**item, "extra": 1}], [{k: v for k, v in item.items() if k != "size"}], [{**item, "size": "1"}]):
        _refused("visualizations", {**vis, "items": items})


def test_stored_objects_have_their_id_from_their_bytes() -> None:
    for tag, sample in SAMPLES.items():
        assert isinstance(sample, StoredObject) == (tag in OBJECT_KINDS)
        if isinstance(sample, StoredObject):
            assert sample.digest == digest(sample.to_bytes())


def test_a_run_id_is_the_digest_of_its_bytes_before_it_is_stored() -> None:
    run = SAMPLES["run"]
    assert isinstance(run, Run)
    assert run.hash == digest(run.to_bytes()) and run.id == to_hex(run.hash) and run.hash != b""
    assert Run.from_bytes(run.to_bytes()).hash == run.hash


def test_a_run_id_is_the_same_after_it_is_stored(local_store: cas.Store) -> None:
    data = local_store.put(b"data", "data")
    run = local_store.record_run(step="train", inputs={"data": data}, params={"lr": 0.1})
    assert run.hash == digest(run.to_bytes())
    assert local_store.objects.get_object(run.hash) == run.to_bytes()
    assert local_store.run(run.hash) == run and local_store.run(run.hash).hash == run.hash
    assert [r.hash for r in local_store.log()] == [run.hash]


def test_a_changed_run_gets_a_new_id() -> None:
    import dataclasses

    run = SAMPLES["run"]
    assert isinstance(run, Run)
    changed = dataclasses.replace(run, message="other")
    assert changed.hash == digest(changed.to_bytes()) != run.hash


def test_old_import_paths_still_work() -> None:
    from cas import runs, visualrecords

    assert runs.Run is Run and runs.valid_time is objects.valid_time and runs.STATUSES is objects.STATUSES
    assert visualrecords.VisualizationRecord is VisualizationRecord and visualrecords.MEDIA_TYPES is objects.MEDIA_TYPES

"""put/get/info/exists and refs, on every backend."""

import os
import threading
from pathlib import Path

import pytest
from conftest import StoreFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cas
from cas.hashing import digest, to_hex
from cas.objectstore import object_key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3 << 20))
def test_put_get_is_identity_for_bytes(new_store: StoreFactory, data: bytes) -> None:
    with new_store() as store:  # one store per example: no example sees another's objects
        ref = store.put(data)
        assert store.get(ref) == data
        assert type(store.get(ref.hash)) is bytes


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 1 << 20, (1 << 20) + 1, 5 << 20])
def test_sizes_around_the_thresholds(store: cas.Store, size: int) -> None:
    data = os.urandom(size)
    ref = store.put(data, "blob")
    assert store.get("blob") == data
    info = store.info(ref)
    assert info.size == size and info.python_type == "builtins.bytes"


def test_large_payload_is_chunked_and_packed(store: cas.Store) -> None:
    data = os.urandom(20 << 20)
    store.put(data, "big")
    info = store.info("big")
    assert info.chunks > 100
    assert 0.99 * len(data) < info.stored_size < 1.02 * len(data)
    assert any(k.startswith("packs/") for k in store.backend.list("packs/"))
    assert store.get("big") == data


def test_bytes_like_and_str_types(store: cas.Store) -> None:
    assert store.get(store.put(bytearray(b"abc"))) == bytearray(b"abc")
    assert type(store.get(store.put(bytearray(b"abc")))) is bytearray
    assert bytes(store.get(store.put(memoryview(b"xyz")))) == b"xyz"
    text = "héllo \udcff wörld " * 1000  # a lone surrogate survives
    assert store.get(store.put(text)) == text


def test_compressible_data_is_stored_compressed(store: cas.Store) -> None:
    text = ("0.123456,1.5,yes\n" * 400_000).encode()
    store.put(text, "csv")
    info = store.info("csv")
    assert info.stored_size < len(text) / 5
    assert store.get("csv") == text


def test_same_content_same_hash_and_no_new_bytes(store: cas.Store) -> None:
    data = os.urandom(3 << 20)
    first = store.put(data, "a")
    keys = set(store.backend.list("objects/")) | set(store.backend.list("packs/"))
    second = store.put(data, "b")
    assert first.hash == second.hash
    assert (set(store.backend.list("objects/")) | set(store.backend.list("packs/"))) == keys


def test_versions_labels_and_tags(store: cas.Store) -> None:
    r1 = store.put(b"one", "model")
    r2 = store.put(b"two", "model", version="v2.0", tags=["prod"])
    r3 = store.put(b"three", "model")
    assert (r1.version, r2.version, r3.version) == (1, "v2.0", 3)
    assert r2.number == 2 and str(r2) == "model@v2.0"
    assert store.get("model") == b"three"
    assert store.get("model@1") == b"one"
    assert store.get("model@2") == b"two"
    assert store.get("model@v2.0") == b"two"
    assert store.get("model@prod") == b"two"
    store.tag("model@3", "prod")
    assert store.get("model@prod") == b"three"
    assert [r.number for r in store.versions("model")] == [1, 2, 3]
    assert sorted(store.names()) == ["model"]


def test_explicit_version_is_immutable(store: cas.Store) -> None:
    store.put(b"a", "m", version="v1")
    again = store.put(b"a", "m", version="v1")  # same content: idempotent
    assert again.version == "v1"
    with pytest.raises(cas.RefExistsError):
        store.put(b"b", "m", version="v1")
    assert store.get("m@v1") == b"a"


def test_hash_and_prefix_refs(store: cas.Store) -> None:
    ref = store.put(b"payload", "p")
    assert store.get(ref.hash) == b"payload"
    assert store.get(ref.hash[:8]) == b"payload"
    assert store.resolve(ref.hash[:6]).hash == ref.hash
    with pytest.raises(cas.ObjectNotFoundError):
        store.get("ffffff" if not ref.hash.startswith("ffffff") else "eeeeee")


def test_ambiguous_prefix(store: cas.Store) -> None:
    ref = store.put(b"payload", "p")
    twin = bytes.fromhex(ref.hash[:6] + ("0" * 58 if ref.hash[6:] != "0" * 58 else "1" * 58))
    store.backend.write(object_key(twin), b"another object sharing the prefix")
    with pytest.raises(cas.AmbiguousRefError):
        store.resolve(ref.hash[:6])
    assert store.resolve(ref.hash[:12]).hash == ref.hash
    with pytest.raises(cas.ObjectNotFoundError):
        store.resolve("abc")  # too short to be a prefix, and no such name


def test_non_artifact_hash_is_refused(store: cas.Store) -> None:
    ref = store.put(b"x" * 5000)
    tree = store.info(ref).tree
    with pytest.raises(cas.ObjectNotFoundError, match="tree, not an artifact"):
        store.get(tree)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "/abs",
        "a//b",
        "a/",
        "-dash",
        ".dot",
        "a..b",
        "a@b",
        "a b",
        "tab\tx",
        "nul\x00",
        "x.lock",
        "a:b",
        "q?",
        "x" * 300,
        "a\\b",
        "a/.hidden",
    ],
)
def test_bad_names_are_refused(store: cas.Store, name: str) -> None:
    with pytest.raises(cas.InvalidNameError):
        store.put(b"x", name)


def test_bad_versions_and_tags(store: cas.Store) -> None:
    with pytest.raises(cas.InvalidNameError, match="digits"):
        store.put(b"x", "n", version="12")
    with pytest.raises(cas.InvalidNameError):
        store.put(b"x", "n", tags=["a/b"])
    with pytest.raises(cas.InvalidArgumentError, match="needs a name"):
        store.put(b"x", version="v1")
    with pytest.raises(cas.InvalidNameError):
        store.get("n@01")
    assert not list(store.names())  # nothing was written by the refused calls


def test_missing_refs(store: cas.Store) -> None:
    store.put(b"x", "there")
    with pytest.raises(cas.RefNotFoundError):
        store.get("absent")
    with pytest.raises(cas.RefNotFoundError):
        store.get("there@9")
    with pytest.raises(cas.RefNotFoundError):
        store.get("there@nolabel")
    with pytest.raises(KeyError):  # RefNotFoundError is a KeyError too
        store.get("absent")
    assert store.exists("there") and store.exists("there@1")
    assert not store.exists("absent") and not store.exists("there@2")
    with pytest.raises(cas.InvalidNameError):
        store.exists("bad//name")


def test_metadata(store: cas.Store) -> None:
    ref = store.put(b"abc", "m", metadata={"accuracy": 0.9, "tags": ["a"]})
    info = store.info(ref)
    assert info.user_metadata == {"accuracy": 0.9, "tags": ["a"]}
    assert info.metadata == {"length": 3}
    assert info.created is None and store.info("m").created is not None
    with pytest.raises(cas.InvalidMetadataError):
        store.put(b"abc", metadata={"x": object()})
    with pytest.raises(cas.InvalidMetadataError):
        store.put(b"abc", metadata={1: "x"})  # type: ignore[dict-item]


def test_unsupported_type(store: cas.Store) -> None:
    class Thing:
        pass

    with pytest.raises(cas.UnsupportedTypeError, match="Thing"):
        store.put(Thing())


def test_file_roundtrip(store: cas.Store, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    payload = os.urandom(3 << 20)
    src.write_bytes(payload)
    ref = store.put(src, "file")
    assert store.info(ref).metadata == {"kind": "file", "name": "data.bin"}
    out = store.get("file", path=tmp_path / "out.bin")
    assert out == tmp_path / "out.bin" and out.read_bytes() == payload
    folder = tmp_path / "folder"
    folder.mkdir()
    assert store.get("file", path=folder).read_bytes() == payload  # into a folder: keeps its name
    assert (folder / "data.bin").exists()
    with pytest.raises(cas.PathRequiredError):
        store.get("file")
    # A file put from disk and the same bytes put from memory share their chunks.
    assert store.put(payload).hash != ref.hash
    assert store.info(store.put(payload)).stored_size == store.info(ref).stored_size


def test_directory_roundtrip(store: cas.Store, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(2 << 20), "sub/deep/c": b"", "sub/deep/d": os.urandom(5000)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    ref = store.put(src, "tree")
    info = store.info(ref)
    assert sorted(f.path for f in info.files) == sorted(files)
    out = store.get("tree", path=tmp_path / "restored")
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    again = store.put(src, "tree")
    assert again.hash == ref.hash


def test_restore_refuses_escaping_through_symlinks(store: cas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    store.put(src, "d")
    target = tmp_path / "target"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(cas.InvalidNameError, match="outside"):
        store.get("d", path=target)
    assert not (outside / "f").exists()


def test_missing_source(store: cas.Store, tmp_path: Path) -> None:
    with pytest.raises(cas.SourceNotFoundError):
        store.put(tmp_path / "nope")


def test_export_of_non_path_artifacts(store: cas.Store, tmp_path: Path) -> None:
    store.put(b"raw bytes", "b")
    assert store.get("b", path=tmp_path / "x.bin").read_bytes() == b"raw bytes"


def test_reopen_sees_everything(store_url: str) -> None:
    data = os.urandom(2 << 20)
    with cas.open(store_url) as s:
        ref = s.put(data, "x")
    with cas.open(store_url, create=False) as s:
        assert s.get("x") == data
        assert s.resolve("x").hash == ref.hash


def test_open_without_create(tmp_path: Path) -> None:
    with pytest.raises(cas.StoreNotFoundError):
        cas.open(tmp_path / "none", create=False)


def test_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_STORE", raising=False)
    project = tmp_path / "project"
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(project)
    with cas.open() as s:
        s.put(b"found", "x")
    assert (project / ".cas" / "config").is_file()
    monkeypatch.chdir(deep)
    with cas.open() as s:
        assert s.get("x") == b"found"
    monkeypatch.setenv("CAS_STORE", str(tmp_path / "elsewhere"))
    with cas.open() as s:
        assert not s.exists("x")
    assert (tmp_path / "elsewhere" / "config").is_file()


def test_pack_index_is_shared_between_processes_views(store_url: str) -> None:
    data = os.urandom(3 << 20)
    with cas.open(store_url) as reader, cas.open(store_url) as writer:
        reader.objects.ensure_index()  # loaded before the writer's pack exists
        writer.put(data, "late")
        assert reader.get("late") == data  # a miss refreshes the index


def test_object_hash_is_content_hash(store: cas.Store) -> None:
    ref = store.put(b"x" * 10_000)
    raw = store.objects.get_object(bytes.fromhex(ref.hash))
    assert to_hex(digest(raw)) == ref.hash


def test_threads_naming_the_same_artifact_lose_no_version(store: cas.Store) -> None:
    shared = os.urandom(2 << 20)
    results: list[cas.Ref] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(4):
            ref = store.put(shared + f"{i}-{j}".encode(), "contended")
            with lock:
                results.append(ref)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.number for r in results if r.number is not None) == list(range(1, 33))
    for ref in results:
        assert store.get(f"contended@{ref.number}") == store.get(ref.hash)


def test_batch_of_small_puts(store: cas.Store) -> None:
    values = [{"i": i, "tags": ["x"] * (i % 3)} for i in range(60)]
    with store.batch():
        refs = [store.put(v) for v in values]
        named = store.put({"named": True}, "inside")  # a ref waits for its own data
        assert store.get(refs[0]) == values[0]  # reads see earlier writes
    assert named.number == 1 and store.get("inside") == {"named": True}
    assert [store.get(r) for r in refs] == values
    assert store.fsck().ok


def test_batch_reports_failures(store: cas.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> object:
        raise cas.BackendError("disk full")

    with pytest.raises(cas.BackendError, match="disk full"):
        with store.batch():
            monkeypatch.setattr(store.backend, "open_sink", broken)
            store.put({"lost": 1})


def test_batched_objects_live_in_packs_and_survive_gc(store_url: str) -> None:
    with cas.open(store_url) as store:
        with store.batch():
            unnamed = [store.put({"n": i}) for i in range(20)]
            store.put({"keep": 1}, "kept")
        assert not any(k.startswith("objects/") for k in store.backend.list("objects/"))
        store.gc(grace=0)  # the unnamed ones go, the named one stays
        assert store.get("kept") == {"keep": 1}
        assert not store.exists(unnamed[0].hash)
    with cas.open(store_url) as fresh:  # another process finds packed objects through the index
        ref = fresh.resolve("kept")
        assert fresh.get(ref.hash[:10]) == {"keep": 1}
        assert fresh.fsck().ok

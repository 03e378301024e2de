"""Each error class means one thing: the cases that raise it, the hierarchy, and that only CasErrors escape."""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cas
import cas.errors
from cas import canonical, codec
from cas.hashing import to_hex

ERROR_CLASSES = {
    name: value
    for name, value in vars(cas.errors).items()
    if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == "cas.errors"
}


# -- each meaning raises its own class --------------------------------------------------------


def test_a_missing_remote(local_store: cas.Store) -> None:
    with pytest.raises(cas.RemoteNotFoundError, match="no remotes"):
        local_store.push()
    with pytest.raises(cas.RemoteNotFoundError, match="no remote named 'nope'"):
        local_store.remotes.get("nope")
    with pytest.raises(cas.RemoteNotFoundError):
        local_store.remotes.remove("nope")


def test_several_remotes_and_none_named_is_a_bad_argument(local_store: cas.Store, tmp_path: Path) -> None:
    local_store.remotes.add("one", str(tmp_path / "one"))
    local_store.remotes.add("two", str(tmp_path / "two"))
    with pytest.raises(cas.InvalidArgumentError, match="name one"):
        local_store.remotes.get()
    with pytest.raises(cas.InvalidArgumentError, match="needs a URL"):
        local_store.remotes.add("three", "")


def test_clone_into_an_existing_store(local_store: cas.Store, tmp_path: Path) -> None:
    local_store.put(b"x", "a")
    with cas.open(tmp_path / "there") as there:  # (an empty one is taken for a clone interrupted at its start)
        there.put(b"its own", "own")
    with pytest.raises(cas.StoreExistsError, match="already holds a store"):
        cas.clone(local_store.url, tmp_path / "there")


def test_a_store_written_by_a_newer_cas(tmp_path: Path) -> None:
    cas.open(tmp_path / "s").close()
    config = tmp_path / "s" / "config"
    value = json.loads(config.read_bytes())
    value["format"] = 99
    config.write_text(json.dumps(value))
    with pytest.raises(cas.UnsupportedFormatError, match="upgrade cas"):
        cas.open(tmp_path / "s", create=False)


def test_a_config_format_that_never_existed_is_still_damage(tmp_path: Path) -> None:
    cas.open(tmp_path / "s").close()
    config = tmp_path / "s" / "config"
    value = json.loads(config.read_bytes())
    value["format"] = 0
    config.write_text(json.dumps(value))
    with pytest.raises(cas.InvalidConfigError) as info:
        cas.open(tmp_path / "s", create=False)
    assert not isinstance(info.value, cas.UnsupportedFormatError)


def _stored_file(store: cas.Store, d: bytes) -> Path:
    (found,) = (p for p in Path(store.url).joinpath("objects").rglob("*") if p.name == to_hex(d)[2:])
    return found


def test_an_object_header_of_a_newer_version(local_store: cas.Store) -> None:
    d = local_store.objects.put_object(b"some bytes", loose=True)
    path = _stored_file(local_store, d)
    data = bytearray(path.read_bytes())
    data[len(codec.MAGIC)] = codec.FORMAT_VERSION + 1
    path.write_bytes(bytes(data))
    with pytest.raises(cas.UnsupportedFormatError, match="upgrade cas"):
        local_store.objects.get_object(d)
    data[len(codec.MAGIC)] = 0  # not newer: damage
    path.write_bytes(bytes(data))
    with pytest.raises(cas.CorruptObjectError) as info:
        local_store.objects.get_object(d)
    assert not isinstance(info.value, cas.UnsupportedFormatError)


def test_an_artifact_of_a_newer_schema(local_store: cas.Store) -> None:
    ref = local_store.put(b"x", "a")
    value = canonical.decode(local_store.objects.get_object(bytes.fromhex(ref.hash)))
    value["v"] = 2
    newer = local_store.objects.put_object(canonical.encode(value))
    for call in (local_store.get, local_store.info):
        with pytest.raises(cas.UnsupportedFormatError, match="artifact schema version 2"):
            call(to_hex(newer))


def test_an_object_of_the_wrong_kind(local_store: cas.Store) -> None:
    ref = local_store.put(b"x" * 5000, "a")
    tree = local_store.info(ref).tree
    for call in (local_store.get, local_store.info, local_store.lineage, local_store.run):
        with pytest.raises(cas.WrongObjectKindError, match="is a tree, not a"):
            call(tree)
    with pytest.raises(cas.WrongObjectKindError, match="is a artifact, not a run|is an? artifact, not a run"):
        local_store.run(ref.hash)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.gc(grace=-1), "grace"),
        (lambda s: s.gc(grace=math.nan), "grace"),
        (lambda s: s.gc(grace="soon"), "grace"),
        (lambda s: s.lineage("a", "sideways"), "direction"),
        (lambda s: s.put(b"y", version="v1"), "needs a name"),
        (lambda s: s.put(b"y", tags=["t"]), "needs a name"),
        (lambda s: s.prune_runs(), "older_than"),
        (lambda s: s.push(s.url, on_conflict="maybe"), "on_conflict"),
        (lambda s: s.record_run(step="x", status="bogus"), "status"),
        (lambda s: s.reader("a").read_into(s.reader("a").paths()[0], memoryview(bytearray(2))), "destination"),
    ],
)
def test_bad_arguments(local_store: cas.Store, call: Callable[[cas.Store], Any], message: str) -> None:
    local_store.put(b"x", "a")
    with pytest.raises(cas.InvalidArgumentError, match=message) as info:
        call(local_store)
    assert not isinstance(info.value, cas.InvalidNameError)  # not a naming rule


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("a", path=1),
        lambda s: s.put(b"y", "b", materializer=1),
        lambda s: s.put(b"y", "b", tags=1),
        lambda s: s.lineage("a", depth="2"),
        lambda s: s.du(top="3"),
        lambda s: s.cached_run("key"),
        lambda s: s.record_run(step="x", params=[1]),
        lambda s: cas.open(1),
    ],
)
def test_arguments_of_the_wrong_type(local_store: cas.Store, call: Callable[[cas.Store], Any]) -> None:
    local_store.put(b"x", "a")
    with pytest.raises(cas.ArgumentTypeError, match="must be"):
        call(local_store)


def test_bad_names_stay_invalid_name_errors(local_store: cas.Store) -> None:
    for call in (lambda: local_store.put(b"x", "a//b"), lambda: local_store.untag("a"), lambda: local_store.get("")):
        with pytest.raises(cas.InvalidNameError):
            call()


def test_a_materializer_without_a_name() -> None:
    class Nameless(cas.Materializer):
        name = ""

    with pytest.raises(cas.InvalidArgumentError, match="must set a name"):
        cas.register_materializer(Nameless)


def test_a_visualization_of_an_unknown_media_type() -> None:
    from materializers.visuals import Visualization

    with pytest.raises(cas.InvalidArgumentError, match="media type"):
        Visualization("summary", "application/x-nothing", b"")


def test_a_step_returning_other_outputs_than_declared(local_store: cas.Store) -> None:
    @local_store.step(outputs=["a", "b"])
    def pair() -> int:
        return 1

    with pytest.raises(cas.StepOutputError, match="declares outputs"):
        pair()


# -- the hierarchy ----------------------------------------------------------------------------

#: new class -> the built-in it also is, and the class cas raised for its case before (kept for one release)
COMPATIBLE = {
    cas.InvalidArgumentError: (ValueError, None),
    cas.RemoteNotFoundError: (KeyError, cas.RefNotFoundError),
    cas.StoreExistsError: (FileExistsError, cas.RefExistsError),
    cas.UnsupportedFormatError: (ValueError, cas.CorruptObjectError),
    cas.WrongObjectKindError: (KeyError, cas.ObjectNotFoundError),
    cas.StepOutputError: (TypeError, None),
    cas.ArgumentTypeError: (TypeError, cas.InvalidArgumentError),
}


@pytest.mark.parametrize("cls", list(COMPATIBLE), ids=lambda c: c.__name__)
def test_new_classes_keep_old_except_clauses_working(cls: type[Exception]) -> None:
    builtin, before = COMPATIBLE[cls]
    assert issubclass(cls, cas.CasError) and issubclass(cls, builtin)
    if before is not None:
        assert issubclass(cls, before)


def test_bad_argument_classes_share_a_base() -> None:
    for cls in (cas.InvalidNameError, cas.NonPortablePathError, cas.UnsafeDestinationError):
        assert issubclass(cls, cas.InvalidArgumentError)
    for cls in (cas.InvalidMetadataError, cas.InvalidRunError):
        assert issubclass(cls, cas.InvalidArgumentError) and not issubclass(cls, cas.InvalidNameError)
    assert not issubclass(cas.InvalidArgumentError, cas.InvalidNameError)
    assert not issubclass(cas.UnsupportedFormatError, cas.InvalidConfigError)


def test_every_error_is_a_cas_error_exported_from_cas() -> None:
    for name, cls in ERROR_CLASSES.items():
        assert issubclass(cls, cas.CasError), name
        assert getattr(cas, name) is cls and name in cas.__all__, name


def _documented_tree() -> dict[str, str | None]:
    """Each class in the errors module docstring's tree, with the class it is drawn under."""
    doc = cas.errors.__doc__ or ""
    lines = doc.split("::", 1)[1].split("\n\n", 2)[1].splitlines()
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?(\w+)", line)
        assert match, line
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_the_docstring_tree_draws_every_class_under_its_first_cas_parent() -> None:
    tree = _documented_tree()
    assert set(tree) == set(ERROR_CLASSES)
    for name, parent in tree.items():
        cls = ERROR_CLASSES[name]
        bases = [b for b in cls.__bases__ if b.__module__ == "cas.errors"]
        assert (bases[0].__name__ if bases else None) == parent, name


def test_the_docstring_tree_names_the_built_in_parents() -> None:
    doc = cas.errors.__doc__ or ""
    for name, cls in ERROR_CLASSES.items():
        own = [b.__name__ for b in cls.__bases__ if b.__module__ == "builtins" and b is not Exception]
        for builtin in own:
            assert re.search(rf"{name} \(\+{builtin}\)", doc), (name, builtin)


# -- a sweep: bad argument types to public calls raise CasErrors only -------------------------

BAD_VALUES = [None, 0, -1, 1.5, math.nan, True, b"\xff", "", "??", "a//b", object(), [], {}, ("a",)]

CALLS: dict[str, Callable[[cas.Store, Any], Any]] = {
    "put(name)": lambda s, v: s.put(b"y", v),
    "put(version)": lambda s, v: s.put(b"y", "b", version=v),
    "put(tags)": lambda s, v: s.put(b"y", "b", tags=v),
    "put(metadata)": lambda s, v: s.put(b"y", "b", metadata=v),
    "get": lambda s, v: s.get(v),
    "info": lambda s, v: s.info(v),
    "resolve": lambda s, v: s.resolve(v),
    "exists": lambda s, v: s.exists(v),
    "reader": lambda s, v: s.reader(v),
    "tag": lambda s, v: s.tag("a", v),
    "tag(ref)": lambda s, v: s.tag(v, "t"),
    "untag": lambda s, v: s.untag(v),
    "delete": lambda s, v: s.delete(v),
    "versions": lambda s, v: s.versions(v),
    "log": lambda s, v: list(s.log(v)),
    "lineage": lambda s, v: s.lineage(v),
    "lineage(direction)": lambda s, v: s.lineage("a", v),
    "gc(grace)": lambda s, v: s.gc(dry_run=True, grace=v),
    "run": lambda s, v: s.run(v),
    "producer": lambda s, v: s.producer(v),
    "visualizations": lambda s, v: s.visualizations(v),
    "push(on_conflict)": lambda s, v: s.push(s.url, on_conflict=v),
    "record_run(step)": lambda s, v: s.record_run(step=v),
    "record_run(status)": lambda s, v: s.record_run(step="x", status=v),
    "remotes.get": lambda s, v: s.remotes.get(v),
    "remotes.remove": lambda s, v: s.remotes.remove(v),
    "put(materializer)": lambda s, v: s.put(b"y", "b", materializer=v),
    "get(path)": lambda s, v: s.get("a", path=v),
    "lineage(depth)": lambda s, v: s.lineage("a", "up", v),
    "lineage(limit)": lambda s, v: s.lineage("a", limit=v),
    "log(limit)": lambda s, v: list(s.log(limit=v)),
    "prune_runs(older_than)": lambda s, v: s.prune_runs(older_than=v),
    "prune_runs(keep_last)": lambda s, v: s.prune_runs(keep_last=v),
    "cached_run": lambda s, v: s.cached_run(v),
    "cached_run(expires_after)": lambda s, v: s.cached_run(b"\0" * 32, expires_after=v),
    "du(top)": lambda s, v: s.du(top=v),
    "push(remote)": lambda s, v: s.push(v),
    "pull(refs)": lambda s, v: s.pull(s.url, v),
    "record_run(params)": lambda s, v: s.record_run(step="x", params=v),
    "record_run(started)": lambda s, v: s.record_run(step="x", started=v),
    "remotes.add(url)": lambda s, v: s.remotes.add("o", v),
    "remotes.add(name)": lambda s, v: s.remotes.add(v, "/nowhere"),
    "cas.open": lambda s, v: cas.open(v, create=False),
    "cas.clone": lambda s, v: cas.clone(v, Path(s.url).parent / "clone"),
    "cas.clone(path)": lambda s, v: cas.clone(s.url, v),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_bad_argument_types_raise_only_cas_errors(
    local_store: cas.Store, call: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # "" and "??" are relative paths: a call may write there
    local_store.put(b"x" * 5000, "a")
    for value in BAD_VALUES:
        try:
            CALLS[call](local_store, value)
        except cas.CasError:
            pass  # anything else fails the test

"""cas.keys: every key kind round-trips, malformed keys are refused, and no other module spells a key."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas import keys

digests = st.binary(min_size=32, max_size=32)
numbers = st.integers(min_value=1, max_value=10**12)
_component = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}", fullmatch=True).filter(lambda s: ".." not in s)
names = st.lists(_component, min_size=1, max_size=3).map("/".join)
labels = _component.filter(lambda s: not s.isdigit())

DIGEST_KINDS: list[tuple[Callable[[bytes], str], Callable[[str], bytes | None]]] = [
    (keys.object_key, keys.parse_object_key),
    (keys.pack_key, keys.parse_pack_key),
    (keys.index_key, keys.parse_index_key),
    (keys.chunkmap_key, keys.parse_chunkmap_key),
    (keys.cache_key, keys.parse_cache_key),
    (keys.visualization_key, keys.parse_visualization_key),
]
ALL_PARSERS: list[Callable[[str], object]] = [parse for _, parse in DIGEST_KINDS] + [
    keys.parse_ref_key,
    keys.parse_gone_key,
    keys.parse_names_key,
    keys.parse_runlog_key,
    keys.parse_produced_key,
    keys.parse_consumed_key,
]

D = bytes(range(32))
H = D.hex()


def test_layout_matches_format_md() -> None:
    """The spelled layout is FORMAT.md's: the same example keys come out."""
    assert keys.object_key(D) == f"objects/{H[:2]}/{H[2:]}"
    assert keys.pack_key(D) == f"packs/{H[:2]}/{H}"
    assert keys.index_key(D) == f"index/{H}"
    assert keys.chunkmap_key(D) == f"chunkmaps/{H[:2]}/{H[2:]}"
    assert keys.cache_key(D) == f"cache/{H[:2]}/{H[2:]}"
    assert keys.visualization_key(D) == f"visualizations/{H[:2]}/{H[2:]}"
    assert keys.version_key("team/model", 3) == "refs/team/model/@v/3"
    assert keys.label_key("m", "v1.0") == "refs/m/@label/v1.0"
    assert keys.tag_key("m", "prod") == "refs/m/@tag/prod"
    assert keys.gone_key("m", 2) == "refs/m/@gone/2"
    assert keys.names_key(D, "m", 2) == f"names/{H}/m/@v/2"
    assert keys.produced_key(D, D) == f"produced/{H}/{H}"
    assert keys.consumed_key(D, D) == f"consumed/{H}/{H}"
    assert keys.runlog_key(86400.5, D) == f"runlog/1970-01-02/{86400500000:020d}-{H}"
    assert keys.temp_key("x") == "tmp/x"
    assert (keys.CONFIG_KEY, keys.REMOTES_KEY) == ("config", "remotes")
    layout = Path(__file__).resolve().parents[1].joinpath("FORMAT.md").read_text(encoding="utf-8")
    block = layout.split("## Layout", 1)[1].split("```")[1]
    table = (keys.__doc__ or "").split("::", 1)[1].split("\n\n")[1]

    def patterns(text: str) -> set[str]:
        return {re.match(r"\S+(?: hex>\S*)*", line.strip()).group(0) for line in text.strip().splitlines()}  # type: ignore[union-attr]

    assert patterns(block) == patterns(table)


@given(digests)
def test_digest_keys_round_trip(digest: bytes) -> None:
    for build, parse in DIGEST_KINDS:
        key = build(digest)
        assert parse(key) == digest
        others = [p for _, p in DIGEST_KINDS if p is not parse]
        assert all(p(key) is None for p in others)


@given(names, numbers, labels)
def test_ref_keys_round_trip(name: str, number: int, label: str) -> None:
    assert keys.parse_ref_key(keys.version_key(name, number)) == (name, "v", str(number))
    assert keys.parse_ref_key(keys.label_key(name, label)) == (name, "label", label)
    assert keys.parse_ref_key(keys.tag_key(name, label)) == keys.RefKey(name, "tag", label)
    gone = keys.gone_key(name, number)
    assert keys.parse_ref_key(gone) is None
    assert keys.parse_gone_key(gone) == (name, number)
    assert keys.is_gone_key(gone)
    assert keys.parse_ref_name(keys.tag_key(name, label)) == name
    assert keys.version_key(name, number).startswith(keys.version_folder(name))
    assert keys.label_key(name, label).startswith(keys.label_folder(name))
    assert keys.tag_key(name, label).startswith(keys.tag_folder(name))
    assert gone.startswith(keys.gone_folder(name))
    assert gone.startswith(keys.ref_folder(name))


@given(digests, names, numbers)
def test_names_keys_round_trip(artifact: bytes, name: str, number: int) -> None:
    key = keys.names_key(artifact, name, number)
    assert keys.parse_names_key(key) == keys.NamesEntry(artifact, name, number)
    assert key.startswith(keys.names_folder(artifact))


@given(digests, digests, st.floats(min_value=0, max_value=32503680000.0))
def test_run_index_keys_round_trip(artifact: bytes, run: bytes, ended: float) -> None:
    assert keys.parse_runlog_key(keys.runlog_key(ended, run)) == run
    assert keys.parse_produced_key(keys.produced_key(artifact, run)) == keys.RunLink(artifact, run)
    assert keys.parse_consumed_key(keys.consumed_key(artifact, run)) == (artifact, run)
    assert keys.parse_produced_key(keys.consumed_key(artifact, run)) is None
    assert keys.produced_key(artifact, run).startswith(keys.produced_folder(artifact))
    assert keys.consumed_key(artifact, run).startswith(keys.consumed_folder(artifact))


@pytest.mark.parametrize(
    "key",
    [
        f"objects/{H[:2]}/{H[2:-1]}",  # too short
        f"objects/{H[:2]}/{H[2:]}0",  # too long
        f"objects/{H[:2]}/{H[2:].upper()}",  # not lower-case
        f"objects/{H[:2]}/{H[2:-1]}g",  # not hex
        f"objects/{H[:2]}/ {H[3:]}",  # what bytes.fromhex would skip
        f"objects/{H[:2]}{H[2:]}",  # no fan-out
        f"objects/{H[:2]}/x/{H[2:]}",  # an extra '/'
        f"objects/../{H[2:]}",
        f"packs/{H[:2]}/{H[2:]}",  # a pack is named by its whole id
        f"packs/ff/{H}",  # in another pack's folder
        f"packs/{H[:2]}/{H}/x",
        f"index/{H}/",
        f"index/{H[:-2]}",
        f"index/../{H}",
        f"cache/{H[:2]}/{H[2:]}/",
        f"chunkmaps/{H[:2]}//{H[2:]}",
        f"visualizations/{H}",
        "refs/m/@v/01",  # leading zero
        "refs/m/@v/0",
        "refs/m/@v/x",
        "refs/m/@v/",
        "refs/m/@v/1/2",
        "refs/m/@label/a/b",
        "refs/m/@label/..",
        "refs/m/@tag/",
        "refs/m/@other/x",
        "refs/m/v/1",
        "refs//m/@v/1",
        "refs/m//@v/1",
        "refs/../@v/1",
        "refs/a/../b/@v/1",
        "refs/@v/1",
        "refs/m/@gone/01",
        f"names/{H}/m/@v/01",
        f"names/{H[:-2]}/m/@v/1",
        f"names/{H}/m/@label/x",
        f"names/{H}//@v/1",
        f"names/{H}/../@v/1",
        f"runlog/1970-01-01/{0:020d}-{H[:-2]}",
        f"runlog/1970-01-01/{0:019d}-{H}",
        f"runlog/1970-01-01/x/{0:020d}-{H}",
        f"runlog/{0:020d}-{H}",
        f"produced/{H}/{H}/x",
        f"produced/{H}",
        f"consumed/{H[:-2]}/{H}",
        f"consumed/{H}/../{H}",
        "",
        "config",
        "tmp/x",
    ],
)
def test_malformed_keys_are_refused(key: str) -> None:
    for parse in ALL_PARSERS:
        assert parse(key) is None, (parse.__name__, key)


@given(st.text(max_size=200))
def test_parsers_never_raise(key: str) -> None:
    for parse in ALL_PARSERS:
        parse(key)
        parse("objects/" + key)
        parse("refs/" + key)


# -- the rule: no module but cas/keys.py spells a key ---------------------------------
_PREFIXES = (
    "objects/",
    "packs/",
    "index/",
    "chunkmaps/",
    "refs/",
    "names/",
    "runlog/",
    "cache/",
    "produced/",
    "consumed/",
    "visualizations/",
    "tmp/",
)
_MARKERS = re.compile(r"/@(v|label|tag|gone)/")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_module_but_keys_spells_a_key() -> None:
    """String literals (and f-string parts) outside docstrings never start with a key prefix."""
    root = Path(__file__).resolve().parents[1] / "cas"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "keys.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if node.value.startswith(_PREFIXES) or _MARKERS.search(node.value):
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value[:40]!r}")
    assert not offenders, "spell these keys with cas.keys:\n" + "\n".join(offenders)

"""Names from a store nobody controls: a name never shadows a hash, look-alike names are refused at creation.

The hostile refs are planted as another writer of the store would write them:
a ref record encoded by ``RefRecord.to_bytes``, sealed by ``codec.seal`` and
written through the backend (plus its ``names/`` index entry), bypassing the
name rules that ``put`` applies. No test crosses a size threshold: names are
about refs, and every value here is a few bytes.
"""

from __future__ import annotations

import functools
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import StoreFactory, fresh_store
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cas
from cas import codec
from cas.cli import main
from cas.objects import RefRecord
from cas.refs import check_new_label, check_new_name, names_key


def plant(store: cas.Store, name: str, target_hex: str, number: int = 1) -> None:
    """Write version ``number`` of ``name`` -> ``target_hex`` the way any writer of the store can."""
    record = RefRecord(bytes.fromhex(target_hex), time.time(), number, None)
    assert store.backend.create(f"refs/{name}/@v/{number}", codec.seal(record.to_bytes()))
    store.backend.write(names_key(record.target, name, number), b"")


@pytest.fixture
def pair(store: cas.Store) -> tuple[cas.Ref, cas.Ref]:
    """The victim's artifact and the one a hostile writer wants it to be mistaken for."""
    victim = store.put(b"the victim's bytes", metadata={"who": "victim-7f3a"})
    evil = store.put(b"the attacker's bytes", metadata={"who": "attacker-9c1d"})
    return victim, evil


# -- item 2: a name that spells a hash ----------------------------------------------------
def test_a_name_spelling_a_full_hash_never_wins(store: cas.Store, pair: tuple[cas.Ref, cas.Ref]) -> None:
    victim, evil = pair
    plant(store, victim.hash, evil.hash)
    assert store.get(victim.hash) == b"the victim's bytes"
    assert store.resolve(victim.hash) == cas.Ref(victim.hash)
    assert store.info(victim.hash).user_metadata == {"who": "victim-7f3a"}
    assert store.exists(victim.hash)
    # The planted name is still reachable, explicitly, as a name.
    assert store.get(f"{victim.hash}@1") == b"the attacker's bytes"


def test_a_name_spelling_a_hash_prefix_is_ambiguous(store: cas.Store, pair: tuple[cas.Ref, cas.Ref]) -> None:
    victim, evil = pair
    for length in (6, 8, 12, 63):
        plant(store, victim.hash[:length], evil.hash)
        with pytest.raises(cas.AmbiguousRefError, match="both a name and a prefix"):
            store.get(victim.hash[:length])
        with pytest.raises(cas.AmbiguousRefError):
            store.info(victim.hash[:length])
        assert store.get(f"{victim.hash[:length]}@1") == b"the attacker's bytes"
    assert store.get(victim.hash) == b"the victim's bytes"


def test_a_hex_name_that_matches_no_hash_is_still_a_name(store: cas.Store, pair: tuple[cas.Ref, cas.Ref]) -> None:
    victim, evil = pair
    unused = next(c * 8 for c in "0123456789abcdef" if not victim.hash.startswith(c) and not evil.hash.startswith(c))
    unused = unused if not any(h.startswith(unused) for h in _all_hashes(store)) else "f00dfeed" * 2
    plant(store, unused, evil.hash)
    assert store.get(unused) == b"the attacker's bytes"  # written before the rules: still readable
    assert store.resolve(unused).name == unused


def _all_hashes(store: cas.Store) -> Iterator[str]:
    for key in store.backend.list("objects/"):
        yield key.split("/")[1] + key.split("/")[2]


def test_the_ui_page_of_a_hash_shows_that_hash(local_store: cas.Store) -> None:
    from cas.ui.app import create_app

    victim = local_store.put(b"the victim's bytes", metadata={"who": "victim-7f3a"})
    evil = local_store.put(b"the attacker's bytes", metadata={"who": "attacker-9c1d"})
    plant(local_store, victim.hash, evil.hash)
    plant(local_store, victim.hash[:8], evil.hash)
    client = create_app(local_store).test_client()
    page = client.get(f"/artifact/{victim.hash}")
    assert page.status_code == 200
    assert b"victim-7f3a" in page.data and b"attacker-9c1d" not in page.data
    download = client.get(f"/artifact/{victim.hash}/download")
    assert download.data == b"the victim's bytes"
    listing = client.get("/artifacts")  # the planted names are listed as names, with their own target
    assert listing.status_code == 200
    assert listing.data.count(f'href="/artifact/{evil.hash}"'.encode()) == 2
    assert f'href="/artifact/{victim.hash}"'.encode() not in listing.data


def test_names_that_read_as_hashes_are_refused_at_creation(store: cas.Store, pair: tuple[cas.Ref, cas.Ref]) -> None:
    victim, _ = pair
    for name in (victim.hash, victim.hash[:8], victim.hash[:6], "deadbeef", "DEADBEEF", "20240101", "0" * 64):
        with pytest.raises(cas.InvalidNameError, match="hash"):
            store.put(b"x", name)
    for name in ("abcde", "deadbeefx", "run-20240101", "team/deadbeef"):  # too short, not all hex, or with a '/'
        assert store.get(store.put(name.encode(), name).name or "") == name.encode()
    assert set(store.names()) == {"abcde", "deadbeefx", "run-20240101", "team/deadbeef"}


# -- item 15: look-alike names ------------------------------------------------------------
LOOKALIKES = {
    "m\u043edel": "scripts",  # Cyrillic o in a Latin word
    "\u0430pple": "scripts",  # Cyrillic a
    "\u03b2-vae": "scripts",  # Greek beta beside Latin letters
    "mo\u200bdel": "invisible",  # zero-width space
    "\u202emodel": "invisible",  # right-to-left override
    "mo\u00addel": "invisible",  # soft hyphen
    "mo\u2060del": "invisible",  # word joiner
    "model\ufe0f": "invisible",  # variation selector
    "a\u00a0b": "invisible",  # no-break space
    "a\u3000b": "invisible",  # ideographic space
    "a\u2028b": "invisible",  # line separator
    "a\ue000b": "invisible",  # private use
    "a\U000e0041b": "invisible",  # tag character
    "x\u3164y": "invisible",  # Hangul filler
    "CON": "device",
    "nul": "device",
    "Aux.txt": "device",
    "team/com1": "device",
    "lpt9.tar.gz": "device",
    "conout$": "device",
    "cafe\u0301": "NFC",  # e + combining acute: NFD
    "\uff4dodel": "compatibility",  # full-width m
    "\ufb01le": "compatibility",  # fi ligature
    "x\u00b2": "compatibility",  # superscript two
    "team\u2215model": "punctuation",  # division slash
    "team\u2044model": "punctuation",  # fraction slash
    "model\u2013v2": "punctuation",  # en dash
    "a\u01c0b": "U\\+01C0",  # Latin letter dental click, drawn as '|'
    "\u0301x": "combining",
    "v1\u0663": "numbering",  # Arabic-Indic three beside an ASCII digit
    "a\udcffb": "surrogate",
}


@pytest.mark.parametrize("name", list(LOOKALIKES))
def test_lookalike_names_are_refused_at_creation(local_store: cas.Store, name: str) -> None:
    with pytest.raises(cas.InvalidNameError, match=LOOKALIKES[name]):
        local_store.put(b"x", name)
    with pytest.raises(cas.InvalidNameError):
        check_new_name(name)
    assert not list(local_store.backend.list("refs/"))


@pytest.mark.parametrize("label", ["CON", "v1\u200b", "v\u0456", "r\u00e9sum\u0065\u0301", "x\u2215y", "a\udcff"])
def test_lookalike_labels_and_tags_are_refused(local_store: cas.Store, label: str) -> None:
    with pytest.raises(cas.InvalidNameError):
        local_store.put(b"x", "n", version=label)
    with pytest.raises(cas.InvalidNameError):
        local_store.put(b"x", "n", tags=[label])
    local_store.put(b"x", "n")
    with pytest.raises(cas.InvalidNameError, match=label[:1]):
        local_store.tag("n@1", label)
    assert set(local_store.refs.tags("n")) == set() and set(local_store.refs.labels("n")) == set()


@pytest.mark.parametrize(
    "name",
    ["\u043c\u043e\u0434\u0435\u043b\u044c", "team/\u043c\u043e\u0434\u0435\u043b\u044c", "\u65e5\u672c\u8a9e\u30e2\u30c7\u30ebv2",
     "caf\u00e9", "rocket-\U0001f680", "\ud55c\uad6d\uc5b4-\u6f22\u5b57", "\u03b1/beta", "con-x", "console", "com10"],
)  # fmt: skip
def test_honest_unicode_names_are_accepted(store: cas.Store, name: str) -> None:
    assert check_new_name(name) == name
    ref = store.put(name.encode(), name, tags=["prod"])
    assert store.get(name) == name.encode() and store.get(f"{name}@prod") == name.encode()
    assert ref.name == name and name in set(store.names())


# -- case and Unicode form collisions -------------------------------------------------------
def test_names_differing_only_in_case_collide(store: cas.Store) -> None:
    store.put(b"1", "Model")
    store.put(b"2", "team/a")
    for name in ("model", "MODEL", "Team/b", "TEAM/A"):
        with pytest.raises(cas.InvalidNameError, match="case"):
            store.put(b"x", name)
    assert store.put(b"3", "Model").version == 2  # a new version of the same name is fine
    assert store.put(b"4", "team/b").name == "team/b"  # same folder spelling
    assert store.put(b"5", "Models").name == "Models"
    assert set(store.names()) == {"Model", "team/a", "team/b", "Models"}


def test_case_collision_with_a_name_another_writer_made(store_url: str) -> None:
    with cas.open(store_url) as first, cas.open(store_url) as second:
        second.put(b"0", "seed")  # second has listed the store's names
        first.put(b"1", "Stra\u00dfe")
        with cas.open(store_url) as third:  # a new process sees it at once
            with pytest.raises(cas.InvalidNameError, match="case"):
                third.put(b"x", "STRASSE")


def test_a_new_nfc_name_collides_with_a_planted_nfd_one(store: cas.Store, pair: tuple[cas.Ref, cas.Ref]) -> None:
    victim, _ = pair
    plant(store, unicodedata.normalize("NFD", "caf\u00e9"), victim.hash)
    with pytest.raises(cas.InvalidNameError, match="Unicode form"):
        store.put(b"x", "caf\u00e9")


def test_tags_and_labels_differing_only_in_case_collide(store: cas.Store) -> None:
    store.put(b"1", "n", version="Release-1", tags=["Prod"])
    with pytest.raises(cas.InvalidNameError, match="case"):
        store.put(b"2", "n", version="release-1")
    with pytest.raises(cas.InvalidNameError, match="case"):
        store.tag("n@1", "prod")
    store.tag("n@1", "Prod")  # moving the same tag is fine
    assert store.get("n@Prod") == b"1"


# -- names already in a store stay readable -----------------------------------------------------
LEGACY = ["CON", "m\u043edel", "x\u200by", unicodedata.normalize("NFD", "caf\u00e9"), "nul.txt", "\uff4dodel"]


def test_names_the_new_rules_refuse_stay_readable(store: cas.Store) -> None:
    targets = {}
    for i, name in enumerate(LEGACY):
        with pytest.raises(cas.InvalidNameError):
            check_new_name(name)
        targets[name] = store.put(f"value {i}".encode()).hash
        plant(store, name, targets[name])
    assert set(store.names()) >= set(LEGACY)
    for i, name in enumerate(LEGACY):
        assert store.get(name) == f"value {i}".encode()
        assert store.get(f"{name}@1") == f"value {i}".encode()
        assert store.info(name).ref.hash == targets[name]
        assert [v.ref.hash for v in store.log(name)] == [targets[name]]
        assert [r.hash for r in store.versions(name)] == [targets[name]]
        assert store.put(b"newer", name).version == 2  # an existing name keeps getting versions
        store.tag(f"{name}@2", "latest-good")
        assert store.get(f"{name}@latest-good") == b"newer"
        store.delete(f"{name}@1")
        store.delete(f"{name}@2")
        assert not store.exists(name)


# -- item 12: lone surrogates raise a typed error, everywhere --------------------------------------
@pytest.mark.parametrize("ref", ["\udcff", "a\udcffb", "a@\udcff", "\udcff@1", "team/\ud800", "deadbee\udcff"])
def test_lone_surrogates_raise_invalid_name(store: cas.Store, ref: str) -> None:
    with pytest.raises(cas.InvalidNameError, match="surrogate"):
        store.get(ref)
    with pytest.raises(cas.InvalidNameError):
        store.resolve(ref)
    with pytest.raises(cas.InvalidNameError):
        store.exists(ref)
    with pytest.raises(cas.InvalidNameError):
        store.put(b"x", ref)
    with pytest.raises(cas.InvalidNameError):
        store.put(b"x", "ok", tags=[ref])
    with pytest.raises(cas.InvalidNameError):
        store.log(ref.replace("@", ""))
    with pytest.raises(cas.InvalidNameError):
        check_new_label(ref.split("@")[-1] or "x\udcff", "tag")


def test_lone_surrogates_on_the_command_line(store: cas.Store, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    runner = CliRunner()
    for args in (["get", "x\udcff"], ["show", "\udcff@1"], ["put", str(tmp_path / "a.txt"), "-n", "\udcff"]):
        result = runner.invoke(main, ["--store", store.url, *args])
        assert result.exit_code == 1, (args, result.output, result.exception)
        assert "surrogate" in result.output and "Traceback" not in result.output


def test_a_planted_undecodable_name_is_left_out_of_listings(local_store: cas.Store) -> None:
    target = local_store.put(b"x", "honest")
    record = RefRecord(bytes.fromhex(target.hash), time.time(), 1, None)
    # On a local disk a file name that is not UTF-8 lists as a lone surrogate.
    local_store.backend.create("refs/bad\udcff/@v/1", codec.seal(record.to_bytes()))
    assert list(local_store.names()) == ["honest"]
    with pytest.raises(cas.InvalidNameError):
        local_store.get("bad\udcff")


# -- every name either works or is refused with InvalidNameError ---------------------------------------
_ANY_CHAR = st.characters(codec=None, categories=None)  # surrogates, controls, unassigned: everything
_NAME_CHAR = st.one_of(
    st.sampled_from("abcdefxyzABCDEFXYZ0123456789_"),
    st.sampled_from("/.-_@ \u00e9\u0301\u0435\u043e\u03b1\u200b\u4e2d\u30a2\U0001f680"),
    _ANY_CHAR,
)


@pytest.fixture(params=["local", "memory"])
def quick_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Stores without a server, one per example (``with quick_store() as store``): hundreds of examples each."""
    return functools.partial(fresh_store, request.param, tmp_path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(_NAME_CHAR, min_size=0, max_size=20), label=st.text(_NAME_CHAR, max_size=6))
def test_any_name_round_trips_or_is_refused(quick_store: StoreFactory, name: str, label: str) -> None:
    with quick_store() as local_store:  # a store per example: nothing left by the examples before
        value = f"{name!r}/{label!r}".encode("ascii", "backslashreplace")
        try:
            ref = local_store.put(value, name)
        except cas.InvalidNameError:
            event("refused")
        else:
            event("accepted")
            assert ref.name == name
            assert local_store.get(name) == value and local_store.get(ref) == value
            assert list(local_store.names()) == [name]  # the store is this example's alone
            try:
                local_store.tag(f"{name}@{ref.number}", label)
            except cas.InvalidNameError:
                pass
            else:
                assert local_store.get(f"{name}@{label}") == value
        try:
            local_store.get(name + "@" + label if label else name)
        except (cas.InvalidNameError, cas.RefNotFoundError, cas.AmbiguousRefError, cas.ObjectNotFoundError):
            pass

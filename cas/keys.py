"""Every key of a store: how each kind is spelled, and how to read one back.

This module is the only one that spells a key. The whole layout (FORMAT.md,
"Layout"); every key is relative to the store's root::

    config                          CONFIG_KEY: JSON settings, written once at creation
    remotes                         REMOTES_KEY: this store's remotes (local; never copied)
    objects/<2 hex>/<62 hex>        object_key: a loose object, named by its hash
    packs/<2 hex>/<64 hex>          pack_key: a pack, named by its id
    index/<64 hex>                  index_key: a copy of a pack's index (packs no table covers yet)
    midx/<64 hex>                   table_key: a chunk table over many packs, named by its hash (format 2)
    chunkmaps/<2 hex>/<62 hex>      chunkmap_key: a chunk map, by whole-file digest (sealed)
    refs/<name>/@v/<n>              version_key: version n of a name (sealed)
    refs/<name>/@label/<label>      label_key: an explicit version label (sealed)
    refs/<name>/@tag/<tag>          tag_key: a tag (sealed)
    refs/<name>/@gone/<n>           gone_key: empty, version n was deleted
    names/<artifact>/<name>/@v/<n>  names_key: empty, reverse index of versions
    runlog/<YYYY-MM-DD>/<µs>-<run>  runlog_key: empty, every run by end time (20-digit µs)
    cache/<2 hex>/<62 hex>          cache_key: the completed run to reuse for a cache key (sealed)
    produced/<artifact>/<run>       produced_key: empty, completed runs that output the artifact
    consumed/<artifact>/<run>       consumed_key: empty, runs that took the artifact as input
    visualizations/<2 hex>/<62 hex> visualization_key: an artifact's visualizations (sealed)
    tmp/                            temporary files of the local backend; never read

Each ``*_key`` function builds a key and the matching ``parse_*`` reads one
back. Keys come from listings of an untrusted store, so a parser returns None
for anything this module would not have written (wrong length, upper-case or
non-hex digits, an extra ``/``, ``..``, a number with leading zeros): such keys
are strays (FORMAT.md R1). The ``*_FOLDER`` constants are the prefixes to list.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

__all__ = [
    "CACHE_FOLDER",
    "CHUNKMAPS_FOLDER",
    "CONFIG_KEY",
    "CONSUMED_FOLDER",
    "HEX_FOLDERS",
    "INDEX_FOLDER",
    "TABLES_FOLDER",
    "NAMES_FOLDER",
    "OBJECTS_FOLDER",
    "PACKS_FOLDER",
    "PRODUCED_FOLDER",
    "REFS_FOLDER",
    "REF_KINDS",
    "REMOTES_KEY",
    "RUNLOG_FOLDER",
    "TMP_FOLDER",
    "VISUALIZATIONS_FOLDER",
    "NamesEntry",
    "RefKey",
    "RunLink",
    "cache_key",
    "chunkmap_key",
    "consumed_folder",
    "consumed_key",
    "gone_folder",
    "gone_key",
    "index_key",
    "table_key",
    "is_gone_key",
    "label_folder",
    "label_key",
    "names_folder",
    "names_key",
    "object_folder",
    "object_key",
    "pack_key",
    "parse_cache_key",
    "parse_chunkmap_key",
    "parse_consumed_key",
    "parse_gone_key",
    "parse_index_key",
    "parse_table_key",
    "parse_names_key",
    "parse_object_key",
    "parse_pack_key",
    "parse_produced_key",
    "parse_ref_key",
    "parse_ref_name",
    "parse_runlog_key",
    "parse_visualization_key",
    "produced_folder",
    "produced_key",
    "ref_folder",
    "runlog_key",
    "tag_folder",
    "tag_key",
    "temp_key",
    "version_folder",
    "version_key",
    "visualization_key",
]

CONFIG_KEY = "config"
REMOTES_KEY = "remotes"
OBJECTS_FOLDER = "objects/"
PACKS_FOLDER = "packs/"
INDEX_FOLDER = "index/"
TABLES_FOLDER = "midx/"
CHUNKMAPS_FOLDER = "chunkmaps/"
REFS_FOLDER = "refs/"
NAMES_FOLDER = "names/"
RUNLOG_FOLDER = "runlog/"
CACHE_FOLDER = "cache/"
PRODUCED_FOLDER = "produced/"
CONSUMED_FOLDER = "consumed/"
VISUALIZATIONS_FOLDER = "visualizations/"
TMP_FOLDER = "tmp/"

#: Folders whose entries are named by hex digits (an object store can list them 16 ways at once).
HEX_FOLDERS = (OBJECTS_FOLDER, NAMES_FOLDER, PRODUCED_FOLDER, CONSUMED_FOLDER, CACHE_FOLDER)
#: The kinds of ref file a name's folder holds that point at a version (``@gone`` is a tombstone).
REF_KINDS = ("v", "label", "tag")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NUMBER = re.compile(r"[1-9][0-9]*")
_RUNLOG_NAME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})/([0-9]{20})-([0-9a-f]{64})")


class RefKey(NamedTuple):
    """The parts of ``refs/<name>/@<kind>/<selector>`` (kind ``v``, ``label`` or ``tag``)."""

    name: str
    kind: str
    selector: str


class NamesEntry(NamedTuple):
    """The parts of ``names/<artifact>/<name>/@v/<n>``."""

    artifact: bytes
    name: str
    number: int


class RunLink(NamedTuple):
    """The parts of ``produced/<artifact>/<run>`` or ``consumed/<artifact>/<run>``."""

    artifact: bytes
    run: bytes


# -- digests ------------------------------------------------------------------
def _split(folder: str, digest: bytes) -> str:
    text = digest.hex()
    return f"{folder}{text[:2]}/{text[2:]}"


def _parse_split(folder: str, key: str) -> bytes | None:
    """The digest in ``<folder><2 hex>/<62 hex>``, or None."""
    if not key.startswith(folder) or key[len(folder) + 2 : len(folder) + 3] != "/":
        return None
    text = key[len(folder) : len(folder) + 2] + key[len(folder) + 3 :]
    return bytes.fromhex(text) if _HEX64.fullmatch(text) else None


def _parse_whole(folder: str, key: str) -> bytes | None:
    """The digest in ``<folder><64 hex>``, or None."""
    if not key.startswith(folder):
        return None
    text = key[len(folder) :]
    return bytes.fromhex(text) if _HEX64.fullmatch(text) else None


def object_key(digest: bytes) -> str:
    """``objects/<2 hex>/<62 hex>``: a loose object."""
    return _split(OBJECTS_FOLDER, digest)


def object_folder(hex_prefix: str) -> str:
    """``objects/<2 hex>/``: the folder holding the loose objects whose hash starts with ``hex_prefix``."""
    return f"{OBJECTS_FOLDER}{hex_prefix[:2]}/"


def parse_object_key(key: str) -> bytes | None:
    """The hash a loose object's key names, or None for a stray."""
    return _parse_split(OBJECTS_FOLDER, key)


def pack_key(pack_id: bytes) -> str:
    """``packs/<2 hex>/<64 hex>``: a pack (the whole id is repeated after the fan-out folder)."""
    text = pack_id.hex()
    return f"{PACKS_FOLDER}{text[:2]}/{text}"


def parse_pack_key(key: str) -> bytes | None:
    """The pack id a pack's key names, or None for a stray."""
    if not key.startswith(PACKS_FOLDER):
        return None
    fan, sep, text = key[len(PACKS_FOLDER) :].partition("/")
    return bytes.fromhex(text) if sep and _HEX64.fullmatch(text) and text[:2] == fan else None


def index_key(pack_id: bytes) -> str:
    """``index/<64 hex>``: the copy of a pack's index."""
    return f"{INDEX_FOLDER}{pack_id.hex()}"


def parse_index_key(key: str) -> bytes | None:
    """The pack id an index copy's key names, or None for a stray."""
    return _parse_whole(INDEX_FOLDER, key)


def table_key(table_id: bytes) -> str:
    """``midx/<64 hex>``: a chunk table, named by the digest of its bytes."""
    return f"{TABLES_FOLDER}{table_id.hex()}"


def parse_table_key(key: str) -> bytes | None:
    """The id a chunk table's key names, or None for a stray."""
    return _parse_whole(TABLES_FOLDER, key)


def chunkmap_key(file_hash: bytes) -> str:
    """``chunkmaps/<2 hex>/<62 hex>``: the chunk map of a file, by its whole-file digest."""
    return _split(CHUNKMAPS_FOLDER, file_hash)


def parse_chunkmap_key(key: str) -> bytes | None:
    """The file digest a chunk map's key names, or None for a stray."""
    return _parse_split(CHUNKMAPS_FOLDER, key)


def cache_key(run_cache_key: bytes) -> str:
    """``cache/<2 hex>/<62 hex>``: the cache entry of a run cache key."""
    return _split(CACHE_FOLDER, run_cache_key)


def parse_cache_key(key: str) -> bytes | None:
    """The run cache key a cache entry's key names, or None for a stray."""
    return _parse_split(CACHE_FOLDER, key)


def visualization_key(artifact: bytes) -> str:
    """``visualizations/<2 hex>/<62 hex>``: the visualizations record of an artifact."""
    return _split(VISUALIZATIONS_FOLDER, artifact)


def parse_visualization_key(key: str) -> bytes | None:
    """The artifact a visualizations record's key names, or None for a stray."""
    return _parse_split(VISUALIZATIONS_FOLDER, key)


def temp_key(name: str) -> str:
    """``tmp/<name>``: a temporary file (never read as data; gc removes old ones)."""
    return f"{TMP_FOLDER}{name}"


# -- refs -----------------------------------------------------------------------
def _plausible_name(name: str) -> bool:
    """What every stored name satisfies (``cas.refs.check_name`` says the rest)."""
    return bool(name) and not (
        name.startswith("/") or name.endswith("/") or "//" in name or ".." in name or "@" in name
    )


def _plausible_selector(kind: str, selector: str) -> bool:
    if kind in ("v", "gone"):
        return bool(_NUMBER.fullmatch(selector))
    return bool(selector) and "/" not in selector and ".." not in selector and "@" not in selector


def ref_folder(name: str) -> str:
    """``refs/<name>/``: every ref file of a name."""
    return f"{REFS_FOLDER}{name}/"


def version_folder(name: str) -> str:
    """``refs/<name>/@v/``."""
    return f"{REFS_FOLDER}{name}/@v/"


def label_folder(name: str) -> str:
    """``refs/<name>/@label/``."""
    return f"{REFS_FOLDER}{name}/@label/"


def tag_folder(name: str) -> str:
    """``refs/<name>/@tag/``."""
    return f"{REFS_FOLDER}{name}/@tag/"


def gone_folder(name: str) -> str:
    """``refs/<name>/@gone/``."""
    return f"{REFS_FOLDER}{name}/@gone/"


def version_key(name: str, number: int | str) -> str:
    """``refs/<name>/@v/<n>``: version ``number`` of ``name``."""
    return f"{version_folder(name)}{number}"


def label_key(name: str, label: str) -> str:
    """``refs/<name>/@label/<label>``: an explicit version label."""
    return f"{label_folder(name)}{label}"


def tag_key(name: str, tag: str) -> str:
    """``refs/<name>/@tag/<tag>``: a tag."""
    return f"{tag_folder(name)}{tag}"


def gone_key(name: str, number: int | str) -> str:
    """``refs/<name>/@gone/<n>``: the tombstone of a deleted version number."""
    return f"{gone_folder(name)}{number}"


def _parse_ref(key: str) -> RefKey | None:
    if not key.startswith(REFS_FOLDER):
        return None
    name, sep, rest = key[len(REFS_FOLDER) :].partition("/@")
    kind, sep2, selector = rest.partition("/")
    if not sep or not sep2 or not _plausible_name(name) or not _plausible_selector(kind, selector):
        return None
    return RefKey(name, kind, selector)


def parse_ref_key(key: str) -> RefKey | None:
    """``refs/<name>/@<kind>/<selector>`` -> RefKey (kind v, label or tag); None for tombstones and strays."""
    found = _parse_ref(key)
    return found if found is not None and found.kind in REF_KINDS else None


def parse_gone_key(key: str) -> tuple[str, int] | None:
    """``refs/<name>/@gone/<n>`` -> (name, n); None for anything else."""
    found = _parse_ref(key)
    return (found.name, int(found.selector)) if found is not None and found.kind == "gone" else None


def is_gone_key(key: str) -> bool:
    """True for a key in some name's ``@gone/`` folder (a tombstone, or a stray there)."""
    return "/@gone/" in key


def parse_ref_name(key: str) -> str:
    """The ``<name>`` part of any key under ``refs/`` (the text before its first ``/@``)."""
    return key[len(REFS_FOLDER) :].partition("/@")[0] if key.startswith(REFS_FOLDER) else ""


def names_folder(artifact: bytes) -> str:
    """``names/<artifact>/``: the reverse-index entries of one artifact."""
    return f"{NAMES_FOLDER}{artifact.hex()}/"


def names_key(artifact: bytes, name: str, number: int | str) -> str:
    """``names/<artifact>/<name>/@v/<n>``: version ``number`` of ``name`` is ``artifact``."""
    return f"{names_folder(artifact)}{name}/@v/{number}"


def parse_names_key(key: str) -> NamesEntry | None:
    """``names/<artifact>/<name>/@v/<n>`` -> NamesEntry; None for strays."""
    if not key.startswith(NAMES_FOLDER):
        return None
    head, _, rest = key[len(NAMES_FOLDER) :].partition("/")
    name, sep, number = rest.rpartition("/@v/")
    if not sep or not _HEX64.fullmatch(head) or not _plausible_name(name) or not _NUMBER.fullmatch(number):
        return None
    return NamesEntry(bytes.fromhex(head), name, int(number))


# -- run index -------------------------------------------------------------------
def runlog_key(ended: float, run: bytes) -> str:
    """``runlog/<YYYY-MM-DD>/<µs, 20 digits>-<run>``: a run, by its end time (UTC)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(ended))
    return f"{RUNLOG_FOLDER}{day}/{int(ended * 1e6):020d}-{run.hex()}"


def parse_runlog_key(key: str) -> bytes | None:
    """The run hash in a ``runlog/`` key, or None for a stray."""
    if not key.startswith(RUNLOG_FOLDER):
        return None
    found = _RUNLOG_NAME.fullmatch(key[len(RUNLOG_FOLDER) :])
    return bytes.fromhex(found.group(3)) if found else None


def produced_folder(artifact: bytes) -> str:
    """``produced/<artifact>/``."""
    return f"{PRODUCED_FOLDER}{artifact.hex()}/"


def consumed_folder(artifact: bytes) -> str:
    """``consumed/<artifact>/``."""
    return f"{CONSUMED_FOLDER}{artifact.hex()}/"


def produced_key(artifact: bytes, run: bytes) -> str:
    """``produced/<artifact>/<run>``: ``run`` completed with ``artifact`` among its outputs."""
    return f"{produced_folder(artifact)}{run.hex()}"


def consumed_key(artifact: bytes, run: bytes) -> str:
    """``consumed/<artifact>/<run>``: ``run`` took ``artifact`` as an input."""
    return f"{consumed_folder(artifact)}{run.hex()}"


def _parse_link(folder: str, key: str) -> RunLink | None:
    if not key.startswith(folder):
        return None
    artifact, sep, run = key[len(folder) :].partition("/")
    if not sep or not _HEX64.fullmatch(artifact) or not _HEX64.fullmatch(run):
        return None
    return RunLink(bytes.fromhex(artifact), bytes.fromhex(run))


def parse_produced_key(key: str) -> RunLink | None:
    """``produced/<artifact>/<run>`` -> RunLink; None for strays."""
    return _parse_link(PRODUCED_FOLDER, key)


def parse_consumed_key(key: str) -> RunLink | None:
    """``consumed/<artifact>/<run>`` -> RunLink; None for strays."""
    return _parse_link(CONSUMED_FOLDER, key)

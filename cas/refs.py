"""Names, versions and tags: the mutable layer over immutable artifacts.

Layout::

    refs/<name>/@v/<n>          version n of a name (1, 2, 3...), created exclusively
    refs/<name>/@label/<label>  an explicit version label ("v1.0"), created exclusively
    refs/<name>/@tag/<tag>      a tag; moving it is an overwrite
    refs/<name>/@gone/<n>       empty: version n was deleted; its number is never reused
    names/<artifact>/<name>/@v/<n>  empty: which versions point at an artifact

Names may contain ``/`` (``team/model``) but never ``@``, so the ``@``
folders can not clash with a name's own components.

Two sets of rules: ``check_name``/``check_label`` say what can be stored and
looked up (any name already in a store that passes them stays readable);
``check_new_name``/``check_new_label`` add the look-alike rules of
``cas.lookalikes`` and are what creating a name, label or tag must pass.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cas import codec, lookalikes
from cas.backends.base import Backend
from cas.errors import (
    CorruptObjectError,
    InvalidNameError,
    RefExistsError,
    RefNotFoundError,
)
from cas.keys import (
    NAMES_FOLDER,
    REFS_FOLDER,
    gone_folder,
    gone_key,
    is_gone_key,
    label_folder,
    label_key,
    names_folder,
    names_key,
    parse_names_key,
    parse_ref_key,
    parse_ref_name,
    tag_folder,
    tag_key,
    version_folder,
    version_key,
)
from cas.objects import RefRecord

MAX_NAME_LENGTH = 255
MAX_LABEL_LENGTH = 128
_FORBIDDEN = set(' ~^:?*[\\@"<>|')
_DIGITS = re.compile(r"[0-9]+")
_MAX_ATTEMPTS = 10_000
# How long a listing of the store's names answers "does a name differing only in case exist?"
_FOLDS_TTL = 10.0


def check_name(name: str) -> str:
    """Validate an artifact name, git check-ref-format style; raise InvalidNameError naming the rule."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("a name must be a non-empty string")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} bytes")
    _check_chars(name, "name")
    if name.startswith("/") or name.endswith("/"):
        raise InvalidNameError(f"name {name!r} must not begin or end with '/'")
    if "//" in name:
        raise InvalidNameError(f"name {name!r} must not contain '//'")
    if ".." in name:
        raise InvalidNameError(f"name {name!r} must not contain '..'")
    for part in name.split("/"):
        if part.startswith(".") or part.startswith("-"):
            raise InvalidNameError(f"name {name!r}: a component must not begin with '.' or '-'")
        if part.endswith(".") or part.endswith(".lock"):
            raise InvalidNameError(f"name {name!r}: a component must not end with '.' or '.lock'")
    return name


def check_label(label: str, kind: str = "version") -> str:
    """Validate a version label or tag: like a name component, and not all digits."""
    if not isinstance(label, str) or not label:
        raise InvalidNameError(f"a {kind} must be a non-empty string")
    if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL_LENGTH:
        raise InvalidNameError(f"{kind} {label[:40]!r}... is longer than {MAX_LABEL_LENGTH} bytes")
    _check_chars(label, kind)
    if "/" in label:
        raise InvalidNameError(f"{kind} {label!r} must not contain '/'")
    if label.startswith(".") or label.startswith("-") or label.endswith(".") or ".." in label:
        raise InvalidNameError(f"{kind} {label!r} must not begin with '.' or '-', end with '.' or contain '..'")
    if _DIGITS.fullmatch(label):
        raise InvalidNameError(f"{kind} {label!r} is all digits; numbers are reserved for version numbers")
    return label


def check_new_name(name: str) -> str:
    """``check_name``, and the rules a name must pass to be created (``cas.lookalikes``)."""
    check_name(name)
    lookalikes.check_hashlike(name)
    for part in name.split("/"):
        lookalikes.check_component(part, name, "name")
    return name


def check_new_label(label: str, kind: str = "version") -> str:
    """``check_label``, and the rules a version label or tag must pass to be created."""
    check_label(label, kind)
    lookalikes.check_component(label, label, kind)
    return label


def _check_chars(text: str, kind: str) -> None:
    for ch in text:
        if ord(ch) < 32 or ord(ch) == 127:
            raise InvalidNameError(f"{kind} {text!r} contains a control character or NUL")
        if ch in _FORBIDDEN:
            raise InvalidNameError(f"{kind} {text!r} contains the forbidden character {ch!r}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no key can spell it
            raise InvalidNameError(
                f"{kind} {text!r} is not valid Unicode text (it contains a lone surrogate)"
            ) from None


def _case_twin(name: str, folds: dict[str, str]) -> str | None:
    """Why ``name`` would share a case-insensitive folder with a name in ``folds`` (None if not)."""
    for prefix in _prefixes(name):
        other = folds.get(lookalikes.fold(prefix))
        if other is not None and other != prefix:
            return (
                f"{prefix!r} differs only in case or Unicode form from {other!r}, already in the store; "
                "on a case-insensitive disk (macOS, Windows) the two would be one folder"
            )
    return None


def _prefixes(name: str) -> Iterator[str]:
    """``a``, ``a/b``, ``a/b/c`` for ``a/b/c``: the folders a name's files go in."""
    end = name.find("/")
    while end != -1:
        yield name[:end]
        end = name.find("/", end + 1)
    yield name


@dataclass(frozen=True, slots=True)
class RefSpec:
    """A parsed ``name[@version|@label|@tag]`` string."""

    name: str
    selector: str | None  # None: the latest version


def parse_ref(text: str) -> RefSpec:
    """Split ``name@x``; validate both halves."""
    if not isinstance(text, str):
        raise InvalidNameError(f"a ref must be a string, not {type(text).__name__}")
    name, sep, selector = text.partition("@")
    check_name(name)
    if not sep:
        return RefSpec(name, None)
    if not _DIGITS.fullmatch(selector):
        check_label(selector, "version or tag")
    elif selector.startswith("0"):
        raise InvalidNameError(f"version number {selector!r} must not have leading zeros")
    return RefSpec(name, selector)


def _encode(record: RefRecord) -> bytes:
    return codec.seal(record.to_bytes())  # ref files are not content-addressed: they carry a checksum


def _decode(data: bytes, key: str) -> RefRecord:
    return RefRecord.from_bytes(codec.unseal(data, key=f"ref {key}"), key=f"ref {key}")


class RefStore:
    """Reads and writes version, label and tag files on a backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # The next number this process expects for each name: saves listing every
        # version on each put. Another writer makes it stale, which costs a retry.
        self._next: dict[str, int] = {}
        # The version of each name this process last created or found to be the latest:
        # lets a repeated put of new content skip reading the latest version's file.
        self._latest: dict[str, RefRecord] = {}
        # fold(folder) -> folder for every folder a name uses, from one listing of refs/;
        # refreshed after _FOLDS_TTL seconds. Only creating a new name reads it.
        self._folds: dict[str, str] | None = None
        self._folds_at = 0.0

    def _read(self, key: str) -> RefRecord | None:
        try:
            return _decode(self.backend.read(key), key)
        except FileNotFoundError:
            return None

    def version_numbers(self, name: str) -> list[int]:
        return self._numbers_in(version_folder(name))

    def _numbers_in(self, folder: str) -> list[int]:
        numbers = []
        for key in self.backend.list(folder):
            tail = key[len(folder) :]
            if _DIGITS.fullmatch(tail) and not tail.startswith("0"):
                numbers.append(int(tail))
        return sorted(numbers)

    def create_version(
        self, name: str, target: bytes, label: str | None = None, *, reuse_latest: bool = False
    ) -> RefRecord:
        """Allocate the next version number of ``name`` (and claim ``label``) for ``target``.

        With ``reuse_latest`` and no ``label``, the latest version (the highest
        number not deleted) is returned instead if it already points at
        ``target``: a version is made only when the content changes. A label is
        an immutable name of one version, so a new label always makes a new
        version, and a label that already names ``target`` returns its version.
        Two writers putting the same content at the same moment may still both
        make a version. A deleted number is never handed out again.

        A new name (no version yet, none deleted) must pass ``check_new_name`` and
        must not differ only in case or Unicode form from a name already in the
        store; a new version of an existing name only ``check_name``. Raises
        InvalidNameError, RefExistsError (``label`` taken by another artifact).
        """
        check_name(name)
        reuse = reuse_latest and label is None
        number = self._next.get(name)
        if reuse:
            numbers, same = self._same_as_latest(name, target)
            if same is not None:
                return same
            if number is None and numbers is not None:
                number = self._first_free(name, numbers)
        if number is None:
            number = self._first_free(name)
        if number == 1:
            check_new_name(name)
            self._check_case(name)
        now = time.time()
        if label is not None:
            check_new_label(label)
            key = label_key(name, label)
            self._check_case_in(label_folder(name), label, "version")
            if not self.backend.create(key, _encode(RefRecord(target, now, None, label))):
                existing = self._read(key)
                if existing is None or existing.target != target:
                    raise RefExistsError(f"version {name}@{label} already exists with another artifact")
                if existing.number is not None:
                    return existing
        for attempt in range(_MAX_ATTEMPTS):
            record = RefRecord(target, now, number, label)
            # Exclusive create: concurrent writers each get their own number.
            if self.backend.create(version_key(name, number), _encode(record)):
                self._next[name] = number + 1
                self._latest[name] = record
                if self._folds is not None:
                    self._folds.update((lookalikes.fold(p), p) for p in _prefixes(name))
                # Reverse index (artifact -> names), for lineage labels; rebuildable from refs/.
                self.backend.write(names_key(target, name, number), b"")
                if label is not None:
                    self.backend.write(label_key(name, label), _encode(record))
                return record
            if reuse and attempt == 0:
                # Another writer made versions since this process last looked: the
                # latest may now hold ``target`` (our cached view said it did not).
                self._latest.pop(name, None)
                _, same = self._same_as_latest(name, target)
                if same is not None:
                    return same
            number = number + 1 if attempt % 4 != 3 else max(number + 1, self._first_free(name))
        raise RefExistsError(f"could not allocate a version of {name!r}")

    def _same_as_latest(self, name: str, target: bytes) -> tuple[list[int] | None, RefRecord | None]:
        """(the version numbers listed, if a listing was needed; the latest version if it is ``target``).

        Costs nothing when the version this process last made of ``name`` holds
        other content: a newer version by another writer shows up as a failed
        create, which asks again. Otherwise one listing, and one read of the
        latest version's file unless this process made it. An unreadable latest
        version counts as different content.
        """
        cached = self._latest.get(name)
        if cached is not None and cached.target != target:
            return None, None
        numbers = self.version_numbers(name)
        if not numbers:
            return numbers, None
        latest = numbers[-1]
        if name in self._next:  # (a listing without the tombstones can not start the count)
            self._next[name] = max(self._next[name], latest + 1)
        if cached is not None and cached.number == latest:
            return numbers, cached
        try:
            record = self._read(version_key(name, latest))
        except CorruptObjectError:
            return numbers, None
        if record is None or record.number != latest:
            return numbers, None
        self._latest[name] = record
        return numbers, record if record.target == target else None

    def check_creatable(self, name: str) -> None:
        """Refuse early what ``create_version`` would refuse by name alone (no I/O unless refused).

        A name the look-alike rules refuse may still get new versions if it is
        already in the store (written before the rules, or by another writer).
        """
        try:
            check_new_name(name)
        except InvalidNameError:
            check_name(name)
            if not self.version_numbers(name):
                raise

    def _first_free(self, name: str, live: list[int] | None = None) -> int:
        """One past the highest number ``name`` has used, deleted ones included (``live``: @v/ as just listed)."""
        numbers = (self.version_numbers(name) if live is None else live) + self._numbers_in(gone_folder(name))
        return max(numbers, default=0) + 1

    def _check_case(self, name: str) -> None:
        """Refuse a new name that one case-insensitive folder would share with an existing name.

        Reads one listing of refs/ per _FOLDS_TTL seconds: a name another writer
        created since may slip through (as may two created at the same moment).
        """
        if self._folds is None or time.monotonic() - self._folds_at > _FOLDS_TTL:
            self._folds, self._folds_at = self._fold_map(), time.monotonic()
        why = _case_twin(name, self._folds)
        if why is not None:
            raise InvalidNameError(f"name {name!r}: {why}")

    def _fold_map(self) -> dict[str, str]:
        """Each folder of the store's names, by its case- and Unicode-folded form."""
        heads = {parse_ref_name(key) for key in self.backend.list(REFS_FOLDER)}
        folds: dict[str, str] = {}
        for head in heads:
            for prefix in _prefixes(head):
                folds.setdefault(lookalikes.fold(prefix), prefix)
        return folds

    def refusals(self, names: Iterable[str]) -> dict[str, str]:
        """Why each of ``names`` (coming from another store) may not be created here.

        Names this store already has are always accepted; new ones must pass
        the rules a put applies, and must not be case twins of a name here or
        of another name in ``names``. One listing of refs/.
        """
        folds = self._fold_map()
        refused: dict[str, str] = {}
        for name in sorted(set(names)):
            try:
                check_new_name(name)
            except InvalidNameError as exc:
                if not self.version_numbers(name):
                    refused[name] = str(exc)
                continue
            why = _case_twin(name, folds)
            if why is not None:
                refused[name] = why
                continue
            for prefix in _prefixes(name):
                folds.setdefault(lookalikes.fold(prefix), prefix)
        return refused

    def _check_case_in(self, folder: str, label: str, kind: str) -> None:
        """Refuse a new label or tag that differs only in case from another in ``folder``."""
        folded = lookalikes.fold(label)
        for key in self.backend.list(folder):
            other = key[len(folder) :]
            if other != label and lookalikes.fold(other) == folded:
                raise InvalidNameError(
                    f"{kind} {label!r} differs only in case or Unicode form from {other!r}; "
                    "on a case-insensitive disk (macOS, Windows) the two would be one file"
                )

    def set_tag(self, name: str, tag: str, record: RefRecord) -> None:
        """Point a tag at the version ``record``; the tag's ``created`` says when it was set.

        The tag must pass ``check_new_label`` and not differ only in case from
        another tag of ``name``. Raises InvalidNameError.
        """
        check_new_label(tag, "tag")
        self._check_case_in(tag_folder(name), tag, "tag")
        moved = RefRecord(record.target, time.time(), record.number, record.label)
        self.backend.write(tag_key(name, tag), _encode(moved))

    def resolve(self, spec: RefSpec) -> RefRecord:
        """The record a parsed ref names; RefNotFoundError if none."""
        name, selector = spec.name, spec.selector
        if selector is None:
            numbers = self.version_numbers(name)
            if not numbers:
                raise RefNotFoundError(f"no artifact named {name!r}")
            # A version file is written whole, so the highest number is always readable.
            record = self._read(version_key(name, numbers[-1]))
        elif _DIGITS.fullmatch(selector):
            record = self._read(version_key(name, selector))
        else:
            record = self._read(label_key(name, selector)) or self._read(tag_key(name, selector))
        if record is None:
            raise RefNotFoundError(f"no artifact {name}@{selector}" if selector else f"no artifact named {name!r}")
        return record

    def delete_version(self, name: str, number: int) -> list[str]:
        """Remove version ``number`` of ``name``, its label and the tags on it; return what went."""
        record = self._read(version_key(name, number))
        if record is None:
            raise RefNotFoundError(f"no artifact {name}@{number}")
        removed = [f"{name}@{number}"]
        if record.label is not None:
            label = self._read(label_key(name, record.label))
            if label is not None and label.number in (number, None) and label.target == record.target:
                self._delete(label_key(name, record.label))
                removed.append(f"{name}@{record.label}")
        for tag, tag_record in self.tags(name).items():
            if tag_record.number == number:
                self._delete(tag_key(name, tag))
                removed.append(f"{name}@{tag}")
        self._delete(names_key(record.target, name, number))
        # A tombstone keeps the number from being handed out again.
        self.backend.write(gone_key(name, number), b"")
        self._delete(version_key(name, number))  # last: until now the version still resolves
        self._latest.pop(name, None)
        return removed

    def delete_tag(self, name: str, tag: str) -> None:
        try:
            self.backend.delete(tag_key(name, tag))
        except FileNotFoundError:
            raise RefNotFoundError(f"no tag {name}@{tag}") from None

    def delete_label(self, name: str, label: str) -> None:
        self._delete(label_key(name, label))

    def tags(self, name: str) -> dict[str, RefRecord]:
        folder = tag_folder(name)
        found = {}
        for key in self.backend.list(folder):
            tag = key[len(folder) :]
            record = self._read(key)
            if record is not None and "/" not in tag:
                found[tag] = record
        return found

    def labels(self, name: str) -> dict[str, RefRecord]:
        folder = label_folder(name)
        found = {}
        for key in self.backend.list(folder):
            record = self._read(key)
            if record is not None and "/" not in key[len(folder) :]:
                found[key[len(folder) :]] = record
        return found

    def _delete(self, key: str) -> None:
        try:
            self.backend.delete(key)
        except FileNotFoundError:
            pass

    def all_records(self) -> Iterator[tuple[str, RefRecord | CorruptObjectError]]:
        """Every ref file with its record (or why it can not be read): the roots of gc."""
        for key in self.backend.list(REFS_FOLDER):
            if is_gone_key(key):
                continue
            try:
                record = _decode(self.backend.read(key), key)
            except FileNotFoundError:
                continue
            except CorruptObjectError as exc:
                yield key, exc
                continue
            yield key, record

    def names_of(self, target: bytes) -> list[str]:
        """``name@n`` of every version pointing at ``target`` (from the reverse index)."""
        found = [(e.name, e.number) for k in self.backend.list(names_folder(target)) if (e := parse_names_key(k))]
        return [f"{n}@{v}" for n, v in sorted(found, key=lambda item: (item[0], -item[1]))]

    def version_targets(self, names: set[str]) -> dict[tuple[str, int], bytes]:
        """(name, number) -> artifact for every version of ``names``: one listing of the reverse index."""
        if not names:
            return {}
        entries = (parse_names_key(k) for k in self.backend.list(NAMES_FOLDER))
        return {(e[1], e[2]): e[0] for e in entries if e is not None and e[1] in names}

    def read_file(self, key: str) -> tuple[bytes, RefRecord] | None:
        """A ref file's exact bytes and its record (verified); None if it is gone."""
        try:
            data = self.backend.read(key)
        except FileNotFoundError:
            return None
        try:
            return data, _decode(data, key)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"{key} in {self.backend.url} is unreadable: {exc}", key=key) from None

    def names(self) -> Iterator[str]:
        """Every name with at least one version (names no lookup could reach are left out)."""
        seen = set()
        for key in self.backend.list(REFS_FOLDER):
            found = parse_ref_key(key)
            head = found.name if found is not None and found.kind == "v" else None
            if head is not None and head not in seen:
                seen.add(head)
                try:
                    check_name(head)
                except InvalidNameError:  # planted by another writer, e.g. not UTF-8 on a local disk
                    continue
                yield head

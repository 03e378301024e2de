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

import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cas import codec, lookalikes
from cas.backends.base import Backend, each_request
from cas.errors import (
    CasError,
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
    parse_gone_key,
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
#: Version files read at once from an object store (``read_versions``).
READ_THREADS = 16
# How long a listing of the store's names answers "does a name differing only in case exist?"
_FOLDS_TTL = 10.0
# How long a listing of a name's versions lets this process find its latest by ``exists`` alone
# (puts number versions one after another; only a transfer can leave a gap, seen this much later).
_LISTING_TTL = 30.0
# How long a writer waits for another to give a label it claimed its version number (seconds).
_LABEL_WAIT = 30.0
# Version files remembered per process (their records are a few hundred bytes).
_MAX_CACHED = 200_000
# Names that passed check_name (the rules never change in a process).
_VALID_NAMES: set[str] = set()
# The fold map of each store this process has read (by URL): (map, when made, how long it is good for).
_FOLDS: dict[str, tuple[dict[str, str], float, float]] = {}
# A tag move sorts after the tag's previous value, unless that value is dated this far ahead of now.
_TAG_BUMP_LIMIT = 86_400.0


def check_name(name: str) -> str:
    """Validate an artifact name, git check-ref-format style; raise InvalidNameError naming the rule."""
    if type(name) is str and name in _VALID_NAMES:
        return name
    _check_name(name)
    if len(_VALID_NAMES) >= _MAX_CACHED:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(name)
    return name


def _check_name(name: str) -> str:
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


def tag_moved_at(previous: RefRecord | None, now: float) -> float:
    """The ``created`` of a tag moved at ``now`` whose value was ``previous``: later than both.

    A Lamport clock: a move made after a tag value was seen (written here, or
    pulled) is dated after it, whatever the clocks of the machines involved.
    A previous value dated more than a day ahead (a wrong clock, or planted)
    is not followed: the move takes ``now``.
    """
    if previous is None or not previous.created < now + _TAG_BUMP_LIMIT or previous.created < now:
        return now
    return math.nextafter(previous.created, math.inf)


def newer_tag(candidate: RefRecord, current: RefRecord) -> bool:
    """Whether a tag value ``candidate`` (from another store) replaces ``current`` here: the rule of push and pull.

    Tag values are ordered by ``created`` (``tag_moved_at``: a move made after
    seeing a value sorts after it), then by target and number, so two stores
    always agree on which of two values wins and a transfer never depends on
    the order it meets them. Equal values do not replace each other. Callers
    refuse values dated implausibly far ahead first (``sync.CLOCK_SKEW``).
    """
    return _tag_order(candidate) > _tag_order(current)


def _tag_order(record: RefRecord) -> tuple[float, bytes, int]:
    return (record.created, record.target, record.number or 0)


def _encode(record: RefRecord) -> bytes:
    return codec.seal(record.to_bytes())  # ref files are not content-addressed: they carry a checksum


def _decode(data: bytes, key: str) -> RefRecord:
    return RefRecord.from_bytes(codec.unseal(data, key=f"ref {key}"), key=f"ref {key}")


class RefStore:
    """Reads and writes version, label and tag files on a backend.

    Version files never change while they exist (a number is never reused), so
    this process keeps each one it has read or written (``_records``) and only
    asks the backend whether it is still there. The latest version of a name is
    checked in O(1) where ``exists`` is cheap (a local disk): no version past the
    one this process knows, and that one not deleted (see ``_latest_record``).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # The next number this process expects for each name: saves listing every
        # version on each put. Another writer makes it stale, which costs a retry.
        self._next: dict[str, int] = {}
        # The latest version of each name as this process last saw it, and when
        # (time.monotonic()) the name's versions were last listed.
        self._latest: dict[str, RefRecord] = {}
        self._listed_at: dict[str, float] = {}
        # Version files read or written here, by key: immutable while they exist.
        self._records: dict[str, RefRecord] = {}

    def _read(self, key: str) -> RefRecord | None:
        try:
            return _decode(self.backend.read(key), key)
        except FileNotFoundError:
            return None

    # -- versions: which exist ---------------------------------------------------
    def version_numbers(self, name: str) -> list[int]:
        """The numbers of the versions of ``name`` that exist (not deleted), oldest first."""
        live, _ = self._listing(name)
        return live

    def _listing(self, name: str) -> tuple[list[int], int]:
        """(live version numbers, sorted; the highest number ever used, deleted ones included).

        Two listings (``@v/`` and ``@gone/``). A number with a tombstone is deleted
        even while its version file is still there (an ``rm`` or a writer that
        found its number deleted is between its two steps, or stopped there).
        """
        made = self._numbers_in(version_folder(name))
        gone = set(self._numbers_in(gone_folder(name)))
        highest = max(made[-1] if made else 0, max(gone, default=0))
        self._next[name] = max(self._next.get(name, 1), highest + 1)
        self._listed_at[name] = time.monotonic()
        return [n for n in made if n not in gone], highest

    def _numbers_in(self, folder: str) -> list[int]:
        numbers = []
        for key in self.backend.list(folder):
            tail = key[len(folder) :]
            if _DIGITS.fullmatch(tail) and not tail.startswith("0"):
                numbers.append(int(tail))
        return sorted(numbers)

    def _is_live(self, name: str, number: int) -> bool:
        """Whether version ``number`` of ``name``, known to have existed, is not deleted: one ``exists``.

        Deleting a version writes its tombstone before anything else, and only
        an rm removes a version file, so the tombstone alone answers.
        """
        return not self.backend.exists(gone_key(name, number))

    def _version(self, name: str, number: int) -> RefRecord | None:
        """Version ``number`` of ``name`` if it exists and is not deleted; CorruptObjectError if unreadable."""
        key = version_key(name, number)
        cached = self._records.get(key)
        if cached is not None and self.backend.cheap_exists:
            if self._is_live(name, number):
                return cached
            del self._records[key]
            return None
        record = self._read(key)
        if record is None or self.backend.exists(gone_key(name, number)):
            return None
        self._remember(key, record)
        return record

    def _remember(self, key: str, record: RefRecord) -> None:
        if len(self._records) >= _MAX_CACHED:
            self._records.clear()
        self._records[key] = record

    def _latest_record(self, name: str) -> RefRecord | None:
        """The latest version of ``name`` (None if it has none); CorruptObjectError if unreadable.

        Where ``exists`` is cheap and this process knows a recent latest version n:
        three ``exists`` (n+1 neither made nor deleted, n not deleted).
        A put always takes the number after the highest used, so no newer
        version can hide past n+1; a transfer may copy in versions above a gap,
        which the listing made at most ``_LISTING_TTL`` seconds ago catches.
        Otherwise two listings and one read (none if the latest is cached).
        """
        cached = self._latest.get(name)
        if (
            cached is not None
            and cached.number is not None
            and self.backend.cheap_exists
            and time.monotonic() - self._listed_at.get(name, 0.0) < _LISTING_TTL
        ):
            n = cached.number
            if (
                not self.backend.exists(version_key(name, n + 1))
                and not self.backend.exists(gone_key(name, n + 1))
                and self._is_live(name, n)
            ):
                return cached
        for _ in range(3):
            live, _highest = self._listing(name)
            if not live:
                self._latest.pop(name, None)
                return None
            record = self._version(name, live[-1])
            if record is not None:
                self._latest[name] = record
                return record
        raise RefNotFoundError(f"the versions of {name!r} keep changing; try again")

    # -- versions: making them ---------------------------------------------------
    def create_version(
        self, name: str, target: bytes, label: str | None = None, *, reuse_latest: bool = False
    ) -> RefRecord:
        """Allocate the next version number of ``name`` (and claim ``label``) for ``target``.

        With ``reuse_latest`` and no ``label``, the latest version (the highest
        number not deleted) is returned instead if it already points at
        ``target``: a version is made only when the content changes. A label is
        an immutable name of one version, so a new label always makes a new
        version, and a label that already names ``target`` returns its version,
        also when another writer is making it at this moment (this call waits
        for its number). Two writers putting the same content without a label
        at the same moment may still both make a version. A deleted number is
        never handed out again: a writer whose new version file finds that
        number's tombstone removes its file and takes a later number.

        A new name (no version yet, none deleted) must pass ``check_new_name`` and
        must not differ only in case or Unicode form from a name already in the
        store; a new version of an existing name only ``check_name``. Raises
        InvalidNameError, RefExistsError (``label`` taken by another artifact).
        """
        check_name(name)
        if reuse_latest and label is None:
            same = self._same_as_latest(name, target)
            if same is not None:
                return same
        number = self._next.get(name)
        if number is None:
            number = self._listing(name)[1] + 1
        if number == 1:
            check_new_name(name)
            self._check_case(name)
        now = time.time()
        if label is not None:
            adopted = self._claim_label(name, label, target, now)
            if adopted is not None:
                return adopted
        for attempt in range(_MAX_ATTEMPTS):
            record = RefRecord(target, now, number, label)
            key = version_key(name, number)
            # Exclusive create: concurrent writers each get their own number.
            if self.backend.create(key, _encode(record)):
                if self.backend.exists(gone_key(name, number)):
                    # The number was deleted (before this create, or an rm raced it): never reuse it.
                    self._delete(key)
                    number = self._listing(name)[1] + 1
                    continue
                self._made(name, key, record)
                if label is not None:
                    self.backend.write(label_key(name, label), _encode(record))
                # Reverse index (artifact -> names), for lineage labels; rebuildable from refs/.
                self.backend.write(names_key(target, name, number), b"")
                return record
            if reuse_latest and label is None and attempt == 0:
                # Another writer made versions since this process last looked: the
                # latest may now hold ``target`` (our cached view said it did not).
                self._latest.pop(name, None)
                same = self._same_as_latest(name, target)
                if same is not None:
                    return same
            number = number + 1 if attempt % 4 != 3 else max(number + 1, self._listing(name)[1] + 1)
        raise RefExistsError(f"could not allocate a version of {name!r}")

    def _made(self, name: str, key: str, record: RefRecord) -> None:
        """Remember a version this process just created (the latest, as of now)."""
        assert record.number is not None
        self._next[name] = record.number + 1
        self._latest[name] = record
        self._listed_at[name] = time.monotonic()
        self._remember(key, record)
        folds = _FOLDS.get(self.backend.url)
        if folds is not None:
            folds[0].update((lookalikes.fold(p), p) for p in _prefixes(name))

    def _claim_label(self, name: str, label: str, target: bytes, now: float) -> RefRecord | None:
        """Claim ``label`` for ``target`` (None: claimed, make its version) or return the version it names.

        The label file is created first, without a number; the writer that
        created it makes the version and writes the number in. Another writer
        putting the same target under the label waits for that number (up to
        ``_LABEL_WAIT`` seconds: after that the first writer is taken to have
        stopped, and this one makes the version). Raises RefExistsError if the
        label names another artifact.
        """
        check_new_label(label)
        key = label_key(name, label)
        self._check_case_in(label_folder(name), label, "version")
        deadline = time.monotonic() + _LABEL_WAIT
        pause = 0.002
        claim = _encode(RefRecord(target, now, None, label))
        claimed = self.backend.create(key, claim)
        while not claimed:
            existing = self._read(key)
            if existing is None:  # removed since (an rm of its version): claim it again
                claimed = self.backend.create(key, claim)
                continue
            if existing.target != target:
                raise RefExistsError(f"version {name}@{label} already exists with another artifact")
            if existing.number is not None:
                version = self._version(name, existing.number)
                if version is not None and version.target == target:
                    return version
                # its version is being deleted: the label goes with it (delete_version)
            elif time.monotonic() > deadline:
                return None
            if time.monotonic() > deadline + _LABEL_WAIT:
                raise RefExistsError(f"version {name}@{label} is being deleted or rewritten; try again")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return None

    def _same_as_latest(self, name: str, target: bytes) -> RefRecord | None:
        """The latest version of ``name`` if it is ``target`` (None otherwise).

        Costs nothing when the version this process last saw as latest holds
        other content: a newer version by another writer shows up as a failed
        create, which asks again. An unreadable latest version counts as
        different content.
        """
        cached = self._latest.get(name)
        if cached is not None and cached.target != target:
            return None
        try:
            latest = self._latest_record(name)
        except (CorruptObjectError, RefNotFoundError):
            return None
        return latest if latest is not None and latest.target == target else None

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

    def _check_case(self, name: str) -> None:
        """Refuse a new name that one case-insensitive folder would share with an existing name.

        Reads one listing of refs/ per _FOLDS_TTL seconds (or 20 times as long as
        that listing took) in a process: a name another writer created since may
        slip through (as may two created at the same moment).
        """
        # fold(folder) -> folder for every folder of the store's names, shared by the Stores of
        # this process; made again after _FOLDS_TTL seconds (longer where listing is slow:
        # a store of 100,000 names lists for seconds, so at most 5% of the time goes to it).
        found = _FOLDS.get(self.backend.url)
        if found is None or time.monotonic() - found[1] > found[2]:
            started = time.monotonic()
            folds = self._fold_map()
            done = time.monotonic()
            found = _FOLDS[self.backend.url] = (folds, done, max(_FOLDS_TTL, 20 * (done - started)))
        why = _case_twin(name, found[0])
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
        """Point a tag at the version ``record``; the tag's ``created`` orders its moves.

        ``created`` is this machine's time, but always later than the tag's
        ``created`` before the move (``tag_moved_at``), so a move made after
        seeing a tag value (here, or pulled from elsewhere) sorts after it
        whatever the clocks say: ``newer_tag`` is the order push and pull use.
        If the version is deleted while the tag moves, the tag is taken back
        off it and RefNotFoundError raised: the tag is written, then the
        version checked, and ``delete_version`` writes the tombstone, then
        removes the tags, so one of the two sees the other.

        The tag must pass ``check_new_label`` and not differ only in case from
        another tag of ``name``. Raises InvalidNameError, RefNotFoundError.
        """
        check_new_label(tag, "tag")
        self._check_case_in(tag_folder(name), tag, "tag")
        key = tag_key(name, tag)
        try:
            previous = self._read(key)
        except CorruptObjectError:
            previous = None
        moved = RefRecord(record.target, tag_moved_at(previous, time.time()), record.number, record.label)
        data = _encode(moved)
        self.backend.write(key, data)
        if record.number is not None and not self._is_live(name, record.number):
            self._delete_if(key, data)
            raise RefNotFoundError(f"{name}@{record.number} was deleted while {name}@{tag} was moved to it")

    def _delete_if(self, key: str, data: bytes) -> None:
        """Delete ``key`` if it still holds ``data`` (a read, then a delete: a move in between is lost)."""
        try:
            if self.backend.read(key) == data:
                self.backend.delete(key)
        except FileNotFoundError:
            pass

    def resolve(self, spec: RefSpec) -> RefRecord:
        """The record a parsed ref names; RefNotFoundError if none.

        A version with a tombstone is deleted, and a label or tag whose
        version is deleted names nothing (``delete_version`` removes them;
        this covers one interrupted half-way).
        """
        name, selector = spec.name, spec.selector
        if selector is None:
            record = self._latest_record(name)
        elif _DIGITS.fullmatch(selector):
            record = self._version(name, int(selector))
        else:
            record = self._read(label_key(name, selector)) or self._read(tag_key(name, selector))
            if record is not None and record.number is not None and not self._is_live(name, record.number):
                record = None
        if record is None:
            raise RefNotFoundError(f"no artifact {name}@{selector}" if selector else f"no artifact named {name!r}")
        return record

    def delete_version(self, name: str, number: int) -> list[str]:
        """Remove version ``number`` of ``name``, its label and the tags on it; return what went.

        The tombstone is written first: from then on the number is deleted for
        every reader, a writer that raced to create it gives it up, and a tag
        moved to it at this moment is taken back (``set_tag``).
        """
        key = version_key(name, number)
        record = self._read(key)
        if record is None:
            raise RefNotFoundError(f"no artifact {name}@{number}")
        self.backend.write(gone_key(name, number), b"")  # (again, if an rm stopped half-way)
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
        self._delete(key)  # last: a reader that ignores tombstones still resolves it until now
        self._records.pop(key, None)
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
        keys = [key for key in self.backend.list(REFS_FOLDER) if not is_gone_key(key)]

        def one(key: str) -> RefRecord | CorruptObjectError | None:
            try:
                return _decode(self.backend.read(key), key)
            except FileNotFoundError:
                return None
            except CorruptObjectError as exc:
                return exc

        for key, record in zip(keys, each_request(self.backend, one, keys), strict=True):
            if record is not None:
                yield key, record

    def names_of(self, target: bytes) -> list[str]:
        """``name@n`` of every version pointing at ``target`` (from the reverse index)."""
        found = [(e.name, e.number) for k in self.backend.list(names_folder(target)) if (e := parse_names_key(k))]
        return [f"{n}@{v}" for n, v in sorted(found, key=lambda item: (item[0], -item[1]))]

    def indexed_targets(self) -> dict[tuple[str, int], bytes]:
        """(name, number) -> artifact from one listing of the whole reverse index (``names/``).

        Untrusted like every listing, and a SHOULD of writers: a version may be
        missing, and a (name, number) listed with two artifacts (a number
        reused by an older cas) is left out. Read the version file to be sure.
        """
        found: dict[tuple[str, int], bytes] = {}
        doubled: set[tuple[str, int]] = set()
        for key in self.backend.list_hex(NAMES_FOLDER):
            entry = parse_names_key(key)
            if entry is None:
                continue
            where = (entry.name, entry.number)
            if found.setdefault(where, entry.artifact) != entry.artifact:
                doubled.add(where)
        for where in doubled:
            del found[where]
        return found

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
        return iter(self.scan())

    def scan(self, labelled: set[str] | None = None) -> dict[str, list[int]]:
        """Every name, sorted, with the numbers of its versions (deleted ones left out): one listing of refs/.

        What ``cas ls`` pages through; no ref file is read. Names that break
        ``check_name`` (planted, e.g. not UTF-8 on a local disk) are left out.
        ``labelled``, if given, receives the names that have version labels.
        """
        made: dict[str, list[int]] = {}
        gone: dict[str, set[int]] = {}
        for key in self.backend.list(REFS_FOLDER):
            if is_gone_key(key):
                dead = parse_gone_key(key)
                if dead is not None:
                    gone.setdefault(dead[0], set()).add(dead[1])
                continue
            found = parse_ref_key(key)
            if found is not None and found.kind == "v":
                made.setdefault(found.name, []).append(int(found.selector))
            elif found is not None and found.kind == "label" and labelled is not None:
                labelled.add(found.name)
        result: dict[str, list[int]] = {}
        for name in sorted(made):
            live = sorted(n for n in made[name] if n not in gone.get(name, ()))
            if not live:
                continue
            try:
                check_name(name)
            except InvalidNameError:
                continue
            result[name] = live
        return result

    def read_versions(
        self, wanted: Sequence[tuple[str, int]], *, threads: int = READ_THREADS
    ) -> list[RefRecord | CasError | None]:
        """The records of the versions ``wanted`` (listed just before): each a record, the error, or None if gone.

        Version files are read in parallel where each read is a request (an
        object store), so a page of 1,000 costs about the time of 1,000/``threads``.
        """

        def one(item: tuple[str, int]) -> RefRecord | CasError | None:
            key = version_key(*item)
            cached = self._records.get(key)
            if cached is not None:
                return cached
            try:
                record = self._read(key)
            except CasError as exc:
                return exc
            if record is not None:
                self._remember(key, record)
            return record

        return each_request(self.backend, one, wanted, threads=threads)

    def problems(self) -> list[str]:
        """What fsck reports as wrong with refs, one line each: label splits.

        A label split: two live versions of a name carrying one label (two
        writers raced before labels were claimed first, or one gave up waiting).
        """
        found: list[str] = []
        for name, live in self.scan().items():
            carrying: dict[str, list[int]] = {}
            for number, record in zip(live, self.read_versions([(name, n) for n in live]), strict=True):
                if isinstance(record, RefRecord) and record.label is not None:
                    carrying.setdefault(record.label, []).append(number)
            for label, numbers in sorted(carrying.items()):
                if len(numbers) > 1:
                    found.append(f"label split: {name}@{label} is carried by versions {', '.join(map(str, numbers))}")
        return found

    def leftovers(self) -> list[tuple[str, str]]:
        """Ref files an interrupted ``rm`` (or a writer that found its number deleted) left: (key, why).

        A version file beside its tombstone, and a label or tag naming a
        deleted version. Readers already treat them as deleted; removing them
        finishes what was interrupted (``fsck --repair``).
        """
        scanned = self.scan()
        found: list[tuple[str, str]] = []
        for key in self.backend.list(REFS_FOLDER):
            dead = parse_gone_key(key)
            if dead is not None:
                if self.backend.exists(version_key(*dead)):
                    found.append((version_key(*dead), f"{dead[0]}@{dead[1]} is deleted (tombstone) but its version "
                                                      "file is still there"))  # fmt: skip
                continue
            ref = parse_ref_key(key)
            if ref is None or ref.kind == "v":
                continue
            try:
                record = self._read(key)
            except CasError:
                continue  # reported as corrupt by fsck's own read
            if record is not None and record.number is not None and record.number not in scanned.get(ref.name, ()):
                found.append((key, f"{ref.name}@{ref.selector} names {ref.name}@{record.number}, which is deleted"))
        return found

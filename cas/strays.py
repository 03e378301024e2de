"""Ref files whose names break the naming rules: found by their exact spelling, and removed.

No cas writes such a file (``put`` and ``pull`` refuse the name), but a store
may hold one: planted by another writer, or pulled by an older cas. No lookup
reaches it, and ``delete`` refuses the name before looking, so ``cas rm`` falls
back on :func:`remove_stray`, which matches the text against listed keys only
(it never builds a key from the text, so the text can not point outside ``refs/``).
"""

from __future__ import annotations

from cas.backends.base import Backend
from cas.errors import CasError, InvalidNameError
from cas.keys import REFS_FOLDER, is_gone_key, names_key, parse_ref_name
from cas.refs import RefStore, check_label, check_name


def stray_files(backend: Backend, text: str) -> list[tuple[str, str]]:
    """The ref files (key, ``name@selector``) that ``text`` names exactly, if it breaks the naming rules.

    ``text`` is a whole name (every file of that name) or ``name@selector``
    (one version number, label or tag). Files of valid refs are never
    returned: those go through ``delete`` and ``untag``, which keep the
    version-number rules (tombstones).
    """
    found = []
    for key in sorted(backend.list(REFS_FOLDER)):
        if is_gone_key(key):
            continue
        name = parse_ref_name(key)
        selector = key.rsplit("/", 1)[-1]
        kind = key[len(REFS_FOLDER) + len(name) + 2 :].split("/", 1)[0]
        if text != name and text != f"{name}@{selector}":
            continue
        if _valid(name, kind, selector):
            continue
        found.append((key, f"{name}@{selector}"))
    return found


def remove_stray(backend: Backend, text: str) -> list[str]:
    """Remove the ref files ``stray_files`` finds (and the reverse-index entries of their versions).

    Returns the refs removed (empty when ``text`` names no such file).
    Raises BackendError.
    """
    refs = RefStore(backend)
    removed = []
    for key, ref in stray_files(backend, text):
        name = parse_ref_name(key)
        selector = key.rsplit("/", 1)[-1]
        try:
            found = refs.read_file(key)
        except CasError:  # unreadable: its reverse-index entry, if any, is fsck's to report
            found = None
        try:
            backend.delete(key)
        except FileNotFoundError:
            continue  # removed meanwhile
        if found is not None and selector.isdigit():
            try:
                backend.delete(names_key(found[1].target, name, selector))
            except FileNotFoundError:
                pass
        removed.append(ref)
    return removed


def _valid(name: str, kind: str, selector: str) -> bool:
    try:
        check_name(name)
        if kind == "v":
            return selector.isascii() and selector.isdigit()
        check_label(selector, "tag" if kind == "tag" else "version")
    except InvalidNameError:
        return False
    return True

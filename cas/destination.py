"""Where restored files may go, checked whole before the first byte is written.

The tree a restore writes comes from a store, and whoever can write to a store
chooses its paths. Tree paths are relative and ``..``-free (checked on decode),
portable (``check_portable_tree``: no ``.git``, device names, streams or case
twins), and here every folder already on the way to a file must be a real
folder: a symlink, or a file where a folder is needed, refuses the whole
restore before anything is written. The file at the end of a path is never
written through: a new file is renamed over it, so a symlink or hard link there
is replaced, not followed.

What this can not stop: another local process swapping a folder for a symlink
between this check and the write. The threat here is the store's writer, who
has no hand in the destination.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

from cas.errors import DestinationExistsError, InvalidNameError, UnsafeDestinationError
from cas.objects import check_portable_path, check_portable_tree


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file on the way: reported by the caller's walk
        return None


def _inside(root: str, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == root or os.path.commonpath([root, real]) == root


def _check_parent(target: Path) -> None:
    """The nearest existing folder above ``target`` must be a folder, not a file."""
    for parent in target.absolute().parents:
        if _lstat(parent) is not None:
            if not parent.is_dir():
                raise DestinationExistsError(f"{parent} is a file, so {target} can not be created")
            return


def plan_folder(target: Path, paths: list[str]) -> list[Path]:
    """The file each tree path (sorted, unique) goes to below the folder ``target``.

    ``target`` itself may be a symlink to a folder (the caller chose it).
    Raises NonPortablePathError, UnsafeDestinationError (a symlink or other
    non-folder on the way, a folder leading outside ``target``) and
    DestinationExistsError (``target`` or a folder on the way is a file, a
    file's place is taken by a folder).
    """
    check_portable_tree(paths)
    if _lstat(target) is not None and not target.is_dir():
        raise DestinationExistsError(f"{target} exists and is not a folder; the artifact is a folder of files")
    _check_parent(target)
    root = os.path.realpath(target)
    target_missing = _lstat(target) is None
    absent: dict[str, bool] = {}  # folder below target -> it does not exist yet
    dests = []
    for path in paths:
        parts = path.split("/")
        here = target
        missing = target_missing
        rel = ""
        for part in parts[:-1]:
            here = here / part
            rel = f"{rel}/{part}" if rel else part
            if rel in absent:
                missing = absent[rel]
                continue
            if not missing:
                st = _lstat(here)
                if st is None:
                    missing = True
                elif stat.S_ISLNK(st.st_mode):
                    raise UnsafeDestinationError(
                        f"{here} is a symlink: restoring {path!r} through it could write outside {target}"
                    )
                elif not stat.S_ISDIR(st.st_mode):
                    raise DestinationExistsError(f"{here} exists and is not a folder, but {path!r} needs one there")
                elif not _inside(root, here):  # a junction, or what lstat does not call a link
                    raise UnsafeDestinationError(f"{path!r} would be written outside {target}")
            absent[rel] = missing
        dest = here / parts[-1]
        if not missing:
            st = _lstat(dest)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise DestinationExistsError(f"{dest} is a folder, but the artifact has a file there")
        dests.append(dest)
    return dests


def plan_file(target: Path, name: str) -> Path:
    """Where a one-file artifact goes: ``target``, or ``target/name`` if ``target`` is a folder.

    A file, symlink or other non-folder at the destination is replaced (by
    rename), never written through. Raises NonPortablePathError for a bad
    ``name``, DestinationExistsError if the destination is a folder.
    """
    if not target.is_dir():
        _check_parent(target)
        return target
    check_portable_path(name)
    dest = target / name
    st = _lstat(dest)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise DestinationExistsError(f"{dest} is a folder, but the artifact is one file")
    return dest


_WINDOWS_FORBIDDEN = set('<>:"|?*')


def unsafe_file_name(name: object) -> str | None:
    """Why ``name`` (from a store) can not be the name of a new file in the current folder; None if it can.

    A plain base name only: no separator, no dot-name (``.bashrc``, ``..``),
    no leading ``-``, nothing Windows forbids or reserves, no control or
    invisible character, at most 255 bytes.
    """
    if not isinstance(name, str) or not name:
        return "is missing"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        return "has a control or invisible character"
    if "/" in name or "\\" in name or os.sep in name:
        return "is a path, not a name"
    if name.startswith("."):
        return "is a dot-name (a hidden file such as .bashrc, or . or ..)"
    if name.startswith("-"):
        return "starts with '-', which commands would read as an option"
    if _WINDOWS_FORBIDDEN.intersection(name):
        return "has a character Windows forbids in names"
    if len(name.encode("utf-8")) > 255:
        return "is longer than 255 bytes"
    try:
        check_portable_path(name)
    except InvalidNameError as exc:
        return f"is not portable ({exc})"
    return None

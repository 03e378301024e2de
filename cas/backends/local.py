"""The local-disk backend: plain files, atomic by temp file + rename or link.

Anyone who can write to a shared folder can put other things than files
under it. Reads open a key with O_NOFOLLOW and O_NONBLOCK and read only a
regular file (a FIFO would block, ``/dev/zero`` never ends, a link may lead
anywhere): anything else raises SpecialFileError. A folder a key goes through
must resolve inside the store (checked once per folder and process), and a
listing never follows a link.
"""

from __future__ import annotations

import builtins
import errno
import functools
import os
import stat
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from cas.backends.base import Backend, Buffer, ListedKey, Sink
from cas.errors import BackendError, InvalidArgumentError, SpecialFileError
from cas.keys import TMP_FOLDER

_MAX_OPEN = 64
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
F = TypeVar("F", bound=Callable[..., Any])


def _os_errors(fn: F) -> F:
    """Disk failures (full, read-only, I/O errors) become BackendError; a missing or existing key passes."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except (FileNotFoundError, FileExistsError, BackendError):
            raise
        except OSError as exc:
            where = f" at {args[0]}" if args and isinstance(args[0], str) else ""
            raise BackendError(f"local store{where}: {exc.strerror or exc}") from exc

    return cast(F, wrapper)


def _write_all(fd: int, buffers: Sequence[Buffer], offset: int) -> None:
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        # IOV_MAX is 1024 on Linux.
        batch = views[:1024]
        written = os.pwritev(fd, batch, offset)
        offset += written
        while batch and written >= len(batch[0]):
            written -= len(batch[0])
            batch.pop(0)
            views.pop(0)
        if written:
            views[0] = views[0][written:]


class _LocalSink(Sink):
    @_os_errors
    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend
        self._tmp = backend.temp_path()
        self._fd = os.open(self._tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)

    @_os_errors
    def pwrite(self, offset: int, buffers: Sequence[Buffer]) -> None:
        _write_all(self._fd, buffers, offset)

    @_os_errors
    def commit(self, key: str) -> None:
        try:
            if self._backend.durable:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
        self._backend.rename_into_place(self._tmp, key)

    def abort(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


@dataclass(slots=True)
class _Held:
    """A cached read descriptor and how many reads are using it."""

    fd: int
    users: int = 0
    retired: bool = False


def _preadv_all(fd: int, views: list[memoryview], offset: int) -> int:
    total = 0
    while views:
        got = os.preadv(fd, views[:1024], offset)
        if got == 0:
            break
        total += got
        offset += got
        while views and got >= len(views[0]):
            got -= len(views[0])
            views.pop(0)
        if got:
            views[0] = views[0][got:]
    return total


class LocalBackend(Backend):
    """Keys are files below ``root``; temp files live in ``root/tmp``."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self.durable = durable
        self._dirs: set[str] = set()
        self._fds: OrderedDict[str, _Held] = OrderedDict()
        self._fd_lock = threading.Lock()
        self._inside: set[str] = set()  # folders below the root seen to be real folders, not links

    def _check_folder(self, key: str, path: str) -> None:
        """Refuse a key whose folder is (or goes through) a link or a non-folder inside the store.

        cas never makes links, so each folder below the root is checked once per
        process with one ``lstat`` (the root itself may be a link the user chose).
        """
        parent = os.path.dirname(path)
        if parent in self._inside:
            return
        below: list[str] = []
        folder = parent
        while folder not in self._inside and folder != self.url:
            if len(folder) <= len(self.url):
                raise SpecialFileError(f"{key}: its folder is outside the store", key=key)
            below.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(below):
            try:
                mode = os.lstat(folder).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return  # the rest does not exist yet: makedirs creates real folders
            if not stat.S_ISDIR(mode):
                raise SpecialFileError(f"{key}: its folder {folder} is {_kind(mode)}, not a folder", key=key)
            self._inside.add(folder)

    def _open_regular(self, key: str) -> int:
        """A read descriptor of ``key``, which must be a regular file inside the store."""
        path = self._path(key)
        self._check_folder(key, path)
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK):
                raise SpecialFileError(f"{key} is a symbolic link or a socket, not a file", key=key) from None
            raise
        try:
            mode = os.fstat(fd).st_mode
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise SpecialFileError(f"{key} is {_kind(mode)}, not a file", key=key)
        return fd

    # -- paths -------------------------------------------------------------
    def _path(self, key: str) -> str:
        if key[:1] == "/" or (".." in key and ".." in key.split("/")):
            raise InvalidArgumentError(f"bad key {key!r}")
        return f"{self.url}/{key}" if key else self.url

    def temp_path(self) -> str:
        tmp = os.path.join(self.url, TMP_FOLDER.rstrip("/"))
        if tmp not in self._dirs:
            os.makedirs(tmp, exist_ok=True)
            self._dirs.add(tmp)
        return os.path.join(tmp, uuid.uuid4().hex)

    def _ensure_parent(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self._check_folder(path[len(self.url) + 1 :], path)  # never create or write through a link out of the store
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)

    def _write_temp(self, data: Buffer) -> str:
        tmp = self.temp_path()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            _write_all(fd, [data], 0)
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def rename_into_place(self, tmp: str, key: str) -> None:
        path = self._path(key)
        self._ensure_parent(path)
        self._forget_fd(key)  # an open descriptor would keep reading the replaced file
        try:
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    # -- Backend -----------------------------------------------------------
    @_os_errors
    def read(self, key: str) -> bytes:
        fd = self._open_regular(key)
        with open(fd, "rb", closefd=True) as f:
            # Never more than the size the file had when opened (it is replaced, never grown).
            return f.read(os.fstat(fd).st_size)

    @_os_errors
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._borrow(key) as fd:
            return os.pread(fd, length, offset)

    @_os_errors
    def readv(self, key: str, offset: int, buffers: Sequence[memoryview]) -> int:
        with self._borrow(key) as fd:
            return _preadv_all(fd, list(buffers), offset)

    @contextmanager
    def _borrow(self, key: str) -> Iterator[int]:
        """A cached read descriptor of ``key``, never closed while borrowed.

        Closing a descriptor another thread is reading from would let the number
        be reused for another file, and that read would return its bytes.
        """
        with self._fd_lock:
            held = self._fds.get(key)
            if held is not None:
                self._fds.move_to_end(key)
                held.users += 1
        if held is None:
            fd = self._open_regular(key)
            with self._fd_lock:
                held = self._fds.get(key)
                if held is not None:  # another thread opened it meanwhile
                    os.close(fd)
                    held.users += 1
                else:
                    held = self._fds[key] = _Held(fd, 1)
                    while len(self._fds) > _MAX_OPEN:
                        self._retire(self._fds.popitem(last=False)[1])
        try:
            yield held.fd
        finally:
            with self._fd_lock:
                held.users -= 1
                if held.retired and held.users == 0:
                    os.close(held.fd)

    @staticmethod
    def _retire(held: _Held) -> None:
        """Close a descriptor taken out of the cache now, or when its last borrower is done."""
        held.retired = True
        if held.users == 0:
            os.close(held.fd)

    @_os_errors
    def write(self, key: str, data: Buffer) -> None:
        self.rename_into_place(self._write_temp(data), key)

    @_os_errors
    def create(self, key: str, data: Buffer) -> bool:
        path = self._path(key)
        self._ensure_parent(path)
        tmp = self._write_temp(data)
        try:
            os.link(tmp, path)  # atomic, and fails if the key exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    @_os_errors
    def open_sink(self) -> Sink:
        return _LocalSink(self)

    @_os_errors
    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def list_detailed(self, prefix: str, start: str = "") -> builtins.list[ListedKey]:
        """Keys below ``prefix`` (their names there beginning with ``start``) with ``lstat``'s time and size."""
        found = []
        for key in self.list(prefix):  # never follows a link
            if start and not key[len(prefix) :].startswith(start):
                continue
            try:
                st = os.lstat(f"{self.url}/{key}")
            except FileNotFoundError:
                continue  # removed meanwhile (another gc pass)
            except OSError as exc:
                raise BackendError(f"local store at {key}: {exc.strerror or exc}") from exc
            found.append(ListedKey(key, st.st_mtime, st.st_size))
        return found

    def list(self, prefix: str) -> Iterator[str]:
        """Keys below ``prefix``; a link is listed as a key (reading it fails), never followed."""
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.url
        root_len = len(self.url) + 1
        if base != self.url:
            if os.path.islink(base):
                raise SpecialFileError(f"{prefix} is a symbolic link, not a folder", key=prefix)
            self._check_folder(prefix, os.path.join(base, "x"))
        stack = [base]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            yield entry.path[root_len:].replace(os.sep, "/")
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise BackendError(f"local store at {prefix}: {exc.strerror or exc}") from exc

    @_os_errors
    def delete(self, key: str) -> None:
        self._forget_fd(key)
        os.unlink(self._path(key))

    @_os_errors
    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._forget_fd(key)
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass

    @_os_errors
    def delete_if_old(self, key: str, cutoff: float) -> bool:
        """Move the file aside, then look at its timestamp: a writer's refresh either came
        before the move (the file goes back) or finds no file (and the writer writes anew)."""
        went = self._delete_aside(key, self.temp_path(), cutoff)
        if went is None:
            raise FileNotFoundError(errno.ENOENT, "no such key", key)
        return went

    def delete_many_if_old(self, keys: Sequence[str], cutoff: float) -> builtins.list[bool | None]:
        """``delete_if_old`` for a batch, with one folder of ``tmp/`` for all and no per-call overhead."""
        aside = self.temp_path()
        results: builtins.list[bool | None] = []
        try:
            os.mkdir(aside)
            try:
                for i, key in enumerate(keys):
                    results.append(self._delete_aside(key, f"{aside}/{i}", cutoff))
            finally:
                try:
                    os.rmdir(aside)
                except OSError:
                    pass  # left for a later pass (tmp/ leftovers)
        except OSError as exc:
            raise BackendError(f"local store at {aside}: {exc.strerror or exc}") from exc
        return results

    def _delete_aside(self, key: str, moved: str, cutoff: float) -> bool | None:
        """Move the file to ``moved``, then look at its timestamp (see ``delete_if_old``); None if absent."""
        path = self._path(key)
        try:
            os.rename(path, moved)
        except (FileNotFoundError, NotADirectoryError):
            return None  # another pass removed it
        self._forget_fd(key)
        try:
            try:
                stamp = os.lstat(moved).st_mtime
            except FileNotFoundError:  # another pass (grace 0) set it aside from our tmp/ folder
                return None
            if stamp > cutoff:
                try:
                    os.link(moved, path)  # back in place, unless a writer stored it again meanwhile
                except FileExistsError:
                    pass
                return False
            return True
        finally:
            try:
                os.unlink(moved)
            except FileNotFoundError:
                pass

    def _forget_fd(self, key: str) -> None:
        with self._fd_lock:
            held = self._fds.pop(key, None)
            if held is not None:
                self._retire(held)

    def _lstat(self, key: str) -> os.stat_result:
        path = self._path(key)
        self._check_folder(key, path)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise SpecialFileError(f"{key} is {_kind(st.st_mode)}, not a file", key=key)
        return st

    @_os_errors
    def size(self, key: str) -> int:
        return self._lstat(key).st_size

    @_os_errors
    def touch(self, key: str) -> None:
        path = self._path(key)
        self._check_folder(key, path)
        os.utime(path, follow_symlinks=False)

    @_os_errors
    def mtime(self, key: str) -> float:
        return self._lstat(key).st_mtime

    def close(self) -> None:
        with self._fd_lock:
            for held in self._fds.values():
                self._retire(held)
            self._fds.clear()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"

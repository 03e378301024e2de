"""``cas://``: the files of artifacts as a read-only fsspec filesystem, for any tool that reads through fsspec.

A URL names an artifact and a file inside it::

    cas://<ref>/<path in the artifact>

``<ref>`` is what ``Store.get`` takes: a name (``features``), a version,
label or tag (``features@3``, ``features@v1``, ``features@prod``) or a hash
(prefix). The ref ends at the first path segment holding an ``@``, or else is
the first segment, so a name containing ``/`` needs its ``@version``
(``cas://demo/model@2/data.parquet``). ``cas://`` lists the names, and
``cas://<ref>`` the artifact's files as folders and files.

The store is the storage option ``store`` (a URL, or an open ``cas.Store``),
else the default store (``CAS_STORE``, or the nearest ``.cas/``)::

    pd.read_parquet("cas://raw@1/data.parquet", storage_options={"store": "s3://bucket/cas"})
    pyarrow.dataset.dataset("raw@1", filesystem=CasFileSystem(store=store))

Every byte read is verified against its hash; a range read fetches only the
chunks it touches. Nothing can be written (``ReadOnlyStoreError``).
"""

from __future__ import annotations

import os
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from cas.errors import ObjectNotFoundError, ReadOnlyStoreError
from cas.store import Store
from cas.store import open as open_store
from cas.trees import TreeReader

__all__ = ["CasFileSystem"]


class CasFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec has no type hints
    """A read-only view of a store's artifacts: ``cas://<ref>/<path>``."""

    protocol = "cas"
    cachable = False  # each holds an open Store: no process-wide cache keeping it (and its threads) alive
    root_marker = ""

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        storage_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(store, Store):
            self.store = store
        else:
            self.store = open_store(store, create=False, storage_options=storage_options)
        self._readers: dict[str, TreeReader] = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path[0] if isinstance(path, list) else path)
        if text.startswith("cas://"):
            text = text[len("cas://") :]
        elif text.startswith("cas::"):
            text = text[len("cas::") :]
        return text.strip("/")

    # -- naming ----------------------------------------------------------------
    def _split(self, path: str) -> tuple[str, str]:
        """(ref, path inside the artifact) of a stripped path; ('', '') for the root."""
        parts = [p for p in self._strip_protocol(path).split("/") if p]
        if not parts:
            return "", ""
        cut = next((i for i, part in enumerate(parts) if "@" in part), 0)
        return "/".join(parts[: cut + 1]), "/".join(parts[cut + 1 :])

    def _reader(self, ref: str) -> TreeReader:
        reader = self._readers.get(ref)
        if reader is None:
            try:
                reader = self.store.reader(ref)
            except ObjectNotFoundError as exc:  # RefNotFoundError too
                raise FileNotFoundError(f"cas://{ref}: {exc}") from None
            if len(self._readers) > 64:
                self._readers.clear()
            self._readers[ref] = reader
        return reader

    # -- listing ---------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        ref, inner = self._split(path)
        if not ref:
            entries = [{"name": name, "size": 0, "type": "directory"} for name in sorted(self.store.names())]
        else:
            entries = self._ls_artifact(ref, inner)
        return entries if detail else [e["name"] for e in entries]

    def _ls_artifact(self, ref: str, inner: str) -> list[dict[str, Any]]:
        reader = self._reader(ref)
        prefix = f"{inner}/" if inner else ""
        files: list[dict[str, Any]] = []
        folders: set[str] = set()
        for file in reader.paths():
            if file == inner:  # ls of a file: the file itself
                return [{"name": f"{ref}/{file}", "size": reader.size(file), "type": "file"}]
            if not file.startswith(prefix):
                continue
            head, sep, _ = file[len(prefix) :].partition("/")
            if sep:
                folders.add(f"{ref}/{prefix}{head}")
            else:
                files.append({"name": f"{ref}/{file}", "size": reader.size(file), "type": "file"})
        if not files and not folders and inner:
            raise FileNotFoundError(f"cas://{ref}/{inner}: no such file or folder in the artifact")
        return [{"name": f, "size": 0, "type": "directory"} for f in sorted(folders)] + files

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        ref, inner = self._split(path)
        if not ref:
            return {"name": "", "size": 0, "type": "directory"}
        reader = self._reader(ref)
        if inner in reader.paths():
            return {"name": f"{ref}/{inner}", "size": reader.size(inner), "type": "file"}
        if not inner or any(p.startswith(f"{inner}/") for p in reader.paths()):
            return {"name": f"{ref}/{inner}".rstrip("/"), "size": 0, "type": "directory"}
        raise FileNotFoundError(f"cas://{ref}/{inner}: no such file or folder in the artifact")

    # -- reading ---------------------------------------------------------------
    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        ref, inner = self._split(path)
        reader = self._reader(ref)
        size = self._file_size(reader, ref, inner)
        begin = 0 if start is None else (start if start >= 0 else max(0, size + start))
        stop = size if end is None else (end if end >= 0 else max(0, size + end))
        return reader.read_range(inner, begin, stop)

    def _file_size(self, reader: TreeReader, ref: str, inner: str) -> int:
        if inner not in reader.paths():
            raise FileNotFoundError(f"cas://{ref}/{inner}: no such file in the artifact")
        return reader.size(inner)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs: Any) -> _CasFile:
        if mode != "rb":
            raise ReadOnlyStoreError(f"cas:// is read-only: can not open {path!r} with mode {mode!r}")
        ref, inner = self._split(path)
        reader = self._reader(ref)
        size = self._file_size(reader, ref, inner)
        return _CasFile(self, path, reader, inner, size, block_size=block_size or "default", **kwargs)

    # -- nothing writes ----------------------------------------------------------
    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise ReadOnlyStoreError("cas:// is read-only: store files with put")

    mkdir = makedirs = rm = rm_file = _rm = rmdir = touch = mv = cp_file = put_file = pipe_file = _refuse


class _CasFile(AbstractBufferedFile):  # type: ignore[misc]
    """A file of an artifact; each read fetches (and verifies) only the chunks it needs."""

    def __init__(self, fs: CasFileSystem, path: str, reader: TreeReader, inner: str, size: int, **kwargs: Any) -> None:
        self._tree_reader = reader
        self._inner = inner
        super().__init__(fs, path, mode="rb", size=size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self._tree_reader.read_range(self._inner, start, end)

"""The ``cas`` command line: git-like commands over a store (the only module using click and rich)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

import cas
from cas.backends.base import DEADLINE_VARIABLE, TIMEOUT_VARIABLE, Timeouts
from cas.config import CONFIG_KEY
from cas.destination import unsafe_file_name
from cas.hashing import short
from cas.progress import ProgressCallback, ProgressEvent
from cas.store import _discover
from cas.strays import remove_stray

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# What a terminal would act on or hide: C0/C1 controls, DEL, bidi and zero-width marks, lone surrogates.
_HIDDEN = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[{_HIDDEN}]")
_UNPRINTABLE_LINE = re.compile(f"[\\t\\n{_HIDDEN}]")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with what a terminal would act on or hide spelt as escapes (also newlines if ``one_line``).

    Names, paths and metadata come from the store, whose writer may not be the
    user: none of it may move the cursor, recolour the screen or hide a character.
    """
    pattern = _UNPRINTABLE_LINE if one_line else _UNPRINTABLE
    return pattern.sub(lambda m: ascii(m.group())[1:-1], text)


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``2h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 90, 30s, 15m, 2h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Context:
    def __init__(self, store_url: str | None, debug: bool, *, from_environment: bool = False) -> None:
        self.store_url = store_url
        self.debug = debug
        #: The URL is CAS_STORE's: cas.open finds it there, with CAS_STORAGE_OPTIONS (credentials, endpoint).
        self.from_environment = from_environment
        self.out = Console(highlight=False, soft_wrap=True)
        self._store: cas.Store | None = None

    def store(self, *, create: bool = False) -> cas.Store:
        if self._store is None:
            if self.store_url and self.from_environment:
                self._store = cas.open(None, create=create)
            else:
                self._store = cas.open(self.store_url, create=create) if self.store_url else _discovered(create)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def busy(self, message: str) -> Any:
        """A spinner with ``message`` on a terminal while a long operation runs; nothing when piped."""
        if self.out.is_terminal:
            return Console(stderr=True).status(message)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def progress(self, *, enabled: bool = True) -> Iterator[ProgressCallback | None]:
        """A progress callback drawing one rich bar per phase on stderr when it is a terminal; else None."""
        err = Console(stderr=True)
        if not enabled or not err.is_terminal:
            yield None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err) as bars:
            tasks: dict[str, TaskID] = {}

            def show(event: ProgressEvent) -> None:
                if event.phase not in tasks:
                    label = escape(printable(event.phase, one_line=True))
                    tasks[event.phase] = bars.add_task(label, total=event.total)
                bars.update(tasks[event.phase], completed=event.done, total=event.total)
                if event.finished:
                    del tasks[event.phase]

            yield show

    def say(self, text: str = "") -> None:
        self.out.print(printable(text), markup=False)

    def warn(self, text: str) -> None:
        click.echo(printable(text, one_line=True), err=True)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        """A rich table on a terminal; tab-separated lines when piped."""
        if self.out.is_terminal:
            table = Table(*headers, box=None, header_style="bold")
            for row in rows:
                table.add_row(*(printable(str(c), one_line=True) for c in row))
            self.out.print(table)
        else:
            click.echo("\t".join(headers))
            for row in rows:
                click.echo("\t".join(printable(str(c), one_line=True) for c in row))


def _discovered(create: bool) -> cas.Store:
    found = _discover()
    if found is None and not create:
        raise cas.StoreNotFoundError("no cas store here or in any parent folder: run 'cas init' or pass --store")
    return cas.open(found, create=True)


class _Group(click.Group):
    """Turns cas errors (and the system's: a full disk, a refused permission) into one line on stderr
    and exit status 1; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (cas.CasError, OSError) as exc:
            state = ctx.obj
            if state is not None and state.debug:
                raise
            click.echo(f"cas: error: {printable(str(exc) or type(exc).__name__, one_line=True)}", err=True)
            ctx.exit(1)
        finally:
            if ctx.obj is not None:
                ctx.obj.close()


pass_state = click.make_pass_decorator(_Context)


@click.group(cls=_Group)
@click.option("--store", "store_url", envvar="CAS_STORE", metavar="URL", help="Store URL or path (env CAS_STORE).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Object stores: wait this long to connect, and for each read (env CAS_TIMEOUT; default 5 and 15).",
)
@click.option(
    "--deadline",
    type=float,
    metavar="SECONDS",
    help="Object stores: the most one request may take, retries included (env CAS_DEADLINE; default 45).",
)
@click.version_option(cas.__version__, prog_name="cas")
@click.pass_context
def main(ctx: click.Context, store_url: str | None, debug: bool, timeout: float | None, deadline: float | None) -> None:
    """A content-addressed artifact store with a git-like model."""
    from_environment = ctx.get_parameter_source("store_url") == click.core.ParameterSource.ENVIRONMENT
    ctx.obj = _Context(store_url, debug, from_environment=from_environment)
    Timeouts.resolve(timeout, deadline)  # refuse a bad value before anything is opened
    # In the environment, so every store this command opens (remotes too) uses them.
    if timeout is not None:
        os.environ[TIMEOUT_VARIABLE] = repr(timeout)
    if deadline is not None:
        os.environ[DEADLINE_VARIABLE] = repr(deadline)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@main.command()
@click.argument("url", required=False)
@pass_state
def init(state: _Context, url: str | None) -> None:
    """Create a store (default: ./.cas)."""
    with cas.open(url or state.store_url or ".cas") as store:
        state.say(f"Initialized cas store in {store.url}")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "-n", help="Name to record the content under (a new version if it differs from the latest).")
@click.option("--version", "label", help="An explicit version label, e.g. v1.0 (a new label makes a new version).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the version (repeatable).")
@click.option("--new-version", is_flag=True, help="Make a new version even if the latest holds the same content.")
@pass_state
def put(
    state: _Context, path: Path, name: str | None, label: str | None, tags: tuple[str, ...], new_version: bool
) -> None:
    """Store a file or a folder.

    With --name, putting what the name's latest version already holds
    returns that version instead of making a new one.
    """
    store = state.store(create=True)
    start = time.perf_counter()
    with state.busy(f"storing {path} (hashing, chunking, writing)"):
        ref = store.put(path, name, version=label, tags=tags, new_version=new_version)
    info = store.info(ref)
    took = time.perf_counter() - start
    state.say(f"{ref} {ref.short}  {info.size:,} bytes, {len(info.files)} files ({took:.2f} s)")


@main.command()
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write (file or folder).")
@click.option("--force", "-f", is_flag=True, help="Without -o: replace a file, or write into a folder, already there.")
@pass_state
def get(state: _Context, ref: str, output: Path | None, force: bool) -> None:
    """Write an artifact's files (to stdout for a single non-file artifact without -o).

    Without -o, a file or folder goes to its stored name in the current folder,
    if that is a plain name (else to its short hash), and never replaces what
    is there without --force. With -o, a file replaces a file at that path; a
    folder is written into a folder (created if missing).
    """
    store = state.store()
    info = store.info(ref)
    if output is None:
        if info.materializer == "cas.path":
            output = _default_output(state, info, force)
        elif len(info.files) == 1:
            sys.stdout.buffer.write(store.reader(info.ref).read_bytes(info.files[0].path))
            return
        else:
            raise click.UsageError("this artifact has several files: pass -o FOLDER")
    with state.busy(f"restoring {info.ref} to {output} ({info.size:,} bytes, verifying every chunk)"):
        written = store.export(info.ref, output)  # the artifact just looked at, even if the name moved since
    state.say(f"{info.ref.short} -> {written}")


def _default_output(state: _Context, info: cas.ArtifactInfo, force: bool) -> Path:
    """The stored name in the current folder if it is a plain, safe name, else the short hash."""
    stored = info.metadata.get("name")
    why = unsafe_file_name(stored)
    name = info.ref.short if why is not None else str(stored)
    if why is not None:
        shown = ascii(stored) if isinstance(stored, str) else type(stored).__name__
        state.warn(f"cas: the stored name {shown} {why}: writing to {name} instead (-o chooses the path)")
    target = Path(name)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return target
    if stat.S_ISLNK(st.st_mode):
        raise cas.UnsafeDestinationError(f"{name} here is a symlink: pass -o PATH to say where to write")
    if not force:
        raise cas.DestinationExistsError(f"{name} already exists here: pass --force to replace it, or -o PATH")
    as_folder = info.metadata.get("kind") == "directory" or len(info.files) != 1
    if as_folder != stat.S_ISDIR(st.st_mode):
        raise cas.DestinationExistsError(
            f"{name} here is a {'folder' if stat.S_ISDIR(st.st_mode) else 'file'}, "
            f"the artifact is a {'folder' if as_folder else 'file'}: pass -o PATH"
        )
    return target


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state: _Context, ref: str, as_json: bool) -> None:
    """Type, metadata, sizes, chunks and producing run of an artifact."""
    store = state.store()
    info = store.info(ref)
    producer = store.producer(info.ref)
    if as_json:
        data = asdict(info)
        data["producer"] = producer.id if producer else None
        _dump(data)
        return
    state.say(f"artifact  {info.ref.hash}")
    if info.ref.name:
        state.say(f"ref       {info.ref}")
    state.say(f"type      {info.python_type} ({info.materializer} v{info.materializer_version})")
    state.say(f"size      {info.size:,} bytes, stored in {info.stored_size:,} bytes, {info.chunks} chunks")
    for key, value in {**info.metadata, **info.user_metadata}.items():
        state.say(f"  {key}: {value}")
    for f in info.files[:20]:
        state.say(f"  {f.path}  {f.size:,} bytes")
    if producer is not None:
        state.say(f"made by   {producer}")


#: Entries ``cas log`` shows unless told otherwise (``-n``, ``--all``).
LOG_PAGE = 20


@main.command()
@click.argument("name", required=False)
@click.option("--step", "-s", help="Only runs of this step.")
@click.option("-n", "limit", type=click.IntRange(min=0), help=f"At most N entries (default {LOG_PAGE}).")
@click.option("--skip", type=click.IntRange(min=0), default=0, help="Skip the N newest entries (the next page).")
@click.option("--all", "show_all", is_flag=True, help="Every entry (reads them all: slow on an object store).")
@click.option("--oneline", is_flag=True, help="One short line per entry.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def log(
    state: _Context,
    name: str | None,
    step: str | None,
    limit: int | None,
    skip: int,
    show_all: bool,
    oneline: bool,
    as_json: bool,
) -> None:
    """Runs, newest first; with NAME, the versions of that artifact and their runs. A page at a time."""
    if show_all and limit is not None:
        raise click.UsageError("-n and --all do not go together")
    store = state.store()
    page = None if show_all else (LOG_PAGE if limit is None else limit)
    wanted = None if page is None else page + 1  # one more tells whether there is a next page
    entries: Any
    if name is None:
        entries = store.log(step=step, limit=wanted, offset=skip)
    else:
        entries = store.history(name, step=step, limit=wanted, offset=skip)
    _warn_skipped(state, entries.skipped)
    more = page is not None and len(entries) > page
    shown = list(entries)[:page]
    if as_json:
        _dump([_run_json(e) if name is None else _version_json(e) for e in shown])
    elif name is None:
        for r in shown:
            state.say(f"{r.short} {r.step} {'cache hit' if r.status == 'cached' else r.status}" if oneline else str(r))
    else:
        for v in shown:
            state.say(f"{v.ref.short} {v.ref}" if oneline else str(v))
    if more:
        state.warn(f"cas: more entries: --skip {skip + len(shown)} for the next page, --all for every one")


def _warn_skipped(state: _Context, skipped: list[str]) -> None:
    for line in skipped:  # unreadable runs or versions: left out, and said so on stderr
        state.warn(f"cas: skipped {line}")


def _run_json(run: cas.Run) -> dict[str, Any]:
    return {
        "run": run.id, "step": run.step, "status": run.status, "started": run.started,
        "ended": run.ended, "params": run.params,
        "inputs": {k: v.hex() for k, v in run.inputs.items()},
        "outputs": {k: v.hex() for k, v in run.outputs.items()},
        "cached_from": run.cached_from.hex() if run.cached_from else None,
    }  # fmt: skip


def _version_json(version: cas.VersionLog) -> dict[str, Any]:
    return {"ref": str(version.ref), "hash": version.ref.hash, "created": version.created,
            "run": version.run.id if version.run else None}  # fmt: skip


@main.command()
@click.argument("ref")
@click.option("--down", is_flag=True, help="What used it, instead of where it came from.")
@click.option("--depth", type=int, help="At most this many runs away.")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid", "json"]), default="text")
@pass_state
def lineage(state: _Context, ref: str, down: bool, depth: int | None, fmt: str) -> None:
    """Where an artifact came from (or, with --down, what used it)."""
    graph = state.store().lineage(ref, direction="down" if down else "up", depth=depth)
    text = {"text": graph.to_text, "dot": graph.to_dot, "mermaid": graph.to_mermaid, "json": graph.to_json_text}
    click.echo(printable(text[fmt]().rstrip("\n")))


@main.command()
@click.argument("ref")
@click.argument("tag_name")
@click.option("--delete", "-d", is_flag=True, help="Remove the tag NAME@TAG instead (REF is the name).")
@pass_state
def tag(state: _Context, ref: str, tag_name: str, delete: bool) -> None:
    """Point NAME@TAG at the version REF names (or remove it with --delete)."""
    store = state.store()
    if delete:
        store.untag(f"{ref.partition('@')[0]}@{tag_name}")
        state.say(f"removed tag {ref.partition('@')[0]}@{tag_name}")
        return
    resolved = store.tag(ref, tag_name)
    state.say(f"{resolved.name}@{tag_name} -> {resolved} {resolved.short}")


@main.command()
@click.argument("refs", nargs=-1, required=True)
@pass_state
def rm(state: _Context, refs: tuple[str, ...]) -> None:
    """Remove versions (NAME@N) or whole names; gc frees the bytes.

    A name that breaks the naming rules (planted, or pulled by an older cas) is
    removed by its exact spelling; after ``--`` when it begins with '-'.
    """
    store = state.store()
    for ref in refs:
        try:
            removed = store.delete(ref)
        except (cas.InvalidNameError, cas.RefNotFoundError):  # "a@b" reads as version b of a
            removed = remove_stray(store.backend, ref)
            if not removed:
                raise
        for ref_removed in removed:
            state.say(f"removed {ref_removed}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--grace", type=parse_duration, help="Keep unreachable files younger than this (e.g. 0, 30m, 1d).")
@click.option("--repack", is_flag=True, help="Merge every small pack and the whole recent chunk index now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def gc(state: _Context, dry_run: bool, grace: float | None, repack: bool, as_json: bool) -> None:
    """Remove what no ref and no logged run reaches (after the grace period), then consolidate packs and index."""
    with state.progress(enabled=not as_json) as progress:
        report = state.store().gc(dry_run=dry_run, grace=grace, repack=repack, progress=progress)
    if as_json:
        merged = report.consolidation
        _dump({"dry_run": report.dry_run, "grace": report.grace, "removed": dict(report.removed),
               "bytes": dict(report.freed), "repacked": report.repacked, "kept_young": report.kept_young,
               "outlived_grace": report.outlived_grace,
               "consolidated": None if merged is None else {
                   "tables_written": merged.tables_written, "index_files_merged": merged.index_files_merged,
                   "tables_merged": merged.tables_merged, "rows": merged.rows, "packs_merged": merged.packs_merged,
                   "packs_written": merged.packs_written}})  # fmt: skip
    else:
        state.say(str(report))


@main.command()
@click.option("--repair", is_flag=True, help="Remove corrupt objects (never refs) and say what falls short.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def fsck(state: _Context, repair: bool, as_json: bool) -> None:
    """Verify every stored byte and every reference; exit 1 on problems."""
    with state.progress(enabled=not as_json) as progress:
        report = state.store().fsck(repair=repair, progress=progress)
    if as_json:
        _dump({"ok": report.ok, "checked": dict(report.checked), "bytes": report.bytes_checked,
               "corrupt": report.corrupt, "missing": report.missing, "dangling": report.dangling,
               "repaired": report.repaired, "unchecked": report.unchecked})  # fmt: skip
    else:
        state.say(str(report))
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def du(state: _Context, as_json: bool) -> None:
    """Counts and sizes by kind; logical vs stored bytes; the largest names."""
    with state.progress(enabled=not as_json) as progress:
        usage = state.store().du(progress=progress)
    if as_json:
        _dump({"counts": dict(usage.counts), "sizes": dict(usage.sizes), "logical_bytes": usage.logical_bytes,
               "unique_bytes": usage.unique_bytes, "stored_bytes": usage.stored_bytes,
               "dedup_ratio": usage.dedup_ratio, "compression_ratio": usage.compression_ratio,
               "largest": [{"name": n, "versions": v, "bytes": b} for n, v, b in usage.largest]})  # fmt: skip
        return
    state.table(["kind", "count", "bytes"], [[k, f"{usage.counts[k]:,}", f"{usage.sizes[k]:,}"]
                                             for k in sorted(usage.counts)])  # fmt: skip
    state.say(f"logical {usage.logical_bytes:,} B, stored {usage.stored_bytes:,} B: dedup "
              f"{usage.dedup_ratio:.2f}x, compression {usage.compression_ratio:.2f}x")  # fmt: skip
    if usage.largest:
        state.table(["name", "versions", "bytes"], [[n, v, f"{b:,}"] for n, v, b in usage.largest])


@main.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def ls(state: _Context, as_json: bool) -> None:
    """Names, with their latest version."""
    store = state.store()
    page = cas.history.names_page(store.repository)  # one listing, then the latest files read in parallel
    _warn_skipped(state, page.skipped)
    rows = [{"name": e.name, "latest": str(e.latest), "hash": e.latest.hash} for e in page]
    if as_json:
        _dump(rows)
    else:
        state.table(["name", "latest", "hash"], [[r["name"], r["latest"], short(r["hash"])] for r in rows])


@main.group()
def remote() -> None:
    """Other stores to push to, pull from or read through."""


@remote.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--read-through", is_flag=True, help="Fetch what this store lacks from it on get.")
@click.option("--trust-cache", is_flag=True, help="Let runs pulled from it answer @step cache lookups here.")
@pass_state
def remote_add(state: _Context, name: str, url: str, read_through: bool, trust_cache: bool) -> None:
    """Add (or replace) the remote NAME at URL (a path or s3://bucket/prefix ...)."""
    added = state.store().remotes.add(name, url, read_through=read_through, trust_cache=trust_cache)
    marks = [m for m, on in (("read-through", added.read_through), ("trusted for caching", added.trust_cache)) if on]
    state.say(f"remote {added.name} -> {added.url}" + (f" ({', '.join(marks)})" if marks else ""))


@remote.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def remote_list(state: _Context, as_json: bool) -> None:
    """The remotes of this store."""
    remotes = sorted(state.store().remotes.all().values(), key=lambda r: r.name)
    if as_json:
        _dump([asdict(r) for r in remotes])
    else:
        state.table(
            ["name", "url", "read-through", "trust-cache"],
            [[r.name, r.url, "yes" if r.read_through else "", "yes" if r.trust_cache else ""] for r in remotes],
        )


@remote.command(name="remove")
@click.argument("name")
@pass_state
def remote_remove(state: _Context, name: str) -> None:
    """Forget the remote NAME (nothing is deleted there)."""
    state.store().remotes.remove(name)
    state.say(f"removed remote {name}")


_CONFLICT = click.option(
    "--on-conflict",
    type=click.Choice(["fail", "skip", "rename"]),
    default="fail",
    show_default=True,
    help="A version both sides hold with different artifacts: stop, leave it out, or give it a new number.",
)


def _transfer_args(state: _Context, args: tuple[str, ...]) -> tuple[str | None, list[str] | None]:
    """``[REMOTE] [REF...]``: the first word is a remote if one has that name (or it looks like a URL)."""
    if not args:
        return None, None
    first, rest = args[0], list(args[1:])
    if first in state.store().remotes.all() or "://" in first or Path(first).is_dir():
        return first, rest or None
    return None, list(args)


def _transfer_command(action: str, help_text: str) -> None:
    """``cas push`` and ``cas pull``: the same arguments, opposite directions."""

    @main.command(name=action, help=help_text)
    @click.argument("args", nargs=-1, metavar="[REMOTE] [REF]...")
    @_CONFLICT
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_state
    def command(state: _Context, args: tuple[str, ...], on_conflict: str, as_json: bool) -> None:
        remote_name, refs = _transfer_args(state, args)
        store = state.store()
        move = store.push if action == "push" else store.pull
        with state.progress(enabled=not as_json) as progress:
            report = move(remote_name, refs, on_conflict=on_conflict, progress=progress)
        _transfer_report(state, report, as_json)


_transfer_command("push", "Copy refs (default: all, with every run) and their history to REMOTE (default: origin).")
_transfer_command("pull", "Copy refs (default: all, with every run) and their history from REMOTE (default: origin).")


def _transfer_report(state: _Context, report: cas.TransferReport, as_json: bool) -> None:
    if as_json:
        data = asdict(report)
        data["conflicts"] = [str(c) for c in report.conflicts]
        data["skipped"] = [str(s) for s in report.skipped]
        _dump(data)
    else:
        state.say(str(report))
    if report.conflicts or report.skipped:
        sys.exit(1)


@main.command()
@click.argument("url")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--trust-cache", is_flag=True, help="Let the cloned runs answer @step cache lookups here.")
@pass_state
def clone(state: _Context, url: str, path: Path | None, trust_cache: bool) -> None:
    """Make a new store at PATH (default ./.cas) holding everything the store at URL holds.

    Run again after an interruption, it completes the clone (as ``cas pull`` there would).
    """
    reports: list[cas.TransferReport] = []
    target = path if path is not None else Path(".cas")
    done = "completed the clone of" if (target / CONFIG_KEY).exists() else "cloned"
    with state.progress() as progress:
        cloned = cas.clone(url, target, trust_cache=trust_cache, on_report=reports.append, progress=progress)
    with cloned as store:
        state.say(f"{done} {url} into {store.url}: {sum(1 for _ in store.names())} names, {len(store.log())} runs")
    skipped = [s for r in reports for s in r.skipped]
    for s in skipped:
        state.say(f"  skipped {s}")
    if skipped:
        sys.exit(1)


@main.command()
@click.option("--port", "-p", type=int, default=8765, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (only this machine by default).")
@click.option("--store", "store_url", metavar="URL", help="The store to serve (as the global --store).")
@pass_state
def ui(state: _Context, port: int, host: str, store_url: str | None) -> None:
    """Browse artifacts, runs, lineage and visualizations in a web browser (read-only)."""
    from cas.ui.app import serve

    if store_url:
        state.store_url = store_url
    store = state.store()
    where = (
        "only this machine can connect"
        if host in ("127.0.0.1", "localhost", "::1")
        else "ANY machine that can reach it can read the store"
    )
    state.say(f"cas ui: http://{host}:{port}/ serving {store.url}, read-only; {where}. Ctrl-C stops it.")
    serve(store, host=host, port=port)


@main.command()
@click.argument("ref")
@pass_state
def visualize(state: _Context, ref: str) -> None:
    """Compute and store the visualizations of an artifact (the UI shows them)."""
    found = state.store().visualizations(ref, save=True)
    for v in found:
        state.say(f"{v.name:12} {v.media_type:16} {len(v.data):>9,} bytes")


@main.command()
@pass_state
def demo(state: _Context) -> None:
    """Run a small ML pipeline three times: executed, cached, one parameter changed."""
    from cas import demo as demo_module

    demo_module.run(state.store(create=True), say=state.say)


if __name__ == "__main__":
    main()

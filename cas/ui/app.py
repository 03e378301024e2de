"""``cas ui``: a read-only web view of one store (Flask, rendered on the server).

Every route is a GET that reads; nothing writes to the store: the app reads
through its own read-only views of it (``cas.ui.readonly``), so neither a
read-through fetch nor a visualization is ever kept. Hashes in URLs must be 64
hex digits and names pass the store's name rules, so no URL reaches a file
outside the store. Stored HTML is shown in a sandboxed frame, SVG and PNG as
images, everything else as escaped text, under a strict content policy.

Requests must name the server in their ``Host`` header (a loopback name, or
the address it serves on): a DNS-rebinding page, whose requests carry its own
host name, gets 421 and never a byte of the store. Everything read from the
store is untrusted: a record that can not be read is left out of a listing,
with a notice, and fails only the page that needs it.
"""

from __future__ import annotations

import io
import itertools
import re
import socket
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, abort, redirect, render_template, request, url_for

import cas
from cas import visualize
from cas.artifacts import ref_of
from cas.errors import CasError, IntegrityError, InvalidArgumentError, ObjectNotFoundError
from cas.hashing import short
from cas.objects import Artifact
from cas.refs import RefSpec, check_name
from cas.runs import Run
from cas.ui.graph import to_svg
from cas.ui.readonly import read_only_views
from materializers.visuals import Visualization, nice_size

PAGE = 50
#: A filtered run list reads at most this many runs per page.
MAX_SCAN = 5_000
#: A lineage page draws at most this many nodes (the nearest), with a notice when there are more.
LINEAGE_NODES = 2_000
#: Values are loaded for a preview only up to this size; bigger ones get their file listing only.
PREVIEW_BYTES = 64 << 20
#: Host names that always mean this machine.
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_HEX = re.compile(r"[0-9a-f]{64}")
_POLICY = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; frame-src 'self'; "
           "form-action 'self'; base-uri 'none'; frame-ancestors 'self'")  # fmt: skip
#: Stored documents (``/view``): no script, no fetch, no plugin, a unique origin (``sandbox``).
_VIEW_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"


def create_app(store: cas.Store, *, hosts: Iterable[str] | None = None) -> Flask:
    """The web app over ``store``, which it only reads (through read-only views of its backend).

    ``hosts``: the ``Host`` header values it answers (``name`` or ``name:port``; ``[::1]`` for IPv6);
    by default the loopback names on any port. Any other host gets 421.
    """
    app = Flask(__name__, static_folder="static", template_folder="templates")
    local, view = read_only_views(store)
    app.config["store"] = view
    app.config["views"] = (local, view) if view is not local else (local,)  # closed by close_app
    allowed = _host_set(hosts if hosts is not None else LOOPBACK)
    shown: OrderedDict[str, list[Visualization]] = OrderedDict()  # computed, not stored: an in-memory cache

    def visualizations(hex_hash: str) -> list[Visualization]:
        if hex_hash not in shown:
            digest = bytes.fromhex(hex_hash)
            try:
                found = visualize.stored(view.objects, digest)
                if found is None:
                    found = visualize.compute(
                        view.objects, digest, lambda d: view.get(d.hex(), trust_pickle=False), max_bytes=PREVIEW_BYTES
                    )
            except CasError:
                found = []
            shown[hex_hash] = found
            while len(shown) > 64:
                shown.popitem(last=False)
        return shown[hex_hash]

    @app.before_request
    def check_host() -> Response | None:
        # The header as sent (werkzeug's request.host tidies it); a request without one is refused too.
        host, port = _parse_host(request.environ.get("HTTP_HOST", ""), default_port=80)
        if (host, port) in allowed or (host, None) in allowed:
            return None
        return Response("421: this server does not answer to that host name\n", 421, mimetype="text/plain")

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", _POLICY)  # a route's own (stricter) policy wins
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.errorhandler(CasError)
    def cas_error(exc: CasError) -> tuple[str, int]:
        # 404: no such thing; 422: a stored record no reader accepts (damaged, or written to harm); 500: the rest
        status = 404 if isinstance(exc, (ObjectNotFoundError, InvalidArgumentError)) else 500
        status = 422 if isinstance(exc, IntegrityError) else status
        return render_template("error.html", message=str(exc), status=status), status

    @app.template_filter("size")
    def size_filter(n: int) -> str:
        return nice_size(int(n))

    @app.template_filter("when")
    def when_filter(t: float | None) -> str:
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
        except (OverflowError, OSError, ValueError):  # a time no calendar holds (records are checked; be sure)
            return "?"

    @app.template_filter("short")
    def short_filter(h: bytes | str) -> str:
        return h[:12] if isinstance(h, str) else short(h)

    @app.route("/")
    def index() -> Any:
        return redirect(url_for("artifacts"))

    @app.route("/artifacts")
    def artifacts() -> str:
        page = _page()
        names = sorted(view.names())
        rows, skipped = [], []
        for name in names[page * PAGE : (page + 1) * PAGE]:
            try:
                latest = ref_of(name, view.refs.resolve(RefSpec(name, None)))  # a name, even if it spells a hash
                art = _artifact(view, latest.hash)
            except CasError as exc:  # a bad ref or a ref to a non-artifact: this row only
                skipped.append(f"{name}: {exc}")
                continue
            rows.append({"name": name, "ref": latest, "type": art.python_type, "size": art.size})
        return render_template("artifacts.html", rows=rows, page=page, more=len(names) > (page + 1) * PAGE,
                               total=len(names), notices=_notices(skipped))  # fmt: skip

    @app.route("/names/<path:name>")
    def name_versions(name: str) -> str:
        check_name(name)
        page = _page()
        versions = view.history(name, limit=PAGE + 1, offset=page * PAGE)  # a page: one more says there is a next
        if not versions and not versions.skipped and page == 0:
            abort(404)
        more = len(versions) > PAGE
        del versions[PAGE:]
        skipped = list(versions.skipped)
        tags, labels = {}, {}
        try:
            tags, labels = view.refs.tags(name), view.refs.labels(name)
        except CasError as exc:
            skipped.append(f"tags and labels of {name}: {exc}")
        return render_template("name.html", name=name, versions=versions, tags=tags, labels=labels,
                               page=page, more=more, notices=_notices(skipped))  # fmt: skip

    @app.route("/artifact/<hex_hash>")
    def artifact(hex_hash: str) -> str:
        _check_hex(hex_hash)
        digest = bytes.fromhex(hex_hash)
        info = view.info(hex_hash)
        skipped: list[str] = []
        producer = view.producer(hex_hash, skipped=skipped)
        consumers = []
        for run_hash in view.run_index.consumers(digest)[:20]:
            try:
                consumers.append(view.run(run_hash))
            except CasError as exc:
                skipped.append(f"run {short(run_hash)}: {exc}")
        views = visualizations(hex_hash)
        return render_template("artifact.html", info=info, hash=hex_hash, names=view.refs.names_of(digest),
                               producer=producer, consumers=consumers, views=views,
                               notices=_notices(skipped))  # fmt: skip

    @app.route("/artifact/<hex_hash>/view/<int:number>", endpoint="view")
    def view_document(hex_hash: str, number: int) -> Response:
        _check_hex(hex_hash)
        views = visualizations(hex_hash)
        if not 0 <= number < len(views):
            abort(404)
        v = views[number]
        response = Response(v.data, mimetype=v.media_type)
        # Whatever the media type, a document opened on its own runs nothing and reaches nothing.
        response.headers["Content-Security-Policy"] = _VIEW_POLICY
        return response

    @app.route("/artifact/<hex_hash>/download")
    def download(hex_hash: str) -> Response:
        _check_hex(hex_hash)
        reader = view.reader(hex_hash)
        paths = reader.paths()
        if len(paths) == 1:
            name = paths[0].rsplit("/", 1)[-1]
            return Response(reader.read_bytes(paths[0]), mimetype="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{_safe(name)}"'})  # fmt: skip
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.writestr(path, reader.read_bytes(path))
        return Response(buffer.getvalue(), mimetype="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{hex_hash[:12]}.zip"'})  # fmt: skip

    @app.route("/runs")
    def runs() -> str:
        page = _page()
        step = request.args.get("step") or None
        name = request.args.get("name") or None
        pipeline = request.args.get("pipeline") or None
        wanted: set[bytes] | None = None
        if name:
            check_name(name)
            wanted = {bytes.fromhex(v.ref.hash) for v in view.history(name)}
        found: list[Run] = []
        skipped: list[str] = []
        filtered = bool(step or wanted is not None or pipeline)
        # Unfiltered pages skip straight to their runs; filtered ones read at most MAX_SCAN runs
        # from a cursor (the position in the log) and link to where they stopped.
        start = max(0, request.args.get("from", 0, type=int) or 0) if filtered else page * PAGE
        position = start
        next_from: int | None = None
        for run_hash in itertools.islice(view.run_index.newest(), start, None):
            if filtered and position - start >= MAX_SCAN:
                next_from = position
                break
            position += 1
            try:
                run = view.run(run_hash)
            except CasError as exc:
                skipped.append(f"run {short(run_hash)}: {exc}")
                continue
            if step and run.step != step and run.step.rsplit(".", 1)[-1] != step:
                continue
            if pipeline and (run.pipeline or {}).get("id") != pipeline:
                continue
            if wanted is not None and not wanted & {*run.inputs.values(), *run.outputs.values()}:
                continue
            if len(found) == PAGE:
                next_from = position - 1
                break
            found.append(run)
        more = next_from is not None
        return render_template("runs.html", runs=found, page=page, more=more, filtered=filtered, next_from=next_from,
                               step=step or "", name=name or "", pipeline=pipeline or "",
                               notices=_notices(skipped))  # fmt: skip

    @app.route("/run/<hex_hash>")
    def run(hex_hash: str) -> str:
        _check_hex(hex_hash)
        found = view.run(hex_hash)
        names = {h: view.refs.names_of(h) for h in {*found.inputs.values(), *found.outputs.values()}}
        return render_template("run.html", run=found, names=names)

    @app.route("/lineage/<kind>/<hex_hash>")
    def lineage(kind: str, hex_hash: str) -> str:
        _check_hex(hex_hash)
        direction = request.args.get("direction", "up")
        if direction not in ("up", "down") or kind not in ("artifact", "run"):
            abort(404)
        depth = request.args.get("depth", type=int)
        target: Any = view.run(hex_hash) if kind == "run" else hex_hash
        graph = view.lineage(target, direction, depth, limit=LINEAGE_NODES)
        links = {n.id: url_for("run" if n.kind == "run" else "artifact", hex_hash=n.id) for n in graph.nodes.values()}
        return render_template("lineage.html", svg=to_svg(graph, links), graph=graph, kind=kind, hash=hex_hash,
                               direction=direction, notices=graph.notes())  # fmt: skip

    @app.route("/store")
    def store_page() -> str:
        usage = local.du()  # this store's own bytes (never the read-through remote's)
        report = local.fsck() if request.args.get("fsck") == "1" else None
        return render_template("store.html", usage=usage, report=report, url=store.url)

    return app


def _page() -> int:
    page = request.args.get("page", 0, type=int)
    return max(0, page or 0)


def _check_hex(text: str) -> None:
    if not _HEX.fullmatch(text):
        abort(404)


def _artifact(store: cas.Store, hex_hash: str) -> Artifact:
    return Artifact.from_bytes(store.objects.get_object(bytes.fromhex(hex_hash)))


def _notices(skipped: list[str]) -> list[str]:
    """One notice for what a page left out because it could not be read."""
    if not skipped:
        return []
    shown = "; ".join(item[:300] for item in skipped[:3])
    return [f"{len(skipped)} unreadable records left out: {shown}" + (" ..." if len(skipped) > 3 else "")]


def _parse_host(text: str, *, default_port: int | None) -> tuple[str, int | None]:
    """``(host, port)`` of a ``Host`` value (``name``, ``name:port``, ``[v6]:port``); ("", None) if malformed."""
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
    elif text.count(":") > 1:  # a bare IPv6 address (in a configured host only)
        host, rest = f"[{text}]", ""
    else:
        host, sep, port = text.partition(":")
        rest = sep + port
    if (
        not host
        or host == "[]"
        or (rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit() and len(rest) < 8))
    ):
        return "", None
    return host, int(rest[1:]) if rest else default_port


def _host_set(hosts: Iterable[str]) -> set[tuple[str, int | None]]:
    return {parsed for h in hosts if (parsed := _parse_host(h, default_port=None))[0]}


def serving_hosts(host: str, port: int) -> list[str]:
    """The ``Host`` values a server bound to ``host:port`` answers: loopback names, ``host``, and for a
    wildcard address (``0.0.0.0``, ``::``) this machine's names and addresses."""
    names = [*LOOPBACK, host]
    if host in ("", "0.0.0.0", "::"):
        machine = socket.gethostname()
        names += [machine, socket.getfqdn()]
        try:
            names += [str(info[4][0]) for info in socket.getaddrinfo(machine, None)]
        except OSError:
            pass
    return [f"[{n}]:{port}" if ":" in n and not n.startswith("[") else f"{n}:{port}" for n in names if n]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "artifact"


def serve(store: cas.Store, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the UI until interrupted (threads: a slow page does not block the others)."""
    from werkzeug.serving import make_server

    app = create_app(store, hosts=serving_hosts(host, port))
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        close_app(app)


def close_app(app: Flask) -> None:
    """Release the read-only views ``create_app`` opened (their threads and the remote's files)."""
    for view in app.config.get("views", ()):
        view.close()

"""``cas ui``: a read-only web view of one store (Flask, rendered on the server).

Every route is a GET that reads; nothing writes to the store (visualizations
that are not stored yet are computed in memory). Hashes in URLs must be 64
hex digits and names pass the store's name rules, so no URL reaches a file
outside the store. Stored HTML is shown in a sandboxed frame, SVG and PNG as
images, everything else as escaped text, under a strict content policy.
"""

from __future__ import annotations

import io
import itertools
import re
import time
import zipfile
from collections import OrderedDict
from typing import Any

from flask import Flask, Response, abort, redirect, render_template, request, url_for

import cas
from cas.errors import CasError, InvalidNameError, ObjectNotFoundError
from cas.hashing import short
from cas.objects import Artifact, Tree
from cas.refs import check_name
from cas.runs import Run
from cas.ui.graph import to_svg
from materializers.visuals import Visualization, nice_size

PAGE = 50
#: A filtered run list reads at most this many runs per page.
MAX_SCAN = 5_000
_HEX = re.compile(r"[0-9a-f]{64}")
_POLICY = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; frame-src 'self'; "
           "form-action 'self'; base-uri 'none'; frame-ancestors 'self'")  # fmt: skip


def create_app(store: cas.Store) -> Flask:
    """The web app over ``store`` (which it only reads)."""
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config["store"] = store
    shown: OrderedDict[str, list[Visualization]] = OrderedDict()  # computed, not stored: an in-memory cache

    def visualizations(hex_hash: str) -> list[Visualization]:
        if hex_hash not in shown:
            try:
                shown[hex_hash] = store.visualizations(hex_hash, save=False)
            except CasError:
                shown[hex_hash] = []
            while len(shown) > 64:
                shown.popitem(last=False)
        return shown[hex_hash]

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.errorhandler(CasError)
    def cas_error(exc: CasError) -> tuple[str, int]:
        status = 404 if isinstance(exc, (ObjectNotFoundError, InvalidNameError)) else 500
        return render_template("error.html", message=str(exc), status=status), status

    @app.template_filter("size")
    def size_filter(n: int) -> str:
        return nice_size(int(n))

    @app.template_filter("when")
    def when_filter(t: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""

    @app.template_filter("short")
    def short_filter(h: bytes | str) -> str:
        return h[:12] if isinstance(h, str) else short(h)

    @app.route("/")
    def index() -> Any:
        return redirect(url_for("artifacts"))

    @app.route("/artifacts")
    def artifacts() -> str:
        page = _page()
        names = sorted(store.names())
        rows = []
        for name in names[page * PAGE : (page + 1) * PAGE]:
            latest = store.resolve(name)
            art = _artifact(store, latest.hash)
            rows.append({"name": name, "ref": latest, "type": art.python_type, "size": art.size})
        return render_template("artifacts.html", rows=rows, page=page, more=len(names) > (page + 1) * PAGE,
                               total=len(names))  # fmt: skip

    @app.route("/names/<path:name>")
    def name_versions(name: str) -> str:
        check_name(name)
        versions = store.log(name)
        if not versions:
            abort(404)
        tags = store.refs.tags(name)
        labels = store.refs.labels(name)
        return render_template("name.html", name=name, versions=versions, tags=tags, labels=labels)

    @app.route("/artifact/<hex_hash>")
    def artifact(hex_hash: str) -> str:
        _check_hex(hex_hash)
        info = store.info(hex_hash)
        producer = store.producer(hex_hash)
        consumers = [store.run(r) for r in store.run_index.consumers(bytes.fromhex(hex_hash))[:20]]
        views = visualizations(hex_hash)
        return render_template("artifact.html", info=info, hash=hex_hash, names=store.refs.names_of(bytes.fromhex(hex_hash)),
                               producer=producer, consumers=consumers, views=views)  # fmt: skip

    @app.route("/artifact/<hex_hash>/view/<int:number>")
    def view(hex_hash: str, number: int) -> Response:
        _check_hex(hex_hash)
        views = visualizations(hex_hash)
        if not 0 <= number < len(views):
            abort(404)
        v = views[number]
        response = Response(v.data, mimetype=v.media_type)
        if v.media_type == "text/html":  # shown in a sandboxed frame; scripts never run
            response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        return response

    @app.route("/artifact/<hex_hash>/download")
    def download(hex_hash: str) -> Response:
        _check_hex(hex_hash)
        reader = store.reader(hex_hash)
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
            wanted = {bytes.fromhex(r.hash) for r in store.versions(name)}
        found: list[Run] = []
        filtered = bool(step or wanted is not None or pipeline)
        # Unfiltered pages skip straight to their runs; filtered ones read at most MAX_SCAN runs
        # from a cursor (the position in the log) and link to where they stopped.
        start = request.args.get("from", 0, type=int) or 0 if filtered else page * PAGE
        position = start
        next_from: int | None = None
        for run_hash in itertools.islice(store.run_index.newest(), start, None):
            if filtered and position - start >= MAX_SCAN:
                next_from = position
                break
            position += 1
            try:
                run = store.run(run_hash)
            except CasError:
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
                               step=step or "", name=name or "", pipeline=pipeline or "")  # fmt: skip

    @app.route("/run/<hex_hash>")
    def run(hex_hash: str) -> str:
        _check_hex(hex_hash)
        found = store.run(hex_hash)
        names = {h: store.refs.names_of(h) for h in {*found.inputs.values(), *found.outputs.values()}}
        return render_template("run.html", run=found, names=names)

    @app.route("/lineage/<kind>/<hex_hash>")
    def lineage(kind: str, hex_hash: str) -> str:
        _check_hex(hex_hash)
        direction = request.args.get("direction", "up")
        if direction not in ("up", "down") or kind not in ("artifact", "run"):
            abort(404)
        depth = request.args.get("depth", type=int)
        target: Any = store.run(hex_hash) if kind == "run" else hex_hash
        graph = store.lineage(target, direction, depth)
        links = {n.id: url_for("run" if n.kind == "run" else "artifact", hex_hash=n.id) for n in graph.nodes.values()}
        return render_template("lineage.html", svg=to_svg(graph, links), graph=graph, kind=kind, hash=hex_hash,
                               direction=direction)  # fmt: skip

    @app.route("/store")
    def store_page() -> str:
        usage = store.du(progress=False)
        report = store.fsck(progress=False) if request.args.get("fsck") == "1" else None
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


def _tree(store: cas.Store, art: Artifact) -> Tree:
    return Tree.from_bytes(store.objects.get_object(art.tree))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "artifact"


def serve(store: cas.Store, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the UI until interrupted (threads: a slow page does not block the others)."""
    from werkzeug.serving import make_server

    server = make_server(host, port, create_app(store), threaded=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()

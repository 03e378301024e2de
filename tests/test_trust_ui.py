"""``cas ui`` over a store someone else writes: host checks, content policies, no writes, bad records, deep graphs.

Hostile records are planted as another writer of the store could: hash-valid
objects (``Run.to_bytes`` + ``put_object``), refs through the refs API, index
files with the backend. Pages are fetched with Flask's test client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

import cas
from cas import demo
from cas.hashing import to_hex
from cas.lineage import Edge, LineageGraph, Node
from cas.ui.app import LINEAGE_NODES, create_app, serving_hosts
from cas.ui.graph import layers, to_svg
from cas.ui.readonly import ReadOnlyBackend


def _files(store: cas.Store) -> dict[str, tuple[int, float]]:
    return {k: (store.backend.size(k), store.backend.mtime(k)) for k in store.backend.list("")}


def _crawl(client: FlaskClient, start: list[str], limit: int = 300) -> dict[str, int]:
    """Every page reachable from ``start`` (following links), with its status."""
    seen: dict[str, int] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        url = queue.pop()
        if url in seen:
            continue
        response = client.get(url)
        seen[url] = response.status_code
        if response.mimetype == "text/html" and "/view/" not in url:
            queue += [u.replace("&amp;", "&") for u in re.findall(r'(?:href|src)="(/[^"#]*)"', response.data.decode())]
    return seen


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cas.Store]:
    """The team's store: a demo pipeline's artifacts and runs, plus a few values."""
    with cas.open(tmp_path_factory.mktemp("team") / "store") as store:
        demo.run(store, say=lambda *_: None)
        store.put({"params": {"lr": 0.1}, "tags": ("a", "b")}, "samples/config")
        store.put(b"<script>alert(1)</script>" * 10, "samples/bytes")
        yield store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[cas.Store]:
    with cas.open(tmp_path / "store") as opened:
        opened.put(1, "a")
        opened.put({"x": [1, 2, 3]}, "b")
        opened.record_run(step="made.b", inputs={"x": "a"}, outputs={"y": "b"})
        yield opened


# -- hosts (DNS rebinding) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "status"),
    [("localhost", 302), ("localhost:8765", 302), ("127.0.0.1:1234", 302), ("[::1]:8765", 302),
     ("evil.example", 421), ("evil.example:8765", 421), ("localhost.evil.example", 421), ("127.0.0.1.nip.io", 421),
     ("localhost:80:80", 421), ("localhost:８０", 421), ("", 421)],
)  # fmt: skip
def test_only_requests_naming_this_machine_are_answered(store: cas.Store, host: str, status: int) -> None:
    client = create_app(store).test_client()
    response = client.get("/", headers={"Host": host})
    assert response.status_code == status
    if status == 421:
        assert client.get("/artifacts", headers={"Host": host}).data.count(b"a@1") == 0
        assert client.get("/static/ui.js", headers={"Host": host}).status_code == 421


def test_a_served_app_answers_its_own_address_and_port_only(store: cas.Store) -> None:
    client = create_app(store, hosts=serving_hosts("192.0.2.7", 8765)).test_client()
    for host in ("192.0.2.7:8765", "localhost:8765", "127.0.0.1:8765", "[::1]:8765"):
        assert client.get("/artifacts", headers={"Host": host}).status_code == 200, host
    for host in ("192.0.2.7:8766", "localhost", "evil.example:8765", "192.0.2.7"):
        assert client.get("/artifacts", headers={"Host": host}).status_code == 421, host
    assert "[::1]:80" in serving_hosts("::1", 80) and "localhost:80" in serving_hosts("0.0.0.0", 80)


# -- content policies -----------------------------------------------------------------------
def test_stored_documents_keep_their_sandbox_policy(team: cas.Store) -> None:
    client = create_app(team).test_client()
    for name in ("samples/config", "samples/bytes", "demo/model"):
        hex_hash = team.resolve(name).hash
        page = client.get(f"/artifact/{hex_hash}")
        count = len(re.findall(r'/view/\d+"', page.data.decode()))
        assert count >= 1
        for number in range(count):
            response = client.get(f"/artifact/{hex_hash}/view/{number}")
            policy = response.headers["Content-Security-Policy"]
            assert response.status_code == 200 and "sandbox" in policy and "script-src" not in policy, policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" not in page.headers["Content-Security-Policy"]  # pages keep the app's own policy


# -- read-only, also with a read-through remote ----------------------------------------------
def test_browsing_through_a_read_through_remote_writes_nothing(store_url: str, tmp_path: Path) -> None:
    team = cas.open(store_url)  # on the local disk, in memory and on S3
    with team.batch():  # packed objects: the remote's packs and pack indexes are read too
        for i in range(3):
            team.put({"i": i, "values": list(range(i * 10))}, f"batch/{i}")
    team.put(b"<script>alert(1)</script>" * 10, "samples/bytes")  # loose
    team.record_run(step="team.step", inputs={"x": "batch/0"}, outputs={"y": "samples/bytes"})
    local = cas.open(tmp_path / "local")
    local.remotes.add("team", team.url, read_through=True)
    # This store knows the team's names and runs but none of their objects: every page reads through.
    for prefix in ("refs/", "names/", "runlog/", "produced/", "consumed/"):
        for key in team.backend.list(prefix):
            local.backend.write(key, team.backend.read(key))
    before = _files(local)
    seen = _crawl(create_app(local).test_client(), ["/artifacts", "/runs", "/store", "/store?fsck=1"])
    assert all(status in (200, 302) for status in seen.values()), {u: s for u, s in seen.items() if s >= 400}
    for name in ("batch/1", "samples/bytes"):
        hex_hash = team.resolve(name).hash
        assert f"/artifact/{hex_hash}" in seen and f"/artifact/{hex_hash}/download" in seen
        assert any(u.startswith(f"/artifact/{hex_hash}/view/") for u in seen)  # computed from remote objects
    assert any(u.startswith("/lineage/") for u in seen) and any(u.startswith("/run/") for u in seen)
    assert _files(local) == before  # no object fetched, no visualization saved, no timestamp touched
    local.close()
    team.close()


def test_the_read_only_backend_refuses_every_write(store: cas.Store) -> None:
    backend = ReadOnlyBackend(store.backend)
    for write in (lambda: backend.write("refs/x", b""), lambda: backend.create("x", b""), backend.open_sink,
                  lambda: backend.delete("config"), lambda: backend.touch("config"),
                  lambda: backend.delete_if_old("config", 0.0)):  # fmt: skip
        with pytest.raises(cas.ReadOnlyStoreError):
            write()
    assert backend.read("config") == store.backend.read("config")


# -- bad records -----------------------------------------------------------------------------
def _plant_bad_run(store: cas.Store, **changes: object) -> bytes:
    template = store.log()[0]
    run_hash = store.objects.put_object(replace(template, **changes).to_bytes(), loose=True)  # type: ignore[arg-type]
    store.backend.write(f"runlog/2026-01-01/{99_999_999_999_999_999:020d}-{to_hex(run_hash)}", b"")
    for artifact in template.inputs.values():
        store.backend.write(f"consumed/{to_hex(artifact)}/{to_hex(run_hash)}", b"")
    for artifact in template.outputs.values():
        store.backend.write(f"produced/{to_hex(artifact)}/{to_hex(run_hash)}", b"")
    return run_hash


def test_bad_runs_and_refs_leave_the_other_pages_working(store: cas.Store) -> None:
    a, b = store.resolve("a").hash, store.resolve("b").hash
    bad_runs = [_plant_bad_run(store, ended=t, step=f"bad{i}") for i, t in enumerate((1e300, math.nan, -1.0))]
    store.refs.create_version("points/at/a/run", bad_runs[0])  # a name whose target is not an artifact
    store.backend.write("refs/b/@v/7", b"garbage")  # and a version file that is not a record
    client = create_app(store).test_client()
    assert client.get("/runs?step=x&from=-5").status_code == 200
    runs = client.get("/runs")
    assert runs.status_code == 200 and "made.b" in runs.data.decode() and "bad0" not in runs.data.decode()
    assert "3 unreadable records left out" in runs.data.decode()
    artifacts = client.get("/artifacts").data.decode()
    assert "a@1" in artifacts and "2 unreadable records left out" in artifacts  # b@7 and the name of a run
    assert "points/at/a/run: " in artifacts and "b: " in artifacts
    for page in ("/names/b", "/names/points/at/a/run", f"/artifact/{a}", f"/artifact/{b}", f"/lineage/artifact/{b}",
                 f"/lineage/artifact/{a}?direction=down", "/runs?step=made.b", "/runs?name=b"):  # fmt: skip
        response = client.get(page)
        assert response.status_code == 200, page
        assert ("unreadable" in response.data.decode()) == ("points" not in page), page  # its page reads no run
    for bad in bad_runs:  # the page that needs the bad record fails, alone and with a typed message
        response = client.get(f"/run/{to_hex(bad)}")
        assert response.status_code == 422 and "1970..3000" in response.data.decode()
    assert client.get(f"/artifact/{to_hex(bad_runs[0])}").status_code == 404  # a run is not an artifact


def test_an_int_of_5000_digits_is_shown_cut_short(store: cas.Store) -> None:
    ref = store.put(10**5000, "huge")
    views = store.visualizations("huge")
    assert "about 5,001 digits" in views[0].data.decode()
    nested = store.put({"n": [-(10**6000)], 10**4400: {10**4500}}, "nested")
    assert b"digits" in store.visualizations(nested)[0].data
    client = create_app(store).test_client()
    for hex_hash in (ref.hash, nested.hash):
        page = client.get(f"/artifact/{hex_hash}")
        assert page.status_code == 200 and "digits" in page.data.decode()


def test_previews_load_only_values_below_the_size_limit(store: cas.Store) -> None:
    from cas import visualize

    digest = bytes.fromhex(store.put(b"x" * 5000).hash)
    load = lambda d: store.get(d.hex(), trust_pickle=False)  # noqa: E731
    views = visualize.compute(store.objects, digest, load, max_bytes=1000)
    assert views[0].name == "note" and b"limit" in views[0].data and views[-1].name == "files"
    assert visualize.compute(store.objects, digest, load)[0].name == "summary"


# -- deep and cyclic lineage ------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[cas.Store, list[cas.Ref]]]:
    with cas.open(tmp_path_factory.mktemp("chain") / "store") as store:
        with store.batch():
            refs = [store.put(i) for i in range(2001)]
        for before, after in zip(refs, refs[1:], strict=False):
            store.record_run(step="chain.step", inputs={"x": before}, outputs={"y": after}, parents=[])
        yield store, refs


def test_the_lineage_page_of_a_deep_chain(chain: tuple[cas.Store, list[cas.Ref]]) -> None:
    store, refs = chain
    client = create_app(store).test_client()
    page = client.get(f"/lineage/artifact/{refs[600].hash}")  # 600 runs deep: drawn whole
    text = page.data.decode()
    assert page.status_code == 200 and "601 artifacts, 600 runs" in text and "stopped after" not in text
    page = client.get(f"/lineage/artifact/{refs[2000].hash}")  # 2,000 runs deep: the nearest part, and a notice
    text = page.data.decode()
    assert page.status_code == 200 and f"stopped after {LINEAGE_NODES:,} nodes" in text
    assert client.get(f"/lineage/artifact/{refs[0].hash}?direction=down&depth=5").status_code == 200
    run_id = store.log(limit=1)[0].id
    assert client.get(f"/lineage/run/{run_id}").status_code == 200


def test_layers_survive_cycles_a_forged_graph_holds() -> None:
    ids = [f"{i:064x}" for i in range(5)]
    graph = LineageGraph(ids[0], "up", {i: Node(i, "artifact", i[-4:]) for i in ids})
    graph.edges += [Edge(ids[i], ids[(i + 1) % 5], "x") for i in range(5)]  # a ring
    graph.edges += [Edge(ids[2], ids[2], "self")]
    column = layers(graph)
    assert sorted(column) == sorted(ids) and len(set(column.values())) == 5
    assert to_svg(graph, {}).startswith("<svg")


def test_closing_the_app_releases_its_views_not_the_store(tmp_path: Path) -> None:
    from cas.ui.app import close_app

    with cas.open(tmp_path / "team") as team, cas.open(tmp_path / "here") as here:
        team.put(b"remote bytes", "r")
        here.remotes.add("origin", team.url, read_through=True)
        app = create_app(here)
        assert app.test_client().get("/artifacts").status_code == 200
        close_app(app)
        assert all(view.repository.executor._shutdown for view in app.config["views"])
        assert here.get("r") == b"remote bytes" and here.put(b"still writable", "w").name == "w"

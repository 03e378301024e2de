"""``cas ui``: every page through Flask's client, then a real headless Chromium clicking through it.

The browser test needs selenium (the ``test`` extra) and Debian's
``chromium`` and ``chromium-driver`` packages, which ``.ci/run`` installs;
where any of them is missing it is skipped. It saves a screenshot of each
page it visits in a temporary folder; to refresh the README's screenshots
(docs/screenshots/) instead, run it with ``CAS_REFRESH_SCREENSHOTS=1``::

    CAS_REFRESH_SCREENSHOTS=1 python -m pytest tests/test_ui.py -k browser

(then a missing browser fails the test rather than skipping it).
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cas
from cas import demo
from cas.ui.app import create_app

README_SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
REFRESH = os.environ.get("CAS_REFRESH_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cas.Store]:
    root = tmp_path_factory.mktemp("ui")
    store = cas.open(root / "store")
    demo.run(store, say=lambda *_: None)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    image = np.stack([x / 128, y / 96, 0.5 + 0.5 * np.sin(x / 9) * np.cos(y / 7)], axis=-1)
    store.put(image, "samples/image")
    store.put(rng.normal(size=5000), "samples/noise")
    store.put(pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "temp": [3.5, 19.0, None]}), "samples/table")
    store.put({"params": {"lr": 0.1, "layers": [64, 32]}, "tags": ("a", "b")}, "samples/config")
    yield store
    store.close()


def _files(store: cas.Store) -> dict[str, tuple[int, float]]:
    return {k: (store.backend.size(k), store.backend.mtime(k)) for k in store.backend.list("")}


def test_every_page_renders_and_nothing_writes(demo_store: cas.Store) -> None:
    before = _files(demo_store)
    client = create_app(demo_store).test_client()
    seen, queue = set(), ["/artifacts", "/runs", "/store", "/store?fsck=1"]
    while queue and len(seen) < 200:  # follow every link the pages offer
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code in (200, 302), url
        assert "Content-Security-Policy" in response.headers
        if response.mimetype == "text/html" and "/view/" not in url:
            queue += [u.replace("&amp;", "&") for u in re.findall(r'href="(/[^"#]*)"', response.data.decode())]
    assert any("/lineage/" in u for u in seen) and any("/view/" in u or "/artifact/" in u for u in seen)
    assert _files(demo_store) == before  # the UI never wrote to the store


@pytest.mark.parametrize(
    "url",
    ["/artifact/../../../etc/passwd", "/static/../app.py", "/static/%2e%2e/app.py", "/names/..%2F..%2Fetc",
     "/names/%00x", "/artifact/" + "g" * 64, "/lineage/file/" + "a" * 64, "/run/../../x",
     "/artifact/" + "a" * 64 + "/view/-1"],
)  # fmt: skip
def test_path_traversal_and_bad_ids_are_refused(demo_store: cas.Store, url: str) -> None:
    response = create_app(demo_store).test_client().get(url)
    assert response.status_code == 404
    assert b"root:" not in response.data and b"def create_app" not in response.data


def test_run_filters(demo_store: cas.Store) -> None:
    client = create_app(demo_store).test_client()
    page = client.get("/runs?step=train").data.decode()
    assert page.count("<td>demo.train</td>") == 3 and "demo.split" not in page and "end of the log" in page
    pipeline_id = demo_store.log(limit=1)[0].pipeline["id"]
    assert client.get(f"/runs?pipeline={pipeline_id}").data.decode().count("<tr class=") == 5
    page = client.get("/runs?name=demo/model").data.decode()
    assert "demo.train" in page and "demo.make_dataset" not in page


def test_there_is_no_way_to_write(demo_store: cas.Store) -> None:
    app = create_app(demo_store)
    methods = {m for rule in app.url_map.iter_rules() for m in rule.methods or ()}
    assert methods <= {"GET", "HEAD", "OPTIONS"}
    assert app.test_client().post("/artifacts").status_code == 405


def _unavailable(reason: str) -> None:
    if REFRESH:  # asked for new screenshots: saying nothing would leave the old ones in place
        pytest.fail(f"cannot refresh the screenshots: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by selenium, or a skip if either is missing (checked before importing selenium)."""
    if importlib.util.find_spec("selenium") is None:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _unavailable("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go: a temporary folder, or the README's with CAS_REFRESH_SCREENSHOTS=1."""
    if not REFRESH:
        return tmp_path
    README_SHOTS.mkdir(parents=True, exist_ok=True)
    return README_SHOTS


def _not_blank(png: bytes) -> bool:
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((64, 48))
    return len(image.getcolors(maxcolors=64 * 48) or []) > 12


@pytest.fixture(scope="module")
def server(demo_store: cas.Store) -> Iterator[str]:
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, create_app(demo_store), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.mark.slow  # starts a Chromium
def test_a_browser_goes_artifact_run_lineage_input(
    browser: Any, shots: Path, server: str, demo_store: cas.Store
) -> None:
    from selenium.webdriver.common.by import By  # after the browser fixture: it skips when selenium is missing

    def shot(name: str) -> None:
        png = browser.get_screenshot_as_png()
        assert _not_blank(png), f"the {name} page rendered blank"
        (shots / f"{name}.png").write_bytes(png)

    find, finds = browser.find_element, browser.find_elements
    browser.get(server + "/artifacts")
    assert "demo/model" in find(By.ID, "artifacts").text
    shot("artifacts")
    find(By.LINK_TEXT, "demo/model@2").click()  # lr 0.5, then 0.1: the cached run makes no version
    assert "cas.numpy" in find(By.ID, "facts").text or "cas.value" in find(By.ID, "facts").text
    find(By.ID, "producer").click()  # the run that trained it
    assert "train" in find(By.TAG_NAME, "h1").text
    shot("run")
    find(By.ID, "run-lineage").click()
    nodes = finds(By.CSS_SELECTOR, "#graph a.node")
    assert len(nodes) >= 5 and finds(By.CSS_SELECTOR, "#graph a.node.run")
    shot("lineage")
    inputs = [n for n in finds(By.CSS_SELECTOR, "#graph a.node.artifact") if "root" not in n.get_attribute("class")]
    target = inputs[0].get_attribute("data-id")
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", inputs[0])
    assert target in find(By.TAG_NAME, "h1").text or target in browser.current_url
    # Visualizations: an image, a histogram, tables in sandboxed frames.
    image = demo_store.resolve("samples/image").hash
    browser.get(f"{server}/artifact/{image}")
    pictures = finds(By.CSS_SELECTOR, "figure.view img")
    assert pictures and all(browser.execute_script("return arguments[0].naturalWidth", p) > 0 for p in pictures)
    shot("artifact")
    browser.get(f"{server}/artifact/{demo_store.resolve('samples/table').hash}")
    frames = finds(By.CSS_SELECTOR, "figure.view iframe")
    assert len(frames) >= 2 and all(f.get_attribute("sandbox") == "" for f in frames)
    browser.switch_to.frame(frames[0])
    assert "Oslo" in browser.page_source or "city" in browser.page_source
    browser.switch_to.default_content()
    shot("table")
    browser.get(f"{server}/artifact/{demo_store.resolve('samples/noise').hash}")
    assert any("histogram" in f.text for f in finds(By.CSS_SELECTOR, "figure.view"))
    browser.get(server + "/runs")
    assert "cache hit" in find(By.ID, "runs").text
    shot("runs")
    browser.get(server + "/store?fsck=1")
    assert ": ok" in find(By.ID, "fsck").text
    shot("store")


def test_cas_ui_serves_on_localhost(demo_store: cas.Store) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cas.cli", "ui", "--store", demo_store.url, "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in banner and "read-only" in banner and "only this machine" in banner
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts", timeout=5) as response:
                    assert b"demo/model" in response.read()
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("cas ui did not answer")
    finally:
        server.terminate()
        server.wait(timeout=10)

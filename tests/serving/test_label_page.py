"""The labelling page: HTTP behaviour in-process, and a real headless Chromium session that
clicks a button, presses a keyboard shortcut and checks a screenshot."""

import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from models.active_store import connect
from serving.labelling import create_label_app
from tests.conftest import REPO_ROOT
from training.active import ActiveConfig, init_pool, predict_pool

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,1000",
)


@pytest.fixture
def db(tmp_path, data_dir):
    """A database whose iteration 1 was predicted by the default H-alpha bundle."""
    files = sorted((data_dir / "lamost/dr1_learninglamost").glob("*.fits"))[:10]
    listing = tmp_path / "pool.txt"
    listing.write_text("\n".join(map(str, files)))
    path = tmp_path / "active.sqlite"
    init_pool(path, [listing], None)
    config = ActiveConfig(review_per_iteration=2, uncertain_per_iteration=3)
    predict_pool(path, REPO_ROOT / "bundles" / "halpha", config)
    return path


def _labels(db):
    with connect(db) as conn:
        rows = conn.execute("SELECT spectrum_id, label, labeller FROM labels ORDER BY id")
        return [tuple(r) for r in rows]


def test_page_shows_the_candidate_and_posting_a_label_writes_it(db):
    with TestClient(create_label_app(db)) as client:
        page = client.get("/")
        assert page.status_code == 200
        for key in ("a", "e", "d", "n", "s"):
            assert f'data-key="{key}"' in page.text
        candidate = client.get("/api/next").json()["candidate"]
        remaining = candidate["remaining"]
        assert remaining >= 3 and f"{remaining} left" in page.text
        assert f'predicted <b id="predicted">{candidate["predicted"]}</b>' in page.text
        png = client.get(f"/plot/{candidate['spectrum_id']}.png")
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (800, 360)
        form = {"spectrum_id": candidate["spectrum_id"], "label": "noise", "labeller": "ann"}
        answer = client.post("/label", data=form, follow_redirects=False)
        assert answer.status_code == 303
        assert _labels(db) == [(candidate["spectrum_id"], "noise", "ann")]
        assert client.get("/api/next").json()["candidate"]["remaining"] == remaining - 1
        bad = client.post("/label", data={**form, "label": "maybe"})
        assert bad.status_code == 400 and "unknown label 'maybe'" in bad.json()["error"]
        assert client.post("/label", data={**form, "spectrum_id": 99999}).status_code == 409
        assert client.get("/plot/99999.png").status_code == 404


def test_page_mounted_under_a_prefix_links_inside_it(db):
    outer = Starlette(routes=[Mount("/label", app=create_label_app(db))])
    with TestClient(outer) as client:
        page = client.get("/label/")
        assert 'src="http://testserver/label/plot/' in page.text
        assert 'action="http://testserver/label/label"' in page.text


def test_missing_database_is_explained(tmp_path):
    with TestClient(create_label_app(tmp_path / "none.sqlite")) as client:
        page = client.get("/")
        assert page.status_code == 409 and "run `skysort active init` first" in page.text
        assert client.get("/plot/1.png").status_code == 404
    assert not (tmp_path / "none.sqlite").exists()  # a wrong path creates no database


def _serve(app):
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _wait(condition, timeout=20.0, retry_on=()):
    """Poll ``condition`` until it is true; exceptions in ``retry_on`` count as "not yet"
    (a label posts the form and the browser loads the next page, so an element found just
    before the reload is stale when it is read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except retry_on:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_page_in_headless_chromium(db, tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def settled(condition):
        return _wait(condition, retry_on=WebDriverException)

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    server, thread, url = _serve(create_label_app(db))
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url + "/")
        loaded = "const i = document.getElementById('profile'); return i.complete && i.naturalWidth"
        assert settled(lambda: driver.execute_script(loaded) == 800)
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
        assert shot.size[0] >= 800 and shot.size[1] >= 600
        box = driver.find_element(By.ID, "profile").rect
        plot = np.asarray(shot)[
            int(box["y"]) : int(box["y"] + box["height"]),
            int(box["x"]) : int(box["x"] + box["width"]),
        ]
        assert plot.size > 200_000 and (plot < 80).mean() > 0.005 and (plot > 200).mean() > 0.5

        first = driver.find_element(By.ID, "ref").text
        who = driver.find_element(By.ID, "labeller")
        who.clear()
        who.send_keys("browser-test")
        driver.find_element(By.CSS_SELECTOR, 'button[data-key="e"]').click()
        assert settled(lambda: driver.find_element(By.ID, "ref").text != first)
        assert _labels(db)[-1][1:] == ("emission", "browser-test")

        second = driver.find_element(By.ID, "ref").text
        ActionChains(driver).send_keys("n").perform()  # keyboard shortcut for "noise"
        assert _wait(lambda: len(_labels(db)) == 2)
        assert settled(lambda: driver.find_element(By.ID, "ref").text != second)
        assert _labels(db)[-1][1:] == ("noise", "browser-test")  # name kept by the browser
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)

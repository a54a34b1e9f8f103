"""The web app's page in a real browser: headless Chromium, driven by selenium, over real HTTP.

Needs Debian's `chromium` and `chromium-driver` packages and the PyPI package `selenium`.
Without them the test is skipped with the reason, except in CI (CI=true), where CI installs
them and a missing one is a failure, so the browser test can never be skipped unnoticed there.
"""

import os
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from course_lib.app import create_app
from course_lib.models import GPT, GPTConfig
from course_lib.checkpoints import save_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI") == "true"
WAIT_S = 60  # generous: a cold Chromium on a busy two-core machine takes a while


def require(ok: bool, reason: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{reason} -- CI=true, and CI must install it so that this test runs.")
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    require(webdriver is not None, "selenium is not installed (pip install selenium)")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    require(CHROMEDRIVER.exists(), f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1100,1000"):
        options.add_argument(flag)
    # Chromium also writes outside its profile (crash-report settings, dconf): point HOME and the
    # XDG folders into tmp_path too. An explicit driver path: selenium never runs Selenium Manager.
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"), "XDG_RUNTIME_DIR": str(home / "run")}
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), env=env)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def served_app(tmp_path, tokenizer):
    """A tiny character-level GPT in a registry under tmp_path, served on 127.0.0.1:<free port>."""
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(tmp_path / "checkpoints" / "dropout", GPT(cfg), tokenizer, profile="smoke", corpus="bundled")
    app = create_app(tmp_path)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_the_page_generates_streams_stops_and_reports_errors(browser, served_app):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    app, url = served_app
    wait = WebDriverWait(browser, WAIT_S)
    by_id = lambda name: browser.find_element(By.ID, name)  # noqa: E731

    def fill(name, text):
        by_id(name).clear()
        by_id(name).send_keys(text)

    browser.get(url)
    wait.until(lambda _: Select(by_id("model")).options and "Parameters" in by_id("model-info").text)
    assert Select(by_id("model")).first_selected_option.get_attribute("value") == "dropout"
    info = by_id("model-info").text
    assert "char" in info and "smoke" in info and "bundled" in info

    # Generate: new text streams into the output area after the prompt.
    prompt = "WREN: Why"
    fill("prompt", prompt)
    fill("max_new_tokens", "80")
    fill("seed", "3")
    by_id("generate").click()
    wait.until(lambda _: by_id("output-new").text)
    wait.until(lambda _: by_id("status").text.startswith("Done"))
    output = by_id("output").text
    assert output.startswith(prompt) and len(output) > len(prompt)
    assert "seed 3" in by_id("status").text.lower() and "error" not in by_id("status").get_attribute("class")
    assert by_id("generate").is_enabled() and not by_id("stop").is_enabled()

    # Stop: the browser aborts the request and the server stops generating (a slowed model, so
    # that there is time to press the button).
    loaded = app.extensions["course_app"]["cache"].get("dropout")
    real_stream = loaded.stream

    def slow_stream(*args, **kwargs):
        for piece in real_stream(*args, **kwargs):
            time.sleep(0.02)
            yield piece

    loaded.stream = slow_stream
    fill("max_new_tokens", "1000")
    by_id("generate").click()
    wait.until(lambda _: len(by_id("output-new").text) >= 5)
    by_id("stop").click()
    wait.until(lambda _: by_id("status").text.startswith("Stopped after"))
    stats = app.extensions["course_app"]["stats"]
    wait.until(lambda _: stats.snapshot()["cancelled"] == 1 and stats.snapshot()["active"] == 0)
    assert len(by_id("output-new").text) < 1000

    # A mistake is explained in the status line, in the server's words.
    fill("temperature", "0")
    by_id("generate").click()
    wait.until(lambda _: "error" in by_id("status").get_attribute("class"))
    assert "temperature must be a number > 0" in by_id("status").text

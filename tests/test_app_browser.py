"""The web app's page in a real browser: headless Chromium, driven by selenium, over real HTTP.

Needs Debian's `chromium` and `chromium-driver` packages and the PyPI package `selenium`.
Without them the test is skipped with the reason, except in CI (CI=true), where CI installs
them and a missing one is a failure, so the browser test can never be skipped unnoticed there.

The tests save their screenshots in tmp_path only. The README's screenshots are remade from the
course's own models (outputs/checkpoints/ and the shipped reference models) with

    APP_SCREENSHOTS=outputs/figures .venv/bin/python -m pytest tests/test_app_browser.py -k readme -p no:cacheprovider

which writes outputs/figures/app_screenshot.png (continuing a prompt) and
app_tasks_screenshot.png (the sorting form); APP_SCREENSHOT_MODELS=<folder holding checkpoints/>
takes the models from elsewhere. Without APP_SCREENSHOTS that test is skipped.
"""

import os
import threading
import time
from pathlib import Path

import pytest
import torch

from course_lib.app import create_app, make_dev_server
from course_lib.checkpoints import save_model
from course_lib.finetune import HOUSES
from course_lib.models import GPT, GPTConfig
from course_lib.paths import REPO_ROOT

from chromium import require, start_chromium  # tests/chromium.py

WAIT_S = 60  # generous: a cold Chromium on a busy two-core machine takes a while
# Read when the module is imported, before tests/conftest.py clears every COURSE_* variable.
SCREENSHOTS_TO = os.environ.get("APP_SCREENSHOTS")
SCREENSHOT_MODELS = os.environ.get("APP_SCREENSHOT_MODELS") or os.environ.get("COURSE_OUTPUT_DIR") or REPO_ROOT / "outputs"
REFERENCE_MODELS = os.environ.get("COURSE_REFERENCE_MODELS")


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium", "1000,900", "--hide-scrollbars")
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def serve(app):
    """The app on the server main() starts, 127.0.0.1:<free port>; returns (server, url)."""
    server = make_dev_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


@pytest.fixture
def served_app(tmp_path, tokenizer):
    """A tiny character-level GPT, a tiny GPT-2-tokenizer GPT "fine-tuned" on the tasks (random
    weights: nonsense answers, real plumbing) and one damaged file, in a registry under tmp_path."""
    ck = tmp_path / "checkpoints"
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(ck / "dropout", GPT(cfg), tokenizer, profile="smoke", corpus="bundled")
    torch.manual_seed(0)
    bpe_cfg = GPTConfig(vocab_size=50257, block_size=96, n_embd=8, n_head=2, n_layer=1)
    save_model(ck / "finetuned", GPT(bpe_cfg), {"kind": "gpt2-bpe"}, tasks=["sorting", "spell", "chat"],
               profile="smoke")
    (ck / "mangled.safetensors").write_bytes(b"not a checkpoint")
    app = create_app(tmp_path)
    server, url = serve(app)
    yield app, url
    server.shutdown()
    server.server_close()


def helpers(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    by_id = lambda name: browser.find_element(By.ID, name)  # noqa: E731

    def fill(name, text):
        by_id(name).clear()
        by_id(name).send_keys(text)

    return wait, by_id, fill


@pytest.mark.filterwarnings("ignore:skipping")
def test_the_page_generates_streams_stops_and_reports_errors(browser, served_app, tmp_path):
    from selenium.webdriver.support.ui import Select

    app, url = served_app
    wait, by_id, fill = helpers(browser)

    browser.get(url)
    wait.until(lambda _: Select(by_id("model")).options and "Parameters" in by_id("model-info").text)
    assert Select(by_id("model")).first_selected_option.get_attribute("value") == "dropout"
    info = by_id("model-info").text
    assert "char" in info and "smoke" in info and "bundled" in info and "trained here" in info
    # the damaged file is listed, greyed out, with the reason
    mangled = next(o for o in Select(by_id("model")).options if o.get_attribute("value") == "mangled")
    assert "damaged" in mangled.text and not mangled.is_enabled()

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
    browser.save_screenshot(str(tmp_path / "generate.png"))

    # Greedy: no temperature needed (the field is switched off), the same text every time.
    by_id("greedy").click()
    assert not by_id("temperature").is_enabled() and not by_id("top_p").is_enabled()
    texts = []
    for _ in range(2):
        by_id("generate").click()
        wait.until(lambda _: by_id("status").text.startswith("Done") and "Greedy" in by_id("status").text)
        texts.append(by_id("output").text)
        fill("seed", "4")
    assert texts[0] == texts[1] and len(texts[0]) > len(prompt)
    by_id("greedy").click()
    assert by_id("temperature").is_enabled()

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


@pytest.mark.filterwarnings("ignore:skipping")
def test_the_task_forms_sort_invent_spells_and_chat(browser, served_app, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, url = served_app
    wait, by_id, fill = helpers(browser)
    browser.get(url)
    wait.until(lambda _: Select(by_id("chat-character")).options)  # models and task lists are in

    # A model that was not fine-tuned: the task form says which model can do it.
    by_id("tab-sorting").click()
    note = by_id("panel-sorting").find_element(By.CLASS_NAME, "task-note")
    assert by_id("panel-text").get_attribute("hidden") and note.is_displayed()
    assert "Pick a fine-tuned model above: finetuned" in note.text and not by_id("sorting-submit").is_enabled()

    Select(by_id("model")).select_by_value("finetuned")
    wait.until(lambda _: by_id("sorting-submit").is_enabled())
    assert not note.is_displayed() and "sorting, spell, chat" in by_id("model-info").text

    # Sorting: a hall, and a bar with the probability of each of the four.
    fill("sorting-description", "Tam mended the broken fence\nbefore anyone asked.")
    by_id("sorting-submit").click()
    wait.until(lambda _: by_id("sorting-result").is_displayed())
    assert by_id("sorting-hall").text in HOUSES
    bars = by_id("sorting-bars").find_elements(By.TAG_NAME, "li")
    assert [bar.text.split("\n")[0] for bar in bars] == list(HOUSES)
    shares = [float(bar.text.split("\n")[-1].rstrip("%")) for bar in bars]
    assert abs(sum(shares) - 100) < 0.5
    assert "[SORTING] Tam mended the broken fence before anyone asked." in by_id("sorting-status").text
    browser.save_screenshot(str(tmp_path / "sorting.png"))

    # Spells: an incantation (whatever this random model invents) and the lexicon to read it with.
    by_id("tab-spell").click()
    fill("spell-effect", "dry the wet socks")
    by_id("spell-submit").click()
    wait.until(lambda _: by_id("spell-result").is_displayed())
    assert by_id("spell-incantation").text
    by_id("panel-spell").find_element(By.TAG_NAME, "summary").click()
    assert "make glow, give light" in by_id("spell-lexicon").text
    browser.save_screenshot(str(tmp_path / "spell.png"))

    # Chat: pick a character, ask; the conversation grows on the page.
    by_id("tab-chat").click()
    assert [o.text for o in Select(by_id("chat-character")).options] == sorted(
        ["Brisk", "Fennick", "Helt", "Odo", "Pell", "Sable", "Varrow", "Wren"])
    Select(by_id("chat-character")).select_by_value("Wren")
    for turn, line in enumerate(("Hello, Wren!", "Where is the library?"), start=1):
        fill("chat-message", line)
        by_id("chat-submit").click()
        wait.until(lambda _, n=2 * turn: len(by_id("chat-log").find_elements(By.TAG_NAME, "li")) == n)
    turns = by_id("chat-log").find_elements(By.TAG_NAME, "li")
    assert turns[0].text.startswith("You to Wren") and "Hello, Wren!" in turns[0].text
    assert turns[1].text.startswith("Wren") and turns[3].text.startswith("Wren")
    assert by_id("chat-message").get_attribute("value") == ""
    browser.save_screenshot(str(tmp_path / "chat.png"))

    # A mistake names the problem: an empty line.
    by_id("chat-submit").click()
    wait.until(lambda _: "error" in by_id("chat-status").get_attribute("class"))
    assert "message is empty" in by_id("chat-status").text
    by_id("chat-clear").click()
    assert by_id("chat-log").find_elements(By.TAG_NAME, "li") == []
    assert (tmp_path / "sorting.png").stat().st_size > 10_000 and (tmp_path / "chat.png").exists()


# --- the README's screenshots: only on request (APP_SCREENSHOTS=<folder>), from the real models ---

@pytest.mark.skipif(not SCREENSHOTS_TO, reason="set APP_SCREENSHOTS=<folder> to remake the README's screenshots")
def test_readme_screenshots(browser, monkeypatch):
    from selenium.webdriver.support.ui import Select

    if REFERENCE_MODELS is None:
        monkeypatch.delenv("COURSE_REFERENCE_MODELS", raising=False)  # the shipped ones, as after a clone
    else:
        monkeypatch.setenv("COURSE_REFERENCE_MODELS", REFERENCE_MODELS)
    app = create_app(SCREENSHOT_MODELS)
    rows = app.extensions["course_app"]["cache"].rows()
    text_model = next((n for n in ("dropout", "layernorm", "residual") if rows.get(n, {}).get("ready")), None)
    task_model = next((n for n, row in rows.items() if row.get("ready") and "finetune" in n), None)
    require(text_model is not None and task_model is not None,
            f"no trained character model and fine-tuned model in {SCREENSHOT_MODELS} (run `make course`)")
    out = Path(SCREENSHOTS_TO)
    out.mkdir(parents=True, exist_ok=True)
    server, url = serve(app)
    wait, by_id, fill = helpers(browser)
    try:
        browser.get(url)
        wait.until(lambda _: Select(by_id("chat-character")).options)
        Select(by_id("model")).select_by_value(text_model)
        fill("prompt", "WREN: Why does the tide")
        fill("max_new_tokens", "400")
        fill("seed", "1337")
        fill("top_p", "0.95")
        by_id("generate").click()
        wait.until(lambda _: by_id("status").text.startswith("Done"))
        browser.save_screenshot(str(out / "app_screenshot.png"))

        Select(by_id("model")).select_by_value(task_model)
        by_id("tab-sorting").click()
        fill("sorting-description", "Pim Harrow spent the whole winter holiday taking apart the mill's broken "
                                    "clock and put it back together so that it chimed on the hour again.")
        by_id("sorting-submit").click()
        wait.until(lambda _: by_id("sorting-result").is_displayed())
        browser.save_screenshot(str(out / "app_tasks_screenshot.png"))
    finally:
        server.shutdown()
        server.server_close()

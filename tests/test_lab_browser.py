"""The notebooks as a student meets them: JupyterLab started the way `make lab` starts it, a real
browser (headless Chromium, driven by selenium), "Run All" through JupyterLab's own command.

For each notebook it opens (02, 03 and 08 by default; LAB_NOTEBOOKS=all for every numbered one)
the test checks what the student would see: every code cell ran (it has an execution count), no
cell shows an error, and every cell that plots shows a rendered image right under it. JupyterLab serves a temporary copy of notebooks/ with COURSE_PROFILE=smoke
and COURSE_OUTPUT_DIR in a temporary folder, so nothing is saved into the repository.

Needs Debian's `chromium` and `chromium-driver` and the PyPI package `selenium`; without them the
test is skipped, except with CI=true, where a missing one fails it (tests/chromium.py).

The README's screenshot outputs/figures/lab_screenshot.png comes from this test:
    LAB_SCREENSHOT=outputs/figures/lab_screenshot.png \\
        .venv/bin/python -m pytest tests/test_lab_browser.py -k 02_bigram -p no:cacheprovider
(without the variable its screenshots go under pytest's temporary folder only).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from course_lib.paths import REPO_ROOT

from chromium import start_chromium  # tests/chromium.py: headless Chromium, skip or fail without it

BIN = Path(sys.executable).parent  # the venv's bin: `make lab` runs $(BIN)/jupyter with it first on PATH
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# The numbered notebooks in the order `make course` runs them (later ones read earlier results).
ALL_NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]*.ipynb"))
# `make test` opens three in JupyterLab (about 20 s each on two cores; nbval's image check covers
# every notebook). LAB_NOTEBOOKS=all opens all of them; LAB_NOTEBOOKS="02 09b" the ones named.
DEFAULT_NOTEBOOKS = "02 03 08"
MUST_PLOT = ("02_", "03_", "08_")  # notebooks known to draw: their figures must be checked, not skipped


def chosen_notebooks(choice: str) -> list[str]:
    if choice.strip() == "all":
        return ALL_NOTEBOOKS
    numbers = tuple(f"{n}_" for n in choice.replace(",", " ").split())
    return [name for name in ALL_NOTEBOOKS if name.startswith(numbers)]


NOTEBOOKS = chosen_notebooks(os.environ.get("LAB_NOTEBOOKS", DEFAULT_NOTEBOOKS))
SCREENSHOT_NOTEBOOK = "02_bigram.ipynb"
START_S = 120    # JupyterLab, Chromium and a kernel starting on a busy two-core machine
RUN_S = 600      # one smoke notebook (they take 3-30 s under nbval)
# JupyterLab asks once whether to fetch Jupyter's news (a pop-up over the screenshot): answer no.
NO_NEWS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}


def _notebook_guard():
    """notebooks/conftest.py, whose figure_calls() says which cells plot (one rule for nbval and here)."""
    spec = importlib.util.spec_from_file_location("notebook_guard", NOTEBOOK_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class JupyterLab:
    """`jupyter lab` on 127.0.0.1:<free port> with a token, serving `folder`, as a subprocess."""

    def __init__(self, folder: Path, env: dict, log: Path):
        with socket.socket() as s:  # a free port (released here; Jupyter takes it a moment later)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        root_flag = ["--allow-root"] if getattr(os, "getuid", lambda: 1)() == 0 else []  # as make lab
        test_flags = [
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells through its commands
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",  # offline
        ]
        with open(log, "wb") as out:
            self.process = subprocess.Popen([str(BIN / "jupyter"), "lab", *root_flag, *test_flags, str(folder)],
                                            env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"JupyterLab did not start; the end of its log:\n{self.log_tail()}")
            time.sleep(0.5)

    def _request(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def _answers(self) -> bool:
        try:
            return self._request("api/status") is not None
        except (OSError, urllib.error.URLError):
            return False

    def shut_down_kernels(self) -> None:
        """One kernel at a time: each holds a model and torch in memory."""
        for session in self._request("api/sessions"):
            self._request(f"api/sessions/{session['id']}", method="DELETE")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]

    def stop(self) -> None:
        self.process.terminate()  # Jupyter shuts its kernels down on SIGTERM
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    folder = root / "notebooks"  # a copy: whatever JupyterLab saves never reaches the repository
    shutil.copytree(NOTEBOOK_DIR, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    # make lab's environment: the venv first on PATH and no MPLBACKEND (the Makefile unexports it),
    # plus the smoke profile and temporary folders for everything the course or Jupyter writes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_") and k != "MPLBACKEND"}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COURSE_PROFILE="smoke",
               COURSE_OUTPUT_DIR=str(root / "outputs"), COURSE_CACHE_DIR=str(root / "cache"),
               COURSE_REFERENCE_MODELS="none", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(root / "hf_datasets"),
               JUPYTER_CONFIG_DIR=str(root / "jupyter_config"), JUPYTER_RUNTIME_DIR=str(root / "jupyter_runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(root / "lab_settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / "lab_workspaces"), IPYTHONDIR=str(root / "ipython"))
    for path, settings in NO_NEWS.items():
        (root / "lab_settings" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "lab_settings" / path).write_text(json.dumps(settings), encoding="utf-8")
    server = JupyterLab(folder, env, root / "jupyterlab.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium"), "1280,1160")
    driver.set_page_load_timeout(START_S)
    driver.set_script_timeout(RUN_S)
    yield driver
    driver.quit()


# JavaScript run in the page. `arguments` are selenium's; the last one of an async script is
# the callback that hands the result back.
NOTEBOOK_READY_JS = """
const app = window.jupyterapp, name = arguments[0];
const panel = app && app.shell.currentWidget;
if (!panel || !panel.sessionContext || !panel.context || !panel.context.path.endsWith(name)) return false;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
return Boolean(panel.context.isReady && panel.sessionContext.isReady && kernel && kernel.status === 'idle');
"""
RUN_ALL_JS = """
const done = arguments[arguments.length - 1];
window.jupyterapp.commands.execute('notebook:run-all-cells')
  .then(ok => done({ok: Boolean(ok)}), error => done({error: String(error)}));
"""
CELLS_JS = """
const panel = window.jupyterapp.shell.currentWidget;
return panel.content.widgets.filter(cell => cell.model.type === 'code').map(cell => {
  const outputs = cell.model.outputs.toJSON();
  return {
    count: cell.model.executionCount,
    source: cell.model.sharedModel.getSource(),
    errors: outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
    images: Array.from(cell.node.querySelectorAll('.jp-OutputArea-output img'))
                 .filter(img => img.complete && img.naturalWidth > 0).length,
  };
});
"""
SHOW_CELL_JS = """
const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
app.shell.collapseLeft();  // more room for the notebook
const cell = notebook.widgets.filter(cell => cell.model.type === 'code')[arguments[0]].node;
let scroller = cell.parentElement;  // the notebook's scrolling element: the cell's top goes to its top
while (scroller && scroller.scrollHeight <= scroller.clientHeight) scroller = scroller.parentElement;
if (scroller) scroller.scrollTop += cell.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
"""


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_run_all_in_jupyterlab_shows_every_figure_and_no_error(name, browser, lab, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    guard = _notebook_guard()
    opened = time.monotonic()
    # ?reset: a fresh workspace, so the notebooks of earlier tests are not reopened
    browser.get(f"{lab.url}lab/tree/{name}?reset&token={lab.token}")
    try:
        WebDriverWait(browser, START_S).until(lambda d: d.execute_script(NOTEBOOK_READY_JS, name))
    except TimeoutException:
        pytest.fail(f"{name} did not open with an idle kernel; the end of JupyterLab's log:\n{lab.log_tail()}")
    try:
        started = time.monotonic()
        opening = started - opened
        outcome = browser.execute_async_script(RUN_ALL_JS)
        seconds = time.monotonic() - started
        cells = browser.execute_script(CELLS_JS)
        figure_cells = [i for i, c in enumerate(cells) if guard.figure_calls(c["source"]) and
                        guard.OPT_OUT not in c["source"]]
        try:  # images decode asynchronously after their output arrives
            WebDriverWait(browser, 30).until(
                lambda d: all(d.execute_script(CELLS_JS)[i]["images"] for i in figure_cells))
        except TimeoutException:
            pass  # the assertion below names the cells without an image
        cells = browser.execute_script(CELLS_JS)
        shot = tmp_path / f"{Path(name).stem}.png"
        if figure_cells:  # the picture: the first cell that plots, from its code to its figure
            browser.execute_script(SHOW_CELL_JS, figure_cells[0])
        time.sleep(0.5)  # let the scroll settle before the picture
        browser.save_screenshot(str(shot))
        if name == SCREENSHOT_NOTEBOOK and os.environ.get("LAB_SCREENSHOT"):
            target = Path(os.environ["LAB_SCREENSHOT"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
    finally:
        lab.shut_down_kernels()

    # cells are numbered as nbval numbers them: code cells only, from 0
    errors = [f"code cell {i}: {e}" for i, c in enumerate(cells) for e in c["errors"]]
    assert not errors, f"{name}: cells show errors in JupyterLab:\n" + "\n".join(errors)
    not_run = [i for i, c in enumerate(cells) if not c["count"]]
    assert outcome == {"ok": True} and not not_run, \
        f"{name}: Run All gave {outcome}; code cells without an execution count: {not_run}"
    blank = [i for i in figure_cells if not cells[i]["images"]]
    assert not blank, f"{name}: code cells {blank} plot but show no image in JupyterLab"
    if name.startswith(MUST_PLOT):
        assert figure_cells, f"{name} should draw figures; the check found no plotting cell"
    print(f"{name}: opened with an idle kernel in {opening:.1f} s; {len(cells)} code cells ran in {seconds:.1f} s, "
          f"{sum(c['images'] for c in cells)} images in {len(figure_cells)} plotting cells")

"""course_lib.plots, and the notebook guard (notebooks/conftest.py) that checks every figure
reaches the student when nbval runs the notebooks."""

import importlib
import importlib.util
import os
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")  # these unit tests only; the library never picks a backend

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from course_lib.paths import REPO_ROOT  # noqa: E402
from course_lib.plots import plot_bars, plot_ladder, plot_losses  # noqa: E402
from course_lib.training import History  # noqa: E402

GUARD = REPO_ROOT / "notebooks" / "conftest.py"


def test_the_ladder_is_the_ladder_module_s():
    from course_lib import ladder

    assert plot_ladder is ladder.plot_ladder  # tests/test_ladder.py tests the figure itself


def test_showing_returns_nothing_so_a_cell_never_echoes_the_figure(tmp_path):
    history = History(steps=[0, 10], train_loss=[4.0, 3.0], val_loss=[4.1, 3.2])
    plt.close("all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "FigureCanvasAgg is non-interactive" warning without a display
        assert plot_losses(history, path=tmp_path / "loss.png") is None
        assert plot_bars({"a": 1.0}, "y", "t", path=tmp_path / "bars.png", show=True) is None
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "bars.png").stat().st_size > 0
    assert plt.get_fignums() == [], "a figure nobody can show must be closed, not piled up"


def test_importing_the_plots_keeps_the_backend_the_kernel_chose():
    # ipykernel picks the inline backend for every kernel it starts (JupyterLab, papermill, nbval);
    # importing the course's plots must leave that choice alone. ("svg" stands in for it here.)
    import course_lib.plots

    matplotlib.use("svg")
    try:
        importlib.reload(course_lib.plots)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use("Agg")


@pytest.fixture(scope="module")
def guard():
    spec = importlib.util.spec_from_file_location("notebook_guard", GUARD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guard_knows_which_calls_draw(guard):
    source = """\
%matplotlib inline
def later():
    plt.show()          # defining a function draws nothing
plot_losses(history, show=False)
plot_attention(att, tokens, ax=ax)
plot_ladder(rows, path=p)
"""
    assert guard.figure_calls(source) == ["plot_ladder(rows, path=p)"]
    assert guard.figure_calls("fig.savefig(p)\nplt.show()") == ["plt.show()"]
    assert guard.figure_calls("display(fig)") == ["display(fig)"]
    assert guard.figure_calls("print('no figure')\nplt.subplots") == []
    assert {"plot_losses", "plot_bars", "plot_ladder", "plot_attention", "plot_char_frequency"} <= guard.HELPERS


def test_the_guard_names_the_backend_that_hid_a_figure(guard, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = {"output_type": "stream", "name": "stdout", "text": "ok\n"}
    [problem] = guard.figure_problems("plt.show()", [text])
    assert "plt.show()" in problem and "MPLBACKEND=Agg" in problem
    assert guard.figure_problems("# NO_FIGURE_CHECK\nif False:\n    plt.show()", [text]) == []
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure size 1x1>"}}
    assert guard.figure_problems("plt.show()", [image]) == []


def test_the_guard_fails_notebook_cells_whose_figure_is_missing_echoed_or_doubled(tmp_path):
    """A tiny notebook run by nbval exactly as `make test` runs notebooks/, with the guard."""
    cells = {
        "imports": "import matplotlib.pyplot as plt\nfrom course_lib.plots import plot_bars",
        "helper": 'plot_bars({"a": 1.0, "b": 2.0}, "loss", "a helper")',
        "pyplot": "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()",
        "no figure": "print('no figure here')",
        "echoed": "fig2, ax2 = plt.subplots()\nax2.plot([2, 1])\nfig2",       # inline: shown twice
        "file-only backend": "%matplotlib agg",
        "missing": "fig3, ax3 = plt.subplots()\nax3.plot([1, 3])\nplt.show()",  # Agg: nothing shown
        "bare repr": "plt.figure()",                                          # Agg: <Figure size ...>
    }
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "conftest.py").write_text(GUARD.read_text(encoding="utf-8"), encoding="utf-8")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells.values()])
    nbformat.write(nb, folder / "figures.ipynb")
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # as make test: kernels draw inline
    subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                    "-q", f"--rootdir={tmp_path}", f"--junitxml={report}", str(folder)],
                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    failures = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        failures[case.get("name")] = None if failure is None else failure.get("message", "") + (failure.text or "")
    names = list(cells)
    assert len(failures) == len(cells), failures
    failed = {names[int(name.split()[-1])]: message for name, message in failures.items() if message}
    assert set(failed) == {"echoed", "missing", "bare repr"}, failures
    assert "figures.ipynb, code cell 4" in failed["echoed"] and "same image twice" in failed["echoed"]
    assert "figures.ipynb, code cell 6" in failed["missing"] and "sent no image" in failed["missing"]
    assert "bare `<Figure size" in failed["bare repr"]

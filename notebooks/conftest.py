"""What a student sees, checked while nbval runs the notebooks (`make test`:
`pytest --nbval-lax --nbval-current-env notebooks`).

nbval checks that every cell runs; it cannot tell whether a figure reached the notebook. A
kernel whose matplotlib backend cannot draw inline (MPLBACKEND=Agg in its environment, say)
runs every plotting cell without an error and shows nothing. So after nbval runs a cell, this
hook looks at the outputs the kernel sent (nbval keeps them in `item.test_outputs`) and fails
the cell, naming the notebook and the cell, when
- the cell shows a figure (plt.show(), a course_lib.plots helper, display(fig), fig.show())
  but no image came back;
- a figure came back as a bare `<Figure size ...>` text, or the same image came twice (a cell
  that ends with an expression holding a figure echoes it a second time).
A cell that draws only on some runs (a plot inside an `if`) can opt out with a comment line
`# NO_FIGURE_CHECK`.

The same hook covers notebooks/solutions/ (pytest applies a conftest.py to the folders below it).
"""

from __future__ import annotations

import ast
import os

import pytest

from course_lib import plots

OPT_OUT = "NO_FIGURE_CHECK"
PYPLOT_NAMES = {"plt", "pyplot"}
# Every plot_* helper of course_lib.plots: each makes a figure and shows it unless it is called
# with show=False or draws into a panel of a bigger figure (ax=...).
HELPERS = {name for name, value in vars(plots).items() if name.startswith("plot_") and callable(value)}


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _shows_a_figure(call: ast.Call) -> bool:
    """Would this call put a figure into the cell's output?"""
    func, name = call.func, _called_name(call)
    if name in HELPERS:
        show = _keyword(call, "show")
        hides = isinstance(show, ast.Constant) and show.value is False
        return not hides and _keyword(call, "ax") is None
    if name == "show" and isinstance(func, ast.Attribute):
        owner = ast.unparse(func.value)
        # plt.show(), matplotlib.pyplot.show(), fig.show()
        return owner.split(".")[-1] in PYPLOT_NAMES or owner.startswith("fig")
    if name == "display" and call.args:
        return ast.unparse(call.args[0]).startswith("fig")  # display(fig)
    return False


def figure_calls(source: str) -> list[str]:
    """The calls in a cell's source that show a figure when the cell runs, as source text.

    Calls inside a function or lambda body do not count: defining a function draws nothing.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    try:  # IPython syntax (%magics, !shell) first becomes plain Python, as the kernel does
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return []  # the kernel reports it, and nbval fails the cell on it
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call) and _shows_a_figure(node):
            found.append(ast.unparse(node))
        todo.extend(ast.iter_child_nodes(node))
    return sorted(found)


def figure_problems(source: str, outputs: list[dict]) -> list[str]:
    """What is wrong with the figures among one executed cell's outputs (empty: nothing)."""
    shown = [o for o in outputs if o.get("output_type") in ("display_data", "execute_result")]
    images = [data for o in shown for mime, data in o.get("data", {}).items() if mime.startswith("image/")]
    problems = []
    calls = figure_calls(source)
    if calls and not images and OPT_OUT not in source:
        backend = os.environ.get("MPLBACKEND", "")
        why = (f" The environment sets MPLBACKEND={backend}, a backend that cannot draw in a notebook:"
               " unset it (kernels then draw inline)." if backend.lower() in plots.FILE_ONLY_BACKENDS else "")
        problems.append(f"it calls {calls[0]} but sent no image to the notebook.{why} If this cell"
                        f" draws only on some runs, add a comment line `# {OPT_OUT}` to it.")
    # (an image output carries the same text as its plain-text alternative: that one is fine)
    bare = [o for o in shown if o.get("data", {}).get("text/plain", "").startswith("<Figure size")
            and not any(mime.startswith("image/") for mime in o["data"])]
    if bare:
        problems.append("it shows a bare `<Figure size ...>`: the cell ends with an expression that holds"
                        " a figure (end it with plt.show(), or assign the value, or add a `;`).")
    if len(images) != len(set(map(str, images))):
        problems.append("it shows the same image twice (plt.show() and then the figure again as the"
                        " cell's value: end the cell with plt.show() or a `;`).")
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # nbval runs the cell; an error in the cell ends the test here, as before
    outputs = getattr(item, "test_outputs", None)
    cell = getattr(item, "cell", None)
    if outputs is None or cell is None:  # not a notebook cell run by nbval
        return result
    problems = figure_problems(cell.source, outputs)
    if problems:
        where = f"{item.path.name}, code cell {item.cell_num} (counting code cells from 0)"
        # nbval's own error type: its report prints the message and then the cell's source
        item.raise_cell_error(f"{where}: " + " ".join(problems))
    return result

"""Figures the notebooks show inline and save under outputs/figures/.

Every helper draws one figure, saves it when given a `path`, and shows it. In a notebook the
kernel's own backend shows it (JupyterLab, papermill and nbval all start kernels that draw
inline), so this module never picks a backend: forcing a non-interactive one such as Agg would
hide every figure from the student. Outside a kernel without a display (a script on a server),
matplotlib falls back to Agg by itself and the figure is only saved.

With show=True a helper returns None, so a cell that ends with the call prints no bare
`<Figure ...>` after the picture; with show=False it returns the (closed) figure, for tests
or for saving elsewhere.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

# matplotlib's built-in backends that draw into files only (backend_registry lists them from
# matplotlib 3.9 on; the course supports 3.7, so the names are spelled out here).
FILE_ONLY_BACKENDS = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})


def _can_show() -> bool:
    """False where plt.show() could only warn "FigureCanvasAgg is non-interactive" (no display)."""
    return matplotlib.get_backend().lower() not in FILE_ONLY_BACKENDS


def _finish(fig, path: str | Path | None, show: bool):
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    if show and _can_show():
        # The inline backend sends each open figure to the notebook once and then closes it,
        # so the end of the cell does not send it a second time.
        plt.show()
    else:
        plt.close(fig)  # nothing will show it: free it, so that scripts do not pile figures up
    return None if show else fig


def plot_losses(history, title: str = "loss", path=None, show: bool = True, reference: dict | None = None):
    """Train vs val loss against steps; `reference` draws labelled horizontal lines (e.g. ln V)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(history.steps, history.train_loss, label="train", marker="o", markersize=3)
    ax.plot(history.steps, history.val_loss, label="val", marker="o", markersize=3)
    for name, value in (reference or {}).items():
        ax.axhline(value, color="grey", linestyle="--", linewidth=1)
        ax.annotate(name, (history.steps[-1], value), textcoords="offset points", xytext=(0, 4),
                    ha="right", color="grey", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _finish(fig, path, show)


def plot_char_frequency(text: str, top: int = 40, path=None, show: bool = True):
    """Bar chart of the most common characters (spaces and newlines shown by name)."""
    counts = Counter(text).most_common(top)
    names = {" ": "space", "\n": "\\n"}
    labels = [names.get(c, c) for c, _ in counts]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(range(len(counts)), [n / len(text) for _, n in counts])
    ax.set_xticks(range(len(counts)), labels, rotation=90 if top > 30 else 0, fontsize=8)
    ax.set_ylabel("share of all characters")
    ax.set_title(f"The {len(counts)} most common characters")
    return _finish(fig, path, show)


def plot_bars(values: dict, ylabel: str, title: str, path=None, show: bool = True, highlight: str | None = None):
    """Simple labelled bar chart (e.g. val loss per milestone: the 'ladder')."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = list(values)
    colors = ["tab:orange" if n == highlight else "tab:blue" for n in names]
    bars = ax.bar(names, [values[n] for n in names], color=colors)
    for bar, n in zip(bars, names):
        ax.annotate(f"{values[n]:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    return _finish(fig, path, show)


def plot_attention(weights, tokens: list[str], title: str = "attention", path=None, show: bool = True, ax=None):
    """Heat map of one head's (T, T) attention weights; row = query position, column = key.

    With `ax` it draws into that panel of a bigger figure and returns it (the caller saves and
    shows the whole figure); without, it makes, saves and shows its own figure."""
    import numpy as np

    weights = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    labels = [{" ": "\u2423", "\n": "\\n"}.get(t, t) for t in tokens]
    ax.imshow(weights, cmap="viridis", vmin=0, vmax=max(float(weights.max()), 1e-9))
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("attends to (key position)")
    ax.set_ylabel("query position")
    ax.set_title(title, fontsize=9)
    return _finish(ax.figure, path, show) if own_figure else ax


# The ladder of milestones 02-08 has its own module (every rung labelled with what it changed,
# the validation curves overlaid); re-exported here, the home of every course figure.
from .ladder import plot_ladder  # noqa: E402,F401

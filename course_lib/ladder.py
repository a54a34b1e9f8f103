"""The ladder: what each rung of the character-level course (milestones 2-8) changed, and what it bought.

Every milestone notebook leaves one row in results.json (course_lib.milestones.finish_milestone)
with its validation loss, a `changes` string (what it changed against the milestone before) and
its validation curve. Some notebooks also train an in-between model so that a milestone that
changes two things can show each one on its own, e.g. notebook 06:

    05 one block  ->  06a four plain blocks (depth only)  ->  06 + residual connections

Such in-between models are stored in their milestone's row as `rungs`, a list of dicts built by
`rung(changes, val_loss, history)`; the ladder draws them just before the milestone itself.

    plot_ladder(load_results(output_dir), path=...)

draws one figure with two panels:
- left: the validation loss of every rung, labelled with everything that rung changed, on an
  axis zoomed to the measured values (never from 0: the late rungs differ by hundredths of a nat,
  and a zero-based axis would flatten them), each point annotated with its change from the rung
  before; a panel under it zooms into the last rungs when they sit close together;
- right: the validation curves of every rung against training steps, overlaid, on an axis zoomed
  to where the curves end (their starts, near ln V, are cut off on purpose).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

FIRST, LAST = 2, 8  # the character-level rungs: bigram .. full character GPT


@dataclass
class Rung:
    code: str                  # "06", or "06a" for an in-between model trained by notebook 06
    milestone: int
    changes: str               # what this rung changed against the rung before it
    val_loss: float
    curve: dict | None = None  # {"steps": [...], "val_loss": [...]}
    in_between: bool = False   # an extra model of a notebook, not the milestone itself

    @property
    def label(self) -> str:
        return f"{self.code}  {self.changes}"


def rung(changes: str, val_loss: float, history=None, **notes) -> dict:
    """An in-between rung for finish_milestone(..., extra={"rungs": [rung(...), ...]}).

    changes: what this model changed against the rung before it (e.g. "4 blocks instead of 1").
    val_loss: its validation loss, measured like the milestone's own (the whole validation split).
    history: its training History, for the curve panel (optional).
    notes: anything else worth keeping with it in results.json (the ladder ignores it).
    """
    out = {"changes": str(changes), "val_loss": round(float(val_loss), 4), **notes}
    if history is not None:
        out["curve"] = {"steps": list(history.steps), "val_loss": [round(v, 4) for v in history.val_loss]}
    return out


def ladder_rungs(results: dict, first: int = FIRST, last: int = LAST, key: str = "val_loss") -> list[Rung]:
    """Rows of results.json ({"6": row, ...}) -> the rungs of milestones first..last, in order, each
    milestone's in-between rungs just before it. Rows without `key` are skipped. Rows from
    different profiles or corpora cannot share one ladder: that raises ValueError."""
    rows = [results[k] for k in sorted(results, key=int) if first <= int(k) <= last and key in results[k]]
    runs = {(r.get("profile"), r.get("corpus")) for r in rows}
    if len(runs) > 1:
        listed = ", ".join(f"{r['milestone']}: {r.get('profile')}/{r.get('corpus')}" for r in rows)
        raise ValueError(f"The ladder compares rungs of one run, but these rows come from different "
                         f"profiles or corpora ({listed}). Pass only the rows of one profile and corpus, or "
                         "re-run the other notebooks with this one's profile and corpus.")
    rungs = []
    for row in rows:
        n = int(row["milestone"])
        for i, extra in enumerate(row.get("rungs", [])):
            rungs.append(Rung(f"{n:02d}{'abcdefgh'[i]}", n, extra.get("changes", "?"), float(extra[key]),
                              extra.get("curve"), in_between=True))
        changes = row.get("changes") or row.get("short") or row.get("title", "")
        rungs.append(Rung(f"{n:02d}", n, changes, float(row[key]), row.get("curve")))
    return rungs


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def plot_ladder(results: dict, path: str | Path | None = None, show: bool = True, key: str = "val_loss",
                first: int = FIRST, last: int = LAST, zoom_from: int = 6):
    """The ladder figure of milestones first..last from results.json rows (see the module docstring).

    zoom_from: a panel under the ladder zooms into the rungs from this milestone on, when they span
    less than a third of the whole ladder. Saved to `path` when given; shown (returns None) or, with
    show=False, returned as a closed figure whose axes are [ladder, curves] or [ladder, curves, zoom].
    """
    # Imported here, not at the top: course_lib.plots may re-export plot_ladder from this module.
    from .plots import _finish  # the course's one way to save, show or close a figure

    rungs = ladder_rungs(results, first, last, key)
    if not rungs:
        raise ValueError(f"No milestone {first}-{last} with {key!r} in these results: run notebooks "
                         f"{first:02d}-{last:02d} (same profile and corpus) first.")
    values = [r.val_loss for r in rungs]
    span = max(values) - min(values) or abs(values[0]) * 0.05 or 0.1
    # The zoom: the milestone zoom_from itself (not its in-between models) and every rung after it.
    start = next((i for i, r in enumerate(rungs) if r.milestone >= zoom_from and not r.in_between), len(rungs))
    late = list(range(start, len(rungs)))
    zoom = len(late) >= 2 and max(values[i] for i in late) - min(values[i] for i in late) < span / 3

    fig = plt.figure(figsize=(14, 0.55 * len(rungs) + 3.2 + (1.6 if zoom else 0)))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.1, 1], height_ratios=[3, 1.1] if zoom else [1, 0.001])
    ax = fig.add_subplot(grid[0, 0] if zoom else grid[:, 0])
    ax_curves = fig.add_subplot(grid[:, 1])
    colors = plt.get_cmap("viridis")([i / max(len(rungs) - 1, 1) * 0.9 for i in range(len(rungs))])

    def dots(axis, indices, size):
        axis.plot([values[i] for i in indices], indices, color="lightgrey", linewidth=1, zorder=1)
        for i in indices:  # hollow: an in-between model
            axis.scatter(values[i], i, s=size, zorder=2, color="white" if rungs[i].in_between else colors[i],
                         edgecolors=colors[i], linewidths=2)
        axis.invert_yaxis()  # the first rung on top
        axis.grid(axis="x", alpha=0.3)

    def annotate(axis, indices):
        for i in indices:
            step = "" if i == 0 else f"  ({values[i] - values[i - 1]:+.3f})"
            axis.annotate(f"{values[i]:.3f}{step}", (values[i], i), xytext=(8, 0), textcoords="offset points",
                          va="center", fontsize=8)

    # Left: one point per rung, top to bottom in course order.
    everything = list(range(len(rungs)))
    dots(ax, everything, 60)
    annotate(ax, everything)
    ax.set_xlim(min(values) - 0.12 * span, max(values) + 0.32 * span)  # room for the annotations
    ax.set_yticks(everything, [_wrap(r.label) for r in rungs], fontsize=8)
    ax.set_xlabel(f"{key.replace('_', ' ')} (nats/char), lower is better; axis zoomed, not from 0")
    ax.set_title("The ladder: each rung and what it changed\n(in brackets: change from the rung above; "
                 "hollow: an in-between model)", fontsize=10)

    # Right: the validation curves, overlaid.
    ends, lows = [], []
    for r, color in zip(rungs, colors):
        if not r.curve or not r.curve.get("steps"):
            continue
        ax_curves.plot(r.curve["steps"], r.curve["val_loss"], color=color, linewidth=1.6,
                       linestyle="--" if r.in_between else "-",
                       label=r.code + "  " + textwrap.shorten(r.changes, 34, placeholder="..."))
        ends.append(r.curve["val_loss"][-1])
        lows.append(min(r.curve["val_loss"]))
    if ends:
        lo, hi = min(lows), max(ends)
        pad = 0.1 * (hi - lo) or 0.05
        ax_curves.set_ylim(lo - pad, hi + 2 * pad)  # the starts (near ln V) are above: cut off on purpose
        ax_curves.legend(fontsize=7, loc="best", handlelength=2.5)
    else:
        ax_curves.text(0.5, 0.5, "no validation curves in these rows", ha="center", va="center",
                       transform=ax_curves.transAxes)
    ax_curves.set_xlabel("training step")
    ax_curves.set_ylabel(f"{key.replace('_', ' ')} on fixed batches (nats/char)")
    ax_curves.set_title("Validation curves of every rung (zoomed: their starts are above the top)",
                        fontsize=10)
    ax_curves.grid(alpha=0.3)

    # Under the ladder: the last rungs again, on an axis of their own, so that small gaps show.
    if zoom:
        ax_zoom = fig.add_subplot(grid[1, 0])
        dots(ax_zoom, late, 40)
        annotate(ax_zoom, late)
        lo, hi = min(values[i] for i in late), max(values[i] for i in late)
        pad = 0.15 * (hi - lo) or 0.005
        ax_zoom.set_xlim(lo - pad, hi + 3 * pad)  # room for the annotations
        ax_zoom.set_yticks(late, [rungs[i].code for i in late], fontsize=8)
        ax_zoom.tick_params(axis="x", labelsize=8)
        ax_zoom.set_title(f"zoom: the rungs from {zoom_from:02d} on", fontsize=9)
    return _finish(fig, path, show)

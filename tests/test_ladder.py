"""course_lib.ladder: the figure of milestones 2-8 that notebook 08 shows, on synthetic rows."""

import matplotlib

matplotlib.use("Agg")  # these unit tests only; the library never picks a backend

import pytest

from course_lib.ladder import ladder_rungs, plot_ladder, rung
from course_lib.training import History


def _row(n, loss, changes=None, **extra):
    row = {"milestone": n, "title": f"title {n}", "profile": "cpu", "corpus": "bundled", "val_loss": loss,
           "curve": {"steps": [0, 100, 200], "val_loss": [4.4, loss + 0.2, loss]}, **extra}
    if changes:
        row["changes"] = changes
    return row


def _results():
    plain = rung("4 blocks instead of 1", 1.82, History(steps=[0, 100, 200], val_loss=[4.4, 2.1, 1.85]))
    wider = rung("width 64 -> 128", 1.59)  # no history: no curve, still a point
    return {
        "1": _row(1, 4.38, "uniform"),  # outside 2-8: not on the ladder
        "2": _row(2, 2.44, "a bigram table"),
        "5": _row(5, 1.98),  # no `changes`: falls back to the title
        "6": _row(6, 1.65, "+ residual connections + attention projection", rungs=[plain]),
        "7": _row(7, 1.606, "+ LayerNorm"),
        "8": _row(8, 1.600, "+ dropout 0.1", rungs=[wider]),
        "9": _row(9, 4.19, "words"),
        "12": {"milestone": 12, "title": "comparison", "profile": "cpu", "corpus": "bundled"},
    }


def test_rungs_are_in_course_order_with_in_between_models_before_their_milestone():
    rungs = ladder_rungs(_results())
    assert [r.code for r in rungs] == ["02", "05", "06a", "06", "07", "08a", "08"]
    assert [r.in_between for r in rungs] == [False, False, True, False, False, True, False]
    assert rungs[1].changes == "title 5"
    assert rungs[2].changes == "4 blocks instead of 1" and rungs[2].val_loss == 1.82
    assert rungs[2].curve == {"steps": [0, 100, 200], "val_loss": [4.4, 2.1, 1.85]}
    assert rungs[5].curve is None


def test_every_rung_is_labelled_with_its_changes_and_the_axis_is_zoomed(tmp_path):
    path = tmp_path / "figures" / "ladder.png"
    fig = plot_ladder(_results(), path=path, show=False)
    assert path.stat().st_size > 0
    ax, curves = fig.axes[0], fig.axes[1]
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert labels[3] == "06  + residual connections + attention projection"
    assert labels[5] == "08a  width 64 -> 128"
    lo, hi = ax.get_xlim()
    assert 1.4 < lo < 1.59 and hi < 2.9, "the loss axis is zoomed to the values, not started at 0"
    # each point carries its value and its change from the rung above
    notes = [t.get_text() for t in ax.texts]
    assert "1.600  (+0.010)" in notes and "2.440" in notes
    # the zoom panel shows 06..08, whose spread is small next to the bigram's distance
    assert len(fig.axes) == 3
    zoom = fig.axes[2]
    assert [t.get_text() for t in zoom.get_yticklabels()] == ["06", "07", "08a", "08"]
    assert zoom.get_xlim()[1] - zoom.get_xlim()[0] < 0.2
    # curves: one per rung that has one (08a has none); starts near ln V are cut off
    assert len(curves.get_lines()) == 6
    assert curves.get_ylim()[1] < 4.4
    dashed = [line.get_label() for line in curves.get_lines() if line.get_linestyle() == "--"]
    assert dashed == ["06a  4 blocks instead of 1"]


def test_rows_of_different_runs_cannot_share_a_ladder():
    results = _results()
    results["7"]["profile"] = "smoke"
    with pytest.raises(ValueError, match="different profiles or corpora"):
        ladder_rungs(results)


def test_nothing_to_draw_says_which_notebooks_to_run():
    with pytest.raises(ValueError, match="run notebooks 02-08"):
        plot_ladder({"9": _row(9, 4.2)}, show=False)


def test_a_single_rung_still_draws(tmp_path):
    fig = plot_ladder({"8": _row(8, 1.6, "+ dropout")}, path=tmp_path / "one.png", show=False)
    assert len(fig.axes) == 2  # no zoom panel for one rung

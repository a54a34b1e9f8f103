import matplotlib

matplotlib.use("Agg")

from course_lib.plots import plot_ladder  # noqa: E402


def _row(n, short, loss):
    return {"milestone": n, "title": short, "short": short, "val_loss": loss}


def test_ladder_orders_milestones_and_skips_rows_without_the_value(tmp_path):
    results = {"10": _row(10, "GPT-2 BPE", 5.3), "2": _row(2, "bigram", 2.44), "8": _row(8, "full char GPT", 1.6),
               "12": {"milestone": 12, "title": "comparison"}}  # no val_loss: not a bar
    path = tmp_path / "figures" / "ladder.png"
    fig = plot_ladder(results, path=path, show=False)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["02\nbigram", "08\nfull char GPT", "10\nGPT-2 BPE"]
    assert [round(bar.get_height(), 2) for bar in ax.patches] == [2.44, 1.6, 5.3]
    assert path.stat().st_size > 0
    # the last milestone is the highlighted one
    assert ax.patches[-1].get_facecolor() != ax.patches[0].get_facecolor()

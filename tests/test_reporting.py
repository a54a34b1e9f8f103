"""Sentences phrased from numbers, prompts from the corpus, and the one-call milestone bookkeeping."""

import json

import pytest

from course_lib.models import BigramLM
from course_lib.profiles import setup_notebook
from course_lib.registry import load_model
from course_lib.reporting import better, compare, sample_prompts


def test_compare_names_the_better_model_and_the_margin():
    assert compare("A", 1.50, "B", 1.55) == "A beats B by 0.050 nats/char (1.500 vs 1.550)."
    # the numbers follow the sentence's order: the winner's first
    assert compare("A", 1.55, "B", 1.50) == "B beats A by 0.050 nats/char (1.500 vs 1.550)."
    assert compare("A", 0.8, "B", 0.6, lower_is_better=False, unit="accuracy").startswith("A beats B by 0.200 accuracy")
    assert "within noise" in compare("A", 1.500, "B", 1.504)
    assert better(1.4, 1.5) and not better(1.5, 1.4) and not better(1.500, 1.505)


def test_prompts_come_from_the_text_and_differ_by_seed():
    text = "\n".join(["WREN: Why does the tide turn?", "The rain came down on the slates all night.",
                      "ODO: Moon pulls.", "x", "", "Pell found the key under the third stair."])
    prompts = sample_prompts(text, n=2, seed=1)
    assert len(prompts) == 2 and all(p and p in text for p in prompts)
    assert all(p.endswith(":") or len(p.split()) == 3 for p in prompts)
    assert sample_prompts(text, n=2, seed=1) == prompts
    assert len({tuple(sample_prompts(text, n=2, seed=s)) for s in range(6)}) > 1
    assert sample_prompts("ab", n=3) == ["ab"] * 3  # a tiny text still gives prompts


def test_finish_milestone_saves_everything_and_compares(tmp_path, tokenizer, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    run = setup_notebook("bigram", profile="smoke", verbose=False)
    model = BigramLM(tokenizer.vocab_size)

    class History:
        steps, val_loss = [0, 10], [3.0, 2.5]

    first = run.finish_milestone(2, "bigram", samples={"t=1": "abc"}, metrics={"val_loss": 2.5}, model=model,
                                 tokenizer=tokenizer, checkpoint="bigram", changes="one character of context",
                                 history=History())
    assert "no earlier milestone" in capsys.readouterr().out
    row = json.loads((tmp_path / "results.json").read_text())["milestones"]["2"]
    assert row["changes"] == "one character of context" and row["curve"]["val_loss"] == [3.0, 2.5]
    assert row["checkpoint"] == "bigram" and first["milestone"].read_text().count("[t=1]") == 1
    loaded = load_model("bigram", tmp_path)
    assert loaded.meta["milestone"] == 2 and loaded.meta["profile"] == "smoke"

    second = run.finish_milestone(3, "attention", samples=["x"], metrics={"val_loss": 2.2})
    assert second["checkpoint"] is None
    assert "milestone 3 beats milestone 2 by 0.300" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs model= and tokenizer="):
        run.finish_milestone(4, "x", samples=["x"], metrics={}, checkpoint="x")

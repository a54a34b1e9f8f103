"""The side-by-side benchmark against nanoGPT's recipe (course_lib/recipe_bench.py), run tiny."""

import json

import torch

from course_lib import recipe_bench
from course_lib.models import GPT


def test_both_sides_train_on_the_same_split_and_report(tmp_path, small_text, capsys):
    corpus = tmp_path / "text.txt"
    corpus.write_text(small_text * 3, encoding="utf-8")
    out = tmp_path / "r.json"
    assert recipe_bench.main(["--corpus", str(corpus), "--iters", "4", "--batch-size", "2", "--time-rounds", "1",
                              "--time-steps", "2", "--threads", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["val_loss"]) == {"course", "reference"} and all(v > 0 for v in result["val_loss"].values())
    assert result["recipe"]["n_embd"] == 128 and result["recipe"]["iters"] == 4
    printed = capsys.readouterr().out
    assert "course - reference" in printed and "step time ratio" in printed


def test_the_reference_is_a_gpt_of_the_same_size_with_tied_embeddings():
    r = recipe_bench.Recipe()
    ref, ours = recipe_bench.RefGPT(65, r), recipe_bench.course_model(65, r)
    assert isinstance(ours, GPT) and ref.head.weight is ref.wte.weight
    # the same blocks and width; the course's model keeps its output layer untied (+V*C)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(ours) - n(ref) == 65 * 128
    assert ref(torch.zeros(2, 64, dtype=torch.long)).shape == (2, 64, 65)


def test_bad_arguments_are_one_line(capsys, tmp_path):
    assert recipe_bench.main(["--iters", "0"]) == 2
    assert recipe_bench.main(["--output", str(tmp_path)]) == 2
    assert recipe_bench.main(["--corpus", str(tmp_path / "none.txt")]) == 2
    assert capsys.readouterr().err.count("error:") == 3

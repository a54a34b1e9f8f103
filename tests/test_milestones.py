import json

import pytest

from course_lib.milestones import load_results, previous_result, save_milestone

RUN = {"notebook": "bigram", "profile": "smoke", "corpus": "bundled", "seed": 1, "device": "cpu"}


def test_milestone_file_and_ledger(tmp_path):
    path = save_milestone(2, "bigram", ["abc", "def"], RUN, metrics={"val_loss": 2.5, "perplexity": 12.2},
                          sampling={"temperature": 1.0}, output_dir=tmp_path)
    text = path.read_text(encoding="utf-8")
    assert path.name == "milestone2.txt"
    for expected in ("Milestone 2: bigram", "profile: smoke", "val_loss: 2.5", "temperature=1.0",
                     "--- sample 1 ---\nabc", "--- sample 2 ---\ndef"):
        assert expected in text
    rows = json.loads((tmp_path / "results.json").read_text())["milestones"]
    assert rows["2"]["val_loss"] == 2.5 and rows["2"]["corpus"] == "bundled"


def test_ledger_upserts_and_orders(tmp_path):
    save_milestone(3, "attention", "x", RUN, {"val_loss": 2.2}, output_dir=tmp_path)
    save_milestone(2, "bigram", "x", RUN, {"val_loss": 2.5}, output_dir=tmp_path)
    save_milestone(3, "attention", "x", RUN, {"val_loss": 2.1}, output_dir=tmp_path)
    rows = load_results(tmp_path)
    assert list(rows) == ["2", "3"] and rows["3"]["val_loss"] == 2.1
    assert previous_result(3, tmp_path)["val_loss"] == 2.5
    assert previous_result(2, tmp_path) is None


def test_corrupt_ledger_is_not_overwritten(tmp_path):
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        save_milestone(2, "bigram", "x", RUN, output_dir=tmp_path)
    assert (tmp_path / "results.json").read_text() == "{not json"


def test_bad_milestone_number(tmp_path):
    with pytest.raises(ValueError, match="positive integer"):
        save_milestone(0, "x", "x", RUN, output_dir=tmp_path)

"""Checkpoint registry and the command-line generator."""

import json

import pytest
import torch

from course_lib import generate as cli
from course_lib.models import GPT, BigramLM, GPTConfig
from course_lib.models.lstm import LSTMConfig, LSTMLanguageModel
from course_lib.registry import list_checkpoints, load_model
from course_lib.checkpoints import CheckpointError, save_model
from course_lib.words import Vocab


@pytest.fixture
def registry(tmp_path, tokenizer):
    ck = tmp_path / "checkpoints"
    V = tokenizer.vocab_size
    save_model(ck / "bigram", BigramLM(V), tokenizer)
    cfg = GPTConfig(vocab_size=V, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(ck / "dropout", GPT(cfg), tokenizer)
    vocab = Vocab.from_text("the tide came in and the tide went out\n" * 5, min_freq=1)
    lcfg = LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8, n_layers=1, tie_weights=True)
    save_model(ck / "lstm", LSTMLanguageModel(lcfg), vocab)
    return tmp_path


def test_registry_lists_metadata(registry):
    names = {row["name"]: row for row in list_checkpoints(registry)}
    assert set(names) == {"bigram", "dropout", "lstm"}
    assert all(row["has_weights"] and row["parameters"] > 0 for row in names.values())
    assert json.loads((registry / "checkpoints" / "dropout.json").read_text())["weights"] == "dropout.safetensors"


@pytest.mark.parametrize("name", ["bigram", "dropout", "lstm"])
def test_every_kind_loads_generates_and_scores(registry, name, small_text):
    loaded = load_model(name, registry)
    prompt = "the tide" if name == "lstm" else "WREN:"
    text = loaded.generate(prompt, 12, temperature=0.9, seed=1)
    assert text.startswith(prompt) and len(text) > len(prompt)
    assert loaded.generate(prompt, 12, temperature=0.9, seed=1) == text  # seeded: repeatable
    result = loaded.evaluate_text(small_text[:300] if name != "lstm" else "the tide came in\n" * 4)
    assert result.bits_per_char > 0 and result.n_tokens > 0
    if name == "lstm":
        assert "<unk>" not in loaded.generate("the moon", 30, seed=2)


def test_missing_checkpoint_names_the_notebook(tmp_path):
    with pytest.raises(CheckpointError, match="08_dropout.*Available: none yet"):
        load_model("dropout", tmp_path)


def test_metadata_without_weights_is_reported(registry):
    (registry / "checkpoints" / "bigram.safetensors").unlink()
    assert not {r["name"]: r for r in list_checkpoints(registry)}["bigram"]["has_weights"]
    with pytest.raises(CheckpointError, match="02_bigram"):
        load_model("bigram", registry)


def test_corrupt_weights_are_reported(registry):
    (registry / "checkpoints" / "dropout.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="damaged.*corrupt"):
        load_model("dropout", registry)


def test_cli_generates(registry, capsys):
    assert cli.main(["--checkpoint", "dropout", "--prompt", "ODO:", "-n", "10", "--seed", "3",
                     "--output-dir", str(registry)]) == 0
    assert capsys.readouterr().out.startswith("ODO:")


def test_cli_lists(registry, capsys):
    assert cli.main(["--list", "--output-dir", str(registry)]) == 0
    assert "lstm" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "nope"], "No trained checkpoint 'nope'"),
    (["--checkpoint", "dropout", "--temperature", "0"], "temperature must be > 0"),
    (["--checkpoint", "dropout", "--top-p", "1.5"], "top_p must be in"),
    (["--checkpoint", "dropout", "--top-k", "0"], "top_k must be"),
    (["--checkpoint", "dropout", "-n", "0"], "max_new_tokens"),
    (["--checkpoint", "dropout", "--prompt", "\u00e9t\u00e9"], "not in the vocabulary"),
])
def test_cli_errors_are_one_clear_line(registry, capsys, args, message):
    assert cli.main([*args, "--output-dir", str(registry)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err

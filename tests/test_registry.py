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


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "dropout", "--device", "gpu"], "Unknown device 'gpu'"),
    (["--checkpoint", "dropout", "--device", "cuda:99"], "cuda"),
    (["--checkpoint", "dropout", "--device", "npu"], "Unknown device"),
    (["--checkpoint", "dropout", "--seed", str(10**30)], "argument --seed"),
    (["--checkpoint", "dropout", "--seed", "-1"], "argument --seed"),
    (["--checkpoint", "dropout", "--seed", "seven"], "argument --seed"),
    (["--checkpoint", "dropout", "--temperature", "warm"], "argument --temperature"),
    (["--checkpoint", "dropout", "--prompt", ""], "prompt is empty"),
    (["--checkpoint", "no/such/folder"], "No checkpoint at"),
    ([], "no --checkpoint given"),
])
def test_cli_option_errors_are_one_line(registry, capsys, args, message):
    try:
        code = cli.main([*args, "--output-dir", str(registry)])
    except SystemExit as stop:  # argparse's own checks (they print the same one-line form)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err


def test_cli_cuda_on_a_cpu_only_machine(registry, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli.main(["--checkpoint", "dropout", "--device", "cuda", "--output-dir", str(registry)]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda: device='cuda' was asked for but this torch")


def test_cli_takes_a_checkpoint_folder_or_path(registry, tmp_path, capsys, tokenizer):
    folder = tmp_path / "run"
    save_model(folder / "model", GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_embd=8, n_head=2,
                                               n_layer=1)), tokenizer)
    for where in (folder, folder / "model", folder / "model.safetensors"):
        assert cli.main(["--checkpoint", str(where), "--prompt", "WREN:", "-n", "4", "--seed", "1"]) == 0
        assert capsys.readouterr().out.startswith("WREN:")


def test_reference_models_are_exported_in_fp16_and_served_after_clone(registry, tmp_path, monkeypatch, small_text):
    from course_lib.registry import export_reference_models

    import time

    shipped = tmp_path / "shipped"
    time.sleep(1.1)  # saved_at has one-second resolution: the export is strictly newer than the training
    paths = export_reference_models(("bigram", "dropout", "lstm"), registry, target=shipped, note="make course")
    assert [p.name for p in paths] == ["bigram.safetensors", "dropout.safetensors", "lstm.safetensors"]
    from course_lib.checkpoints import read_meta
    assert read_meta(paths[1])["dtype"] == "float16" and read_meta(paths[1])["reference_note"] == "make course"
    # A fresh clone: no trained checkpoints, only the shipped copies.
    monkeypatch.setenv("COURSE_REFERENCE_MODELS", str(shipped))
    fresh = tmp_path / "fresh"
    rows = {r["name"]: r for r in list_checkpoints(fresh)}
    assert {n: (r["ready"], r["source"]) for n, r in rows.items()} == {
        n: (True, "reference") for n in ("bigram", "dropout", "lstm")}
    assert load_model("dropout", fresh).generate("WREN:", 5, seed=1).startswith("WREN:")
    # A newer trained checkpoint of the same name wins over the shipped copy.
    rows = {r["name"]: r for r in list_checkpoints(registry)}
    assert rows["dropout"]["source"] == "reference"  # the export is newer than the fixture's training
    time.sleep(1.1)
    save_model(registry / "checkpoints" / "dropout", load_model("dropout", registry).model,
               load_model("dropout", registry).tokenizer)
    assert {r["name"]: r for r in list_checkpoints(registry)}["dropout"]["source"] == "trained"


def test_export_refuses_missing_models_and_the_size_budget(registry, tmp_path, monkeypatch):
    from course_lib import registry as reg

    with pytest.raises(CheckpointError, match="Cannot export finetuned"):
        reg.export_reference_models(("dropout", "finetuned"), registry, target=tmp_path / "x")
    monkeypatch.setattr(reg, "REFERENCE_BUDGET_MB", 0.001)
    with pytest.raises(CheckpointError, match="over the 0.001 MB budget"):
        reg.export_reference_models(("dropout",), registry, target=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_greedy_needs_no_temperature_and_is_repeatable(registry, capsys):
    args = ["--checkpoint", "dropout", "--prompt", "ODO:", "-n", "8", "--greedy", "--output-dir", str(registry)]
    assert cli.main([*args, "--temperature", "0"]) == 0       # the temperature is not used at all
    first = capsys.readouterr().out
    assert cli.main(args) == 0 and capsys.readouterr().out == first


@pytest.mark.parametrize("name, prompt", [("dropout", "ODO:"), ("lstm", "the tide")])
def test_extreme_temperatures_never_crash(registry, capsys, name, prompt):
    for t in ("1e-30", "1e-8", "1e30"):
        assert cli.main(["--checkpoint", name, "--prompt", prompt, "-n", "5", "-t", t, "--seed", "1",
                         "--output-dir", str(registry)]) == 0, t
    assert cli.main(["--checkpoint", name, "--prompt", prompt, "-t", "inf", "--output-dir", str(registry)]) == 2
    assert "temperature" in capsys.readouterr().err


def test_the_committed_reference_models_load_and_write(tmp_path, monkeypatch):
    """What a fresh clone gets: the fp16 models in outputs/reference_models/ are ready, within the
    size budget, from the cpu profile, and each writes text from a prompt."""
    from course_lib.registry import REFERENCE_DIR, REFERENCE_MODELS

    monkeypatch.setenv("COURSE_REFERENCE_MODELS", str(REFERENCE_DIR))
    rows = {r["name"]: r for r in list_checkpoints(tmp_path / "fresh")}
    assert {n: (rows[n]["ready"], rows[n]["source"]) for n in REFERENCE_MODELS} == {
        n: (True, "reference") for n in REFERENCE_MODELS}
    assert sum(p.stat().st_size for p in REFERENCE_DIR.glob("*.safetensors")) < 25e6
    prompts = {"dropout": "WREN:", "lstm": "the tide", "finetuned": "[CHAT] User to Wren: Hello!\nWREN:"}
    for name in REFERENCE_MODELS:
        loaded = load_model(name, tmp_path / "fresh")
        assert loaded.meta["profile"] == "cpu" and loaded.meta["dtype"] == "float16", name
        text = loaded.generate(prompts[name], 8, seed=1)
        assert text.startswith(prompts[name]) and len(text) > len(prompts[name]), name

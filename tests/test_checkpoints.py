"""One checkpoint format (course_lib/checkpoints.py): every model kind round-trips, tied weights
are stored once, fp16 files load into fp32 models, resume state pairs with its weights, and every
kind of damage is reported with what to do."""

import json
import os

import pytest
import torch

from course_lib.checkpoints import (CheckpointError, checkpoint_paths, load_model, load_state, read_meta,
                                    read_resume, save_model)
from course_lib.models import GPT, BigramLM, GPTConfig
from course_lib.models.lstm import LSTMConfig, LSTMLanguageModel
from course_lib.words import Vocab


def gpt(tokenizer, **kw):
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=2, **kw))


@pytest.fixture
def vocab():
    return Vocab.from_text("the tide came in and the tide went out\n" * 5, min_freq=1)


def kinds(tokenizer, vocab):
    return {
        "bigram": (BigramLM(tokenizer.vocab_size), tokenizer),
        "gpt": (gpt(tokenizer), tokenizer),
        "gpt_tied": (gpt(tokenizer, tie_weights=True, bias=True), tokenizer),
        "lstm": (LSTMLanguageModel(LSTMConfig(len(vocab), emb_size=8, hidden_size=8, tie_weights=True)), vocab),
    }


def test_every_kind_round_trips_from_the_file_alone(tmp_path, tokenizer, vocab):
    for name, (model, tok) in kinds(tokenizer, vocab).items():
        weights = save_model(tmp_path / name, model, tok, profile="smoke", metrics={"val_loss": 1.5})
        assert weights.name == f"{name}.safetensors"
        loaded = load_model(weights)
        assert type(loaded.model) is type(model) and not loaded.model.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[key], value), (name, key)
        assert loaded.meta["profile"] == "smoke" and loaded.meta["metrics"]["val_loss"] == 1.5
        assert loaded.tokenizer.to_dict() == tok.to_dict()


def test_the_metadata_lives_in_the_weights_and_the_json_is_a_copy(tmp_path, tokenizer):
    weights, copy, _ = checkpoint_paths(tmp_path / "m.pt")  # any suffix names the same checkpoint
    save_model(tmp_path / "m", gpt(tokenizer), tokenizer, corpus="bundled")
    assert json.loads(copy.read_text())["save_id"] == read_meta(weights)["save_id"]
    copy.unlink()                                          # the copy is for people and git only
    assert load_model(weights).meta["corpus"] == "bundled"


def test_tied_weights_are_written_once_and_tied_again(tmp_path, tokenizer):
    tied, untied = gpt(tokenizer, tie_weights=True), gpt(tokenizer)
    save_model(tmp_path / "tied", tied, tokenizer)
    save_model(tmp_path / "untied", untied, tokenizer)
    assert read_meta(tmp_path / "tied")["tied"] == {"lm_head.weight": "tok_emb.weight"}
    size = {n: (tmp_path / f"{n}.safetensors").stat().st_size for n in ("tied", "untied")}
    matrix_bytes = tied.tok_emb.weight.numel() * 4
    assert size["untied"] - size["tied"] == pytest.approx(matrix_bytes, abs=200)
    model = load_model(tmp_path / "tied").model
    assert model.lm_head.weight is model.tok_emb.weight


def test_fp16_halves_the_file_and_loads_into_fp32(tmp_path, tokenizer):
    model = gpt(tokenizer)
    save_model(tmp_path / "full", model, tokenizer)
    save_model(tmp_path / "half", model, tokenizer, dtype=torch.float16)
    full, half = ((tmp_path / f"{n}.safetensors").stat().st_size for n in ("full", "half"))
    assert half < 0.55 * full and read_meta(tmp_path / "half")["dtype"] == "float16"
    loaded = load_model(tmp_path / "half").model
    assert loaded.lm_head.weight.dtype == torch.float32
    x = torch.randint(tokenizer.vocab_size, (2, 16))
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=2e-3, rtol=0)


def test_resume_state_belongs_to_its_weights(tmp_path, tokenizer):
    model = gpt(tokenizer)
    opt = torch.optim.AdamW(model.parameters())
    save_model(tmp_path / "run", model, tokenizer, resume={"optimizer": opt.state_dict(), "step": 3})
    assert load_model(tmp_path / "run", with_resume=True).resume["step"] == 3
    # An interrupted save: new resume state next to the old weights.
    old_weights = (tmp_path / "run.safetensors").read_bytes()
    save_model(tmp_path / "run", model, tokenizer, resume={"optimizer": opt.state_dict(), "step": 4})
    (tmp_path / "run.safetensors").write_bytes(old_weights)
    with pytest.raises(CheckpointError, match="does not belong to run.safetensors.*interrupted"):
        read_resume(tmp_path / "run")
    save_model(tmp_path / "plain", model, tokenizer)
    with pytest.raises(CheckpointError, match="without a resume state"):
        read_resume(tmp_path / "plain")


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path, tokenizer):
    dead_pid = 2**22 + 12345  # above the default pid range: no such process
    stale = tmp_path / f"m.safetensors.tmp-{dead_pid}"
    stale.write_bytes(b"half a file")
    mine_elsewhere = tmp_path / f"other.safetensors.tmp-{dead_pid}"  # another checkpoint's: not ours
    mine_elsewhere.write_bytes(b"x")
    save_model(tmp_path / "m", BigramLM(tokenizer.vocab_size), tokenizer)
    assert not stale.exists() and mine_elsewhere.exists()
    assert not [p for p in tmp_path.iterdir() if f".tmp-{os.getpid()}" in p.name]


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "not a readable course checkpoint"),
    (lambda p: p.write_bytes(b"junk" * 10), "not a readable course checkpoint"),
    (lambda p: p.write_bytes(p.read_bytes()[:300]), "corrupt|not a readable"),
    (lambda p: p.write_bytes(p.read_bytes()[:-50]), "corrupt|not a readable"),
])
def test_damaged_weights_are_explained(tmp_path, tokenizer, damage, message):
    path = save_model(tmp_path / "m", gpt(tokenizer), tokenizer)
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_a_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at .*Train the model first"):
        load_model(tmp_path / "nothing")


def test_weights_of_another_shape_name_the_tensor_and_both_shapes(tmp_path, tokenizer):
    path = save_model(tmp_path / "m", BigramLM(10), {"kind": "char", "chars": "abcdefghij"})
    with pytest.raises(CheckpointError, match=r"table.weight: file \(10, 10\) vs model \(12, 12\)"):
        load_state(BigramLM(12), path)


def test_metadata_from_another_version_is_explained(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    path = save_model(tmp_path / "m", gpt(tokenizer), tokenizer)
    meta = read_meta(path)
    meta["config"]["rotary"] = True                      # a setting this version does not know
    save_file(load_file(path), str(path), metadata={"course_meta": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not know: rotary.*another version"):
        load_model(path)
    meta["model"] = "Mamba"
    save_file(load_file(path), str(path), metadata={"course_meta": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="Unknown model kind 'Mamba'"):
        load_model(path)


def test_only_course_models_can_be_saved(tmp_path, tokenizer):
    with pytest.raises(CheckpointError, match="does not know how to rebuild a Linear"):
        save_model(tmp_path / "x", torch.nn.Linear(2, 2), tokenizer)

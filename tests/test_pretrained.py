"""Starting from GPT-2's published weights, without the internet: a tiny randomly initialised
Hugging Face GPT2LMHeadModel is laid out in a temporary Hugging Face cache exactly as the hub
writes it (models--openai-community--gpt2/snapshots/<commit>/..., refs/main), so that "gpt2"
resolves to it offline. Then the whole path: load -> continue pre-training (train_gpt2 --init) ->
fine-tune (train finetune --base) -> save -> generate. And with an empty cache, every entry point
stops at once with one message that says what to fetch and how."""

import json

import pytest
import torch

from course_lib import generate, train, train_gpt2
from course_lib.checkpoints import CheckpointError, read_meta, save_model
from course_lib.models import GPT, GPTConfig
from course_lib.models.gpt2 import PretrainedWeightsError, from_pretrained, load_base, padded_vocab

transformers = pytest.importorskip("transformers")
hub_constants = pytest.importorskip("huggingface_hub.constants")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# GPT-2's real vocabulary (the course feeds it GPT-2 BPE ids), everything else tiny
TINY = dict(vocab_size=50257, n_positions=48, n_embd=32, n_layer=2, n_head=2)


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline. (huggingface_hub reads these settings when it is
    imported; hf_hub_download looks them up on its constants module at every call.)"""
    cache = tmp_path / "hf_hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def tiny_gpt2(offline_cache):
    """A random tiny GPT-2 stored where the hub would store openai-community/gpt2."""
    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY)).eval()
    repo = offline_cache / "models--openai-community--gpt2"
    hf_model.save_pretrained(repo / "snapshots" / COMMIT)  # config.json + model.safetensors
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return hf_model


def run(main, argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return (code, *capsys.readouterr())


# ----------------------------------------------------------------------------- offline, no weights

def test_missing_weights_say_what_to_fetch_and_where(offline_cache):
    with pytest.raises(PretrainedWeightsError) as err:
        from_pretrained("gpt2")
    message = str(err.value)
    assert "hf download openai-community/gpt2 config.json model.safetensors" in message
    assert "hf_hub_download" in message and str(offline_cache) in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message


@pytest.mark.parametrize("argv", [
    ["train_gpt2", "--init", "gpt2", "--steps", "2", "--out", "{tmp}/run"],
    ["train", "gpt2", "--init", "gpt2", "--profile", "smoke", "--out", "{tmp}/run"],
    ["train", "finetune", "--base", "gpt2", "--profile", "smoke", "--out", "{tmp}/run"],
    ["train", "finetune", "--base", "gpt2-medium", "--profile", "smoke", "--out", "{tmp}/run"],
])
def test_every_entry_point_stops_at_once_with_one_message(argv, offline_cache, tmp_path, capsys):
    main = {"train_gpt2": train_gpt2.main, "train": train.main}[argv[0]]
    code, out, err = run(main, [a.replace("{tmp}", str(tmp_path)) for a in argv[1:]], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.count("error:") == 1 and err.startswith("error: OpenAI's gpt2") and err.count("\n") == 1
    assert "hf download openai-community/gpt2" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.safetensors").exists()


def test_unknown_names_and_foreign_folders(tmp_path, offline_cache):
    with pytest.raises(PretrainedWeightsError, match="gpt2-medium, gpt2-large, gpt2-xl"):
        from_pretrained("gpt3")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(PretrainedWeightsError, match="no model.safetensors"):
        from_pretrained(str(tmp_path / "half"))


# ----------------------------------------------------------------------------- with (tiny) weights

def test_sizes_come_from_config_json_and_logits_match(tiny_gpt2):
    ours = from_pretrained("gpt2").eval()
    assert (ours.config.n_layer, ours.config.n_head, ours.config.n_embd, ours.block_size, ours.vocab_size) == \
        (2, 2, 32, 48, 50257)
    ids = torch.randint(50257, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), tiny_gpt2(ids).logits, atol=1e-4, rtol=1e-4)
        padded = from_pretrained("gpt2", padded_vocab_size=padded_vocab()).eval()
        assert padded.tok_emb.weight.shape[0] == 50304
        torch.testing.assert_close(padded(ids), tiny_gpt2(ids).logits, atol=1e-4, rtol=1e-4)


def test_a_local_hugging_face_folder_works_too(tiny_gpt2, tmp_path):
    tiny_gpt2.save_pretrained(tmp_path / "mine")
    model = load_base(str(tmp_path / "mine"))
    assert model.config.n_embd == 32 and not model.training


def test_gpt2_variants_the_course_cannot_represent_are_refused(tmp_path):
    config = transformers.GPT2Config(**TINY, activation_function="relu")
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "relu")
    with pytest.raises(PretrainedWeightsError, match="activation_function='relu'"):
        from_pretrained(str(tmp_path / "relu"))


def test_corrupt_download_is_reported(tiny_gpt2, offline_cache):
    weights = offline_cache / "models--openai-community--gpt2" / "snapshots" / COMMIT / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download
    with pytest.raises(PretrainedWeightsError, match="not a usable GPT-2.*fetch them again"):
        from_pretrained("gpt2")


def test_load_base_refuses_what_is_no_gpt2_base(tmp_path, tokenizer):
    with pytest.raises(CheckpointError, match="10_gpt2"):  # notebook 10's checkpoint is not there yet
        load_base("notebook10", tmp_path)
    save_model(tmp_path / "checkpoints" / "dropout", GPT(GPTConfig(tokenizer.vocab_size, 16, 16, 2, 1)), tokenizer)
    with pytest.raises(CheckpointError, match="GPT-2's BPE tokenizer"):
        load_base("dropout", tmp_path)


def test_continue_pretraining_then_finetune_then_generate(tiny_gpt2, tmp_path, capsys):
    """The whole path of issue 17.2 on the tiny stand-in for OpenAI's GPT-2."""
    more = tmp_path / "more"
    code, out, err = run(train_gpt2.main, ["--init", "gpt2", "--steps", "2", "--global-batch", "2", "--micro-batch",
                                           "2", "--block-size", "16", "--eval-batches", "1", "--lr", "1e-3",
                                           "--out", str(more)], capsys)
    assert code == 0, err
    assert "gpt2: " in out  # logged as the published model, not a preset
    meta = read_meta(more / "model")
    assert meta["run_config"]["init"] == "gpt2" and meta["config"]["block_size"] == 48  # the model's context kept
    assert meta["config"]["n_embd"] == 32

    code, out, err = run(train.main, ["finetune", "--profile", "smoke", "--steps", "2", "--base", str(more),
                                      "--out", str(tmp_path / "ft")], capsys)
    assert code == 0, err
    assert read_meta(tmp_path / "ft")["base"] == str(more)

    code, out, err = run(generate.main, ["--checkpoint", str(tmp_path / "ft"), "--prompt", "The tide", "-n", "5",
                                         "--seed", "1"], capsys)
    assert code == 0 and out.startswith("The tide"), err


def test_train_cli_starts_from_published_weights(tiny_gpt2, tmp_path, capsys):
    code, _, err = run(train.main, ["gpt2", "--init", "gpt2", "--profile", "smoke", "--steps", "2"], capsys)
    assert code == 0, err
    meta = read_meta(tmp_path / "outputs" / "checkpoints" / "gpt2")
    assert meta["init"] == "gpt2" and meta["config"]["block_size"] == 48
    code, _, err = run(train.main, ["gpt2", "--init", "gpt2", "--profile", "smoke", "--block-size", "49",
                                    "--out", "other"], capsys)
    assert code == 2 and "context of 48 positions" in err
    code, _, err = run(train.main, ["finetune", "--base", "gpt2", "--profile", "smoke", "--steps", "2"], capsys)
    assert code == 0, err
    assert read_meta(tmp_path / "outputs" / "checkpoints" / "finetuned")["base"] == "gpt2"


def test_train_gpt2_block_size_above_the_published_context(tiny_gpt2, tmp_path, capsys):
    code, _, err = run(train_gpt2.main, ["--init", "gpt2", "--block-size", "4096", "--out", str(tmp_path / "r")],
                       capsys)
    assert code == 2 and "longer than the gpt2 model's context of 48" in err and "Traceback" not in err


def test_a_config_that_disagrees_with_the_weights_is_an_error(tiny_gpt2, offline_cache):
    config = offline_cache / "models--openai-community--gpt2" / "snapshots" / COMMIT / "config.json"
    data = json.loads(config.read_text())
    data["n_layer"] = 1  # the weights have 2 layers: loading only the first would be silently wrong
    config.write_text(json.dumps(data))
    with pytest.raises(PretrainedWeightsError, match="2 transformer layers but the config says 1"):
        from_pretrained("gpt2")

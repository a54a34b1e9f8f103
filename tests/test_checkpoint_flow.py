"""Every producer of checkpoints writes what every consumer reads: training.train,
recurrent.train_recurrent, finetune.finetune and train_gpt2 on one side; the registry (notebook
12), the generator CLI and the web app on the other."""

import pytest
import torch

from course_lib import generate as generate_cli
from course_lib import train_gpt2
from course_lib.app import create_app
from course_lib.batching import as_tensor
from course_lib.bpe import BPETokenizer
from course_lib.finetune import FinetuneConfig, finetune, load_examples
from course_lib.models import GPT, GPTConfig
from course_lib.models.lstm import LSTMConfig, LSTMLanguageModel
from course_lib.recurrent import RecurrentTrainConfig, train_recurrent
from course_lib.registry import list_checkpoints, load_model
from course_lib.training import TrainConfig, train
from course_lib.words import Vocab, tokenize_lines

PROMPTS = {"char": "WREN:", "lstm": "the tide", "tasks": "[SPELL] Effect: light a lamp\nIncantation:"}


@pytest.fixture(scope="module")
def produced(tmp_path_factory, ):
    from course_lib.tokenizers import CharTokenizer

    root = tmp_path_factory.mktemp("flow")
    ck = root / "checkpoints"
    text = "".join(f"{i}. WREN: Why does the tide come twice a day, Odo?\nODO: Moon pulls. Twice.\n" for i in range(40))
    tok = CharTokenizer.from_text(text)
    ids = as_tensor(tok.encode(text))
    torch.manual_seed(0)
    char = GPT(GPTConfig(tok.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1))
    train(char, ids[:2500], ids[2500:], TrainConfig(max_iters=5, batch_size=2, block_size=16, eval_interval=5,
                                                      eval_iters=1, checkpoint_path=str(ck / "char")),
          progress=False, tokenizer=tok, checkpoint_meta={"profile": "smoke"})

    words = "the tide came in and the tide went out\n" * 30
    vocab = Vocab.from_text(words, min_freq=1)
    stream = as_tensor(vocab.encode(tokenize_lines(words)))
    lstm = LSTMLanguageModel(LSTMConfig(len(vocab), emb_size=8, hidden_size=8, n_layers=1, tie_weights=True))
    train_recurrent(lstm, stream[:200], stream[200:], RecurrentTrainConfig(max_epochs=1, batch_size=2, bptt=8,
                                                                           checkpoint_path=str(ck / "lstm")),
                    progress=False, tokenizer=vocab)

    bpe = BPETokenizer()
    tiny = GPT(GPTConfig(bpe.vocab_size, block_size=64, n_embd=8, n_head=2, n_layer=1, tie_weights=True))
    examples = load_examples("train")[::40]
    finetune(tiny, bpe, examples, FinetuneConfig(max_steps=2, batch_size=2, warmup_steps=1,
                                                 checkpoint_path=str(ck / "tasks")), progress=False)
    return root


@pytest.mark.parametrize("name", ["char", "lstm", "tasks"])
def test_the_registry_rebuilds_what_each_producer_wrote(produced, name):
    rows = {row["name"]: row for row in list_checkpoints(produced)}
    assert rows[name]["ready"] and rows[name]["parameters"] > 0
    loaded = load_model(name, produced)
    text = loaded.generate(PROMPTS[name], 5, seed=1)
    assert text.startswith(PROMPTS[name]) and len(text) > len(PROMPTS[name])


@pytest.mark.parametrize("name", ["char", "lstm", "tasks"])
def test_the_generator_cli_uses_each(produced, name, capsys):
    assert generate_cli.main(["--checkpoint", name, "--prompt", PROMPTS[name], "-n", "5", "--seed", "2",
                              "--output-dir", str(produced)]) == 0
    assert capsys.readouterr().out.startswith(PROMPTS[name])


@pytest.mark.parametrize("name", ["char", "lstm", "tasks"])
def test_the_web_app_serves_each(produced, name):
    client = create_app(produced).test_client()
    listed = {row["name"] for row in client.get("/api/models").get_json()}
    assert name in listed
    reply = client.post("/api/generate", json={"model": name, "prompt": PROMPTS[name], "max_new_tokens": 5,
                                               "seed": 3})
    assert reply.status_code == 200, reply.get_json()


def test_a_train_gpt2_run_generates_text(tmp_path, capsys):
    out = tmp_path / "run"
    train_gpt2.main(["--preset", "gpt2-course-tiny", "--steps", "2", "--global-batch", "2", "--micro-batch", "2",
                     "--block-size", "16", "--log-every", "1", "--eval-batches", "1", "--out", str(out)])
    capsys.readouterr()
    assert generate_cli.main(["--checkpoint", str(out), "--prompt", "The tide", "-n", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The tide")

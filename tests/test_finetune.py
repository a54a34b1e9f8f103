import math

import pytest
import torch

from course_lib.bpe import BPETokenizer
from course_lib.checkpoints import load_model
from course_lib.finetune import IGNORE, Example, FinetuneConfig, completion_loss, dev_loss, encode_example, finetune, load_examples, lr_at, masked_loss, pad_collate, split_dev
from course_lib.task_scores import chat_perplexity, complete, majority_baseline, sorting_accuracy, spell_scores
from course_lib.models import GPT
from course_lib.models.gpt2 import gpt2_config


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(gpt2_config("gpt2-course-tiny", block_size=48))


def test_examples_follow_the_prefix_formats():
    train, test = load_examples("train"), load_examples("test")
    tasks = {e.task for e in train}
    assert tasks == {"sorting", "spell", "chat"}
    assert sum(e.task == "sorting" for e in test) == 80
    sorting = next(e for e in train if e.task == "sorting")
    spell = next(e for e in train if e.task == "spell")
    chat = next(e for e in train if e.task == "chat")
    assert sorting.prompt.startswith("[SORTING] ") and sorting.prompt.endswith("\nHall:")
    assert spell.prompt.startswith("[SPELL] Effect: ") and spell.completion == " " + spell.answer
    assert chat.prompt.startswith("[CHAT] User to ")
    with pytest.raises(ValueError, match="split"):
        load_examples("validation")


def test_loss_mask_covers_only_the_completion(tok):
    ex = Example("spell", "[SPELL] Effect: lock the gate\nIncantation:", " ketis", "ketis")
    ids, labels = encode_example(tok, ex, max_len=64)
    n_completion = len(tok.encode(" ketis")) + 1  # + <|endoftext|>
    assert len(ids) == len(labels)
    assert [lab for lab in labels if lab != IGNORE] == tok.encode(" ketis") + [tok.eot_id]
    assert sum(lab != IGNORE for lab in labels) == n_completion
    _, unmasked = encode_example(tok, ex, max_len=64, mask_prompt=False)
    assert IGNORE not in unmasked


def test_long_prompts_are_cut_from_the_left(tok):
    ex = Example("chat", "word " * 200, " short answer", "short answer")
    ids, labels = encode_example(tok, ex, max_len=32)
    assert len(ids) == 32 and labels[-1] == tok.eot_id


def test_padding_never_counts():
    x, y = pad_collate([([1, 2, 3], [IGNORE, 3, 4]), ([5], [6])], pad_id=0)
    assert x.tolist() == [[1, 2, 3], [5, 0, 0]] and y.tolist() == [[IGNORE, 3, 4], [6, IGNORE, IGNORE]]
    logits = torch.zeros(2, 3, 10)
    assert masked_loss(logits, y).item() == pytest.approx(math.log(10))
    assert masked_loss(logits, y, per_example=True).item() == pytest.approx(math.log(10))


def test_per_example_loss_weighs_short_answers_equally():
    labels = torch.tensor([[1, IGNORE, IGNORE, IGNORE], [1, 1, 1, 1]])
    logits = torch.zeros(2, 4, 3)
    logits[0, 0, 1] = 5.0  # the short answer is right and cheap; the long one costs ln 3 per token
    token_mean = masked_loss(logits, labels).item()
    example_mean = masked_loss(logits, labels, per_example=True).item()
    short = torch.nn.functional.cross_entropy(logits[0, :1], labels[0, :1]).item()
    assert example_mean == pytest.approx((short + math.log(3)) / 2)
    assert token_mean == pytest.approx((short + 4 * math.log(3)) / 5)


@pytest.mark.parametrize("per_example", [False, True])
def test_completion_loss_equals_masked_loss_on_full_logits(model, tok, per_example):
    """The fast path (lm_head only at labelled positions) must give the same loss and gradients."""
    examples = load_examples("test")
    batch = [encode_example(tok, ex, model.block_size) for ex in (examples[0], examples[-1], examples[90])]
    x, y = pad_collate(batch, tok.eot_id)
    y[2, :] = IGNORE  # an example with nothing to grade must not break either path
    model.eval()  # no dropout: both passes see the same network
    fast = completion_loss(model, x, y, per_example)
    (fast_grad,) = torch.autograd.grad(fast, model.lm_head.weight)
    full = masked_loss(model(x), y, per_example)
    (full_grad,) = torch.autograd.grad(full, model.lm_head.weight)
    assert fast.item() == pytest.approx(full.item(), rel=1e-5)
    assert torch.allclose(fast_grad, full_grad, atol=1e-6)


def test_warmup_then_cosine():
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_finetuning_lowers_the_loss_and_evaluators_run(model, tok):
    train = [e for e in load_examples("train") if e.task == "spell"][:8]
    history = finetune(model, tok, train, FinetuneConfig(max_steps=20, batch_size=4, learning_rate=3e-3,
                                                         warmup_steps=3), progress=False)
    assert sum(history.loss[-5:]) / 5 < sum(history.loss[:5]) / 5 - 0.5
    test = load_examples("test")
    sorting = sorting_accuracy(model, tok, [e for e in test if e.task == "sorting"][:4])
    assert 0 <= sorting["accuracy"] <= 1 and sorting["n"] == 4
    assert set(sorting["predictions"]) <= {"Lantern", "Anvil", "Tide", "Thorn"}
    spells = spell_scores(model, tok, [e for e in test if e.task == "spell"][:2])
    assert 0 <= spells["char_similarity"] <= 1 and len(spells["guesses"]) == 2
    assert chat_perplexity(model, tok, [e for e in test if e.task == "chat"][:2]) > 1


def test_majority_baseline_on_balanced_table():
    assert majority_baseline(load_examples("train"), load_examples("test")) == pytest.approx(0.25)


def test_finetune_keeps_the_best_dev_weights_and_saves_them(model, tok, tmp_path):
    train, dev = split_dev(load_examples("train", tasks=("spell",)))
    config = FinetuneConfig(max_steps=6, batch_size=4, learning_rate=3e-3, warmup_steps=1, eval_interval=2,
                            checkpoint_path=str(tmp_path / "finetuned"))
    history = finetune(model, tok, train[:16], config, progress=False, dev_examples=dev[:4],
                       checkpoint_meta={"tasks": ["spell"], "base": "test"})
    assert history.dev_steps == [0, 2, 4, 6] and history.best_dev_loss == min(history.dev_loss)
    saved = load_model(tmp_path / "finetuned")
    assert saved.meta["best_step"] == history.best_step and saved.meta["tasks"] == ["spell"]
    assert saved.meta["train_seconds"] >= 0 and saved.meta["finetune_config"]["max_steps"] == 6
    assert dev_loss(saved.model, tok, dev[:4]) == pytest.approx(history.best_dev_loss, abs=1e-5)
    prompt = dev[0].prompt
    assert complete(model, tok, prompt, 5, temperature=1.0, seed=3) == complete(model, tok, prompt, 5, temperature=1.0,
                                                                                  seed=3)


def test_load_examples_rejects_unknown_tasks():
    with pytest.raises(ValueError, match="task"):
        load_examples("train", tasks=("sorting", "poetry"))

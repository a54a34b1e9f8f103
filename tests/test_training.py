import math

import pytest
import torch

from course_lib.batching import as_tensor, sequential_batches
from course_lib.models import BigramLM
from course_lib.checkpoints import load_model
from course_lib.training import TrainConfig, TrainingDivergedError, evaluate, train


@pytest.fixture
def data(tokenizer, small_text):
    ids = as_tensor(tokenizer.encode(small_text))
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:]


def test_training_lowers_the_loss_and_records_history(tokenizer, data):
    train_data, val_data = data
    model = BigramLM(tokenizer.vocab_size)
    cfg = TrainConfig(max_iters=150, batch_size=16, block_size=8, learning_rate=5e-2, eval_interval=50, eval_iters=4)
    history = train(model, train_data, val_data, cfg, progress=False)
    assert history.steps == [0, 50, 100, 150]
    assert history.val_loss[-1] < history.val_loss[0] - 0.5
    assert abs(history.val_loss[0] - math.log(tokenizer.vocab_size)) < 0.1  # untrained ~ uniform
    assert history.tokens_per_second > 0


def test_same_seed_same_losses(tokenizer, data):
    cfg = TrainConfig(max_iters=30, batch_size=4, block_size=8, eval_interval=10, eval_iters=2, learning_rate=1e-2)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(train(BigramLM(tokenizer.vocab_size), *data, cfg, progress=False).val_loss)
    assert runs[0] == runs[1]


def test_nan_loss_stops_with_a_clear_message(tokenizer, data):
    model = BigramLM(tokenizer.vocab_size)
    with torch.no_grad():
        model.table.weight[0, 0] = float("nan")
        model.table.weight.fill_(float("nan"))
    cfg = TrainConfig(max_iters=5, batch_size=2, block_size=4, eval_interval=100, eval_iters=1)
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        train(model, *data, cfg, progress=False)


def test_bad_config_values(tokenizer, data):
    with pytest.raises(ValueError, match="max_iters"):
        train(BigramLM(tokenizer.vocab_size), *data, TrainConfig(max_iters=0), progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        train(BigramLM(tokenizer.vocab_size), *data, TrainConfig(learning_rate=0), progress=False)


def test_evaluate_reports_consistent_units(tokenizer, data):
    model = BigramLM(tokenizer.vocab_size)
    result = evaluate(model, sequential_batches(data[1], 8))
    assert result.n_tokens == len(data[1]) - 1
    assert result.perplexity == pytest.approx(math.exp(result.loss))
    assert result.bits_per_char == pytest.approx(result.loss / math.log(2))
    n_chars = 4 * result.n_tokens  # as if every token stood for 4 characters (BPE-like)
    assert evaluate(model, sequential_batches(data[1], 8), n_chars=n_chars).bits_per_char == pytest.approx(
        result.bits_per_char / 4)


def test_train_writes_a_loadable_checkpoint_when_asked(tmp_path, tokenizer, data):
    cfg = TrainConfig(max_iters=3, batch_size=2, block_size=4, eval_interval=10, eval_iters=1,
                      checkpoint_path=str(tmp_path / "m"))
    model = BigramLM(tokenizer.vocab_size)
    train(model, *data, cfg, progress=False, tokenizer=tokenizer, checkpoint_meta={"profile": "smoke"})
    loaded = load_model(tmp_path / "m")
    assert loaded.meta["history"]["steps"] == [0, 3] and loaded.meta["profile"] == "smoke"
    assert torch.equal(loaded.model.table.weight, model.table.weight)
    assert loaded.tokenizer.chars == tokenizer.chars


def test_a_checkpoint_needs_the_tokenizer(tmp_path, tokenizer, data):
    cfg = TrainConfig(max_iters=3, checkpoint_path=str(tmp_path / "m"))
    with pytest.raises(ValueError, match="tokenizer="):
        train(BigramLM(tokenizer.vocab_size), *data, cfg, progress=False)


def test_compile_is_ignored_on_cpu_and_changes_nothing(tokenizer, data):
    """compile=True is a GPU option: on a CPU the loop must run eagerly and give the same losses."""
    runs = []
    for compile_model in (False, True):
        torch.manual_seed(0)
        model = BigramLM(tokenizer.vocab_size)
        cfg = TrainConfig(max_iters=20, batch_size=4, block_size=8, eval_interval=10, eval_iters=2,
                          compile=compile_model)
        runs.append(train(model, *data, cfg, progress=False).val_loss)
    assert runs[0] == runs[1]


def test_the_loop_is_exactly_the_plain_pytorch_loop(tokenizer, data):
    """training.train with a constant rate is batch -> logits -> cross-entropy -> zero_grad ->
    backward -> AdamW step, nothing more: notebook 02 writes this loop inline and checks it."""
    train_data, val_data = data
    cfg = TrainConfig(max_iters=25, batch_size=4, block_size=8, learning_rate=1e-2, lr_schedule="constant",
                      grad_clip=None, eval_interval=100, eval_iters=1)
    torch.manual_seed(0)
    library = BigramLM(tokenizer.vocab_size)
    history = train(library, train_data, val_data, cfg, generator=torch.Generator().manual_seed(5), progress=False)

    torch.manual_seed(0)
    mine = BigramLM(tokenizer.vocab_size)
    optimizer = torch.optim.AdamW(mine.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    gen, losses = torch.Generator().manual_seed(5), []
    from course_lib.batching import get_batch
    for _ in range(25):
        x, y = get_batch(train_data, 4, 8, "cpu", gen)
        loss = torch.nn.functional.cross_entropy(mine(x).view(-1, tokenizer.vocab_size), y.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert history.step_losses == losses
    assert torch.equal(library.table.weight, mine.table.weight)


def test_cosine_schedule_is_recorded_and_ends_on_the_floor(tokenizer, data):
    cfg = TrainConfig(max_iters=40, batch_size=4, block_size=8, learning_rate=1e-2, warmup_iters=10,
                      min_lr_ratio=0.1, eval_interval=10, eval_iters=1)
    history = train(BigramLM(tokenizer.vocab_size), *data, cfg, progress=False)
    assert history.steps == [0, 10, 20, 30, 40] and len(history.step_losses) == 40
    assert history.lr[0] == pytest.approx(1e-3) and history.lr[1] == pytest.approx(1e-2, rel=0.01)
    assert history.lr[-1] == pytest.approx(1e-3)


def test_keep_best_and_patience_restore_the_best_evaluation(tokenizer, data):
    """A learning rate far too high makes the loss climb after a while: early stopping stops the
    run and keep_best hands back the weights of the best evaluation, not the last."""
    train_data, val_data = data
    torch.manual_seed(0)
    model = BigramLM(tokenizer.vocab_size)
    cfg = TrainConfig(max_iters=400, batch_size=4, block_size=8, learning_rate=3.0, lr_schedule="constant",
                      grad_clip=None, weight_decay=0.0, eval_interval=5, eval_iters=2, keep_best=True, patience=3)
    history = train(model, train_data, val_data, cfg, progress=False)
    assert history.stopped_early and history.steps[-1] < 400
    assert history.best_val_loss == min(history.val_loss) < history.val_loss[-1]
    from course_lib.batching import fixed_batches
    again = evaluate(model, fixed_batches(val_data, 2, 4, 8, seed=2)).loss
    assert again == pytest.approx(history.best_val_loss, abs=1e-6)


def test_compile_path_runs_on_cpu_with_aot_eager_and_gives_the_same_losses(tokenizer, data):
    runs = []
    for compile_model in (False, True):
        torch.manual_seed(0)
        cfg = TrainConfig(max_iters=10, batch_size=4, block_size=8, eval_interval=5, eval_iters=1,
                          compile=compile_model, compile_backend="aot_eager")
        runs.append(train(BigramLM(tokenizer.vocab_size), *data, cfg, progress=False).step_losses)
    torch.testing.assert_close(torch.tensor(runs[1]), torch.tensor(runs[0]), rtol=1e-5, atol=1e-6)

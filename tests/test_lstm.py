import math

import pytest
import torch

from course_lib.models.lstm import (LSTMConfig, LSTMLanguageModel, detach_hidden, embedding_dropout_weight,
                                    locked_dropout_mask)
from course_lib.profiles import settings_for
from course_lib.recurrent import (UNICODE_BITS, CharSpeller, RecurrentTrainConfig, autograd_graph_size, batchify,
                                  bptt_windows, evaluate_recurrent, generate_word_ids, generate_words, tbptt_step,
                                  train_recurrent, word_model_cost)
from course_lib.checkpoints import load_model, save_model
from course_lib.optimization import OptimizerStep
from course_lib.training import LN2
from course_lib.words import Vocab, tokenize_lines


def tiny(V=12, **kw) -> LSTMLanguageModel:
    return LSTMLanguageModel(LSTMConfig(vocab_size=V, **{"emb_size": 8, "hidden_size": 8, "n_layers": 2, **kw}))


@pytest.fixture
def vocab():
    return Vocab.from_text("wren asks why odo says no\n" * 3, min_freq=1)


# ----------------------------------------------------------------------------- batching

def test_batchify_lays_out_contiguous_rows_and_drops_the_remainder():
    data = batchify(list(range(23)), 4)
    assert data.shape == (4, 5)
    assert data[1].tolist() == [5, 6, 7, 8, 9]                    # row b = the b-th stretch of the stream
    assert data.flatten().tolist() == list(range(20))             # 3 leftover ids dropped
    with pytest.raises(ValueError, match="too short"):
        batchify(list(range(5)), 4)
    with pytest.raises(ValueError, match="batch_size"):
        batchify(list(range(50)), 0)
    with pytest.raises(ValueError, match="1-D"):
        batchify(torch.zeros(2, 10, dtype=torch.long), 2)


def test_bptt_windows_cover_the_stream_with_targets_shifted_by_one():
    data = batchify(torch.arange(60), 3)                          # (3, 20)
    windows = list(bptt_windows(data, 7))
    assert [x.shape[1] for x, _ in windows] == [7, 7, 5]          # 19 predictions per row
    for x, y in windows:
        assert x.shape == y.shape and torch.equal(y, x + 1)       # the stream counts up by one
    assert torch.equal(torch.cat([x for x, _ in windows], 1), data[:, :-1])
    assert torch.equal(torch.cat([y for _, y in windows], 1), data[:, 1:])
    with pytest.raises(ValueError, match="bptt"):
        list(bptt_windows(data, 0))


# ----------------------------------------------------------------------------- the model

def test_shapes_and_initialisation():
    model = tiny(V=12, n_layers=3)
    logits, (h, c) = model(torch.randint(0, 12, (4, 6)))
    assert logits.shape == (4, 6, 12)
    assert h.shape == c.shape == (3, 4, 8)
    assert model.embedding.weight.abs().max() <= 0.1 and model.decoder.weight.abs().max() <= 0.1
    assert torch.all(model.decoder.bias == 0)
    assert model.vocab_size == 12 and model.block_size is None


def test_carrying_the_hidden_state_equals_reading_the_whole_sequence():
    model = tiny().eval()
    ids = torch.randint(0, 12, (2, 10))
    full, _ = model(ids)
    first, hidden = model(ids[:, :4])
    second, _ = model(ids[:, 4:], hidden)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-6)
    fresh, _ = model(ids[:, 4:])                                   # without the state: different
    assert not torch.allclose(fresh, second, atol=1e-4)


def test_weight_tying_shares_one_parameter():
    model = tiny(tie_weights=True)
    assert model.decoder.weight is model.embedding.weight
    untied = tiny(tie_weights=False)
    assert untied.num_parameters() - model.num_parameters() == 12 * 8
    logits, _ = model(torch.randint(0, 12, (2, 5)))
    logits.sum().backward()
    assert model.embedding.weight.grad is not None                 # gradients from both uses add up


def test_tying_with_mismatched_sizes_is_a_clear_error():
    with pytest.raises(ValueError, match="emb_size == hidden_size"):
        LSTMConfig(vocab_size=10, emb_size=8, hidden_size=16, tie_weights=True)
    with pytest.raises(ValueError, match="dropout"):
        LSTMConfig(vocab_size=10, dropout=1.0)
    with pytest.raises(ValueError, match="n_layers"):
        LSTMConfig(vocab_size=10, n_layers=0)


def test_locked_dropout_uses_one_mask_for_all_time_steps():
    x = torch.ones(4, 50, 16)
    y = x * locked_dropout_mask(x, 0.5)                            # (B, T, C) * (B, 1, C)
    assert torch.all(y == y[:, :1])                                # every time step identical
    assert set(y.unique().tolist()) == {0.0, 2.0}                  # dropped, or kept and scaled
    # the model's own dropout: locked -> same mask over time; unlocked -> a new one per step
    for locked in (True, False):
        model = tiny(dropout=0.5, locked_dropout=locked).train()
        out = model._drop(torch.ones(2, 30, 8))
        assert torch.all(out == out[:, :1]) == locked


def test_embedding_dropout_zeroes_whole_rows():
    torch.manual_seed(0)
    out = embedding_dropout_weight(torch.ones(200, 6), 0.3)
    row_max, row_min = out.max(1).values, out.min(1).values
    assert torch.equal(row_max, row_min)                           # each row all zero or all kept
    kept = row_max > 0
    assert 0 < kept.sum() < 200
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    model = tiny(dropout=0.5, embed_dropout=0.2)
    ids = torch.randint(0, 12, (3, 7))
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])


# ----------------------------------------------------------------------------- truncated BPTT

def test_detached_hidden_state_has_no_history():
    model = tiny()
    _, hidden = model(torch.randint(0, 12, (2, 5)))
    assert all(h.grad_fn is not None for h in hidden)
    detached = detach_hidden(hidden)
    assert all(h.grad_fn is None and not h.requires_grad for h in detached)
    assert all(torch.equal(a, b) for a, b in zip(hidden, detached))    # same values


def test_autograd_graph_does_not_grow_across_windows_when_detached():
    data = batchify(torch.randint(0, 12, (400,)), 4)
    model = tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    hidden = model.init_hidden(4)
    sizes = []
    for _, (x, y) in zip(range(4), bptt_windows(data, 6)):
        _, hidden = tbptt_step(model, x, y, hidden, OptimizerStep(optimizer))
        sizes.append(autograd_graph_size(hidden[0]))
    assert len(set(sizes)) == 1                                    # the same graph for every window
    # The measurement is sensitive: without detaching, each window's graph contains all earlier ones.
    hidden, grown = model.init_hidden(4), []
    for _, (x, _y) in zip(range(4), bptt_windows(data, 6)):
        _, hidden = model(x, hidden)
        grown.append(autograd_graph_size(hidden[0]))
    assert grown[0] == sizes[0] and grown == sorted(set(grown))   # strictly growing


def test_backward_stops_at_the_window_boundary():
    data = batchify(torch.randint(0, 12, (200,)), 2)
    (x1, _), (x2, y2) = list(bptt_windows(data, 5))[:2]
    model = tiny()

    def state_after_window_1():
        start = tuple(h.requires_grad_() for h in model.init_hidden(2))  # a leaf we can watch
        return start, model(x1, start)[1]

    # Without detaching, the loss of window 2 reaches back through window 1 to its starting state ...
    start, hidden = state_after_window_1()
    logits, _ = model(x2, hidden)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 12), y2.reshape(-1)).backward()
    assert start[0].grad is not None
    # ... the training step detaches, so nothing flows back into window 1.
    start, hidden = state_after_window_1()
    tbptt_step(model, x2, y2, hidden, OptimizerStep(torch.optim.SGD(model.parameters(), lr=0.0)))
    assert start[0].grad is None


# ----------------------------------------------------------------------------- evaluation and training

def test_evaluate_counts_every_token_and_reports_bits_per_char():
    model = tiny()
    data = torch.randint(0, 12, (101,))
    result = evaluate_recurrent(model, data, bptt=7, batch_size=1, n_chars=500)
    assert result.n_tokens == 100                                  # all but the first are predicted
    assert result.perplexity == pytest.approx(math.exp(result.loss))
    assert result.bits_per_char == pytest.approx(result.loss * 100 / LN2 / 500)  # total bits / chars
    assert abs(result.loss - math.log(12)) < 0.2                   # untrained: about uniform
    assert evaluate_recurrent(model, data, bptt=7, batch_size=4).n_tokens == 4 * 24
    # the state is carried between windows, so the window length changes nothing but speed
    assert evaluate_recurrent(model, data, bptt=100).loss == pytest.approx(result.loss, abs=1e-6)


def pattern(n, order):
    return torch.tensor(order * n)


def test_training_learns_a_pattern_and_records_history():
    train_ids, val_ids = pattern(150, [0, 1, 2, 3, 4, 5]), pattern(20, [0, 1, 2, 3, 4, 5])
    model = tiny(V=6, dropout=0.1)
    config = RecurrentTrainConfig(max_epochs=3, batch_size=4, bptt=8, learning_rate=2e-2, patience=3)
    history = train_recurrent(model, train_ids, val_ids, config, progress=False)
    assert history.epochs == [1, 2, 3] and len(history.lr) == len(history.val_perplexity) == 3
    assert history.val_loss[-1] < 0.1 < math.log(6)                # the pattern is learned
    assert history.val_perplexity[-1] == pytest.approx(math.exp(history.val_loss[-1]))
    assert history.seconds > 0 and history.tokens_per_second > 0 and not history.stopped_early


def test_early_stopping_restores_the_best_epoch_and_saves_it(tmp_path):
    # Validation text runs the pattern backwards: the better the model learns the training text,
    # the worse it does on validation, so the best epoch is an early one.
    train_ids, val_ids = pattern(150, [0, 1, 2, 3]), pattern(30, [3, 2, 1, 0])
    model = tiny(V=4)
    config = RecurrentTrainConfig(max_epochs=20, batch_size=4, bptt=8, learning_rate=3e-2, patience=2,
                                  checkpoint_path=str(tmp_path / "best"))
    vocab = Vocab(["<unk>", "<eol>", "c", "d"])  # V=4, as the model
    history = train_recurrent(model, train_ids, val_ids, config, progress=False, tokenizer=vocab)
    assert history.stopped_early and len(history.epochs) == history.best_epoch + 2 < 20
    assert history.best_val_loss == min(history.val_loss) < history.val_loss[-1]
    restored = evaluate_recurrent(model, val_ids, config.eval_bptt).loss
    assert restored == pytest.approx(history.best_val_loss, abs=1e-6)   # the best weights, not the last
    assert history.lr[-1] < history.lr[0]                          # ReduceLROnPlateau lowered the lr
    saved = load_model(tmp_path / "best")
    assert saved.meta["epoch"] == history.best_epoch
    assert evaluate_recurrent(saved.model, val_ids, config.eval_bptt).loss == pytest.approx(restored, abs=1e-6)


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, vocab):
    model = LSTMLanguageModel(LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8, tie_weights=True))
    save_model(tmp_path / "lstm", model, vocab)
    loaded = load_model(tmp_path / "lstm")
    again = loaded.model
    assert again.decoder.weight is again.embedding.weight           # still tied after loading
    ids = torch.tensor([loaded.tokenizer.encode(["wren", "asks"])])
    assert torch.equal(model.eval()(ids)[0], again.eval()(ids)[0])


def test_train_config_from_settings_and_validation():
    config = RecurrentTrainConfig.from_settings(settings_for("lstm", "smoke"), seed=5)
    assert (config.bptt, config.batch_size, config.seed) == (16, 8, 5)
    with pytest.raises(ValueError, match="max_epochs"):
        train_recurrent(tiny(), torch.arange(12).repeat(20), torch.arange(12).repeat(5),
                        RecurrentTrainConfig(max_epochs=0), progress=False)


# ----------------------------------------------------------------------------- generation

def test_generation_never_emits_unk(vocab):
    model = LSTMLanguageModel(LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8))
    with torch.no_grad():
        model.decoder.bias[vocab.unk_id] = 50.0                     # the model "wants" <unk> above all
    ids = generate_word_ids(model, vocab, "wren kraken", 60, temperature=1.5, seed=0)
    assert len(ids) == 60 and vocab.unk_id not in ids
    text = generate_words(model, vocab, "Wren kraken", 10, seed=0)
    assert text.startswith("Wren kraken ")                          # the prompt as typed; unknown words OK
    assert generate_words(model, vocab, "\n", 10, seed=3) == generate_words(model, vocab, "\n", 10, seed=3)


def test_generation_rejects_bad_settings(vocab):
    model = LSTMLanguageModel(LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            generate_words(model, vocab, "wren", 5, temperature=bad)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_words must be a positive integer"):
            generate_words(model, vocab, "wren", bad)
    with pytest.raises(ValueError, match="no tokens"):
        generate_words(model, vocab, "  ", 5)


# ----------------------------------------------------------------------------- the full cost of <unk>

def test_speller_counts_letter_pairs_with_add_one_smoothing():
    speller = CharSpeller(["ab"], alpha=1.0)                       # outcomes: a, b, end, escape
    assert speller.outcomes == ["a", "b", CharSpeller.END, CharSpeller.ESCAPE]
    # start->a, a->b, b->end: each seen once, so (1 + 1) / (1 + 4) = 0.4
    assert speller.bits("ab") == pytest.approx(-3 * math.log2(0.4))
    # never-seen pairs get (0 + 1) / (1 + 4): "ba" = start->b, b->a, a->end
    assert speller.bits("ba") == pytest.approx(-3 * math.log2(0.2))
    # a character never seen: escape (0.2 after start) + its code point + end after an escape (1/4)
    assert speller.bits("z") == pytest.approx(-math.log2(0.2) + UNICODE_BITS + 2.0)
    assert speller.bits("abab") > speller.bits("ab")               # longer words cost more


def test_every_speller_row_is_a_distribution():
    speller = CharSpeller(["tide", "wren", "saltreach", "t\u00e9a"], alpha=0.5)
    for previous in [CharSpeller.START, *speller.alphabet, CharSpeller.ESCAPE]:
        assert sum(speller.next_probs(previous).values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alpha"):
        CharSpeller(["tide"], alpha=0)
    with pytest.raises(ValueError, match="non-empty"):
        speller.bits("")


def test_speller_learns_from_the_words_the_vocabulary_left_out():
    train = tokenize_lines("the tide the tide the tide zyx\n")
    vocab = Vocab.build(train, min_freq=2)                         # "zyx" is the only unknown word
    speller = CharSpeller.from_unknown_words(train, vocab)
    assert speller.n_words == 1 and speller.alphabet == ["x", "y", "z"]
    everything = CharSpeller.from_unknown_words(train, Vocab.build(train, min_freq=1))  # none unknown
    assert everything.n_words == 7                                  # falls back to every training word


def test_word_model_cost_adds_the_spelling_of_every_unknown_target(vocab):
    model = LSTMLanguageModel(LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8))
    speller = CharSpeller(["kraken", "gull"])
    text = "kraken wren asks why\nodo says gull no\n"             # kraken is the first token: never predicted
    cost = word_model_cost(model, vocab, text, speller=speller, bptt=5)
    assert (cost.n_chars, cost.n_tokens, cost.n_unknown) == (len(text), 9, 1)   # 10 tokens, 9 predicted
    result = evaluate_recurrent(model, vocab.encode(tokenize_lines(text)), 5, n_chars=len(text))
    assert cost.word_bits == pytest.approx(result.loss * result.n_tokens / LN2)
    assert cost.optimistic_bits_per_char == pytest.approx(result.bits_per_char)
    assert cost.spelling_bits == pytest.approx(speller.bits("gull"))
    assert cost.bits_per_char == pytest.approx((cost.word_bits + cost.spelling_bits) / len(text))
    assert cost.unknown_share == pytest.approx(1 / 9) and 0 < cost.spelling_share < 1
    known = word_model_cost(model, vocab, "wren asks why\n", speller=speller)
    assert known.spelling_bits == 0 and known.bits_per_char == known.optimistic_bits_per_char
    fitted = word_model_cost(model, vocab, text, train_text="wren asks zyx why\n")   # speller fitted on "zyx"
    assert fitted.spelling_bits == pytest.approx(CharSpeller(["zyx"]).bits("gull"))


def test_word_model_cost_explains_what_it_needs(vocab):
    model = LSTMLanguageModel(LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8))
    with pytest.raises(ValueError, match="train_text="):
        word_model_cost(model, vocab, "wren asks why")
    with pytest.raises(ValueError, match="at least 2"):
        word_model_cost(model, vocab, "wren", speller=CharSpeller(["wren"]))

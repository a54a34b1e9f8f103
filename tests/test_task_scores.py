"""Task scores a reader can trust: the dev split, intervals, both readings of sorting, baselines."""

import math
import random
from collections import Counter

import pytest
import torch

from course_lib.bpe import BPETokenizer
from course_lib.finetune import HOUSES, Example, load_examples, split_dev, stratum
from course_lib.task_scores import CentroidClassifier, HallResult, Score, SortingScores, UnigramReplies, answer_logprobs, baseline_scores, bootstrap_interval, completion_logprob, nearest_spells, parse_spell, rate, reply_stats, sorting_scores, spell_result, wilson_interval
from course_lib.models import GPT
from course_lib.models.gpt2 import gpt2_config


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer()


@pytest.fixture(scope="module")
def tables():
    train_all = load_examples("train")
    train, dev = split_dev(train_all)
    return train_all, train, dev, load_examples("test")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(gpt2_config("gpt2-course-tiny", block_size=64)).eval()


# ----------------------------------------------------------------------------- the dev split

def test_dev_split_is_disjoint_deterministic_and_stratified(tables):
    train_all, train, dev, _ = tables
    assert len(train) + len(dev) == len(train_all)
    assert not {e.prompt for e in train} & {e.prompt for e in dev}
    again_train, again_dev = split_dev(list(reversed(train_all)))          # table order does not matter
    assert sorted(e.prompt for e in again_dev) == sorted(e.prompt for e in dev)
    for task in ("sorting", "spell", "chat"):
        total = Counter(stratum(e) for e in train_all if e.task == task)
        held = Counter(stratum(e) for e in dev if e.task == task)
        assert set(held) == set(total), f"every {task} stratum is represented in dev"
        for s, n in total.items():
            assert abs(held[s] - 0.2 * n) <= 2, (task, s, held[s], n)


def test_dev_spells_are_new_combinations_of_known_parts(tables):
    _, train, dev, _ = tables
    combo = lambda e: (e.row["root"], e.row["ending"], e.row["intensified"])  # noqa: E731
    train_spells = [e for e in train if e.task == "spell"]
    dev_spells = [e for e in dev if e.task == "spell"]
    assert dev_spells and not {combo(e) for e in dev_spells} & {combo(e) for e in train_spells}
    assert {e.row["root"] for e in dev_spells} <= {e.row["root"] for e in train_spells}
    assert {e.row["ending"] for e in dev_spells} <= {e.row["ending"] for e in train_spells}


def test_dev_split_refuses_test_examples_and_bad_fractions(tables):
    *_, test = tables
    with pytest.raises(ValueError, match="test"):
        split_dev(test)
    with pytest.raises(ValueError, match="fraction"):
        split_dev(load_examples("train"), fraction=1.5)


# ----------------------------------------------------------------------------- intervals

def test_wilson_interval_known_values_and_edges():
    low, high = wilson_interval(35, 80)                 # the old notebook's sorting accuracy
    assert (round(low, 3), round(high, 3)) == (0.334, 0.547)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(0, 10)[1] > 0.2                                     # never a zero-width interval
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(10, 10)[0] < 0.8
    a, b = wilson_interval(3, 20)
    c, d = wilson_interval(17, 20)
    assert a == pytest.approx(1 - d) and b == pytest.approx(1 - c)            # symmetric in right/wrong
    assert wilson_interval(35, 80, confidence=0.99)[1] > high                  # more confidence, wider
    for bad in ((5, 0), (-1, 10), (11, 10), (2.5, 10)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(*bad)


def test_wilson_interval_covers_the_truth_about_95_percent_of_the_time():
    rng, p, n, covered = random.Random(0), 0.3, 40, 0
    for _ in range(2000):
        k = sum(rng.random() < p for _ in range(n))
        low, high = wilson_interval(k, n)
        covered += low <= p <= high
    assert 0.93 <= covered / 2000 <= 0.975


def test_bootstrap_interval_brackets_the_mean_and_is_repeatable():
    values = [0.1, 0.4, 0.35, 0.8, 0.5, 0.2, 0.9, 0.3]
    low, high = bootstrap_interval(values)
    assert low < sum(values) / len(values) < high and (low, high) == bootstrap_interval(values)
    nll, tokens = [10.0, 30.0, 12.0], [5, 10, 4]
    low, high = bootstrap_interval(nll, tokens, transform=math.exp)
    assert low <= math.exp(sum(nll) / sum(tokens)) <= high
    with pytest.raises(ValueError, match="weight"):
        bootstrap_interval([1.0, 2.0], [1.0])


def test_score_prints_value_interval_and_count():
    assert str(rate(35, 80)) == "0.438 [0.334, 0.547], 35/80"
    assert not rate(1, 40).overlaps(rate(39, 40)) and rate(20, 40).overlaps(rate(22, 40))


# ----------------------------------------------------------------------------- sorting

def test_answer_logprobs_match_the_full_softmax_and_ignore_batching(model, tok):
    pairs = [("[SORTING] A quiet child who mends nets.\nHall:", " Anvil"), ("[SPELL] Effect: dry the cloak\n"
             "Incantation:", " drova"), ("[CHAT] User to Wren: hello\nWREN:", " Why hello there, friend!")]
    together = answer_logprobs(model, tok, pairs, batch_size=3)
    one_by_one = [answer_logprobs(model, tok, [p], batch_size=1)[0] for p in pairs]
    for (a, n), (b, m), (prompt, answer) in zip(together, one_by_one, pairs):
        assert n == m == len(tok.encode(answer)) and a == pytest.approx(b, abs=1e-4)
        ids = tok.encode(prompt) + tok.encode(answer)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[:-1]])), dim=-1)[0]       # (T, V)
        start = len(tok.encode(prompt)) - 1
        by_hand = sum(logp[start + i, t].item() for i, t in enumerate(tok.encode(answer)))
        assert a == pytest.approx(by_hand, abs=1e-4)
    with_end = answer_logprobs(model, tok, pairs[:1], include_end=True)[0]
    assert with_end[1] == together[0][1] + 1 and with_end[0] < together[0][0]
    assert completion_logprob(model, tok, *pairs[0]) == pytest.approx(together[0][0], abs=1e-4)


def test_per_token_reading_can_change_the_answer_for_a_two_token_hall():
    assert HOUSES[1] == "Anvil"
    # Anvil: two tokens at -1.2 each (total -2.4, mean -1.2); Thorn: one token at -2.0.
    scores = SortingScores(["Anvil"], [[-5.0, -2.4, -6.0, -2.0]], [1, 2, 1, 1])
    assert scores.predictions().predicted == ["Thorn"]
    assert scores.predictions(normalise=True).predicted == ["Anvil"]


def test_sorting_scores_on_a_model(model, tok, tables):
    *_, test = tables
    rows = [e for e in test if e.task == "sorting"][:6]
    scores = sorting_scores(model, tok, rows)
    assert len(scores.logprob) == 6 and all(len(r) == 4 for r in scores.logprob)
    assert scores.n_tokens == [len(tok.encode(f" {h}")) for h in HOUSES] == [1, 2, 1, 1]
    result = scores.predictions()
    assert sum(result.answer_counts().values()) == 6 and result.accuracy.n == 6
    with pytest.raises(ValueError, match="sorting"):
        sorting_scores(model, tok, [e for e in test if e.task == "chat"][:2])


def test_hall_result_confusion_and_counts():
    result = HallResult(["Tide", "Tide", "Thorn", "Anvil"], ["Tide", "Thorn", "Thorn", "Thorn"])
    confusion = result.confusion()
    assert confusion[HOUSES.index("Tide")][HOUSES.index("Thorn")] == 1
    assert sum(map(sum, confusion)) == 4 and sum(confusion[i][i] for i in range(4)) == 2
    assert result.answer_counts() == {"Lantern": 0, "Anvil": 0, "Tide": 1, "Thorn": 3}
    assert result.accuracy.count == 2 and result.per_hall()["Tide"].count == 1


def test_centroid_classifier_learns_words():
    texts = ["brave bold climb", "bold brave leap", "quiet book read", "read quiet study"]
    clf = CentroidClassifier(texts, ["Thorn", "Thorn", "Lantern", "Lantern"])
    assert clf.predict(["a bold climb", "she likes to read"]) == ["Thorn", "Lantern"]


def test_baselines_on_the_real_tables(tok, tables):
    _, train, dev, test = tables
    base = baseline_scores(tok, train, dev, test)
    assert base["majority"].accuracy.value == pytest.approx(0.25)
    assert base["centroid"].accuracy.value > 0.4, "bag of words carries real signal about the halls"
    # retrieval can only repeat a training spell; test combinations never occur in training
    assert base["spell"].exact.count == 0 and base["spell"].copied(train) == base["spell"].exact.n
    assert 1 < base["chat"].value < BPETokenizer().vocab_size and base["unigram_alpha"] < 1.0


# ----------------------------------------------------------------------------- spells and chat

def test_parse_spell_and_error_kinds(tables):
    assert parse_spell("rocrylorn") == ("ro", "cryl", "orn")
    assert parse_spell("ketis") == ("", "ket", "is") and parse_spell("ketzz") is None
    *_, test = tables
    rows = [e for e in test if e.task == "spell"][:4]
    true = [e.answer for e in rows]
    root, ending = rows[1].row["root"], rows[1].row["ending"]
    other_ending = next(x for x in ("a", "is", "orn") if x != ending)
    guesses = [true[0], root + other_ending, "qqq", ("ro" if rows[3].row["intensified"] == "no" else "") +
               rows[3].row["root"] + rows[3].row["ending"]]
    result = spell_result(guesses, rows)
    kinds = result.error_kinds()
    assert kinds["exact"] == 1 and kinds["right root, wrong ending"] == 1
    assert kinds["not a well-formed spell"] == 1 and kinds["right root and ending, wrong ro-"] == 1
    assert sum(kinds.values()) == 4 and result.exact.count == 1
    with pytest.raises(ValueError, match="one guess per example"):
        spell_result(guesses[:2], rows)


def test_nearest_spell_uses_effect_words():
    def spell(effect, word):
        return Example("spell", effect, f" {word}", word, {"effect": effect})

    train = [spell("dry the wet cloak", "drova"), spell("light the dark room", "lumenne")]
    assert nearest_spells(train, [spell("dry my cloak quickly", "x")]) == ["drova"]


def test_unigram_replies_smoothing_and_tuning(tok, tables):
    _, train, dev, _ = tables
    dev_chat = [e for e in dev if e.task == "chat"]
    coarse, fine = UnigramReplies(tok, train, 1.0), UnigramReplies(tok, train, 0.03)
    nll, tokens = coarse.reply_nll(dev_chat)
    assert len(nll) == len(tokens) == len(dev_chat) and all(math.isfinite(v) for v in nll)
    best = UnigramReplies.tuned(tok, train, dev, alphas=(1.0, 0.03))
    assert best.alpha == 0.03 and sum(fine.reply_nll(dev_chat)[0]) < sum(nll)
    with pytest.raises(ValueError, match="alpha"):
        UnigramReplies(tok, train, 0.0)


def test_reply_stats_counts_loops_and_duplicates():
    stats = reply_stats(["I am here.", "i am here.", "go go go go", "", "Why? Why not?"])
    assert stats == {"replies": 5, "distinct": 4, "looping": 1, "empty": 1, "mean_words": pytest.approx(13 / 5)}


def test_score_is_a_plain_record():
    s = Score(1.5, 1.0, 2.0, 10)
    assert s.as_dict() == {"value": 1.5, "low": 1.0, "high": 2.0, "n": 10} and "n=10" in str(s)

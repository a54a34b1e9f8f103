"""Scoring the fine-tuned model on the three tasks, so that a reader can trust the numbers
(notebook 11b; the tasks and the fine-tuning itself are in `course_lib.finetune`).

    uncertainty    every accuracy with its 95 % interval (`wilson_interval`, `rate`), means and
                   perplexities with a bootstrap interval (`bootstrap_interval`)
    answers        the model's log-probability of an answer (`answer_logprobs`), greedy answers
                   (`complete`)
    sorting        each hall's answer scored by its total log-probability and per token
                   (`sorting_scores`), a confusion matrix, the majority and a bag-of-words
                   nearest-centroid baseline (`CentroidClassifier`)
    spells         exact match, character similarity and which part went wrong (`spell_result`),
                   the nearest training spell as a baseline (`nearest_spells`)
    chat           the perplexity of the true replies, a unigram baseline (`UnigramReplies`),
                   looping and repeated replies counted (`reply_stats`)

Choices are made on the dev split and the test rows are read once (see finetune's docstring).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist

import torch

from .finetune import HOUSES, IGNORE, Example, _rows, encode_example, pad_collate


# ----------------------------------------------------------------------------- uncertainty

def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion (Wilson 1927): (low, high).

    With n examples of which `successes` were right, the true accuracy lies in this interval
    for about `confidence` of the test sets one could have drawn. Unlike the textbook
    p ± z·sqrt(p(1-p)/n) (the Wald interval) it stays inside [0, 1] and does not shrink to a
    point at 0 or n successes. (Written out: it is four lines, and scipy/statsmodels are not
    dependencies of the course.)"""
    if not (isinstance(n, int) and isinstance(successes, int) and n > 0 and 0 <= successes <= n):
        raise ValueError(f"wilson_interval needs whole numbers 0 <= successes <= n and n > 0, got "
                         f"successes={successes!r}, n={n!r}.")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)        # 1.96 for 95 %
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)      # pulled towards 1/2
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(values, weights=None, n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0, transform=None) -> tuple[float, float]:
    """A percentile bootstrap interval for a (weighted) mean: resample the examples with
    replacement `n_resamples` times, recompute sum(values) / sum(weights) each time, keep the
    middle `confidence` of the results. transform: an increasing function applied to both ends
    (math.exp turns an interval of mean losses into one of perplexities). Hand-written for the
    same reason as wilson_interval."""
    v = torch.as_tensor(values, dtype=torch.float64)                                   # (N,)
    w = torch.ones_like(v) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if v.numel() == 0 or v.shape != w.shape:
        raise ValueError(f"bootstrap_interval needs one weight per value and at least one value "
                         f"(got {v.numel()} values, {w.numel()} weights).")
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(v.numel(), (n_resamples, v.numel()), generator=g)          # (R, N)
    means = v[picks].sum(1) / w[picks].sum(1)                                          # (R,)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return (transform(low), transform(high)) if transform is not None else (low, high)


@dataclass(frozen=True)
class Score:
    """A measured number with its 95 % interval, on n examples (count: how many were right, for rates)."""
    value: float
    low: float
    high: float
    n: int
    count: int | None = None

    def __str__(self) -> str:
        digits = 3 if abs(self.value) < 10 else 1
        tail = f", {self.count}/{self.n}" if self.count is not None else f", n={self.n}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]{tail}"

    def overlaps(self, other: "Score") -> bool:
        """Do the two intervals overlap? (If they do, the difference may be luck of the draw.)"""
        return self.low <= other.high and other.low <= self.high

    def as_dict(self, digits: int = 4) -> dict:
        out = {"value": round(self.value, digits), "low": round(self.low, digits), "high": round(self.high, digits),
               "n": self.n}
        return out if self.count is None else {**out, "count": self.count}


def rate(successes: int, n: int) -> Score:
    """An accuracy with its Wilson interval."""
    low, high = wilson_interval(successes, n)
    return Score(successes / n, low, high, n, successes)


def mean_score(values) -> Score:
    """A mean (e.g. character similarity) with its bootstrap interval."""
    values = [float(v) for v in values]
    low, high = bootstrap_interval(values)
    return Score(sum(values) / len(values), low, high, len(values))


def perplexity_score(nll: list[float], tokens: list[int]) -> Score:
    """exp(total NLL / total tokens) over examples (summed NLL in nats, token count per example),
    with a bootstrap interval over examples."""
    low, high = bootstrap_interval(nll, tokens, transform=math.exp)
    return Score(math.exp(sum(nll) / sum(tokens)), low, high, len(nll))


# ----------------------------------------------------------------------------- the model's answers

@torch.no_grad()
def answer_logprobs(model, tokenizer, pairs: list[tuple[str, str]], device="cpu", include_end: bool = False,
                    batch_size: int = 16) -> list[tuple[float, int]]:
    """For each (prompt, answer): (log P(answer tokens | prompt) summed in nats, number of answer tokens).

    include_end adds the <|endoftext|> after the answer (the chat perplexity counts it: stopping
    is part of a reply). Batched, in eval mode, logits only at the answer's positions (as
    completion_loss)."""
    was_training = model.training
    model.eval()
    out: list[tuple[float, int]] = []
    for i in range(0, len(pairs), batch_size):
        chunk = []
        for prompt, answer in pairs[i:i + batch_size]:
            ids, labels = encode_example(tokenizer, Example("score", prompt, answer, answer.strip()), model.block_size)
            chunk.append((ids, labels if include_end else labels[:-1] + [IGNORE]))
        x, y = (t.to(device) for t in pad_collate(chunk, tokenizer.eot_id))     # (B, T), (B, T)
        keep = y != IGNORE                                                       # (B, T)
        if hasattr(model, "hidden_states"):
            logits = model.logits(model.hidden_states(x)[keep]).float()         # (N, V)
        else:
            logits = model(x)[keep].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, y[keep].unsqueeze(-1)).squeeze(-1)  # (N,)
        rows = keep.nonzero(as_tuple=True)[0]                                    # (N,) the pair of each
        sums = torch.zeros(x.size(0), dtype=torch.float64, device=logp.device).index_add_(0, rows, logp.double())
        out += list(zip(sums.tolist(), keep.sum(1).tolist()))
    model.train(was_training)
    return out


def completion_logprob(model, tokenizer, prompt: str, completion: str, device="cpu") -> float:
    """Sum of log P(completion tokens | prompt): how much the model believes this answer."""
    return answer_logprobs(model, tokenizer, [(prompt, completion)], device)[0][0]


def complete(model, tokenizer, prompt: str, max_new_tokens: int = 40, device="cpu",
             temperature: float | None = None, seed: int | None = None) -> str:
    """The model's answer, stopped at end-of-text or a newline: greedy (its single most likely
    answer) unless a temperature is given, then sampled (seed: repeatable)."""
    from .generation import generate

    idx = torch.tensor([tokenizer.encode(prompt)[-(model.block_size - 1):]], device=device)
    out = generate(model, idx, max_new_tokens, temperature=temperature or 1.0, greedy=temperature is None,
                   stop_token=tokenizer.eot_id, use_cache=True, seed=seed)
    text = tokenizer.decode([t for t in out[0, idx.size(1):].tolist() if t != tokenizer.eot_id])
    return text.split("\n")[0].strip()


# ----------------------------------------------------------------------------- sorting

def _only(examples: list[Example], task: str) -> list[Example]:
    chosen = [e for e in examples if e.task == task]
    if not chosen:
        raise ValueError(f"No {task} examples to score: pass examples that include the {task} task.")
    return chosen


@dataclass
class HallResult:
    """Hall predictions for sorting examples, scored."""
    truth: list[str]
    predicted: list[str]

    @property
    def accuracy(self) -> Score:
        return rate(sum(p == t for p, t in zip(self.predicted, self.truth)), len(self.truth))

    def confusion(self) -> list[list[int]]:
        """counts[i][j]: examples of hall HOUSES[i] answered HOUSES[j] (rows: truth, columns: answer)."""
        counts = Counter(zip(self.truth, self.predicted))
        return [[counts[t, p] for p in HOUSES] for t in HOUSES]

    def answer_counts(self) -> dict[str, int]:
        """How often each hall was answered, in HOUSES order (a constant answer shows at once)."""
        counts = Counter(self.predicted)
        return {h: counts[h] for h in HOUSES}

    def per_hall(self) -> dict[str, Score]:
        """Accuracy within each true hall (recall), with intervals."""
        return {h: rate(sum(p == h for p, t in zip(self.predicted, self.truth) if t == h),
                        sum(t == h for t in self.truth)) for h in HOUSES if h in self.truth}


@dataclass
class SortingScores:
    """The model's log-probability of each hall after each sorting prompt, and both ways to read it."""
    truth: list[str]
    logprob: list[list[float]]   # (N, 4): log P(" <hall>" | prompt), summed over the hall's tokens
    n_tokens: list[int]          # (4,): how many BPE tokens each hall's answer has (" Anvil" has two)

    def predictions(self, normalise: bool = False) -> HallResult:
        """normalise=False: the hall with the highest total log-probability (the likeliest answer);
        True: the highest mean log-probability per token (a two-token hall is not penalised for
        needing two guesses)."""
        scores = torch.tensor(self.logprob)                                      # (N, 4)
        if normalise:
            scores = scores / torch.tensor(self.n_tokens, dtype=scores.dtype)   # (N, 4) per token
        return HallResult(self.truth, [HOUSES[i] for i in scores.argmax(1).tolist()])


def sorting_scores(model, tokenizer, examples: list[Example], device="cpu") -> SortingScores:
    """Score the four hall answers after every sorting prompt (one batched pass per 16 pairs)."""
    examples = _only(examples, "sorting")
    pairs = [(e.prompt, f" {h}") for e in examples for h in HOUSES]
    scored = answer_logprobs(model, tokenizer, pairs, device)
    logprob = [[lp for lp, _ in scored[i:i + len(HOUSES)]] for i in range(0, len(scored), len(HOUSES))]
    return SortingScores([e.answer for e in examples], logprob, [n for _, n in scored[:len(HOUSES)]])


def sorting_accuracy(model, tokenizer, examples: list[Example], device="cpu") -> dict:
    """Pick the hall whose whole answer the model finds most likely after the prompt (no free-text parsing).
    -> {"accuracy", "n", "predictions"}; sorting_scores gives intervals and the per-token reading too."""
    result = sorting_scores(model, tokenizer, examples, device).predictions()
    return {"accuracy": result.accuracy.value, "n": len(result.truth), "predictions": result.predicted}


def majority_baseline(train: list[Example], test: list[Example]) -> float:
    """Accuracy of always answering the most common training hall."""
    return majority_halls(train, test).accuracy.value


def majority_halls(train: list[Example], examples: list[Example]) -> HallResult:
    """Always the most common training hall (ties: the first in HOUSES order)."""
    counts = Counter(e.answer for e in _only(train, "sorting"))
    guess = max(HOUSES, key=lambda h: counts[h])
    rows = _only(examples, "sorting")
    return HallResult([e.answer for e in rows], [guess] * len(rows))


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Words that say nothing about a hall or a spell's effect (kept short on purpose: the rest is data).
STOP_WORDS = frozenset("a an the and or but of to in on at by for with from as is was were be been it its "
                       "he she they his her their them him i you we that this which who what when so not "
                       "did do had has have one".split())


def content_words(text: str) -> list[str]:
    """Lower-cased words, without the commonest function words."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


class CentroidClassifier:
    """Bag-of-words nearest centroid: the simplest text classifier worth beating.

    Each description becomes a tf-idf vector (word counts, rare words weighted up), normalised to
    length 1; each hall's centroid is the mean vector of its training descriptions; a new
    description gets the hall whose centroid is most similar (cosine). It sees which words occur,
    never their order. (Hand-written in a few lines: scikit-learn is not a dependency.)"""

    def __init__(self, texts: list[str], labels: list[str]):
        if not texts or len(texts) != len(labels):
            raise ValueError("CentroidClassifier needs one label per text and at least one text.")
        docs = [Counter(content_words(t)) for t in texts]
        df = Counter(w for d in docs for w in d)
        self.idf = {w: math.log(len(docs) / n) + 1.0 for w, n in df.items()}
        self.labels = sorted(set(labels))
        centroids = {label: Counter() for label in self.labels}
        for d, label in zip(docs, labels):
            for w, x in self._vector(d).items():
                centroids[label][w] += x
        self.centroids = {label: self._unit(c) for label, c in centroids.items()}

    @staticmethod
    def _unit(v: dict) -> dict:
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    def _vector(self, counts: Counter) -> dict:
        return self._unit({w: n * self.idf[w] for w, n in counts.items() if w in self.idf})

    def predict(self, texts: list[str]) -> list[str]:
        out = []
        for t in texts:
            v = self._vector(Counter(content_words(t)))
            out.append(max(self.labels, key=lambda label: sum(x * self.centroids[label].get(w, 0.0)
                                                              for w, x in v.items())))
        return out

    @classmethod
    def for_sorting(cls, train: list[Example]) -> "CentroidClassifier":
        rows = _only(train, "sorting")
        return cls([e.row["description"] for e in rows], [e.answer for e in rows])

    def halls(self, examples: list[Example]) -> HallResult:
        rows = _only(examples, "sorting")
        return HallResult([e.answer for e in rows], self.predict([e.row["description"] for e in rows]))


# ----------------------------------------------------------------------------- spells

def _lexicon() -> dict[str, list[str]]:
    rows = _rows("spell_lexicon")
    return {kind: [r["morpheme"] for r in rows if r["kind"] == kind] for kind in ("root", "ending", "prefix")}


def parse_spell(word: str, lexicon: dict | None = None) -> tuple[str, str, str] | None:
    """Split an incantation into (prefix, root, ending) by the lexicon, e.g. "rocrylorn" ->
    ("ro", "cryl", "orn"); None if it is not a well-formed word of the spell grammar."""
    lexicon = lexicon or _lexicon()
    for prefix in ("", *lexicon["prefix"]):
        if not word.startswith(prefix):
            continue
        rest = word[len(prefix):]
        for root in lexicon["root"]:
            if rest.startswith(root) and rest[len(root):] in lexicon["ending"]:
                return prefix, root, rest[len(root):]
    return None


@dataclass
class SpellResult:
    """Guessed incantations for spell examples, scored."""
    truth: list[str]
    guesses: list[str]
    parts: list[tuple[str, str, str]]   # the true (prefix, root, ending) of each

    @property
    def exact(self) -> Score:
        return rate(sum(g == t for g, t in zip(self.guesses, self.truth)), len(self.truth))

    @property
    def similarity(self) -> Score:
        """Character similarity (difflib's ratio, 0..1: 2 x matching characters / total length)."""
        return mean_score([difflib.SequenceMatcher(None, g, t).ratio() for g, t in zip(self.guesses, self.truth)])

    def error_kinds(self) -> dict[str, int]:
        """What each guess got right, by the spell grammar: every guess lands in exactly one kind."""
        lexicon = _lexicon()
        kinds = Counter()
        for guess, true in zip(self.guesses, self.parts):
            parsed = parse_spell(guess, lexicon)
            if guess == "".join(true):
                kinds["exact"] += 1
            elif parsed is None:
                kinds["not a well-formed spell"] += 1
            elif parsed[1:] == true[1:]:
                kinds["right root and ending, wrong ro-"] += 1
            elif parsed[1] == true[1]:
                kinds["right root, wrong ending"] += 1
            elif parsed[2] == true[2]:
                kinds["right ending, wrong root"] += 1
            else:
                kinds["neither root nor ending"] += 1
        order = ("exact", "right root and ending, wrong ro-", "right root, wrong ending", "right ending, wrong root",
                 "neither root nor ending", "not a well-formed spell")
        return {k: kinds[k] for k in order}

    def copied(self, train: list[Example]) -> int:
        """How many guesses are word for word a training incantation (retrieval, not composition)."""
        known = {e.answer for e in train if e.task == "spell"}
        return sum(g in known for g in self.guesses)


def spell_result(guesses: list[str], examples: list[Example]) -> SpellResult:
    rows = _only(examples, "spell")
    if len(guesses) != len(rows):
        raise ValueError(f"{len(guesses)} guesses for {len(rows)} spell examples: give one guess per example.")
    parts = [("ro" if e.row["intensified"] == "yes" else "", e.row["root"], e.row["ending"]) for e in rows]
    return SpellResult([e.answer for e in rows], list(guesses), parts)


def guess_spells(model, tokenizer, examples: list[Example], device="cpu") -> list[str]:
    """The model's greedy incantation for each spell example (its first word)."""
    return [(complete(model, tokenizer, e.prompt, 8, device).split(" ") or [""])[0] for e in _only(examples, "spell")]


def nearest_spells(train: list[Example], examples: list[Example]) -> list[str]:
    """Baseline: for each effect, the incantation of the training spell whose effect shares the most
    content words (Jaccard overlap; ties: the first in table order). It can only repeat a known
    spell, so on held-out combinations its exact match is 0 by construction: a model that scores
    above 0 has composed a new word."""
    known = [(set(content_words(e.row["effect"])), e.answer) for e in _only(train, "spell")]

    def overlap(a: set, b: set) -> float:
        return len(a & b) / (len(a | b) or 1)

    out = []
    for e in _only(examples, "spell"):
        words = set(content_words(e.row["effect"]))
        out.append(max(known, key=lambda k: overlap(words, k[0]))[1])
    return out


def spell_scores(model, tokenizer, examples: list[Example], device="cpu") -> dict:
    """Exact match and character-level similarity (difflib ratio, 0..1) on held-out effects."""
    result = spell_result(guess_spells(model, tokenizer, examples, device), examples)
    return {"exact_match": result.exact.value, "char_similarity": result.similarity.value, "guesses": result.guesses}


# ----------------------------------------------------------------------------- chat

def reply_nll(model, tokenizer, examples: list[Example], device="cpu") -> tuple[list[float], list[int]]:
    """For each chat example: (-log P(true reply and its end | prompt) in nats, its number of tokens)."""
    rows = _only(examples, "chat")
    scored = answer_logprobs(model, tokenizer, [(e.prompt, e.completion) for e in rows], device, include_end=True)
    return [-lp for lp, _ in scored], [n for _, n in scored]


def chat_perplexity(model, tokenizer, examples: list[Example], device="cpu") -> float:
    """Perplexity of the true replies (completion tokens and the end-of-text) given the prompts."""
    return perplexity_score(*reply_nll(model, tokenizer, examples, device)).value


class UnigramReplies:
    """Baseline for chat: every reply token drawn from the training replies' token frequencies,
    ignoring the prompt and everything before it. Add-alpha smoothing over the whole vocabulary
    (P(t) = (count + alpha) / (total + alpha * V)) keeps every token's cost finite; `tuned` picks
    alpha on dev. Scored on the same BPE tokens, end-of-text included, as the model."""

    def __init__(self, tokenizer, train: list[Example], alpha: float = 1.0):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (a token never seen in training would cost infinitely much), "
                             f"got {alpha!r}.")
        self.tokenizer, self.alpha = tokenizer, alpha
        self.counts = Counter(t for e in _only(train, "chat") for t in self._ids(e))
        self.total = sum(self.counts.values()) + alpha * tokenizer.vocab_size

    def _ids(self, e: Example) -> list[int]:
        return self.tokenizer.encode(e.completion) + [self.tokenizer.eot_id]

    def reply_nll(self, examples: list[Example]) -> tuple[list[float], list[int]]:
        """Per chat example: (summed NLL of its reply tokens in nats, number of tokens)."""
        nll, tokens = [], []
        for e in _only(examples, "chat"):
            ids = self._ids(e)
            nll.append(sum(-math.log((self.counts[t] + self.alpha) / self.total) for t in ids))
            tokens.append(len(ids))
        return nll, tokens

    @classmethod
    def tuned(cls, tokenizer, train: list[Example], dev: list[Example],
              alphas=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003)) -> "UnigramReplies":
        """The alpha with the lowest dev perplexity (a choice made on dev, never on test)."""
        fitted = [cls(tokenizer, train, a) for a in alphas]
        return min(fitted, key=lambda m: perplexity_score(*m.reply_nll(dev)).value)


def reply_stats(replies: list[str]) -> dict:
    """Facts about generated replies that a summary may state: how many differ, how many loop
    (repeat some three-word sequence), how long they are (words), how many are empty."""
    def loops(text: str) -> bool:
        words = text.lower().split()
        grams = list(zip(words, words[1:], words[2:]))
        return len(grams) != len(set(grams))

    return {"replies": len(replies), "distinct": len({r.strip().lower() for r in replies}),
            "looping": sum(loops(r) for r in replies), "empty": sum(not r.strip() for r in replies),
            "mean_words": sum(len(r.split()) for r in replies) / max(1, len(replies))}


# ----------------------------------------------------------------------------- everything at once

def task_scores(model, tokenizer, examples: list[Example], device="cpu", chat_tokens: int = 40,
                replies: bool = True) -> dict:
    """Every score of the three tasks on these examples, each with its interval: sorting by total
    and by per-token log-probability, spells, chat perplexity, and (replies=True) the greedy
    replies to the chat prompts, the slowest part on a CPU (one token at a time)."""
    sorting = sorting_scores(model, tokenizer, examples, device)
    chat = _only(examples, "chat")
    return {"sorting": sorting.predictions(), "sorting_per_token": sorting.predictions(normalise=True),
            "sorting_logprob": sorting,
            "spell": spell_result(guess_spells(model, tokenizer, examples, device), examples),
            "chat": perplexity_score(*reply_nll(model, tokenizer, examples, device)),
            "replies": [complete(model, tokenizer, e.prompt, chat_tokens, device) for e in chat] if replies else None}


def baseline_scores(tokenizer, train: list[Example], dev: list[Example], examples: list[Example]) -> dict:
    """The non-neural baselines on `examples`, fitted on `train` only (the unigram's smoothing
    chosen on `dev`): majority hall, bag-of-words centroid, nearest spell, unigram replies."""
    unigram = UnigramReplies.tuned(tokenizer, train, dev)
    return {"majority": majority_halls(train, examples),
            "centroid": CentroidClassifier.for_sorting(train).halls(examples),
            "spell": spell_result(nearest_spells(train, examples), examples),
            "chat": perplexity_score(*unigram.reply_nll(examples)), "unigram_alpha": unigram.alpha}

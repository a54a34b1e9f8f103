"""Batching, training, evaluation and sampling for recurrent language models (notebook 09).

A transformer reads a fixed block and forgets it; a recurrent model reads the text in order and
carries a hidden state from each window into the next. So batches are not random blocks:

    stream  [w0 w1 w2 ... w(N-1)]
    batchify(stream, B) -> (B, L): row b is the b-th contiguous stretch of the stream
    bptt_windows(data, T) -> (x, y) windows walking left to right, each (B, <=T), y = x shifted by one

Row b of window k+1 continues exactly where row b of window k stopped, so the hidden state
computed on window k is the right starting state for window k+1. Training carries it over but
**detaches** it (truncated backpropagation through time): the values flow on, the gradients stop
at the window boundary, and the cost of a step never grows with the length of the text.

It also prices a word model fairly (`word_model_cost`): a word vocabulary maps every rare word to
one `<unk>` token, so the model's own loss never pays for spelling those words out. A small
character model of spelling (`CharSpeller`) adds that missing cost, which makes the word model's
bits per character comparable with models that can write any string.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from .checkpoints import save_model
from .models.lstm import detach_hidden
from .optimization import OptimizerStep, check_finite, make_optimizer, nll_sum
from .training import LN2, EvalResult, lm_loss
from .words import SPECIALS, Vocab, tokenize_lines


# ----------------------------------------------------------------------------- batching

def batchify(ids, batch_size: int) -> torch.Tensor:
    """Lay a 1-D stream of N ids out as batch_size parallel rows: (batch_size, N // batch_size).

    The last N % batch_size ids do not fill a row and are dropped.
    """
    data = torch.as_tensor(ids, dtype=torch.long)
    if data.dim() != 1:
        raise ValueError(f"batchify expects a 1-D stream of ids, got shape {tuple(data.shape)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    length = len(data) // batch_size
    if length < 2:
        raise ValueError(f"A stream of {len(data)} ids is too short for batch_size={batch_size}: each row "
                         "needs at least 2 ids (one input, one target). Use a smaller batch_size.")
    return data[:length * batch_size].view(batch_size, length)  # row b = ids [b*L, (b+1)*L)


def bptt_windows(data: torch.Tensor, bptt: int):
    """Yield (x, y), each (B, T) with T <= bptt, walking along the rows of `data` (B, L).

    Together the windows predict every id of every row except the row's first: the x's
    concatenate to data[:, :-1] and the y's to data[:, 1:]. The last window may be shorter.
    """
    if data.dim() != 2:
        raise ValueError(f"bptt_windows expects batchified data (B, L), got shape {tuple(data.shape)}.")
    if isinstance(bptt, bool) or not isinstance(bptt, int) or bptt < 1:
        raise ValueError(f"bptt must be a positive integer, got {bptt!r}.")
    n_targets = data.size(1) - 1
    for start in range(0, n_targets, bptt):
        T = min(bptt, n_targets - start)
        yield data[:, start:start + T], data[:, start + 1:start + 1 + T]


def num_windows(data: torch.Tensor, bptt: int) -> int:
    return math.ceil((data.size(1) - 1) / bptt)


def autograd_graph_size(tensor: torch.Tensor) -> int:
    """How many autograd nodes backward() would visit from `tensor` (0 for a detached tensor).

    A diagnostic for truncated BPTT: with the hidden state detached between windows this number
    is the same for every window; without, it grows with every window already processed.
    """
    seen, stack = set(), [tensor.grad_fn] if tensor.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None and nxt not in seen)
    return len(seen)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_recurrent(model: torch.nn.Module, data, bptt: int = 256, batch_size: int = 1,
                       n_chars: int | None = None) -> EvalResult:
    """Score a split: mean negative log-likelihood per predicted token (nats), in eval mode.

    data: the split's 1-D stream of ids.
    bptt: tokens per forward call. The state is carried from call to call, so the result does not
    depend on it (up to rounding); long windows just mean fewer calls.
    batch_size: with 1, the hidden state runs through the whole split and every id except the
    first is predicted once, so the summed loss is the split's total NLL. A larger batch_size is
    faster, but each row starts from a zero state and up to batch_size - 1 trailing ids are dropped.
    n_chars: the number of characters of the split's text. Then bits_per_char is the total NLL
    in bits divided by the number of characters (comparable with character-level models).
    """
    rows = batchify(data, batch_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(batch_size, device)
    total_nll, n_tokens = 0.0, 0
    for x, y in bptt_windows(rows, bptt):
        x, y = x.to(device), y.to(device)
        logits, hidden = model(x, hidden)
        nll, count = nll_sum(logits, y)
        total_nll += nll.item()
        n_tokens += count
    model.train(was_training)
    return EvalResult(loss=total_nll / n_tokens, n_tokens=n_tokens, n_chars=n_chars)


# ----------------------------------------------------------------------------- training

@dataclass
class RecurrentTrainConfig:
    max_epochs: int = 10
    batch_size: int = 20
    bptt: int = 35                  # window length: how far back gradients reach
    learning_rate: float = 1e-3     # Adam
    weight_decay: float = 0.0
    grad_clip: float | None = 0.25  # max global gradient norm; None or 0 turns clipping off
    patience: int = 3               # stop after this many epochs without a better val loss
    lr_factor: float = 0.5          # ReduceLROnPlateau: multiply the lr by this ...
    lr_patience: int = 0            # ... after this many epochs without improvement
    eval_batch_size: int = 1        # 1 scores every val token with a state that saw all before it
    eval_bptt: int = 256            # tokens per forward call when scoring (does not change the result)
    max_windows: int | None = None  # stop each epoch after this many windows (quick smoke runs only)
    checkpoint_path: str | None = None  # also write the best model here (course_lib checkpoint)
    seed: int = 1337                # seeds torch's RNG (dropout masks) at the start of training

    @classmethod
    def from_settings(cls, cfg, **extra) -> "RecurrentTrainConfig":
        """Pick the fields this config knows from a profile's Settings (or a dict)."""
        from .training import config_from_settings

        return config_from_settings(cls, cfg, **extra)

    def validate(self) -> None:
        for name in ("max_epochs", "batch_size", "bptt", "patience", "eval_batch_size", "eval_bptt"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.max_windows is not None and (not isinstance(self.max_windows, int) or self.max_windows < 1):
            raise ValueError(f"max_windows must be None (whole epochs) or a positive integer, "
                             f"got {self.max_windows!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"lr_factor must be in (0, 1], got {self.lr_factor}.")


@dataclass
class RecurrentHistory:
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)      # mean over the epoch, dropout on
    val_loss: list[float] = field(default_factory=list)        # after the epoch, eval mode
    val_perplexity: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)              # the lr the epoch was trained with
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    tokens_per_second: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def tbptt_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, hidden,
               stepper: OptimizerStep, step: int = 0):
    """One truncated-BPTT update on window (x, y), starting from the previous window's state.

    Returns (loss as a float, the new hidden state). The incoming state is detached first, so
    backward() stops at the start of this window. The stepper clips the global gradient norm:
    LSTMs are prone to rare, huge gradients ("exploding gradients"), and clipping keeps one bad
    window from wrecking the weights.
    """
    hidden = detach_hidden(hidden)
    logits, hidden = model(x, hidden)
    loss = lm_loss(logits, y)
    check_finite(loss, step, stepper.optimizer.param_groups[0]["lr"], f"grad_clip={stepper.grad_clip}")
    stepper.backward(loss)
    stepper.step(model.parameters())
    return loss.item(), hidden


def train_recurrent(model: torch.nn.Module, train_data, val_data, config: RecurrentTrainConfig,
                    device: torch.device | str = "cpu", progress: bool = True, tokenizer=None,
                    checkpoint_meta: dict | None = None) -> RecurrentHistory:
    """Train epoch by epoch with truncated BPTT, Adam and ReduceLROnPlateau; stop early when the
    validation loss has not improved for `config.patience` epochs; restore the best weights.

    train_data, val_data: 1-D streams of token ids. Returns the per-epoch history.
    checkpoint_path (in config): the best epoch's model is saved there, with `tokenizer`.
    """
    config.validate()
    if config.checkpoint_path and tokenizer is None:
        raise ValueError("checkpoint_path is set but no tokenizer= (the Vocab) was given: a checkpoint keeps "
                         "the tokenizer so the model can be used to write text later.")
    device = torch.device(device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout masks: the same run every time
    train_rows = batchify(train_data, config.batch_size).to(device)   # (B, L)
    n_win = num_windows(train_rows, config.bptt)
    if config.max_windows is not None:
        n_win = min(n_win, config.max_windows)
    # Adam's usual betas (0.9, 0.999): the LSTM trains for whole epochs, not a few thousand steps.
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay, betas=(0.9, 0.999), device=device)
    stepper = OptimizerStep(optimizer, device, None, config.grad_clip)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    history = RecurrentHistory()
    best_state = None
    epochs_without_gain, n_trained = 0, 0
    start = time.perf_counter()
    bar = tqdm(total=config.max_epochs * n_win, desc="training", disable=not progress, mininterval=1.0)
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        hidden = model.init_hidden(config.batch_size, device)  # zero state at the start of the text
        total, count = 0.0, 0
        for _, (x, y) in zip(range(n_win), bptt_windows(train_rows, config.bptt)):
            loss, hidden = tbptt_step(model, x, y, hidden, stepper, bar.n)
            total += loss * y.numel()
            count += y.numel()
            n_trained += y.numel()
            bar.update(1)
        val = evaluate_recurrent(model, val_data, config.eval_bptt, config.eval_batch_size)
        scheduler.step(val.loss)
        history.epochs.append(epoch)
        history.train_loss.append(total / count)
        history.val_loss.append(val.loss)
        history.val_perplexity.append(val.perplexity)
        history.lr.append(lr)
        history.epoch_seconds.append(time.perf_counter() - t0)
        if val.loss < history.best_val_loss:
            history.best_val_loss, history.best_epoch = val.loss, epoch
            # a copy on the CPU: later epochs change the model's own tensors in place
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            epochs_without_gain = 0
            if config.checkpoint_path:
                save_model(config.checkpoint_path, model, tokenizer, train_config=asdict(config), epoch=epoch,
                           val_loss=val.loss, **(checkpoint_meta or {}))
        else:
            epochs_without_gain += 1
        bar.set_postfix(epoch=epoch, train=f"{total / count:.3f}", val_ppl=f"{val.perplexity:.1f}")
        if epochs_without_gain >= config.patience:
            history.stopped_early = epoch < config.max_epochs
            break
    bar.close()
    history.seconds = time.perf_counter() - start
    history.tokens_per_second = n_trained / max(history.seconds, 1e-9)
    if best_state is not None:
        model.load_state_dict(best_state)  # the best epoch's weights, not the last epoch's
    return history


# ----------------------------------------------------------------------------- sampling

@torch.no_grad()
def generate_word_ids(model: torch.nn.Module, vocab: Vocab, prompt: str, n_words: int,
                      temperature: float = 1.0, seed: int | None = None) -> list[int]:
    """Sample n_words ids after the prompt (the prompt's ids are not included).

    Prompt words outside the vocabulary are fed to the model as `<unk>`; the model itself is
    never allowed to emit `<unk>` (its logit is set to -inf before sampling).
    """
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be a positive integer, got {n_words!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}. Use e.g. 0.7 for safer text, "
                         "1.0 for the model's own distribution, above 1 for wilder text.")
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}.")
    prompt_ids = vocab.encode(tokenize_lines(prompt))
    if not prompt_ids:
        raise ValueError("The prompt has no tokens: give at least one word or a newline ('\\n').")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    logits, hidden = model(torch.tensor([prompt_ids], device=device))   # read the whole prompt
    out = []
    for _ in range(n_words):
        last = logits[0, -1].float() / temperature                      # (V,)
        last[vocab.unk_id] = float("-inf")                               # never write <unk>
        next_id = torch.multinomial(torch.softmax(last, dim=-1), 1, generator=generator)  # (1,)
        out.append(int(next_id))
        logits, hidden = model(next_id.view(1, 1), hidden)               # one step, state carried
    model.train(was_training)
    return out


def generate_words(model: torch.nn.Module, vocab: Vocab, prompt: str = "\n", n_words: int = 100,
                   temperature: float = 1.0, seed: int | None = None) -> str:
    """The prompt as typed, followed by n_words sampled words (newlines where `<eol>` was sampled)."""
    continuation = vocab.decode(generate_word_ids(model, vocab, prompt, n_words, temperature, seed))
    glue = "" if prompt.endswith(("\n", " ")) or continuation.startswith("\n") else " "
    return prompt + glue + continuation


# ----------------------------------------------------------------------------- a full price for <unk>

# A character the speller never saw is written as "escape" plus the character itself, chosen
# uniformly among all Unicode code points: about 20.1 bits. Rare, finite, and never free.
UNICODE_BITS = math.log2(0x110000)


class CharSpeller:
    """A character bigram model of how words are spelled, with add-alpha smoothing.

    The word model predicts `<unk>` ("some word outside my vocabulary") but not WHICH word. To turn
    that into the price of the actual word, the speller spells it letter by letter:

        P("kelp") = P(k | start) * P(e | k) * P(l | e) * P(p | l) * P(end | p)

    Each P(next | previous) is a count ratio from the fitting words, (count + alpha) /
    (total + alpha * outcomes), over the outcomes: every character seen in fitting, `end`, and
    `escape` (a character never seen: then its code point is paid for too, UNICODE_BITS). Every
    row sums to 1, so the speller is a proper distribution over all strings: whatever the word,
    its cost is finite and honest.

    Fit it on the words the vocabulary left out of the TRAINING text (`from_unknown_words`): the
    training text's own `<unk>`s are the best sample of what unknown words look like (long, rare,
    often names), so the speller learns their letters, not those of "the" and "and".
    """

    START, END, ESCAPE = "<w>", "</w>", "<esc>"

    def __init__(self, words: list[str], alpha: float = 1.0):
        if not alpha > 0:
            raise ValueError(f"alpha (the smoothing count) must be > 0, got {alpha!r}: with 0, a letter "
                             "pair never seen in fitting would get probability 0 and cost infinitely many bits.")
        words = [w for w in words if w]
        self.alphabet = sorted({c for w in words for c in w})        # the characters seen in fitting
        self.outcomes = self.alphabet + [self.END, self.ESCAPE]      # what can come next
        self.alpha = float(alpha)
        self.n_words = len(words)
        index = {o: i for i, o in enumerate(self.outcomes)}
        contexts = [self.START, *self.alphabet, self.ESCAPE]         # what can come before
        self._context = {c: i for i, c in enumerate(contexts)}
        pairs = Counter((previous, symbol) for w in words                 # (previous, next) -> count
                        for previous, symbol in zip([self.START, *w], [*w, self.END]))
        counts = torch.zeros(len(contexts), len(self.outcomes), dtype=torch.float64)
        for (previous, symbol), n in pairs.items():
            counts[self._context[previous], index[symbol]] = n
        probs = (counts + alpha) / (counts.sum(1, keepdim=True) + alpha * len(self.outcomes))
        self._bits = (-torch.log2(probs)).tolist()                   # [context][outcome] -> bits
        self._index = index

    @classmethod
    def from_unknown_words(cls, train_tokens: list[str], vocab: Vocab, alpha: float = 1.0) -> "CharSpeller":
        """Fit on the training tokens the vocabulary maps to `<unk>` (every occurrence). If there are
        none (e.g. min_freq=1), fit on all training words instead, so the speller still knows letters."""
        words = [t for t in train_tokens if t not in SPECIALS]
        unknown = [w for w in words if w not in vocab]
        return cls(unknown or words, alpha)

    def bits(self, word: str) -> float:
        """-log2 P(word): the bits needed to spell `word`, its end included."""
        if not isinstance(word, str) or not word:
            raise ValueError(f"bits() spells a non-empty word, got {word!r}.")
        total, previous = 0.0, self.START
        for symbol in [*word, self.END]:
            known = symbol == self.END or symbol in self._index
            outcome = symbol if known else self.ESCAPE
            total += self._bits[self._context[previous]][self._index[outcome]]
            if not known:
                total += UNICODE_BITS                                 # which character it was
            previous = symbol if (known and symbol != self.END) else self.ESCAPE
        return total

    def next_probs(self, previous: str = START) -> dict[str, float]:
        """P(next outcome | previous character) for every outcome (sums to 1): for inspection and tests."""
        row = self._bits[self._context[previous if previous in self._context else self.ESCAPE]]
        return {o: 2.0 ** -b for o, b in zip(self.outcomes, row)}

    def __repr__(self) -> str:
        return f"CharSpeller({len(self.alphabet)} characters, fitted on {self.n_words:,} words, alpha={self.alpha:g})"


@dataclass
class WordModelCost:
    """What a word model pays for a text, in bits, with and without spelling out its `<unk>`s."""

    n_chars: int          # characters of the text (the denominator of every bits/char)
    n_tokens: int         # tokens predicted (all but the first)
    n_unknown: int        # of those, how many were `<unk>`
    word_bits: float      # the model's own total NLL: `<unk>` costs one token, whatever the word
    spelling_bits: float  # the speller's bits for the actual words behind those `<unk>`s

    @property
    def optimistic_bits_per_char(self) -> float:
        """What the model's loss alone gives: a lower bound, every unknown word at the price of one token."""
        return self.word_bits / self.n_chars

    @property
    def bits_per_char(self) -> float:
        """The full cost: every unknown word also spelled out, letter by letter."""
        return (self.word_bits + self.spelling_bits) / self.n_chars

    @property
    def unknown_share(self) -> float:
        return self.n_unknown / self.n_tokens

    @property
    def spelling_share(self) -> float:
        """The fraction of the full cost that is spelling unknown words."""
        return self.spelling_bits / (self.word_bits + self.spelling_bits)

    def as_dict(self) -> dict:
        return {"n_chars": self.n_chars, "n_tokens": self.n_tokens, "n_unknown": self.n_unknown,
                "word_bits": round(self.word_bits, 1), "spelling_bits": round(self.spelling_bits, 1),
                "optimistic_bits_per_char": round(self.optimistic_bits_per_char, 4),
                "bits_per_char": round(self.bits_per_char, 4)}


def word_model_cost(model: torch.nn.Module, vocab: Vocab, text: str, train_text: str | None = None,
                    speller: CharSpeller | None = None, bptt: int = 256) -> WordModelCost:
    """Score a word-level model on `text` in bits per character, charging it for its `<unk>`s.

    The model reads `text` as one stream (basic_english words, `<eol>` per newline; the state
    carried from the first token to the last, batch size 1), exactly as evaluate_recurrent does.
    Its loss prices an unknown word as one `<unk>` token; the speller then adds the bits needed
    to spell each such word (fitted on `train_text`'s unknown words, or pass your own `speller`).
    So `bits_per_char` is a full cost that can be compared with character and BPE models on the
    same text, and `optimistic_bits_per_char` is what the loss alone claims.

    What is still free, even in the full cost: capital letters (basic_english lower-cases), the
    characters the tokenizer deletes (double quotes, colons, semicolons), and where spaces go
    (tokens are simply joined by spaces). A model that can write any string pays for all of those.

        cost = word_model_cost(model, vocab, splits.test, train_text=splits.train)
        cost.optimistic_bits_per_char, cost.bits_per_char
    """
    if speller is None:
        if train_text is None:
            raise ValueError("word_model_cost needs train_text= (to fit the speller on the training text's "
                             "unknown words) or a ready speller= (CharSpeller).")
        speller = CharSpeller.from_unknown_words(tokenize_lines(train_text), vocab)
    tokens = tokenize_lines(text)
    if len(tokens) < 2:
        raise ValueError(f"The text has {len(tokens)} token(s); scoring needs at least 2 (one read, one predicted).")
    result = evaluate_recurrent(model, vocab.encode(tokens), bptt, batch_size=1, n_chars=len(text))
    unknown = [t for t in tokens[1:] if t not in vocab]              # the first token is never predicted
    return WordModelCost(n_chars=len(text), n_tokens=result.n_tokens, n_unknown=len(unknown),
                         word_bits=result.loss * result.n_tokens / LN2,
                         spelling_bits=sum(speller.bits(w) for w in unknown))

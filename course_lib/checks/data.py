"""Exercise graders for notebook 01 (from raw text to training batches).

grade_get_batch(get_batch): the student writes the batching function every training loop uses,

    def get_batch(data, batch_size, block_size, generator):   # data (N,) int64 token ids
        ...                                                    # -> x, y, each (batch_size, block_size)

with one random start per row, x a contiguous block of `data` and y the same block one token
later. The grader feeds it `torch.arange(N)`: token i sits at position i, so every value in x and
y tells where it was cut, and a wrong shift, a gap, or a block running past the end shows at once.

grade_unigram_loss(unigram_loss): the loss of the model that knows only how often each character
occurs (add-one smoothed frequencies from the training ids, scored on other ids):

    def unigram_loss(train_ids, val_ids, vocab_size):         # -> a float, nats per character

Both graders run inside torch.random.fork_rng(), so grading never changes the notebook's global
random numbers (a student's function that ignores the generator draws from them).
"""

from __future__ import annotations

import math

import torch

from ..batching import get_batch as library_get_batch
from .grading import Mistake, call, expect, grader

__all__ = ["grade_get_batch", "grade_unigram_loss"]


# ----------------------------------------------------------------------------- get_batch

_PAST_THE_END = ("a block ran past the end of data: y needs one token more than x, so the last possible "
                 "start is len(data) - block_size - 1. Draw the starts with torch.randint(len(data) - "
                 "block_size, (batch_size,), generator=generator) (the upper bound is exclusive)")


def _batch(get_batch, data: torch.Tensor, batch_size: int, block_size: int, seed: int):
    """Call the student's function with a fresh seeded generator and check the form of the answer."""
    generator = torch.Generator().manual_seed(seed)
    try:
        out = call(get_batch, data, batch_size, block_size, generator)
    except (IndexError, RuntimeError) as err:
        # an index past the end of data, or torch.stack of a last slice that came out short
        if "out of bounds" in str(err) or "stack expects each tensor to be equal size" in str(err):
            raise Mistake(_PAST_THE_END) from err
        raise
    expect(isinstance(out, (tuple, list)) and len(out) == 2,
           f"return the pair (x, y), got {type(out).__name__}")
    x, y = out
    expect(isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor),
           f"x and y must be tensors (torch.stack the blocks), got {type(x).__name__} and {type(y).__name__}")
    expected = (batch_size, block_size)
    if tuple(x.shape) == (batch_size, block_size + 1):
        raise Mistake(f"x has shape {tuple(x.shape)}: block_size + 1 columns. If you cut block_size + 1 tokens, "
                      "x is all but the last of them and y all but the first")
    expect(tuple(x.shape) != expected[::-1] or expected[0] == expected[1],
           f"x has shape {tuple(x.shape)}, transposed: stack the blocks along dim 0, so that x is "
           f"(batch_size, block_size) = {expected}")
    expect(tuple(x.shape) == expected, f"x has shape {tuple(x.shape)}, expected (batch_size, block_size) = {expected}")
    if tuple(y.shape) != expected and tuple(y.shape)[:1] == (batch_size,) and y.dim() == 2 and y.size(1) < block_size:
        raise Mistake(_PAST_THE_END)  # a block shorter than block_size: sliced past the end
    expect(tuple(y.shape) == expected, f"y has shape {tuple(y.shape)}, expected the same shape as x, {expected}")
    expect(x.dtype == torch.long and y.dtype == torch.long,
           f"x and y hold {x.dtype} and {y.dtype}; token ids must stay integers (torch.long, like data): "
           "nn.Embedding and cross_entropy take int64 ids")
    return x, y


@grader("get_batch")
def grade_get_batch(get_batch):
    with torch.random.fork_rng():
        torch.manual_seed(12345)
        data = torch.arange(1000)  # token i at position i: the values tell where each block was cut
        x, y = _batch(get_batch, data, 4, 8, seed=0)
        steps = x[:, 1:] - x[:, :-1]  # (B, T-1): 1 everywhere for contiguous blocks
        expect(bool((steps == 1).all()), "a row of x is not one contiguous piece of data: each row must be "
                                         "data[i : i + block_size] for a random start i")
        # The most common mistakes with the targets, each with its own message:
        expect(not torch.equal(y, x), "y equals x: the targets are the NEXT tokens, y = data[i + 1 : i + 1 + "
                                      "block_size] (the same block shifted one token to the right)")
        expect(not torch.equal(y, x - 1), "y is shifted the wrong way (y = data[i - 1 : ...]): the target of "
                                          "x[b, t] is the token AFTER it, data[i + t + 1]")
        expect(torch.equal(y, x + 1), "y is not x shifted by one token: y[b, t] must be the token that follows "
                                      "x[b, t], so y = data[i + 1 : i + 1 + block_size] with the SAME start i")
        # Every start from 0 to len(data) - block_size - 1 must be possible, and none after it.
        small = torch.arange(8 + 3)  # 11 tokens, block_size 8: the starts 0, 1 and 2 are valid
        starts = set()
        for seed in range(40):
            xs, ys = _batch(get_batch, small, 4, 8, seed=seed)
            expect(torch.equal(ys, xs + 1), "y is not x shifted by one token on a short piece of data")
            starts |= set(xs[:, 0].tolist())
        expect(max(starts) <= 2, _PAST_THE_END)
        expect(starts == {0, 1, 2}, f"with 11 tokens and block_size 8 the starts 0, 1 and 2 are all valid, but "
               f"40 of your batches only ever started at {sorted(starts)}: the last possible block is lost. Draw "
               "torch.randint(len(data) - block_size, ...): its upper bound is already exclusive")
        # One random start per row, drawn from the generator passed in.
        x_big, _ = _batch(get_batch, torch.arange(100_000), 16, 8, seed=1)
        expect(len(set(x_big[:, 0].tolist())) > 1, "every row of the batch starts at the same position: draw "
               "one random start per row, torch.randint(..., (batch_size,), generator=generator)")
        again, _ = _batch(get_batch, torch.arange(100_000), 16, 8, seed=1)
        expect(torch.equal(x_big, again), "two generators seeded alike gave different batches: pass "
               "generator=generator to torch.randint, so that one seed reproduces the same batches")
    same = torch.equal(x_big, library_get_batch(torch.arange(100_000), 16, 8, "cpu",
                                                torch.Generator().manual_seed(1))[0])
    return "draw for draw the same batches as course_lib.batching.get_batch" if same else None


# ----------------------------------------------------------------------------- unigram loss

def _unigram_reference(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int,
                       smoothing: float = 1.0) -> torch.Tensor:
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + smoothing  # (V,)
    probs = counts / counts.sum()                                                   # (V,)
    return -torch.log(probs[val_ids])                                                # (N_val,) per character


def _as_number(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} returned a tensor of shape {tuple(value.shape)}: return one number, "
                                   "the mean over the validation characters (.mean(), then .item())")
        value = value.item()
    expect(isinstance(value, (int, float)), f"{what} must return a number, got {type(value).__name__}")
    return float(value)


@grader("unigram loss")
def grade_unigram_loss(unigram_loss):
    V = 6
    # The training text never uses id 5; the validation text does (as a real split can).
    train_ids = torch.tensor([0] * 40 + [1] * 25 + [2] * 20 + [3] * 10 + [4] * 5)
    val_ids = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 6 + [4] * 6 + [5] * 2)
    with torch.random.fork_rng():
        got = _as_number(call(unigram_loss, train_ids.clone(), val_ids.clone(), V), "unigram_loss")
    per_char = _unigram_reference(train_ids, val_ids, V)
    right = per_char.mean().item()
    expect(not math.isnan(got), "your loss is nan")
    expect(not math.isinf(got), "your loss is infinite: id 5 appears in the validation ids but never in the "
           "training ids, so its probability is 0 and -ln 0 = inf. Add one to every count before normalising "
           "(add-one smoothing), so that no character gets probability 0")
    expect(not math.isclose(got, -right, rel_tol=1e-4), f"your loss {got:.4f} is negative: the loss is MINUS the "
           "mean log-probability (log-probabilities are <= 0, the loss is >= 0)")
    expect(not math.isclose(got, right / math.log(2), rel_tol=1e-4), f"your loss {got:.4f} is in bits (log base 2): "
           f"the course measures losses in nats, with the natural log torch.log (that gives {right:.4f}; "
           "bits = nats / ln 2)")
    expect(not math.isclose(got, per_char.sum().item(), rel_tol=1e-4), f"your loss {got:.4f} is the SUM over the "
           f"validation characters: take the mean (per character) instead, {right:.4f}")
    from_val = _unigram_reference(val_ids, val_ids, V).mean().item()
    expect(not math.isclose(got, from_val, rel_tol=1e-4), "you estimated the frequencies from val_ids, the text you "
           "score: count the TRAINING ids (train_ids) only, otherwise the model has seen the answers")
    unnormalised = -torch.log((torch.bincount(train_ids, minlength=V).double() + 1)[val_ids] / len(train_ids)).mean()
    expect(not math.isclose(got, unnormalised.item(), rel_tol=1e-4), "your probabilities do not add up to 1: after "
           "adding one to every count, divide by the new total, counts.sum() = len(train_ids) + vocab_size")
    expect(math.isclose(got, right, rel_tol=1e-4), f"your loss is {got:.4f}, the add-one smoothed unigram loss "
           f"is {right:.4f}: counts = bincount(train_ids, minlength=vocab_size) + 1, probs = counts / counts.sum(), "
           "loss = -log(probs[val_ids]).mean()")
    return f"{right:.4f} nats per character on the grader's example"

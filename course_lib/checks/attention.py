"""Graders for notebook 03 (self-attention): one causal attention head, written by the student.

    causal_attention(q, k, v) -> out
        q, k, v: (B, T, D) queries, keys and values of one head
        out:     (B, T, D) position t = softmax over s <= t of q_t . k_s / sqrt(D), weighting v_s

A wrong answer is first compared with the classic wrong versions (no mask, the mask the wrong way
round, masking with 0, no 1/sqrt(D), softmax over the wrong axis, ...): when the student's output
equals one of them, the message names that mistake. Otherwise the grader tests properties (no
NaN, the future does not leak, position 0 sees only itself) and finally reports how far the
values are from the right ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .grading import Mistake, call, close, expect, grader

__all__ = ["grade_causal_attention", "reference_causal_attention"]


def _future(T: int) -> torch.Tensor:
    """(T, T) boolean, True strictly above the diagonal: the positions a query must not see."""
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def reference_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The right answer: (B, T, D) x 3 -> (B, T, D)."""
    T, D = q.size(-2), q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)                      # (B, T, T)
    return F.softmax(scores.masked_fill(_future(T), float("-inf")), dim=-1) @ v


def _masked(scores: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(_future(scores.size(-1)), float("-inf"))


# The typical wrong versions, each with what to tell the student. Checked in this order.
def _no_mask(q, k, v):
    return F.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v


def _mask_upside_down(q, k, v):  # keeps the upper triangle: position t sees t..T-1
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    past = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    return F.softmax(scores.masked_fill(past, float("-inf")), dim=-1) @ v


def _mask_with_zero(q, k, v):  # masked_fill(..., 0) or scores * tril: e^0 = 1 still gives weight
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return F.softmax(scores.masked_fill(_future(q.size(-2)), 0.0), dim=-1) @ v


def _mask_after_softmax(q, k, v):  # the future gets 0, but rows no longer sum to 1
    weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights.masked_fill(_future(q.size(-2)), 0.0) @ v


def _softmax_over_columns(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))), dim=-2) @ v


def _no_scale(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1)), dim=-1) @ v


def _scale_by_d(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1) / q.size(-1)), dim=-1) @ v


def _scale_by_t(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.size(-2))), dim=-1) @ v


def _keys_times_queries(q, k, v):
    return F.softmax(_masked(k @ q.transpose(-2, -1) / math.sqrt(q.size(-1))), dim=-1) @ v


def _averages_queries(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))), dim=-1) @ q


def _averages_keys(q, k, v):
    return F.softmax(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))), dim=-1) @ k


_MISTAKES = [
    (_no_mask, "the future leaks into the past: there is no causal mask, so position t also "
               "attends to positions after t. Fill the scores above the diagonal with -inf "
               "before the softmax."),
    (_mask_upside_down, "the mask is the wrong way round: position t sees positions t..T-1 (the future) "
                        "instead of 0..t. Hide the scores ABOVE the diagonal: "
                        "scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), "
                        "float('-inf')), or keep where torch.tril(...) is 1."),
    (_mask_with_zero, "the hidden scores were set to 0, not -inf (or the scores were multiplied by the "
                      "triangle): softmax gives a score of 0 the weight e^0 = 1, so the future still gets "
                      "weight. Use float('-inf'): e^-inf = 0."),
    (_mask_after_softmax, "the mask was applied after the softmax: the future gets no weight, but each row "
                          "no longer sums to 1. Mask the scores with -inf BEFORE the softmax."),
    (_softmax_over_columns, "softmax ran over the wrong axis: each COLUMN of the weights sums to 1 instead of "
                            "each row. Use F.softmax(scores, dim=-1): row t is position t's distribution "
                            "over the positions it looks at."),
    (_no_scale, "the scores were not divided by sqrt(D), the head size (q.size(-1)): without it their "
                "variance grows with D and the softmax starts out saturated."),
    (_scale_by_d, "the scores were divided by D, not by sqrt(D) (D = q.size(-1)): the variance of q.k is "
                  "D, so its standard deviation is sqrt(D)."),
    (_scale_by_t, "the scores were divided by sqrt(T), the number of positions; divide by sqrt(D), the "
                  "head size: D = q.size(-1)."),
    (_keys_times_queries, "the scores are transposed (k @ q^T): row t must hold q_t . k_s for every key s, "
                          "which is q @ k.transpose(-2, -1)."),
    (_averages_queries, "the weights average the queries: they must average the values, weights @ v."),
    (_averages_keys, "the weights average the keys: they must average the values, weights @ v."),
]


def _case(shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # A spread of 1.5 makes the scores large enough that every wrong variant differs clearly.
    return tuple(1.5 * torch.randn(*shape, generator=g) for _ in range(3))


def _diagnose(attend, q, k, v, out) -> None:
    """The student's output is wrong: raise Mistake with the most specific reason we can find."""
    if torch.isnan(out).any():
        raise Mistake("the output contains NaN: some row of scores was entirely -inf. Position t must "
                      "always see itself: hide only the scores strictly above the diagonal "
                      "(torch.triu(..., diagonal=1)), and mask before the softmax, not after it.")
    for wrong, message in _MISTAKES:
        if close(out, wrong(q, k, v), atol=1e-4):
            raise Mistake(message)
    # Two mistakes at once match no single variant: test the properties one by one.
    later = [t.clone() for t in (q, k, v)]
    for t in later:
        t[:, -1] += 3.0                                       # change only the last position
    moved = (call(attend, *later)[:, :-1] - out[:, :-1]).abs().max().item()
    expect(moved < 1e-4, f"the future leaks into the past: changing only the last position moved the "
                         f"outputs of earlier positions by up to {moved:.3f}. Check the mask (-inf above the "
                         f"diagonal, before the softmax) and the softmax axis (dim=-1).")
    expect(close(out[:, 0], v[:, 0], atol=1e-4),
           "position 0 can only see itself, so its output must be exactly v[:, 0] (one weight of 1). "
           "Check that the weights of each row sum to 1 and that they multiply v.")
    diff = (out - reference_causal_attention(q, k, v)).abs().max().item()
    raise Mistake(f"the mask works, but the values differ from the right ones by up to {diff:.3f}. Check the "
                  "scale (divide the scores by math.sqrt(q.size(-1))) and the softmax axis (dim=-1).")


@grader("causal self-attention (one head)")
def grade_causal_attention(attend):
    """attend(q, k, v) with q, k, v of shape (B, T, D) must return (B, T, D)."""
    for n, shape in enumerate([(2, 5, 8), (1, 7, 4), (3, 1, 6)]):
        q, k, v = _case(shape, seed=n)
        originals = [t.clone() for t in (q, k, v)]
        out = call(attend, q, k, v)
        expect(isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}.")
        B, T, D = shape
        expect(tuple(out.shape) != (B, T, T) or T == D,
               f"you returned the attention weights, shape (B, T, T) = {(B, T, T)}: return weights @ v, "
               f"shape (B, T, D) = {(B, T, D)}.")
        expect(tuple(out.shape) == shape,
               f"for q, k, v of shape {shape} the output has shape {tuple(out.shape)}; expected {shape} "
               f"(one output vector of size D per position).")
        expect(all(torch.equal(a, b) for a, b in zip((q, k, v), originals)),
               "your function changed q, k or v in place (a method ending in _ such as masked_fill_ on an "
               "input?): work on new tensors instead.")
        if not close(out, reference_causal_attention(q, k, v), atol=1e-4):
            if n > 0:
                first = _case((2, 5, 8), seed=0)
                if close(call(attend, *first), reference_causal_attention(*first), atol=1e-4):
                    raise Mistake(f"right for inputs of shape (2, 5, 8) but not for {shape}: is a size hard-coded? "
                                  "Read B, T, D from q.shape.")
            _diagnose(attend, q, k, v, out)
    return "checked on 3 input shapes"

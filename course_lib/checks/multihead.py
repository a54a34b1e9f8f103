"""Graders for notebook 04 (multi-head attention): splitting into heads and merging them back.

    multi_head_attention(q, k, v, n_head) -> out
        q, k, v: (B, T, C) queries, keys and values of all heads side by side
        out:     (B, T, C) head h owns channels h*D .. (h+1)*D - 1 (D = C // n_head) of q, k, v
                 and writes the same channels of the output

The right answer views (B, T, C) as (B, T, H, D), moves the head axis next to the batch axis
(transpose(1, 2) -> (B, H, T, D)), runs causal attention on every head at once, and undoes the
two steps. The classic mistakes (a reshape to (B, H, T, D) without the transpose, which mixes
positions and heads; a merge without the transpose back; head size and head count swapped; one
big head; scores scaled by sqrt(C) instead of sqrt(D); no mask) are recognised by their outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .grading import Mistake, call, close, expect, grader

__all__ = ["grade_multi_head_attention", "reference_multi_head_attention"]


def _attend(q, k, v, scale: float | None = None, causal: bool = True):
    """Causal attention over the last two axes of (..., T, D) tensors."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(q.size(-1)))
    if causal:
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), float("-inf"))
    return F.softmax(scores, dim=-1) @ v


def _split(t, n_head):           # (B, T, C) -> (B, H, T, D)
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


def _merge(y):                   # (B, H, T, D) -> (B, T, C)
    B, H, T, D = y.shape
    return y.transpose(1, 2).reshape(B, T, H * D)


def reference_multi_head_attention(q, k, v, n_head: int) -> torch.Tensor:
    """The right answer: (B, T, C) x 3 -> (B, T, C)."""
    return _merge(_attend(_split(q, n_head), _split(k, n_head), _split(v, n_head)))


# The typical wrong versions, each with what to tell the student.
def _split_without_transpose(q, k, v, n_head):
    B, T, C = q.shape
    heads = [t.reshape(B, n_head, T, C // n_head) for t in (q, k, v)]
    return _merge(_attend(*heads))


def _split_and_merge_without_transpose(q, k, v, n_head):
    B, T, C = q.shape
    heads = [t.reshape(B, n_head, T, C // n_head) for t in (q, k, v)]
    return _attend(*heads).reshape(B, T, C)


def _merge_without_transpose(q, k, v, n_head):
    B, T, C = q.shape
    return _attend(_split(q, n_head), _split(k, n_head), _split(v, n_head)).reshape(B, T, C)


def _head_size_is_n_head(q, k, v, n_head):  # C // n_head heads of size n_head
    return reference_multi_head_attention(q, k, v, q.size(-1) // n_head)


def _interleaved_heads(q, k, v, n_head):  # head h takes channels h, h + H, h + 2H, ...
    B, T, C = q.shape
    split = [t.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2) for t in (q, k, v)]  # (B, H, T, D)
    return _attend(*split).permute(0, 2, 3, 1).reshape(B, T, C)


def _one_big_head(q, k, v, n_head):
    return _attend(q, k, v)


def _scaled_by_sqrt_c(q, k, v, n_head):
    scale = 1 / math.sqrt(q.size(-1))
    return _merge(_attend(_split(q, n_head), _split(k, n_head), _split(v, n_head), scale=scale))


def _no_mask(q, k, v, n_head):
    return _merge(_attend(_split(q, n_head), _split(k, n_head), _split(v, n_head), causal=False))


_MISTAKES = [
    (_split_without_transpose,
     "the heads are not split correctly: q.view(B, n_head, T, D) (or reshape) reads the (B, T, C) numbers in "
     "memory order, so each 'head' gets pieces of several positions. View as (B, T, n_head, D) first, "
     "then .transpose(1, 2) to get (B, n_head, T, D)."),
    (_split_and_merge_without_transpose,
     "the heads are split and merged with plain reshapes (B, T, C) <-> (B, n_head, T, D): that mixes positions "
     "and heads (the future even leaks into the past). Split with .view(B, T, n_head, D).transpose(1, 2) "
     "and merge with .transpose(1, 2).reshape(B, T, C)."),
    (_merge_without_transpose,
     "the split is right but the merge is not: y.reshape(B, T, C) on (B, n_head, T, D) puts the heads' numbers "
     "at the wrong positions. First .transpose(1, 2) back to (B, T, n_head, D), then .reshape(B, T, C)."),
    (_head_size_is_n_head,
     "the head count and the head size are swapped: you made C // n_head heads of size n_head. There are "
     "n_head heads, each of size D = C // n_head: view(B, T, n_head, D)."),
    (_interleaved_heads,
     "head h takes every n_head-th channel (view(B, T, D, n_head)): head h must own the D neighbouring "
     "channels h*D .. (h+1)*D - 1, so view(B, T, n_head, D)."),
    (_one_big_head,
     "this is one head of size C: n_head was ignored. Split q, k and v into n_head heads of size C // n_head."),
    (_scaled_by_sqrt_c,
     "the scores were divided by sqrt(C); each head's scores must be divided by the square root of its own "
     "size, sqrt(D) = sqrt(C // n_head) (F.scaled_dot_product_attention does this for you)."),
    (_no_mask,
     "the future leaks into the past: every head must be causal (is_causal=True in "
     "F.scaled_dot_product_attention, or -inf above the diagonal)."),
]


def _case(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(1.5 * torch.randn(*shape, generator=g) for _ in range(3))


@grader("multi-head attention: split into heads, attend, merge")
def grade_multi_head_attention(multi_head):
    """multi_head(q, k, v, n_head) with q, k, v of shape (B, T, C) must return (B, T, C)."""
    # C = 12 with 3 heads of 4: heads/size swapped (4 heads of 3) differs from the right answer.
    for n, (shape, n_head) in enumerate([((2, 5, 12), 3), ((1, 6, 8), 2), ((2, 4, 6), 1)]):
        q, k, v = _case(shape, seed=n)
        out = call(multi_head, q, k, v, n_head)
        expect(isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}.")
        B, T, C = shape
        D = C // n_head
        expect(tuple(out.shape) != (B, n_head, T, D) or n_head == 1,
               f"the output has shape (B, n_head, T, D) = {(B, n_head, T, D)}: merge the heads again, "
               f".transpose(1, 2) then .reshape(B, T, C).")
        expect(tuple(out.shape) == shape, f"for q, k, v of shape {shape} with n_head={n_head} the output has shape "
                                          f"{tuple(out.shape)}; expected {shape}.")
        if close(out, reference_multi_head_attention(q, k, v, n_head), atol=1e-4):
            continue
        for wrong, message in _MISTAKES:
            if close(out, wrong(q, k, v, n_head), atol=1e-4):
                raise Mistake(message)
        diff = (out - reference_multi_head_attention(q, k, v, n_head)).abs().max().item()
        hint = (" (right for n_head=3 on (2, 5, 12): is a size hard-coded? Read B, T, C from q.shape.)"
                if n > 0 else "")
        raise Mistake(f"for shape {shape} with n_head={n_head} the output differs from the right one by up to "
                      f"{diff:.3f}{hint}. Split: view(B, T, n_head, D).transpose(1, 2); attend with a causal "
                      f"mask and scale 1/sqrt(D); merge: transpose(1, 2).reshape(B, T, C).")
    return "checked 3 shapes, with 3, 2 and 1 heads"

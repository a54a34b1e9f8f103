"""Exercise graders for notebooks 11 (fine-tuning) and 11b (task scores).

grade_masked_loss(completion_loss): the fine-tuning loss from a padded batch of token ids,

    def completion_loss(logits, ids, prompt_lens, lengths):
        # logits (B, T, V) = model(ids); ids (B, T) prompt + completion, right-padded;
        # prompt_lens (B,) prompt tokens per row; lengths (B,) real tokens per row
        # -> scalar: the mean over examples of each example's mean cross-entropy on its
        #    completion tokens ids[b, t] (prompt_lens[b] <= t < lengths[b]), each predicted
        #    by the logits at position t - 1

    compared with the variants that the usual slips compute: labels not shifted, prompt tokens
    counted, padding counted, the first completion token left out, a per-token mean instead of a
    per-example one.

grade_wilson_interval(wilson): the 95 % Wilson score interval, wilson(successes, n) -> (low, high),
    compared with the usual slips: the Wald interval p ± z·sqrt(p(1-p)/n), the Wilson width around
    p instead of the shifted centre, a missing z²/4n² term or 1/(1 + z²/n) factor, another z.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .grading import call, expect, grader

__all__ = ["grade_masked_loss", "grade_wilson_interval"]


# ----------------------------------------------------------------------------- the masked loss

def _loss_variant(logits, ids, prompt_lens, lengths, shift=True, first=None, last=None, per_example=True):
    """The loss under one rule for which positions count; first/last: which target positions
    (None: the right rule, prompt_lens <= t < lengths)."""
    B, T, V = logits.shape
    if shift:
        preds, targets, t = logits[:, :-1], ids[:, 1:], torch.arange(1, T)             # (B, T-1, V), (B, T-1)
    else:
        preds, targets, t = logits, ids, torch.arange(T)
    start = prompt_lens[:, None] if first is None else first[:, None]
    end = lengths[:, None] if last is None else last[:, None]
    mask = (t[None, :] >= start) & (t[None, :] < end)                                   # (B, T')
    nll = F.cross_entropy(preds.transpose(1, 2), targets, reduction="none")             # (B, T')
    if per_example:
        return ((nll * mask).sum(1) / mask.sum(1)).mean()
    return (nll * mask).sum() / mask.sum()


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T, V = 3, 10, 11
    prompt_lens = torch.tensor([3, 5, 2])
    lengths = torch.tensor([5, 10, 8])                # completions of 2, 5 and 6 tokens; rows 0 and 2 padded
    ids = torch.randint(V, (B, T), generator=g)
    for b in range(B):
        ids[b, lengths[b]:] = 0                       # padding id
    logits = torch.randn(B, T, V, generator=g) * 2
    return logits, ids, prompt_lens, lengths


@grader("the masked completion loss")
def grade_masked_loss(completion_loss):
    logits, ids, prompt_lens, lengths = _batch()
    snapshot = [t.clone() for t in (logits, ids, prompt_lens, lengths)]
    leaf = logits.clone().requires_grad_(True)
    out = call(completion_loss, leaf, ids, prompt_lens, lengths)
    expect(isinstance(out, torch.Tensor), f"return a tensor (computed from logits with torch operations, so "
                                          f"that backward() can run), not {type(out).__name__}")
    expect(out.dim() == 0, f"return one number for the batch (a 0-d tensor), not shape {tuple(out.shape)}: "
                           "average the per-example losses with .mean()")
    expect(all(torch.equal(a, b) for a, b in zip(snapshot, (logits, ids, prompt_lens, lengths))),
           "your function changed one of its inputs in place: compute on copies or new tensors")
    expect(out.requires_grad, "the loss does not depend on logits in a way autograd can follow: build it from "
                              "torch operations on logits (no .item(), .tolist() or .detach())")
    expect(math.isfinite(out.item()), f"the loss is {out.item()}: an example with no counted token divides by zero?")
    got = out.item()
    right = _loss_variant(logits, ids, prompt_lens, lengths).item()
    if abs(got - right) < 1e-4:
        return None
    one = torch.ones_like(prompt_lens)
    T = torch.full_like(lengths, ids.size(1))
    mistakes = [
        (dict(shift=False), "the labels are not shifted: the logits at position t predict the token at t + 1, so "
                            "compare logits[:, t - 1] with ids[:, t] (or logits[:, :-1] with ids[:, 1:])"),
        (dict(first=one, last=T), "every position counts, prompt and padding included: only the completion tokens "
                                  "(prompt_lens <= t < lengths) may count"),
        (dict(first=one), "the prompt tokens are counted: only targets at positions t >= prompt_lens count (the "
                          "model should learn to answer, not to write more prompts)"),
        (dict(last=T), "the padding is counted: targets at positions t >= lengths are padding, not text"),
        (dict(first=prompt_lens + 1), "the first completion token is left out: it sits at position prompt_lens and "
                                      "is predicted by the logits of the LAST PROMPT token (position prompt_lens - 1)"),
        (dict(last=lengths - 1), "the last completion token is left out: targets run up to lengths - 1 included"),
        (dict(per_example=False), "this is the mean over all completion tokens of the batch (per token): take each "
                                  "example's mean first, then the mean over examples, so a two-token answer weighs "
                                  "as much as a long reply"),
        (dict(shift=False, per_example=False), "the labels are not shifted, and the mean is per token instead of "
                                               "per example"),
    ]
    for variant, message in mistakes:
        if abs(got - _loss_variant(logits, ids, prompt_lens, lengths, **variant).item()) < 1e-4:
            expect(False, message)
    expect(False, f"the loss is {got:.4f}, expected {right:.4f} on the test batch: check which positions count "
                  "(prompt_lens <= t < lengths, predicted from t - 1) and the two means")


# ----------------------------------------------------------------------------- the Wilson interval

Z95 = 1.959964  # the 97.5th percentile of the standard normal distribution

# (successes, n): a middling accuracy, both edges, a small sample, a large one
_CASES = ((35, 80), (0, 10), (10, 10), (3, 20), (170, 200))


def _wilson(k, n, z=Z95, shift=True, small_term=True, shrink=True):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n) if shift else p
    spread = p * (1 - p) / n + (z * z / (4 * n * n) if small_term else 0.0)
    half = (z / (1 + z * z / n) if shrink else z) * math.sqrt(spread)
    return centre - half, centre + half


def _wald(k, n, z=Z95, clip=False):
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    low, high = p - half, p + half
    return (max(0.0, low), min(1.0, high)) if clip else (low, high)


def _same(pair, ref, tol=2e-3) -> bool:
    return abs(pair[0] - ref[0]) < tol and abs(pair[1] - ref[1]) < tol


@grader("the Wilson score interval")
def grade_wilson_interval(wilson):
    answers = {}
    for k, n in _CASES:
        out = call(wilson, k, n)
        expect(isinstance(out, (tuple, list)) and len(out) == 2, f"wilson({k}, {n}) should return two numbers "
                                                                  f"(low, high), got {out!r}")
        low, high = (float(v) for v in out)
        expect(math.isfinite(low) and math.isfinite(high), f"wilson({k}, {n}) returned ({low}, {high})")
        answers[k, n] = (low, high)
    if all(_same(answers[c], _wilson(*c)) for c in _CASES):
        return None
    if all(_same(answers[c][::-1], _wilson(*c)) for c in _CASES):
        expect(False, "the two ends are swapped: return (low, high), low first")
    for clip in (False, True):
        if all(_same(answers[c], _wald(*c, clip=clip)) for c in _CASES):
            expect(False, "this is the Wald interval p ± z·sqrt(p(1-p)/n): at 0 or n successes it has width 0 "
                          f"(wilson(0, 10) gave {answers[0, 10]}), claiming certainty from ten examples. Wilson's "
                          "centre moves towards 1/2 and its width has an extra z²/(4n²) term")
    slips = [(dict(shift=False), "the interval is centred on p = successes / n: Wilson's centre is "
                                 "(p + z²/(2n)) / (1 + z²/n), pulled towards 1/2"),
             (dict(small_term=False), "the z²/(4n²) term under the square root is missing (it keeps the interval "
                                      "from collapsing at 0 or n successes)"),
             (dict(shrink=False), "the half-width is missing its factor 1 / (1 + z²/n)")]
    for variant, message in slips:
        if all(_same(answers[c], _wilson(*c, **variant)) for c in _CASES):
            expect(False, message)
    for z, level in ((1.645, "90 %"), (2.576, "99 %"), (1.0, "68 %")):
        if all(_same(answers[c], _wilson(*c, z=z)) for c in _CASES):
            expect(False, f"z = {z} gives a {level} interval: for 95 % use z = 1.96")
    k, n = next(c for c in _CASES if not _same(answers[c], _wilson(*c)))
    low, high = _wilson(k, n)
    expect(False, f"wilson({k}, {n}) returned ({answers[k, n][0]:.4f}, {answers[k, n][1]:.4f}), expected "
                  f"({low:.4f}, {high:.4f})")

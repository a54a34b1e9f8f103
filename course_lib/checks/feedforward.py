"""Graders for notebook 05 (feed-forward): the per-position MLP, written by the student.

    MyFeedForward(n_embd) -> module;  module(x) with x (B, T, C) -> (B, T, C)
        Linear(C, 4C) -> GELU -> Linear(4C, C), applied to every position on its own

The checks, most telling first: the output shape; positions (or sequences of the batch) must
not mix; the weight matrices must be (4C, C) and (C, 4C); the block must not be linear (the
activation is what makes two layers more than one); and finally, with the student's own weights,
the output must equal Linear -> GELU -> Linear (either GELU: exact or GPT-2's tanh version).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .grading import Mistake, NotAttempted, call, close, expect, grader

__all__ = ["grade_feed_forward"]

C = 8          # the width the grader builds the student's module with
B, T = 2, 5


def _weights(module: nn.Module):
    """(fc weight (4C, C), fc bias or None, proj weight (C, 4C), proj bias or None) by shape."""
    by_shape: dict[tuple, list[torch.Tensor]] = {}
    for p in module.parameters():
        by_shape.setdefault(tuple(p.shape), []).append(p.detach())
    one = {shape: found[0] for shape, found in by_shape.items() if len(found) == 1}
    return one.get((4 * C, C)), one.get((4 * C,)), one.get((C, 4 * C)), one.get((C,))


@grader("feed-forward block (per-position MLP)")
def grade_feed_forward(make_block):
    """make_block(n_embd) -> nn.Module (a class or a function); module(x) maps (B, T, C) -> (B, T, C)."""
    try:
        module = make_block(C)
    except NotImplementedError as err:
        raise NotAttempted() from err
    expect(isinstance(module, nn.Module), f"{getattr(make_block, '__name__', 'your function')}({C}) should build "
                                          f"an nn.Module, got a {type(module).__name__}.")
    module.eval()  # a dropout layer, if any, must not make the checks random
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, C, generator=g)
    with torch.no_grad():
        out = call(module, x)
        expect(isinstance(out, torch.Tensor), f"forward should return a tensor, not a {type(out).__name__}.")
        expect(tuple(out.shape) == (B, T, C), f"for x of shape (B, T, C) = {(B, T, C)} the output has shape "
                                              f"{tuple(out.shape)}; it must have the input's shape.")
        expect(close(call(module, x), out), "two calls on the same input gave different outputs: create the "
                                            "layers once in __init__ (self.fc = nn.Linear(...)), not in forward.")

        # 1. Positions must not mix: change one position, only its output may move.
        nudged = x.clone()
        nudged[:, 2] += 1.0
        moved = ((call(module, nudged) - out).abs().amax(dim=(0, 2)) > 1e-5).nonzero().flatten().tolist()
        expect(moved == [2], f"changing position 2 moved the outputs at positions {moved}: the MLP must treat "
                             "each position on its own (nn.Linear acts on the last axis only; never reshape "
                             "(B, T, C) into (B, T * C) and never mix along T).")
        alone = torch.stack([call(module, x[b:b + 1, t:t + 1])[0, 0] for b in range(B) for t in range(T)])
        expect(close(alone.view(B, T, C), out, atol=1e-5),
               "a position run on its own gives a different output than inside the batch: the MLP must not "
               "use the other positions or sequences (no mean or norm over the batch or over T).")

        # 2. The widths: C -> 4C -> C.
        matrices = sorted(tuple(p.shape) for p in module.parameters() if p.dim() == 2)
        expect(matrices, "the module has no weight matrices: create the two nn.Linear layers in __init__ and "
                         "assign them to self, so PyTorch registers (and trains) them.")
        expect(matrices != [(C, C), (C, C)], f"both weight matrices are (C, C) = {(C, C)}: the hidden layer "
                                             "must be 4 times wider, Linear(C, 4 * C) then Linear(4 * C, C).")
        expect(sorted(matrices) == sorted([(4 * C, C), (C, 4 * C)]),
               f"with C = {C} the weight matrices have shapes {matrices}; expected Linear(C, 4C) with weight "
               f"{(4 * C, C)} and Linear(4C, C) with weight {(C, 4 * C)}.")

        # 3. Non-linear: an affine map f satisfies f((a + b) / 2) = (f(a) + f(b)) / 2.
        y = torch.randn(B, T, C, generator=g)
        gap = (call(module, (x + y) / 2) - (out + call(module, y)) / 2).abs().max().item()
        expect(gap > 1e-4, "the block is linear: with no activation between them, the two layers collapse into "
                           "one matrix (W2 @ W1) and add nothing. Put nn.GELU() between them.")

        # 4. With the student's own weights: proj(GELU(fc(x))).
        w1, b1, w2, b2 = _weights(module)
        hidden = F.linear(x, w1, b1)                                            # (B, T, 4C)
        candidates = {name: F.linear(act(hidden), w2, b2) for name, act in (
            ("GELU (tanh)", lambda h: F.gelu(h, approximate="tanh")), ("GELU", F.gelu), ("ReLU", F.relu),
            ("sigmoid", torch.sigmoid), ("tanh", torch.tanh))}
    match = next((name for name, expected in candidates.items() if close(out, expected, atol=1e-4)), None)
    if match in ("GELU (tanh)", "GELU"):
        return f"Linear({C}, {4 * C}) -> {match} -> Linear({4 * C}, {C}), positions kept apart"
    if match is not None:
        raise Mistake(f"the structure is right but the activation is {match}: use GPT-2's GELU, "
                      "nn.GELU(approximate='tanh') (or the exact nn.GELU()).")
    raise Mistake("the output is not proj(GELU(fc(x))) for your own weights: the order must be "
                  "Linear(C, 4C), then GELU, then Linear(4C, C), with nothing else in between "
                  "(no activation after the last layer, no extra layers).")

"""Exercise graders for notebook 06 (residual connections).

grade_residual_block(residual_block): the student writes the forward pass of one residual block
from its pieces,

    def residual_block(x, heads, proj, mlp):   # x (B, T, C) -> (B, T, C)
        heads(x): the attention heads' outputs side by side (B, T, C), not yet projected
        proj:     the attention output projection, nn.Linear(C, C)
        mlp:      the feed-forward sub-layer, (B, T, C) -> (B, T, C)

The grader probes it with sub-layers switched off (they return zeros): with everything off a
residual block must hand its input through unchanged, which tells "forgot to add the input
back" (output 0) from "added it twice" (output 2x) at once. Then it switches the pieces on one
by one, so each mistake (projection skipped, MLP reading the wrong tensor) shows on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from .grading import call, close, expect, grader

__all__ = ["grade_residual_block"]


def _pieces(C: int, seed: int):
    """Stand-ins for the block's sub-layers with fixed random weights: any (B, T, C) -> (B, T, C)
    functions serve, the residual wiring around them is what is graded."""
    g = torch.Generator().manual_seed(seed)
    w_heads = torch.randn(C, C, generator=g) / C ** 0.5

    def heads(x):  # a fixed nonlinear map standing in for the attention heads (B, T, C)
        return torch.tanh(x @ w_heads.T)

    proj = nn.Linear(C, C, bias=False)
    mlp = nn.Sequential(nn.Linear(C, 4 * C, bias=False), nn.GELU(), nn.Linear(4 * C, C, bias=False))
    with torch.no_grad():
        for layer in (proj, mlp[0], mlp[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.in_features ** 0.5)
    return heads, proj, mlp


def _zero_proj(C: int) -> nn.Linear:
    proj = nn.Linear(C, C, bias=False)
    nn.init.zeros_(proj.weight)
    return proj


def _zeros(x):
    return torch.zeros_like(x)


@grader("residual block")
@torch.no_grad()
def grade_residual_block(residual_block):
    B, T, C = 2, 5, 8
    heads, proj, mlp = _pieces(C, seed=0)
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(1)) + 0.5  # (B, T, C)

    def run(h, p, m):
        out = call(residual_block, x.clone(), h, p, m)  # a clone: an in-place `x +=` cannot touch ours
        expect(isinstance(out, torch.Tensor), f"return a tensor, not {type(out).__name__}")
        expect(tuple(out.shape) == (B, T, C), f"wrong shape: {tuple(out.shape)}, expected (B, T, C) = "
                                              f"{(B, T, C)}; a block never changes the shape of the stream")
        return out

    run(heads, proj, mlp)  # shape first, on the real pieces
    # 1. Every sub-layer switched off: a residual block must return its input unchanged.
    off = run(_zeros, _zero_proj(C), _zeros)
    expect(not close(off, torch.zeros_like(x)),
           "with both sub-layers returning 0 your block returns 0: the input is not added back. A residual "
           "block adds each sub-layer's output to the stream, x = x + f(x), instead of replacing it, x = f(x)")
    for k in (2, 3, 4):
        expect(not close(off, k * x), f"with both sub-layers returning 0 your block returns {k} * x: the input "
               "is added more than once. Each sub-layer adds its edit once: x = x + attn(x), then x = x + mlp(x) "
               "(the x on the right already holds the input)")
    expect(close(off, x), "with both sub-layers returning 0 the block must return its input x unchanged "
                          "(x + 0 + 0)")
    # 2. Only the attention heads on, projection off: attention's edit must go through proj.
    out = run(heads, _zero_proj(C), _zeros)
    expect(not close(out, x + heads(x)), "the heads' output is added to the stream without the projection: "
           "attention's edit is proj(heads(x)), so x = x + proj(heads(x))")
    expect(close(out, x), "with the projection's weights at 0, attention adds nothing: the output should "
                          "be x. Does the heads' output reach the stream without passing through proj?")
    # 3. Attention with its projection, MLP off.
    attn = x + proj(heads(x))
    out = run(heads, proj, _zeros)
    expect(not close(out, proj(heads(x))), "attention's edit replaces the stream: add it, x = x + proj(heads(x))")
    expect(not close(out, x + heads(proj(x))), "proj is applied before the heads: it goes after them, "
                                               "proj(heads(x))")
    expect(close(out, attn), "with the MLP returning 0 the output should be x + proj(heads(x))")
    # 4. Everything on: the MLP reads the stream after attention's edit.
    out = run(heads, proj, mlp)
    expect(not close(out, attn + mlp(x)), "the MLP reads the block's input x; it must read the stream after "
           "attention's edit, x + proj(heads(x)) (the two sub-layers run one after the other)")
    expect(not close(out, attn + mlp(proj(heads(x)))), "the MLP reads only attention's edit; it must read the "
           "whole stream, x + proj(heads(x))")
    expect(not close(out, mlp(attn)), "the MLP's output replaces the stream: add it, x = x + mlp(x)")
    expect(close(out, attn + mlp(attn)), "the output differs from x1 + mlp(x1) with x1 = x + proj(heads(x)) by "
           f"up to {(out - attn - mlp(attn)).abs().max():.2e}")

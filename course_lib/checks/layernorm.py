"""Exercise graders for notebook 07 (LayerNorm).

grade_layernorm(layer_norm): the student writes LayerNorm as a function,

    def layer_norm(x, weight, bias, eps=1e-5):   # x (..., C); weight, bias (C,) -> (..., C)

and the grader compares it with torch.nn.functional.layer_norm. When they differ it tries the
usual mistakes one by one (statistics over the wrong axis, the unbiased variance, the gain or
the shift left out, eps missing or outside the square root) and names the first that matches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .grading import call, close, expect, grader

__all__ = ["grade_layernorm"]


def _normalise(x, dims, unbiased=False, eps=1e-5, eps_inside=True):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    if eps_inside:
        return (x - mean) / torch.sqrt(var + eps)
    return (x - mean) / (torch.sqrt(var) + eps)


@grader("LayerNorm")
@torch.no_grad()
def grade_layernorm(layer_norm):
    g = torch.Generator().manual_seed(0)
    B, T, C = 3, 4, 8
    # rows with different means and scales, so that every normalisation axis gives a different answer
    x = torch.randn(B, T, C, generator=g) * torch.linspace(0.5, 4.0, T)[:, None] + torch.arange(B)[:, None, None]
    weight = 1 + 0.5 * torch.randn(C, generator=g)
    bias = 0.5 * torch.randn(C, generator=g)
    eps = 1e-5

    def run(inp, w, b, e):
        out = call(layer_norm, inp.clone(), w.clone(), b.clone(), e)
        expect(isinstance(out, torch.Tensor), f"return a tensor, not {type(out).__name__}")
        expect(tuple(out.shape) == tuple(inp.shape),
               f"wrong shape: {tuple(out.shape)}, expected {tuple(inp.shape)} (LayerNorm keeps the shape)")
        return out

    out = run(x, weight, bias, eps)
    reference = F.layer_norm(x, (C,), weight, bias, eps)
    if not close(out, reference, atol=1e-3):  # loose: a missing eps is graded on quiet rows below
        expect(torch.isfinite(out).all(), "the output contains NaN or inf")
        last = _normalise(x, -1)
        for dims, where in ((0, "the batch axis (dim 0)"), (1, "the time axis (dim 1)"),
                            ((0, 1, 2), "all the numbers of the tensor at once"), ((1, 2), "time and channels")):
            expect(not close(out, _normalise(x, dims) * weight + bias, atol=1e-4),
                   f"normalised over the wrong axis: your statistics are taken over {where}. LayerNorm takes "
                   "the mean and the variance over the last axis, the C channels of one position: "
                   "x.mean(dim=-1, keepdim=True)")
        expect(not close(out, _normalise(x, -1, unbiased=True) * weight + bias, atol=1e-4),
               "the variance divides by C - 1 (torch's default unbiased estimate): LayerNorm divides by C, "
               "x.var(dim=-1, keepdim=True, unbiased=False)")
        expect(not close(out, last, atol=1e-4), "the gain (weight) and the shift (bias) are not applied: "
                                                "return x_hat * weight + bias")
        expect(not close(out, last + bias, atol=1e-4), "the gain (weight) is not applied: x_hat * weight + bias")
        expect(not close(out, last * weight, atol=1e-4), "the shift (bias) is not added: x_hat * weight + bias")
        expect(not close(out, (x - x.mean(-1, keepdim=True)) * weight + bias, atol=1e-4),
               "the mean is subtracted but nothing divides by the standard deviation sqrt(var + eps)")
        expect(False, f"the output differs from LayerNorm's by up to {(out - reference).abs().max():.2e}")

    # eps matters only where a row's variance is tiny: a constant row (variance 0) and quiet rows.
    quiet = torch.randn(2, C, generator=g) * 1e-3 + 1.0                    # std 1e-3, variance 1e-6
    quiet = torch.cat([quiet, torch.full((1, C), 2.5)])                    # (3, C), the last row constant
    out = run(quiet, weight, bias, eps)
    expect(torch.isfinite(out).all(), "a row whose C values are all equal gives NaN: its variance is 0 and "
           "(x - mean) / sqrt(var) divides 0 by 0. Add eps inside the square root: sqrt(var + eps)")
    expect(not close(out, _normalise(quiet, -1, eps=0.0) * weight + bias, atol=1e-3),
           "eps is missing: the result should be (x - mean) / sqrt(var + eps), which differs from dividing "
           "by sqrt(var) when a row's variance is close to eps")
    expect(not close(out, _normalise(quiet, -1, eps_inside=False) * weight + bias, atol=1e-3),
           "eps is added outside the square root: LayerNorm divides by sqrt(var + eps), not sqrt(var) + eps")
    expect(close(out, F.layer_norm(quiet, (C,), weight, bias, eps), atol=1e-4),
           "rows with a tiny variance come out wrong: check (x - mean) / sqrt(var + eps)")
    out = run(quiet, weight, bias, 1e-2)
    expect(close(out, F.layer_norm(quiet, (C,), weight, bias, 1e-2), atol=1e-4),
           "the eps argument is ignored (called with eps=1e-2, the result is the one of another eps): use "
           "the eps you are given")

"""Measuring what happens inside a model: gradient norms per block (notebook 06) and activation
statistics per block (notebook 07). Both use forward hooks, so the model code stays unchanged."""

from __future__ import annotations

import torch

from .training import lm_loss


def gradient_norms_per_block(model, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """One forward/backward pass; returns the gradient norm of each block's parameters, first
    block first. Vanishing gradients show up as norms that shrink towards the input."""
    model.zero_grad(set_to_none=True)
    lm_loss(model(x), y).backward()
    norms = []
    for block in model.blocks:
        grads = [p.grad.norm() ** 2 for p in block.parameters() if p.grad is not None]
        norms.append(torch.stack(grads).sum().sqrt().item() if grads else 0.0)
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def activation_stats_per_block(model, x: torch.Tensor) -> list[dict]:
    """Mean and standard deviation of each block's output (over batch, time and channels)."""
    stats, hooks = [], []
    for i, block in enumerate(model.blocks):
        def hook(_module, _inputs, out, i=i):
            stats.append({"block": i, "mean": out.mean().item(), "std": out.std().item()})
        hooks.append(block.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return stats

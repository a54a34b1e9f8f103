"""Causal self-attention: every position mixes information from itself and earlier positions.

Shapes (B = batch, T = time/positions, C = n_embd, H = heads, D = head size = C // H):

    x (B, T, C) -> q, k, v (B, H, T, D) -> scores q @ k^T / sqrt(D) (B, H, T, T)
      -> mask the future (upper triangle) with -inf -> softmax over the last axis -> @ v (B, H, T, D)
      -> heads side by side (B, T, C) -> optional output projection (B, T, C)

Two paths compute the same thing:
    "manual": the maths written out, so a student can read it and we can look at the weights;
    "sdpa":   torch's fused scaled_dot_product_attention (flash / memory-efficient kernels),
              faster and lighter on memory. Notebook 03 shows the two agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(T, T) boolean, True where attention is allowed: position t sees positions 0..t."""
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int = 1, block_size: int = 256, dropout: float = 0.0,
                 bias: bool = False, proj: bool = True, impl: str = "sdpa"):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}).")
        if impl not in ("sdpa", "manual"):
            raise ValueError(f"impl must be 'sdpa' or 'manual', not {impl!r}.")
        self.n_head, self.head_size, self.impl, self.dropout = n_head, n_embd // n_head, impl, dropout
        # One matmul computes queries, keys and values of every head at once: (C) -> (3C).
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        # The projection mixes the heads' outputs back into the residual stream (milestone 06 on).
        self.proj = nn.Linear(n_embd, n_embd, bias=bias) if proj else nn.Identity()
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        # Built once, moved with the module, never saved in checkpoints.
        self.register_buffer("mask", causal_mask(block_size), persistent=False)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                 # 3 x (B, T, C)
        shape = (B, T, self.n_head, self.head_size)
        return tuple(t.view(shape).transpose(1, 2) for t in (q, k, v))       # 3 x (B, H, T, D)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, H, T, T) attention pattern: row t = how much position t takes from each position."""
        q, k, _ = self.split_heads(x)
        T = x.size(1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)        # (B, H, T, T)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))      # no peeking ahead
        return F.softmax(scores, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        if self.impl == "manual":
            _, _, v = self.split_heads(x)
            att = self.attn_dropout(self.attention_weights(x))             # (B, H, T, T)
            y = att @ v                                                     # (B, H, T, D)
        else:
            q, k, v = self.split_heads(x)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                    # heads side by side
        return self.resid_dropout(self.proj(y))

    @torch.no_grad()
    def load_heads(self, heads) -> None:
        """Copy the weights of a list of single heads (each with .query, .key, .value Linear(C, D))
        into the fused qkv layer: head h occupies rows h*D:(h+1)*D of the q, k and v blocks."""
        C = self.qkv.in_features
        if len(heads) != self.n_head:
            raise ValueError(f"Expected {self.n_head} heads, got {len(heads)}.")
        for part, name in enumerate(("query", "key", "value")):
            for h, head in enumerate(heads):
                rows = slice(part * C + h * self.head_size, part * C + (h + 1) * self.head_size)
                self.qkv.weight[rows] = getattr(head, name).weight

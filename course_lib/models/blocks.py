"""The pieces a transformer block is made of, each switchable so the notebooks can add one idea
at a time: feed-forward (05), residual connections with projections (06), LayerNorm (07),
dropout (08).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import CausalSelfAttention


class FeedForward(nn.Module):
    """Per-position MLP: (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C). Positions do not mix here;
    attention gathers information, the MLP thinks about it, one position at a time."""

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = False, hidden_mult: int = 4):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden_mult * n_embd, bias=bias)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.proj = nn.Linear(hidden_mult * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """attention, then (optionally) feed-forward; with residual=True each adds to the stream
    x = x + f(norm(x)) ("pre-norm", as in GPT-2) instead of replacing it x = f(x)."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0, bias: bool = False,
                 ffn: bool = True, residual: bool = True, layernorm: bool = True, attn_proj: bool = True,
                 attn_impl: str = "sdpa"):
        super().__init__()
        self.residual = residual
        self.ln1 = nn.LayerNorm(n_embd, bias=bias) if layernorm else nn.Identity()
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, dropout, bias, attn_proj, attn_impl)
        self.ln2 = nn.LayerNorm(n_embd, bias=bias) if layernorm and ffn else nn.Identity()
        self.ffn = FeedForward(n_embd, dropout, bias) if ffn else None

    def forward(self, x: torch.Tensor, cache=None, layer: int = 0) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        if self.residual:
            x = x + self.attn(self.ln1(x), cache, layer)
            if self.ffn is not None:
                x = x + self.ffn(self.ln2(x))
            return x
        x = self.attn(self.ln1(x), cache, layer)
        return self.ffn(self.ln2(x)) if self.ffn is not None else x

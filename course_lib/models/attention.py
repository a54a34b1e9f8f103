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

    def forward(self, x: torch.Tensor, cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.split_heads(x)                                       # 3 x (B, H, T, D)
        past = 0
        if cache is not None:
            # Generation: keys/values of earlier tokens are kept, so only the new tokens are computed.
            k, v, past = cache.extend(layer, k, v)                          # (B, H, past + T, D)
        if self.impl == "manual":
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)   # (B, H, T, past + T)
            scores = scores.masked_fill(~self.mask[past:past + T, :past + T], float("-inf"))
            y = self.attn_dropout(F.softmax(scores, dim=-1)) @ v            # (B, H, T, D)
        else:
            dropout_p = self.dropout if self.training else 0.0
            if past == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
            else:  # the new queries sit at positions past..past+T-1 and may see every key up to themselves
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask[past:past + T, :past + T],
                                                   dropout_p=dropout_p)
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


class KVCache:
    """Keys and values of every layer for the tokens processed so far (one entry per layer).

    Without a cache, generating token t recomputes attention inputs for all t previous tokens;
    with it, each step computes them for the one new token and reuses the rest: O(T) instead of
    O(T^2) work for a sequence.
    """

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    @property
    def length(self) -> int:
        return 0 if self.layers[0] is None else self.layers[0][0].size(2)

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append this step's (B, H, T, D) keys/values; return all of them and the old length."""
        past = 0
        if self.layers[layer] is not None:
            old_k, old_v = self.layers[layer]
            past = old_k.size(2)
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.layers[layer] = (k, v)
        return k, v, past

"""The bigram language model: the next character depends only on the current one.

The whole model is one table of vocab_size x vocab_size numbers: row i holds the logits for
"which character follows character i". It has no context at all, which is exactly why every
later milestone can beat it.
"""

from __future__ import annotations

import torch
from torch import nn


class BigramLM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.block_size = 1  # it only ever looks at the last token
        self.table = nn.Embedding(vocab_size, vocab_size)  # (V, V): row = current token
        # Small random logits => near-uniform predictions => initial loss close to ln(V).
        # (nn.Embedding's default N(0, 1) would start the model confidently wrong, loss > ln V.)
        nn.init.normal_(self.table.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)  # (B, T) -> (B, T, V)

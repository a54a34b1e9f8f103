"""A GPT assembled from a config dataclass. Every character milestone 03-08 is this one class
with one more switch turned on, and notebook 10's GPT-2 is the same class at GPT-2's sizes.

    ids (B, T) -> token embedding (B, T, C) + position embedding (T, C)
               -> n_layer x Block -> final LayerNorm -> lm_head -> logits (B, T, V)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .attention import KVCache
from .blocks import Block


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64          # longest context the model can see (T_max)
    n_embd: int = 64              # C: width of the residual stream
    n_head: int = 4
    n_layer: int = 4
    dropout: float = 0.0
    bias: bool = False            # GPT-2 uses biases; small models train as well without
    ffn: bool = True              # milestone 05
    residual: bool = True         # milestone 06 (with projections)
    layernorm: bool = True        # milestone 07 (pre-norm blocks + final norm)
    tie_weights: bool = False     # share token embedding and lm_head (GPT-2 does)
    attn_impl: str = "sdpa"       # or "manual" (same maths, written out)
    # GPU speed only: make the embedding / output matrices this many rows (a multiple of 64,
    # e.g. 50,304 for GPT-2's 50,257) so their matmuls hit fast kernel shapes. The extra rows
    # are never an input, and their logits are cut off before anything sees them: no loss, no
    # sampling, the same vocab_size outside. None: no padding.
    padded_vocab_size: int | None = None

    def __post_init__(self):
        if self.padded_vocab_size is not None and self.padded_vocab_size < self.vocab_size:
            raise ValueError(f"padded_vocab_size ({self.padded_vocab_size}) must be at least vocab_size "
                             f"({self.vocab_size}).")

    def as_dict(self) -> dict:
        return asdict(self)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.vocab_size, self.block_size = config.vocab_size, config.block_size
        rows = config.padded_vocab_size or config.vocab_size  # = vocab_size unless padded for speed
        self.tok_emb = nn.Embedding(rows, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.block_size, config.dropout, config.bias, config.ffn,
                  config.residual, config.layernorm, attn_proj=config.residual, attn_impl=config.attn_impl)
            for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias) if config.layernorm else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, rows, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one (V, C) matrix reads and writes tokens
        self.register_buffer("positions", torch.arange(config.block_size), persistent=False)
        self.apply(self._init_weights)
        # GPT-2: the projections that write into the residual stream get std 0.02 / sqrt(2 * n_layer),
        # so the stream's variance does not grow with depth (each block adds two such writes).
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("ffn.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, include_position: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # tied weights are counted once
        return n if include_position else n - self.pos_emb.weight.numel()

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.logits(self.hidden_states(idx, cache))                       # (B, T, V)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer: states (..., C) -> logits (..., V). With a padded vocabulary the
        padding rows' logits are dropped here, so they are never sampled or scored."""
        out = self.lm_head(h)
        return out if out.size(-1) == self.vocab_size else out[..., :self.vocab_size]

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Everything but the output layer: ids (B, T) -> final-normed states (B, T, C).

        Fine-tuning uses it to apply lm_head only where a loss is taken: with GPT-2's 50,257-way
        output layer, the logits cost more than all the blocks of a small model together."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0  # position of the first new token
        if start + T > self.block_size:
            raise ValueError(f"Sequence length {start + T} exceeds the model's block_size {self.block_size}; "
                             "crop the input to the last block_size tokens (generate() does this).")
        x = self.drop(self.tok_emb(idx) + self.pos_emb(self.positions[start:start + T]))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.ln_f(x)                                                   # (B, T, C)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every block for these ids: a list of (B, H, T, T), one per layer."""
        was_training = self.training
        self.eval()
        T = idx.size(1)
        x = self.tok_emb(idx) + self.pos_emb(self.positions[:T])
        maps = []
        for block in self.blocks:
            maps.append(block.attn.attention_weights(block.ln1(x)))
            x = block(x)
        self.train(was_training)
        return maps

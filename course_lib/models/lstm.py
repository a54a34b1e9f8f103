"""A word-level LSTM language model with the regularisers of Merity, Keskar & Socher (2017),
"Regularizing and Optimizing LSTM Language Models", each one a switch in LSTMConfig.

    ids (B, T) -> embedding (B, T, E) -> n_layers x LSTM (B, T, H) -> decoder -> logits (B, T, V)

Unlike the GPT, the model carries a **hidden state** from one call to the next: for every layer
a short-term state h and a cell state c, each (n_layers, B, H). forward returns the new state,
and the caller passes it back in with the next window of text.

The switches:
    tie_weights     the decoder reuses the embedding matrix (needs emb_size == hidden_size)
    embed_dropout   drop whole words: zero random ROWS of the embedding matrix (then rescale)
    dropout         dropout on the LSTM's input, between layers and on its output
    locked_dropout  True: one dropout mask per sequence, the same at every time step
                    ("variational"); False: a fresh mask at every position (ordinary dropout)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

Hidden = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layers, B, H)


@dataclass
class LSTMConfig:
    vocab_size: int
    emb_size: int = 256
    hidden_size: int = 256
    n_layers: int = 2
    dropout: float = 0.0
    embed_dropout: float = 0.0
    locked_dropout: bool = True
    tie_weights: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "emb_size", "hidden_size", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LSTMConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("dropout", "embed_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"LSTMConfig.{name} must be in [0, 1), got {value!r}.")
        if self.tie_weights and self.emb_size != self.hidden_size:
            raise ValueError(
                f"tie_weights=True needs emb_size == hidden_size (the decoder reuses the (V, emb_size) "
                f"embedding matrix on (.., hidden_size) LSTM outputs), got emb_size={self.emb_size}, "
                f"hidden_size={self.hidden_size}. Make them equal or set tie_weights=False."
            )

    def as_dict(self) -> dict:
        return asdict(self)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Same values, no history: gradients of the next window stop here (truncated BPTT)."""
    return tuple(h.detach() for h in hidden)


def locked_dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """One mask per sequence and feature, shared by every time step: x (B, T, C) -> mask (B, 1, C).

    Kept units are scaled by 1 / (1 - p) so the expected activation is unchanged."""
    keep = 1.0 - p
    return x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(keep) / keep


def embedding_dropout_weight(weight: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole rows (words) of the (V, E) embedding matrix, scale the kept rows by 1 / (1 - p).

    A dropped word is dropped at every position of the batch: the model must cope with a word
    it cannot see at all, rather than with a few missing features of it."""
    keep = 1.0 - p
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(keep) / keep   # (V, 1)
    return weight * mask                                                  # (V, E)


class LSTMLanguageModel(nn.Module):
    block_size = None  # no context limit: the hidden state carries the past (for generation code)

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.embedding = nn.Embedding(config.vocab_size, config.emb_size)
        # One single-layer LSTM per layer (instead of nn.LSTM(num_layers=...)) so that we can put
        # our own (locked) dropout between the layers.
        sizes = [config.emb_size] + [config.hidden_size] * config.n_layers
        self.layers = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True)
                                    for i in range(config.n_layers))
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self._init_weights()
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight  # one Parameter, used twice

    def _init_weights(self) -> None:
        # As in the classic word-level LSTM projects: small uniform embeddings and decoder, zero
        # decoder bias (the LSTM keeps PyTorch's default uniform(-1/sqrt(H), 1/sqrt(H))).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch_size: int, device: torch.device | str | None = None) -> Hidden:
        """Zero state (h, c), each (n_layers, B, H): the model knows nothing before the first word."""
        device = device if device is not None else self.embedding.weight.device
        shape = (self.config.n_layers, batch_size, self.config.hidden_size)
        return (torch.zeros(shape, device=device), torch.zeros(shape, device=device))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.dropout
        if not self.training or p == 0:
            return x
        if self.config.locked_dropout:
            return x * locked_dropout_mask(x, p)   # (B, T, C) * (B, 1, C)
        return F.dropout(x, p, training=True)      # a new mask at every (b, t, c)

    def forward(self, ids: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """ids (B, T), hidden (h, c) each (n_layers, B, H) or None -> logits (B, T, V), new hidden."""
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}.")
        B = ids.size(0)
        if hidden is None:
            hidden = self.init_hidden(B, ids.device)
        h0, c0 = hidden
        if self.training and self.config.embed_dropout > 0:
            weight = embedding_dropout_weight(self.embedding.weight, self.config.embed_dropout)
        else:
            weight = self.embedding.weight
        x = self._drop(F.embedding(ids, weight))                     # (B, T, E)
        new_h, new_c = [], []
        for i, layer in enumerate(self.layers):
            x, (h, c) = layer(x, (h0[i:i + 1], c0[i:i + 1]))         # (B, T, H); h, c (1, B, H)
            new_h.append(h)
            new_c.append(c)
            x = self._drop(x)  # between layers, and after the last one: on the output
        logits = self.decoder(x)                                     # (B, T, V)
        return logits, (torch.cat(new_h), torch.cat(new_c))          # (n_layers, B, H) each

    def num_parameters(self) -> int:
        """Counts a tied matrix once (model.parameters() yields each Parameter once)."""
        return sum(p.numel() for p in self.parameters())

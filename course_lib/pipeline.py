"""The data flow every character-level notebook starts with, in one call:

    corpus spec -> load_corpus -> CharTokenizer (built from the whole text) -> split_corpus
                -> train / val / test id tensors

Notebook 01 walks through each step by hand; later notebooks call `load_char_data`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .batching import as_tensor
from .corpus import Corpus, Splits, load_corpus, split_corpus
from .tokenizers import CharTokenizer


@dataclass
class CharData:
    corpus: Corpus
    tokenizer: CharTokenizer
    splits: Splits
    train: torch.Tensor  # (N_train,) token ids
    val: torch.Tensor    # (N_val,)
    test: torch.Tensor   # (N_test,)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def summary(self) -> str:
        return (f"{self.corpus.name}: {self.corpus.n_chars:,} characters, vocabulary {self.vocab_size}, "
                f"train/val/test = {len(self.train):,} / {len(self.val):,} / {len(self.test):,} tokens")


def load_char_data(spec: str = "bundled") -> CharData:
    corpus = load_corpus(spec)
    # The vocabulary comes from the whole text so that val/test never contain unknown characters;
    # it leaks nothing about *which* characters follow which, only which exist.
    tokenizer = CharTokenizer.from_text(corpus.text)
    splits = split_corpus(corpus.text)
    return CharData(corpus, tokenizer, splits, *(as_tensor(tokenizer.encode(part))
                                                  for part in (splits.train, splits.val, splits.test)))

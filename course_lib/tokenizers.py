"""Tokenizers turn text into integer ids and back. This module holds the character tokenizer,
and check_token_ids, which every tokenizer's decode uses to explain an id it cannot decode.

Unknown-character policy (a character that was not in the text the vocabulary was built from):
    errors="strict"  (default) raise UnknownCharacterError listing the characters and the fix
    errors="skip"    drop them silently (useful for free-typed prompts)
    errors="replace" map each to `replacement` (default "?" when it is in the vocabulary)
The vocabulary is built from the whole corpus, so the train/val/test splits never hit the
policy; only prompts typed by a person do.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable


class UnknownCharacterError(ValueError):
    """Text contains characters outside the tokenizer's vocabulary."""


class UnknownTokenIdError(ValueError):
    """Ids to decode that are not integers or lie outside the tokenizer's vocabulary."""


def check_token_ids(ids: Iterable, vocab_size: int) -> list[int]:
    """ids (ints, numpy ints or one-element integer tensors) -> a list of ints in 0..vocab_size-1.

    Shared by every tokenizer's decode, so that all of them explain a bad id the same way instead
    of failing deep inside a library (tiktoken says only 'KeyError' or 'OverflowError').
    """
    try:
        if isinstance(ids, (str, bytes)):
            raise TypeError
        ids = list(ids)
    except TypeError:  # a single id, a 0-d tensor, a string
        raise UnknownTokenIdError(f"decode takes a sequence of token ids, got {ids!r} ({type(ids).__name__}). "
                                  "Wrap a single id in a list: decode([id]).") from None
    try:
        # operator.index, not int(): int(1.7) would quietly decode token 1
        checked = [operator.index(i) for i in ids]
    except TypeError:
        wrong = next(i for i in ids if not _is_index(i))
        raise UnknownTokenIdError(
            f"Token ids must be integers, got {wrong!r} ({type(wrong).__name__}). Pass integer ids, e.g. "
            "out[0].tolist() for the first row of a (batch, time) tensor of token ids.") from None
    bad = [i for i in checked if not 0 <= i < vocab_size]
    if bad:
        shown = ", ".join(str(i) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        which = f"Token id {shown} is" if len(bad) == 1 else f"Token ids {shown} are"
        raise UnknownTokenIdError(
            f"{which} outside the vocabulary (0..{vocab_size - 1}). The ids probably come "
            "from a model with another vocabulary: decode them with the tokenizer saved with that model "
            "(its checkpoint).")
    return checked


def _is_index(value) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


class CharTokenizer:
    """One token per character; ids are the characters' positions in the sorted vocabulary."""

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = sorted(set(chars))
        if not self.chars:
            raise ValueError("Cannot build a character vocabulary from empty text.")
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("Every vocabulary entry of a CharTokenizer must be a single character.")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}  # string -> id
        self.itos = dict(enumerate(self.chars))                 # id -> string

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        return sorted({ch for ch in text if ch not in self.stoi})

    def encode(self, text: str, errors: str = "strict", replacement: str = "?") -> list[int]:
        if errors not in ("strict", "skip", "replace"):
            raise ValueError(f"errors must be 'strict', 'skip' or 'replace', not {errors!r}.")
        unknown = self.unknown_chars(text)
        if unknown and errors == "strict":
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise UnknownCharacterError(
                f"{len(unknown)} character(s) are not in the vocabulary: {shown}. "
                "Remove them from the text, or encode with errors='skip' (drop them) or "
                "errors='replace' (substitute a known character)."
            )
        if unknown and errors == "replace":
            if replacement not in self.stoi:
                raise UnknownCharacterError(
                    f"The replacement {replacement!r} is not in the vocabulary either; "
                    "pick one that is, e.g. replacement=' '.")
            return [self.stoi.get(ch, self.stoi[replacement]) for ch in text]
        return [self.stoi[ch] for ch in text if ch in self.stoi]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[i] for i in check_token_ids(ids, self.vocab_size))

    # Saved inside checkpoints so a model and its vocabulary never get separated.
    def to_dict(self) -> dict:
        return {"kind": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        if data.get("kind") != "char":
            raise ValueError(f"Not a character tokenizer: kind={data.get('kind')!r}.")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

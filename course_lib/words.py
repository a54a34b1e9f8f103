"""Words as tokens: the `basic_english` tokenizer and a word vocabulary built from training text.

    basic_english("Don't panic!")   -> ["don", "'", "t", "panic", "!"]
    tokenize_lines("a b\\nc")        -> ["a", "b", "<eol>", "c"]
    Vocab.from_text(train_text)     -> ids for the words seen at least min_freq times

`basic_english` reproduces, rule for rule, torchtext's `get_tokenizer("basic_english")`, the
tokenizer of many word-level language-model projects. torchtext itself is no longer maintained
and its last release does not install with current torch, so the course carries this small
piece itself (written from the documented rule list, and tested against its documented outputs).

A word vocabulary, unlike a character vocabulary, cannot cover every word of new text: rare
words and names outside the training split become one shared token, `<unk>`. The vocabulary is
built from the TRAIN split only, so validation and test text pay honestly for the words the
model has never seen.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

UNK = "<unk>"  # every word outside the vocabulary
EOL = "<eol>"  # one per newline, so line structure (dialogue lines, paragraphs) survives
SPECIALS = (UNK, EOL)

# basic_english, one rule per row, applied in this order to lower-cased text. The order matters
# (e.g. quotes are deleted before "<br />" is looked for), so it is kept exactly as torchtext has it.
#   (pattern,  replacement,  why)
_BASIC_ENGLISH_RULES = [
    (r"'", " ' ", "apostrophes become a token: don't -> don ' t"),
    (r'"', "", "double quotes carry no word: dropped"),
    (r"\.", " . ", "every period is a token, also inside numbers: 3.14 -> 3 . 14"),
    (r"<br />", " ", "HTML line breaks (web-scraped text) are just a space"),
    (r",", " , ", "commas are tokens, also inside numbers: 1,000 -> 1 , 000"),
    (r"\(", " ( ", "brackets are tokens"),
    (r"\)", " ) ", ""),
    (r"!", " ! ", "each ! and ? is its own token: ?! -> ? !"),
    (r"\?", " ? ", ""),
    (r";", " ", "semicolons are removed"),
    (r":", " ", "colons are removed (so 'WREN:' -> 'wren')"),
    (r"\s+", " ", "any run of whitespace is one separator"),
]
_COMPILED_RULES = [(re.compile(pattern), replacement) for pattern, replacement, _ in _BASIC_ENGLISH_RULES]


def basic_english(text: str) -> list[str]:
    """Lower-case, apply the fixed rules above, split on whitespace.

    Characters that no rule mentions stay inside words: letters with accents, digits, hyphens and
    dashes ('sea-glass', 'well\u2014no' stay one token each), slashes, '<' and '>'.
    """
    if not isinstance(text, str):
        raise TypeError(f"basic_english expects a string, got {type(text).__name__}.")
    text = text.lower()
    for pattern, replacement in _COMPILED_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def tokenize_lines(text: str) -> list[str]:
    """Tokenize line by line; every newline of `text` becomes one `<eol>` token.

    "a b\\n\\nc\\n" -> ["a", "b", "<eol>", "<eol>", "c", "<eol>"]   (a blank line is two <eol>s)
    """
    lines = text.split("\n")
    tokens: list[str] = []
    for i, line in enumerate(lines):
        tokens.extend(basic_english(line))
        if i < len(lines) - 1:  # the piece after the last newline has no newline of its own
            tokens.append(EOL)
    return tokens


class Vocab:
    """Word <-> id. Id 0 is `<unk>`, id 1 is `<eol>`, then the words by frequency, most common first
    (ties alphabetically, so the same text always gives the same ids)."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        if tuple(words[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"A Vocab's first entries must be the special tokens {SPECIALS}.")
        if len(set(words)) != len(words):
            raise ValueError("A Vocab cannot contain the same word twice.")
        self.itos: list[str] = words                              # id -> word
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(words)}  # word -> id
        self.unk_id, self.eol_id = self.stoi[UNK], self.stoi[EOL]
        self.counts: Counter | None = None  # training counts of every word, set by build()

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 3) -> "Vocab":
        """Keep every token seen at least `min_freq` times (pass the TRAIN split's tokens only)."""
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r} "
                             "(1 keeps every training word, 3 drops words seen once or twice).")
        counts = Counter(t for t in tokens if t not in SPECIALS)
        if not counts:
            raise ValueError("The training text has no words: cannot build a vocabulary from empty text. "
                             "Check the corpus and the train split.")
        kept = [w for w, n in counts.items() if n >= min_freq]
        kept.sort(key=lambda w: (-counts[w], w))
        vocab = cls([*SPECIALS, *kept])
        vocab.counts = counts  # kept for inspection (e.g. how many words min_freq dropped)
        return vocab

    @classmethod
    def from_text(cls, train_text: str, min_freq: int = 3) -> "Vocab":
        return cls.build(tokenize_lines(train_text), min_freq=min_freq)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens -> ids; any word outside the vocabulary becomes the id of `<unk>`."""
        if isinstance(tokens, str):
            raise TypeError("encode takes a list of tokens, not a string: use "
                            "vocab.encode(tokenize_lines(text)).")
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: words joined by spaces, `<eol>` back to a newline."""
        pieces: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"Id {i} is outside the vocabulary (0..{len(self.itos) - 1}).")
            word = self.itos[i]
            if word == EOL:
                pieces.append("\n")
            else:
                if pieces and pieces[-1] != "\n":
                    pieces.append(" ")
                pieces.append(word)
        return "".join(pieces)

    def to_dict(self) -> dict:
        """Plain data for a checkpoint's meta (ids are list positions)."""
        return {"kind": "word", "tokenizer": "basic_english", "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        if not isinstance(data, dict) or data.get("kind") != "word" or "itos" not in data:
            raise ValueError("Not a word vocabulary: expected the dict written by Vocab.to_dict().")
        return cls(data["itos"])

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries: {', '.join(self.itos[:6])}, ...)"

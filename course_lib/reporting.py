"""Sentences about results, written by code from this run's numbers.

A notebook never states a measured result in fixed prose (a different run, profile or corpus
could contradict it). It prints a sentence built here from the numbers it just measured:

    compare("dropout 0.1", 1.52, "no dropout", 1.55)
        -> "dropout 0.1 beats no dropout by 0.030 nats/char (1.520 vs 1.550)."
    compare("LayerNorm", 1.601, "no LayerNorm", 1.604)
        -> "LayerNorm and no LayerNorm are within noise: 1.601 vs 1.604 (difference 0.003 <
            0.010 nats/char, the spread between runs that differ only in the seed)."

Also the prompts for samples: taken from the corpus in use, so any text gets sensible samples.
"""

from __future__ import annotations

import random

# Run-to-run spread of a validation loss on the bundled corpus between runs that differ only in
# the seed (initial weights and batch order): measured for the cpu-profile milestone 7 model,
# see README "How the settings were chosen". Differences smaller than this are not evidence of anything.
SEED_NOISE_NATS = 0.01


def compare(a_label: str, a: float, b_label: str, b: float, *, noise: float = SEED_NOISE_NATS,
            unit: str = "nats/char", lower_is_better: bool = True, digits: int = 3) -> str:
    """One sentence: which of two measured numbers is better, by how much, or "within noise"."""
    diff = abs(a - b)
    shown = f"{a:.{digits}f} vs {b:.{digits}f}"
    if diff < noise:
        return (f"{a_label} and {b_label} are within noise: {shown} (difference {diff:.{digits}f} < "
                f"{noise:g} {unit}, the spread between runs that differ only in the seed).")
    a_better = (a < b) if lower_is_better else (a > b)
    (better, x), (worse, y) = ((a_label, a), (b_label, b)) if a_better else ((b_label, b), (a_label, a))
    return f"{better} beats {worse} by {diff:.{digits}f} {unit} ({x:.{digits}f} vs {y:.{digits}f})."


def better(a: float, b: float, noise: float = SEED_NOISE_NATS, lower_is_better: bool = True) -> bool:
    """True if a is better than b by more than the noise (for code that branches on a result)."""
    return (b - a if lower_is_better else a - b) > noise


def sample_prompts(text: str, n: int = 2, seed: int = 0, max_words: int = 3) -> list[str]:
    """n prompts that open lines of `text` (e.g. the validation split): a speaker's name with its
    colon ("WREN:") where a line starts with one, else the line's first few words. Different
    seeds give different lines; the same seed the same ones."""
    lines = [line.strip() for line in text.split("\n")]
    candidates = [line for line in lines if len(line.split()) >= max_words and line[0].isalnum()]
    if not candidates:
        candidates = [line for line in lines if line] or ["\n"]
    chooser = random.Random(seed)
    picked = chooser.sample(candidates, k=min(n, len(candidates)))
    prompts = []
    for line in picked:
        words = line.split()
        prompts.append(words[0] if words[0].endswith(":") else " ".join(words[:max_words]))
    while len(prompts) < n:  # a tiny text: repeat rather than fail
        prompts.append(prompts[len(prompts) % len(picked)])
    return prompts

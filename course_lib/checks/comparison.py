"""Exercise graders for notebook 12 (every model on the same test text).

grade_bits_per_char(bits_per_char): the one unit every model can be compared in,

    def bits_per_char(token_nll, n_chars):
        # token_nll (N,): -ln P(token | the tokens before it), in nats, for each predicted token
        # n_chars: how many characters of text those tokens stand for
        # -> float: the total in bits, divided by the number of characters

    compared with the usual slips: nats instead of bits (no division by ln 2), log base 10,
    bits per token instead of per character, multiplying by ln 2, the mean in place of the total.
"""

from __future__ import annotations

import math

import torch

from .grading import call, expect, grader

__all__ = ["grade_bits_per_char"]


@grader("bits per character")
def grade_bits_per_char(bits_per_char):
    g = torch.Generator().manual_seed(0)
    # a BPE-like case: 50 tokens standing for 187 characters (3.74 characters per token)
    token_nll = torch.rand(50, generator=g, dtype=torch.float64) * 6 + 0.5                # (50,) nats
    n_chars = 187
    original = token_nll.clone()
    out = call(bits_per_char, token_nll, n_chars)
    expect(torch.equal(token_nll, original), "your function changed token_nll in place: compute on a copy")
    try:
        got = float(out)
    except (TypeError, ValueError):
        expect(False, f"return one number (a float or a 0-d tensor), not {type(out).__name__}")
    total = token_nll.sum().item()
    right = total / math.log(2) / n_chars
    if abs(got - right) < 1e-6 * max(1.0, right):
        # the same function must also work for a character model (one token per character)
        chars = torch.full((40,), 1.2, dtype=torch.float64)
        again = float(call(bits_per_char, chars, 40))
        expect(abs(again - 1.2 / math.log(2)) < 1e-6, f"for 40 characters at 1.2 nats each the answer is "
                                                       f"{1.2 / math.log(2):.4f} bits/char, you returned {again:.4f}")
        return None
    n = token_nll.numel()
    slips = [
        (total / n_chars, "this is in nats: ln P gives nats, and one bit is ln 2 nats, so divide the total by "
                          "math.log(2) (or use log base 2)"),
        (total / math.log(2) / n, "this is bits per TOKEN: divide the total by the number of characters, n_chars, "
                                  "not by the number of tokens (a BPE token covers several characters)"),
        (total / n, "this is nats per token (the mean loss): convert to bits (/ ln 2) and divide the TOTAL by the "
                    "number of characters"),
        (total / math.log(10) / n_chars, "you divided by ln 10 (log base 10, 'bans'): bits need ln 2"),
        (total * math.log(2) / n_chars, "you multiplied by ln 2: nats -> bits is a division by ln 2 (1 bit = 0.693 "
                                        "nats, so there are more bits than nats)"),
        (token_nll.mean().item() / math.log(2) / n_chars, "you divided the MEAN loss by the characters: take the "
                                                          "total (sum) over tokens, then divide by characters"),
        (total / math.log(2), "this is the total in bits: divide it by the number of characters"),
    ]
    for value, message in slips:
        if abs(got - value) < 1e-6 * max(1.0, abs(value)):
            expect(False, message)
    expect(False, f"for 50 tokens with total NLL {total:.2f} nats standing for {n_chars} characters the answer is "
                  f"{right:.4f} bits/char; you returned {got:.4f}")

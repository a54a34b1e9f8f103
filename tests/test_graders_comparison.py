"""The notebook-12 grader: bits per character from per-token losses in nats."""

import math

import torch

from course_lib.checks import grade_bits_per_char


def bits_per_char(token_nll, n_chars):
    return token_nll.sum().item() / math.log(2) / n_chars


def test_solutions_pass():
    assert grade_bits_per_char(bits_per_char, quiet=True).passed is True
    assert grade_bits_per_char(lambda nll, n: nll.sum() / math.log(2) / n, quiet=True).passed  # a 0-d tensor is fine
    assert grade_bits_per_char(lambda nll, n: (nll / math.log(2)).sum() / n, quiet=True).passed


def test_mistakes_are_named():
    cases = {
        lambda nll, n: nll.sum().item() / n: "nats",
        lambda nll, n: nll.sum().item() / math.log(2) / len(nll): "per TOKEN",
        lambda nll, n: nll.mean().item(): "nats per token",
        lambda nll, n: nll.sum().item() / math.log(10) / n: "ln 10",
        lambda nll, n: nll.sum().item() * math.log(2) / n: "multiplied by ln 2",
        lambda nll, n: nll.mean().item() / math.log(2) / n: "MEAN",
        lambda nll, n: nll.sum().item() / math.log(2): "total in bits",
        lambda nll, n: 1.5: "you returned 1.5",
    }
    for fn, words in cases.items():
        grade = grade_bits_per_char(fn, quiet=True)
        assert grade.passed is False and words in grade.message, (words, grade.message)


def test_a_character_model_case_and_bad_types_and_stub():
    # right for the BPE case by accident, wrong for one token per character
    fake = lambda nll, n: 2.0 if n == 40 else bits_per_char(nll, n)  # noqa: E731
    grade = grade_bits_per_char(fake, quiet=True)
    assert grade.passed is False and "40 characters" in grade.message
    assert grade_bits_per_char(lambda nll, n: [1.0, 2.0], quiet=True).passed is False

    def stub(token_nll, n_chars):
        raise NotImplementedError  # your code here

    assert grade_bits_per_char(stub, quiet=True).passed is None
    assert grade_bits_per_char(lambda nll, n: torch.tensor(float("nan")), quiet=True).passed is False

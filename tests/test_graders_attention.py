"""The grader of notebook 03's exercise: causal self-attention (course_lib/checks/attention.py).

The right answer passes; each typical wrong answer, written the way a student would write it,
fails with a message that names the mistake; the unfilled stub is "not attempted yet"."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import grade_causal_attention


def student(q, k, v, *, mask="triu", fill=float("-inf"), scale="sqrt_d", dim=-1, mask_after=False):
    """A student's causal attention with switchable mistakes (defaults: the right answer)."""
    T, D = q.shape[1:]
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"sqrt_d": math.sqrt(D), "none": 1.0, "d": D}[scale]
    future = {"triu": torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1),
              "tril": torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1),
              "none": torch.zeros(T, T, dtype=torch.bool)}[mask]
    if mask_after:
        return F.softmax(scores, dim=dim).masked_fill(future, 0.0) @ v
    return F.softmax(scores.masked_fill(future, fill), dim=dim) @ v


def test_right_answers_pass():
    assert grade_causal_attention(student).passed is True
    assert grade_causal_attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)).passed


def stub(q, k, v):
    raise NotImplementedError  # your code here


def test_the_stub_is_not_attempted_and_does_not_raise():
    assert grade_causal_attention(stub).passed is None


@pytest.mark.parametrize("mistake, expected", [
    (dict(mask="none"), "no causal mask"),
    (dict(mask="tril"), "wrong way round"),
    (dict(fill=0.0), "not -inf"),
    (dict(mask_after=True), "after the softmax"),
    (dict(dim=-2), "wrong axis"),
    (dict(scale="none"), "not divided by sqrt(D)"),
    (dict(scale="d"), "divided by D, not by sqrt(D)"),
])
def test_typical_mistakes_are_named(mistake, expected):
    grade = grade_causal_attention(lambda q, k, v: student(q, k, v, **mistake), quiet=True)
    assert grade.passed is False
    assert expected in grade.message, grade.message


def test_returning_the_weights_and_hiding_the_diagonal_are_explained():
    def weights_only(q, k, v):
        T = q.size(1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
        return F.softmax(scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool)), float("-inf")), -1)

    grade = grade_causal_attention(weights_only, quiet=True)
    assert grade.passed is False and "attention weights" in grade.message

    def hides_itself(q, k, v):
        T = q.size(1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
        future_and_self = torch.triu(torch.ones(T, T, dtype=torch.bool))   # diagonal=0: hides t itself
        return F.softmax(scores.masked_fill(future_and_self, float("-inf")), -1) @ v

    grade = grade_causal_attention(hides_itself, quiet=True)
    assert grade.passed is False and "NaN" in grade.message


def test_two_mistakes_at_once_still_get_a_pointed_message():
    grade = grade_causal_attention(lambda q, k, v: student(q, k, v, mask="none", scale="none"), quiet=True)
    assert grade.passed is False and "future leaks" in grade.message


def test_a_hard_coded_size_is_spotted():
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)   # only right for T = 5

    def fixed_t(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        T = q.size(1)
        hidden = mask[:T, :T] if T <= 5 else mask[0, 0]   # longer inputs: nothing hidden at all
        return F.softmax(scores.masked_fill(hidden, float("-inf")), -1) @ v

    grade = grade_causal_attention(fixed_t, quiet=True)
    assert grade.passed is False and "hard-coded" in grade.message


def test_changing_the_inputs_in_place_is_reported():
    def in_place(q, k, v):
        q /= math.sqrt(q.size(-1))
        T = q.size(1)
        scores = (q @ k.transpose(-2, -1)).masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return F.softmax(scores, -1) @ v

    grade = grade_causal_attention(in_place, quiet=True)
    assert grade.passed is False and "in place" in grade.message


def test_every_known_mistake_differs_from_the_answer_and_from_the_others():
    # otherwise the grader could name the wrong mistake
    from course_lib.checks import attention
    from course_lib.checks.grading import close

    q, k, v = attention._case((2, 5, 8), seed=0)
    outputs = [attention.reference_causal_attention(q, k, v)] + [wrong(q, k, v) for wrong, _ in attention._MISTAKES]
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            assert not close(a, b, atol=1e-3)

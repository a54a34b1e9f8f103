"""The grader of notebook 04's exercise: multi-head attention (course_lib/checks/multihead.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import grade_multi_head_attention


def student(q, k, v, n_head, *, split="right", merge="right", scale=None, causal=True):
    """A student's multi-head attention with switchable mistakes (defaults: the right answer)."""
    B, T, C = q.shape
    D = C // n_head

    def to_heads(t):
        if split == "reshape":          # no transpose: mixes positions and heads
            return t.reshape(B, n_head, T, D)
        if split == "swapped":          # C // n_head heads of size n_head
            return t.view(B, T, D, n_head).transpose(1, 2)
        return t.view(B, T, n_head, D).transpose(1, 2)

    q, k, v = to_heads(q), to_heads(k), to_heads(v)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)   # (B, H, T, D)
    if merge == "reshape":
        return y.reshape(B, T, C)
    return y.transpose(1, 2).reshape(B, T, C)


def test_right_answers_pass():
    assert grade_multi_head_attention(student).passed is True

    def by_hand(q, k, v, n_head):  # the written-out version passes too
        B, T, C = q.shape
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // n_head)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return (F.softmax(scores, dim=-1) @ v).transpose(1, 2).contiguous().view(B, T, C)

    assert grade_multi_head_attention(by_hand).passed is True


def test_the_stub_is_not_attempted():
    def stub(q, k, v, n_head):
        raise NotImplementedError  # your code here

    assert grade_multi_head_attention(stub).passed is None


@pytest.mark.parametrize("mistake, expected", [
    (dict(split="reshape"), "heads are not split correctly"),
    (dict(split="reshape", merge="reshape"), "plain reshapes"),
    (dict(merge="reshape"), "the merge is not"),
    (dict(split="swapped"), "swapped"),
    (dict(scale=1 / math.sqrt(12)), "sqrt(C)"),
    (dict(causal=False), "future leaks"),
])
def test_typical_mistakes_are_named(mistake, expected):
    grade = grade_multi_head_attention(lambda q, k, v, n_head: student(q, k, v, n_head, **mistake), quiet=True)
    assert grade.passed is False
    assert expected in grade.message, grade.message


def test_one_big_head_and_unmerged_heads_are_explained():
    grade = grade_multi_head_attention(
        lambda q, k, v, n_head: F.scaled_dot_product_attention(q, k, v, is_causal=True), quiet=True)
    assert grade.passed is False and "n_head was ignored" in grade.message

    def unmerged(q, k, v, n_head):
        B, T, C = q.shape
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    grade = grade_multi_head_attention(unmerged, quiet=True)
    assert grade.passed is False and "merge the heads again" in grade.message


def test_every_known_mistake_differs_from_the_answer_and_from_the_others():
    from course_lib.checks import multihead
    from course_lib.checks.grading import close

    q, k, v = multihead._case((2, 5, 12), seed=0)
    outputs = [multihead.reference_multi_head_attention(q, k, v, 3)]
    outputs += [wrong(q, k, v, 3) for wrong, _ in multihead._MISTAKES]
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            assert not close(a, b, atol=1e-3)

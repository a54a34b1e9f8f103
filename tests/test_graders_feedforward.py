"""The grader of notebook 05's exercise: the feed-forward block (course_lib/checks/feedforward.py)."""

import pytest
import torch
from torch import nn

from course_lib.checks import grade_feed_forward


class Right(nn.Module):
    def __init__(self, n_embd, hidden=4, act=None, bias=False):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden * n_embd, bias=bias)
        self.act = nn.GELU(approximate="tanh") if act is None else act
        self.proj = nn.Linear(hidden * n_embd, n_embd, bias=bias)

    def forward(self, x):                      # (B, T, C) -> (B, T, C)
        return self.proj(self.act(self.fc(x)))


def test_right_answers_pass_with_or_without_biases_and_either_gelu():
    assert grade_feed_forward(Right).passed is True
    assert grade_feed_forward(lambda c: Right(c, act=nn.GELU(), bias=True)).passed is True
    def sequential(c):
        return nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c), nn.Dropout(0.1))

    assert grade_feed_forward(sequential).passed is True


def test_the_stub_is_not_attempted():
    class Stub(nn.Module):
        def __init__(self, n_embd):
            super().__init__()

        def forward(self, x):
            raise NotImplementedError  # your code here

    assert grade_feed_forward(Stub).passed is None


class MixesPositions(Right):
    def forward(self, x):                      # a running mean over positions sneaks in
        return super().forward(x.cumsum(dim=1) / torch.arange(1, x.size(1) + 1)[:, None])


class Flattened(nn.Module):
    def __init__(self, n_embd, block=5):
        super().__init__()
        self.fc = nn.Linear(block * n_embd, 4 * n_embd)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * n_embd, block * n_embd)

    def forward(self, x):
        B, T, C = x.shape
        return self.proj(self.act(self.fc(x.reshape(B, T * C)))).view(B, T, C)


@pytest.mark.parametrize("make, expected", [
    (MixesPositions, "moved the outputs at positions"),
    (Flattened, "moved the outputs at positions"),
    (lambda c: Right(c, hidden=1), "4 times wider"),
    (lambda c: Right(c, hidden=2), "expected Linear(C, 4C)"),
    (lambda c: Right(c, act=nn.Identity()), "the block is linear"),
    (lambda c: Right(c, act=nn.ReLU()), "activation is ReLU"),
    (lambda c: nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c), nn.GELU()), "not proj(GELU(fc(x)))"),
])
def test_typical_mistakes_are_named(make, expected):
    grade = grade_feed_forward(make, quiet=True)
    assert grade.passed is False
    assert expected in grade.message, grade.message


def test_layers_created_in_forward_are_explained():
    class LayersInForward(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.n_embd = n_embd

        def forward(self, x):
            fc, proj = nn.Linear(self.n_embd, 4 * self.n_embd), nn.Linear(4 * self.n_embd, self.n_embd)
            return proj(nn.functional.gelu(fc(x)))

    grade = grade_feed_forward(LayersInForward, quiet=True)
    assert grade.passed is False and "in __init__" in grade.message

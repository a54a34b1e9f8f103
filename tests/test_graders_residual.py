"""The notebook-06 grader: the right residual block passes, each typical mistake is named."""

import torch.nn.functional as F

from course_lib.checks import grade_residual_block


def solution(x, heads, proj, mlp):
    x = x + proj(heads(x))
    return x + mlp(x)


def no_residual(x, heads, proj, mlp):
    return mlp(proj(heads(x)))


def added_twice(x, heads, proj, mlp):
    x = x + x + proj(heads(x))
    return x + mlp(x)


def no_projection(x, heads, proj, mlp):
    x = x + heads(x)
    return x + mlp(x)


def parallel(x, heads, proj, mlp):
    return x + proj(heads(x)) + mlp(x)


def in_place(x, heads, proj, mlp):  # x += ... on the caller's tensor is fine as long as the result is right
    x += proj(heads(x))
    x += mlp(x)
    return x


def stub(x, heads, proj, mlp):
    raise NotImplementedError  # your code here


def crashes(x, heads, proj, mlp):
    return F.gelu(x, approximate="wrong")


def test_the_solution_passes():
    assert grade_residual_block(solution, quiet=True).passed is True
    assert grade_residual_block(in_place, quiet=True).passed is True


def test_typical_mistakes_are_named():
    cases = {no_residual: "the input is not added back", added_twice: "added more than once",
             no_projection: "without the projection", parallel: "must read the stream after attention"}
    for fn, phrase in cases.items():
        grade = grade_residual_block(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)


def test_a_stub_is_not_attempted_and_a_crash_is_reported(capsys):
    assert grade_residual_block(stub).passed is None
    assert "not attempted yet" in capsys.readouterr().out
    grade = grade_residual_block(crashes, quiet=True)
    assert grade.passed is False and "raised" in grade.message

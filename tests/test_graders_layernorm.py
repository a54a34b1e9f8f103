"""The notebook-07 grader: the right LayerNorm passes, each typical mistake is named."""

import torch

from course_lib.checks import grade_layernorm


def solution(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def wrong_axis(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=0, keepdim=True)
    var = x.var(dim=0, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def unbiased(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias


def no_eps(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False) * weight + bias


def eps_outside(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + eps) * weight + bias


def no_gain(x, weight, bias, eps=1e-5):
    return solution(x, torch.ones_like(weight), bias, eps)


def no_shift(x, weight, bias, eps=1e-5):
    return solution(x, weight, torch.zeros_like(bias), eps)


def fixed_eps(x, weight, bias, eps=1e-5):
    return solution(x, weight, bias, 1e-5)


def stub(x, weight, bias, eps=1e-5):
    raise NotImplementedError  # your code here


def test_the_solution_and_torch_pass():
    assert grade_layernorm(solution, quiet=True).passed is True
    assert grade_layernorm(lambda x, w, b, eps=1e-5: torch.nn.functional.layer_norm(x, x.shape[-1:], w, b, eps),
                           quiet=True).passed is True


def test_typical_mistakes_are_named():
    cases = {wrong_axis: "wrong axis", unbiased: "C - 1", no_eps: "divides 0 by 0", eps_outside: "outside the square root",
             no_gain: "gain (weight) is not applied", no_shift: "shift (bias) is not added",
             fixed_eps: "eps argument is ignored"}
    for fn, phrase in cases.items():
        grade = grade_layernorm(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)


def test_a_stub_is_not_attempted():
    assert grade_layernorm(stub, quiet=True).passed is None

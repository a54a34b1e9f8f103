"""The notebook-11 / 11b graders: the masked completion loss and the Wilson interval."""

import math

import torch
import torch.nn.functional as F

from course_lib.checks import grade_masked_loss, grade_wilson_interval
from course_lib.task_scores import wilson_interval


def completion_loss(logits, ids, prompt_lens, lengths):
    B, T, V = logits.shape
    t = torch.arange(1, T)                                                        # target positions
    mask = (t >= prompt_lens[:, None]) & (t < lengths[:, None])                   # (B, T-1)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return ((nll * mask).sum(1) / mask.sum(1)).mean()


def with_labels(logits, ids, prompt_lens, lengths):  # the same through -100 labels, as the library does
    labels = ids.clone()
    for b in range(ids.size(0)):
        labels[b, :prompt_lens[b]] = -100
        labels[b, lengths[b]:] = -100
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
    return (nll.sum(1) / (labels[:, 1:] != -100).sum(1)).mean()


def make_wrong(**kind):
    def loss(logits, ids, prompt_lens, lengths):
        B, T, V = logits.shape
        if kind.get("shift", True):
            preds, targets, t = logits[:, :-1], ids[:, 1:], torch.arange(1, T)
        else:
            preds, targets, t = logits, ids, torch.arange(T)
        start = kind.get("start", lambda p: p)(prompt_lens)[:, None]
        end = kind.get("end", lambda n: n)(lengths)[:, None]
        mask = (t >= start) & (t < end)
        nll = F.cross_entropy(preds.transpose(1, 2), targets, reduction="none")
        if kind.get("per_token"):
            return (nll * mask).sum() / mask.sum()
        return ((nll * mask).sum(1) / mask.sum(1)).mean()
    return loss


def stub(logits, ids, prompt_lens, lengths):
    raise NotImplementedError  # your code here


def test_masked_loss_solutions_pass():
    assert grade_masked_loss(completion_loss, quiet=True).passed is True
    assert grade_masked_loss(with_labels, quiet=True).passed is True


def test_masked_loss_mistakes_are_named():
    cases = {
        make_wrong(shift=False): "not shifted",
        make_wrong(start=lambda p: torch.ones_like(p)): "prompt tokens are counted",
        make_wrong(end=lambda n: torch.full_like(n, 10)): "padding is counted",
        make_wrong(start=lambda p: torch.ones_like(p), end=lambda n: torch.full_like(n, 10)): "every position",
        make_wrong(start=lambda p: p + 1): "first completion token",
        make_wrong(per_token=True): "per token",
    }
    for fn, words in cases.items():
        grade = grade_masked_loss(fn, quiet=True)
        assert grade.passed is False and words in grade.message, (words, grade.message)


def test_masked_loss_shape_float_and_stub():
    per_example = grade_masked_loss(lambda *a: torch.stack([completion_loss(*a)] * 3), quiet=True)
    assert per_example.passed is False and "0-d" in per_example.message
    as_float = grade_masked_loss(lambda *a: completion_loss(*a).item(), quiet=True)
    assert as_float.passed is False and "tensor" in as_float.message
    detached = grade_masked_loss(lambda *a: completion_loss(*a).detach(), quiet=True)
    assert detached.passed is False and "autograd" in detached.message
    assert grade_masked_loss(stub, quiet=True).passed is None


def wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_solutions_pass():
    assert grade_wilson_interval(wilson, quiet=True).passed is True
    assert grade_wilson_interval(wilson_interval, quiet=True).passed is True


def test_wilson_mistakes_are_named():
    def wald(k, n):
        p = k / n
        h = 1.96 * math.sqrt(p * (1 - p) / n)
        return p - h, p + h

    def no_shift(k, n, z=1.96):
        p = k / n
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return p - half, p + half

    def no_small_term(k, n, z=1.96):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n)
        return centre - half, centre + half

    cases = {wald: "Wald", no_shift: "centred on p", no_small_term: "z²/(4n²)",
             lambda k, n: wilson(k, n)[::-1]: "swapped", lambda k, n: wilson(k, n, z=1.645): "90 %",
             lambda k, n: (0.1, 0.2): "expected"}
    for fn, words in cases.items():
        grade = grade_wilson_interval(fn, quiet=True)
        assert grade.passed is False and words in grade.message, (words, grade.message)


def test_wilson_stub_and_wrong_type():
    def stub_w(k, n):
        raise NotImplementedError  # your code here

    assert grade_wilson_interval(stub_w, quiet=True).passed is None
    one = grade_wilson_interval(lambda k, n: k / n, quiet=True)
    assert one.passed is False and "two numbers" in one.message

"""The graders of notebooks 09 and 09b: the right answer passes, each typical mistake is named."""

import torch
import torch.nn.functional as F

from course_lib.checks import grade_batchify, grade_locked_dropout, grade_tbptt_step
from course_lib.models.lstm import locked_dropout_mask
from course_lib.recurrent import batchify


def stub(*args):
    raise NotImplementedError  # your code here


def failed(grade, *phrases):
    return grade.passed is False and all(p in grade.message for p in phrases)


# ----------------------------------------------------------------------------- batchify

def test_batchify_grader():
    assert grade_batchify(batchify, quiet=True).passed is True
    assert grade_batchify(stub, quiet=True).passed is None

    def interleaved(ids, B):
        L = len(ids) // B
        return ids[:B * L].view(L, B).t()

    def keeps_the_remainder(ids, B):
        return torch.nn.functional.pad(ids, (0, (-len(ids)) % B)).view(B, -1)

    def swapped(ids, B):
        L = len(ids) // B
        return ids[:B * L].view(B, L).t()

    def as_floats(ids, B):
        return batchify(ids, B).float()

    assert failed(grade_batchify(interleaved, quiet=True), "not contiguous", ".view(batch_size, L)")
    assert failed(grade_batchify(keeps_the_remainder, quiet=True), "must be dropped")
    assert failed(grade_batchify(swapped, quiet=True), "rows and columns are swapped")
    assert failed(grade_batchify(as_floats, quiet=True), "must stay integers")


# ----------------------------------------------------------------------------- the truncated-BPTT step

def good_step(model, x, y, hidden, optimizer, grad_clip):
    hidden = tuple(h.detach() for h in hidden)
    logits, hidden = model(x, hidden)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), hidden


def make_step(detach=True, zero_grad=True, clip=True, return_old_state=False):
    def step(model, x, y, hidden, optimizer, grad_clip):
        old = hidden
        if detach:
            hidden = tuple(h.detach() for h in hidden)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return loss, (old if return_old_state else hidden)
    return step


def test_tbptt_step_grader():
    assert grade_tbptt_step(good_step, quiet=True).passed is True
    assert grade_tbptt_step(make_step(), quiet=True).passed is True        # a tensor loss is fine too
    assert grade_tbptt_step(stub, quiet=True).passed is None
    assert failed(grade_tbptt_step(make_step(detach=False), quiet=True), "not detached")
    assert failed(grade_tbptt_step(make_step(clip=False), quiet=True), "not clipped")
    assert failed(grade_tbptt_step(make_step(zero_grad=False), quiet=True), "not reset", "zero_grad")
    assert failed(grade_tbptt_step(make_step(return_old_state=True), quiet=True), "return the NEW state")


def test_tbptt_grader_names_a_missing_detach_even_with_retain_graph():
    def retains(model, x, y, hidden, optimizer, grad_clip):      # no detach; retain_graph keeps the old graph alive
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward(retain_graph=True)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return loss.item(), hidden

    assert failed(grade_tbptt_step(retains, quiet=True), "not detached")


# ----------------------------------------------------------------------------- locked dropout

def test_locked_dropout_grader():
    def good(x, p):
        return x * locked_dropout_mask(x, p)

    def ordinary(x, p):
        return F.dropout(x, p, training=True)

    def unscaled(x, p):
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p)

    def keeps_with_p(x, p):
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(p) / (1 - p)

    def one_mask_for_the_batch(x, p):
        return x * x.new_empty(1, 1, x.size(2)).bernoulli_(1 - p) / (1 - p)

    assert grade_locked_dropout(good, quiet=True).passed is True
    assert grade_locked_dropout(stub, quiet=True).passed is None
    assert failed(grade_locked_dropout(ordinary, quiet=True), "changes from time step to time step")
    assert failed(grade_locked_dropout(unscaled, quiet=True), "not scaled")
    assert failed(grade_locked_dropout(keeps_with_p, quiet=True), "DROPPING")
    assert failed(grade_locked_dropout(one_mask_for_the_batch, quiet=True), "every sequence of the batch")

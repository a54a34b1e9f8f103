"""Exercise graders for notebooks 09 (the word-level LSTM) and 09b (its regularisers).

    grade_batchify(my_batchify)              09: lay a stream out as B contiguous rows
    grade_tbptt_step(my_step)                09: one truncated-BPTT update (detach, loss, clip, step)
    grade_locked_dropout(my_locked_dropout)  09b: one dropout mask per sequence, shared by all steps

Each runs the student's function on small cases with known answers and names the first telling
mistake it finds (see grading.py); none of them ever raises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .grading import Mistake, call, close, expect, grader

__all__ = ["grade_batchify", "grade_tbptt_step", "grade_locked_dropout"]


# ----------------------------------------------------------------------------- 09: batchify

def _reference_batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    length = len(ids) // batch_size
    return ids[:length * batch_size].view(batch_size, length)


@grader("batchify")
def grade_batchify(batchify):
    """batchify(ids (N,), batch_size) -> (batch_size, N // batch_size): row b = ids [b*L, (b+1)*L)."""
    for n, batch_size in ((23, 4), (30, 3), (17, 1)):
        ids = torch.arange(100, 100 + n)                              # distinct values: easy to read
        want = _reference_batchify(ids, batch_size)
        B, L = want.shape
        got = torch.as_tensor(call(batchify, ids.clone(), batch_size))
        expect(got.numel() <= B * L,
               f"batchify(ids of length {n}, batch_size={batch_size}) returned {got.numel()} values: the last "
               f"{n % batch_size} ids do not fill a row and must be dropped (keep {B * L} ids, no padding).")
        if tuple(got.shape) == (L, B) and B != L:
            raise Mistake(f"rows and columns are swapped: got shape {tuple(got.shape)}, expected (batch_size, "
                          f"N // batch_size) = {(B, L)}. Each of the batch_size rows is one stretch of the stream.")
        expect(tuple(got.shape) == (B, L), f"batchify(ids of length {n}, batch_size={batch_size}) has shape "
                                           f"{tuple(got.shape)}, expected {(B, L)}.")
        expect(not got.is_floating_point(), f"the result has dtype {got.dtype}: ids must stay integers "
                                            "(torch.long), or nn.Embedding cannot look them up.")
        interleaved = ids[:B * L].view(L, B).t()
        if B > 1 and torch.equal(got, interleaved):
            raise Mistake(f"the rows are not contiguous: row 0 is {got[0].tolist()}, every {B}th id of the "
                          f"stream. Row b must be ONE stretch of text, ids [b*L, (b+1)*L) = {want[0].tolist()} "
                          "for row 0, so that the state can flow from one window into the next. Use "
                          ".view(batch_size, L), not .view(L, batch_size).t().")
        if not torch.equal(got, want):
            wrong = next(b for b in range(B) if not torch.equal(got[b], want[b]))
            raise Mistake(f"row {wrong} is {got[wrong].tolist()}, expected {want[wrong].tolist()} (batchify of "
                          f"ids {ids[0].item()}..{ids[-1].item()} into {B} rows).")
    return "rows are contiguous stretches of the stream, the remainder is dropped"


# ----------------------------------------------------------------------------- 09: the truncated-BPTT step

def _tiny_lstm(seed: int = 0):
    from ..models.lstm import LSTMConfig, LSTMLanguageModel

    torch.manual_seed(seed)
    return LSTMLanguageModel(LSTMConfig(vocab_size=11, emb_size=6, hidden_size=6, n_layers=2))  # no dropout


def _reference_step(model, x, y, hidden, optimizer, grad_clip, zero_grad=True, clip=True):
    """The right step (zero_grad=clip=True), or one with a known mistake, to recognise it by."""
    hidden = tuple(h.detach() for h in hidden)
    logits, hidden = model(x, hidden)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), hidden


def _run(step, n_windows, windows, grad_clip, **reference_flags):
    """Run `step` (None: the reference step with these flags) for n_windows windows from a fresh
    tiny model. Returns (model, losses, states, autograd graph sizes of the states)."""
    from ..recurrent import autograd_graph_size

    model = _tiny_lstm()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    hidden = model.init_hidden(windows[0][0].size(0))
    losses, states, sizes = [], [], []
    for x, y in windows[:n_windows]:
        if step is None:
            loss, hidden = _reference_step(model, x, y, hidden, optimizer, grad_clip, **reference_flags)
        else:
            loss, hidden = step(model, x, y, hidden, optimizer, grad_clip)
        losses.append(loss)
        states.append(hidden)
        sizes.append(autograd_graph_size(hidden[0]))
    return model, losses, states, sizes


def _same_weights(a, b) -> bool:
    return all(torch.allclose(p, q, atol=1e-6, rtol=0) for p, q in zip(a.parameters(), b.parameters()))


@grader("truncated-BPTT step")
def grade_tbptt_step(step):
    """step(model, x, y, hidden, optimizer, grad_clip) -> (loss as a float, the new hidden state)."""
    from ..recurrent import batchify, bptt_windows

    torch.manual_seed(1)
    windows = list(bptt_windows(batchify(torch.randint(0, 11, (200,)), 4), 5))[:3]   # 3 x (4, 5)
    grad_clip = 0.05                                   # small: every step of this test gets clipped

    def student(model, x, y, hidden, optimizer, clip):
        try:
            out = call(step, model, x, y, hidden, optimizer, clip)
        except RuntimeError as err:
            # Without detaching, backward runs into the previous window: its graph is freed ("a second
            # time") or, if kept, its weights were changed in place by the last optimizer step.
            if "a second time" in str(err) or "modified by an inplace operation" in str(err):
                raise Mistake("backward() reached into the previous window (whose graph is freed, or whose "
                              "weights the last step has changed): the incoming state is not detached. Start "
                              "the step with hidden = tuple(h.detach() for h in hidden).") from None
            raise
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               f"the step should return (loss, new_hidden), got {type(out).__name__}.")
        loss, new_hidden = out
        expect(isinstance(new_hidden, (tuple, list)) and len(new_hidden) == 2,
               "the second value returned should be the new state (h, c), as the model returns it.")
        if isinstance(loss, torch.Tensor):
            expect(loss.numel() == 1, f"the loss should be one number, got a tensor of shape {tuple(loss.shape)}.")
            loss = loss.item()
        return float(loss), tuple(new_hidden)

    model, losses, states, sizes = _run(student, 3, windows, grad_clip)
    ref_model, ref_losses, ref_states, ref_sizes = _run(None, 3, windows, grad_clip)

    # 1. the returned state is the model's new state, not the one passed in
    first_in = _tiny_lstm().init_hidden(4)
    if all(torch.equal(a, b) for a, b in zip(states[0], first_in)):
        raise Mistake("the step returned the state it was given: return the NEW state, the one the model "
                      "returns for this window (logits, hidden = model(x, hidden)).")
    # 2. truncation: the state's history must not grow from window to window
    if len(set(sizes)) > 1:
        raise Mistake(f"the state is not detached: the autograd graph behind it grows with every window "
                      f"({sizes} nodes after windows 1..3), so backward runs through all earlier windows. "
                      "Detach h and c at the start of the step.")
    expect(abs(losses[0] - ref_losses[0]) < 1e-5,
           f"the loss of the first window is {losses[0]:.5f}, expected {ref_losses[0]:.5f}: the mean "
           "cross-entropy of the window's logits (B, T, V) against its targets y (B, T).")
    # 3. the update: clipped, and from this window's gradient only
    one_model, *_ = _run(student, 1, windows, grad_clip)
    one_ref, *_ = _run(None, 1, windows, grad_clip)
    if not _same_weights(one_model, one_ref):
        unclipped, *_ = _run(None, 1, windows, grad_clip, clip=False)
        if _same_weights(one_model, unclipped):
            raise Mistake("the gradient norm was not clipped: call torch.nn.utils.clip_grad_norm_("
                          "model.parameters(), grad_clip) after backward() and before optimizer.step().")
        if all(torch.equal(p, q) for p, q in zip(one_model.parameters(), _tiny_lstm().parameters())):
            raise Mistake("the weights did not change: call optimizer.step() after backward().")
        raise Mistake("after one window the weights differ from a correct step (detach, forward, loss, "
                      "zero_grad, backward, clip, step).")
    if not _same_weights(model, ref_model):
        accumulated, *_ = _run(None, 3, windows, grad_clip, zero_grad=False)
        if _same_weights(model, accumulated):
            raise Mistake("the gradients are not reset between windows, so each step adds the old gradients "
                          "to the new: call optimizer.zero_grad() before backward().")
        raise Mistake("after three windows the weights differ from three correct steps: does the step use "
                      "the state it was given (not a fresh zero state)?")
    expect(all(torch.allclose(a, b, atol=1e-5) for a, b in zip(states[-1], ref_states[-1])),
           "the state returned after three windows differs from the model's own: pass the state along.")
    return "detached, clipped, zero_grad between windows, state carried"


# ----------------------------------------------------------------------------- 09b: locked dropout

@grader("locked dropout")
def grade_locked_dropout(locked_dropout):
    """locked_dropout(x (B, T, C), p) -> x with ONE dropout mask per sequence, shared by all T steps."""
    torch.manual_seed(0)
    x = torch.ones(64, 12, 128)
    out = torch.as_tensor(call(locked_dropout, x.clone(), 0.25))
    expect(tuple(out.shape) == tuple(x.shape), f"the output has shape {tuple(out.shape)}, expected the input's "
                                               f"{tuple(x.shape)} (B, T, C).")
    values = set(round(v, 5) for v in torch.unique(out).tolist())
    if values <= {0.0, 1.0} and 0.0 in values:
        raise Mistake("the kept units are not scaled: multiply them by 1 / (1 - p), so that the expected "
                      "activation is the same with and without dropout (and at evaluation time).")
    expect(values <= {0.0, round(1 / 0.75, 5)} and 0.0 in values,
           f"with x = ones and p = 0.25, every output should be 0 (dropped) or 1 / (1 - p) = {1 / 0.75:.4f} "
           f"(kept and scaled); got values such as {sorted(values)[:4]}.")
    if not torch.all(out == out[:, :1]):
        raise Mistake("the mask changes from time step to time step: that is ordinary dropout. Draw ONE mask "
                      "of shape (B, 1, C) and multiply it with x (B, T, C): broadcasting repeats it at every step.")
    dropped = (out == 0).float().mean().item()
    if abs(dropped - 0.75) < 0.05:
        raise Mistake(f"{dropped:.0%} of the units were dropped with p = 0.25: p is the probability of "
                      "DROPPING a unit, so keep each with probability 1 - p (bernoulli(1 - p)).")
    expect(abs(dropped - 0.25) < 0.05, f"{dropped:.0%} of the units were dropped, expected about p = 25%.")
    if torch.all(out == out[:1]):
        raise Mistake("every sequence of the batch got the same mask: draw one mask per sequence, shape "
                      "(B, 1, C), so that different rows lose different units.")
    if torch.all(out == out[:, :, :1]):
        raise Mistake("the mask drops whole sequences (all C units at once): draw one value per unit, "
                      "shape (B, 1, C).")
    same = torch.as_tensor(call(locked_dropout, x.clone(), 0.0))
    expect(close(same, x), "with p = 0 nothing should be dropped: the output should equal the input.")
    y = torch.randn(2, 5, 8)
    kept = torch.as_tensor(call(locked_dropout, y.clone(), 0.5))
    ratio = kept / y
    expect(bool(torch.all((kept == 0) | torch.isclose(ratio, torch.full_like(ratio, 2.0)))),
           "the output should be x times the mask (0 or 1 / (1 - p)); it is not, for x = randn.")
    return "one scaled mask per sequence and unit, shared by every time step"

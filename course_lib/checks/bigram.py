"""Exercise graders for notebook 02 (the bigram model: loss, training, evaluation).

grade_cross_entropy(cross_entropy): the loss written from exp and log alone,

    def cross_entropy(logits, targets):     # logits (B, T, V), targets (B, T) -> a 0-dim tensor
        # mean over all B*T positions of -log softmax(logits)[target], with the log-sum-exp trick

  checked against F.cross_entropy on ordinary logits and on logits in the thousands, where
  exp() overflows and a naive log(softmax) underflows to log(0).

grade_train_step(train_step): one optimisation step with gradient clipping,

    def train_step(model, optimizer, x, y, max_norm):   # -> the batch's loss (a number)
        # zero the gradients, forward, cross-entropy, backward, clip to max_norm, step

  called TWICE on a copy of a model, next to a correct step: the second call is what shows
  gradients that were never reset (they add up across steps). The grader uses plain SGD, whose
  update is proportional to the gradient, so a missing clip shows in the weights (Adam would
  hide it: its update barely depends on the gradient's scale).

grade_evaluate_loss(evaluate_loss): the loss over a list of (x, y) batches,

    def evaluate_loss(model, batches):       # -> a float: mean loss per token over all batches

  in eval mode, without gradients, every token weighing the same (the last block of a split is
  shorter), and with the model's training mode restored afterwards.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ..models import BigramLM
from .grading import call, close, expect, grader

__all__ = ["grade_cross_entropy", "grade_evaluate_loss", "grade_train_step"]


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} returned a tensor of shape {tuple(value.shape)}: return one number, "
                                   "the mean over all positions")
        return float(value.detach())
    expect(isinstance(value, (int, float)),
           f"{what} must return a number or a 0-dim tensor, got {type(value).__name__}")
    return float(value)


def _same(a: float, b: float, tol: float = 1e-4) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# ----------------------------------------------------------------------------- cross-entropy

def _picked_log_probs(logits: torch.Tensor, targets: torch.Tensor, dim: int) -> torch.Tensor:
    """log softmax over `dim`, then the target's entry along the vocabulary axis: (B, T)."""
    return logits.log_softmax(dim=dim).gather(-1, targets[..., None]).squeeze(-1)


@grader("cross-entropy by hand")
def grade_cross_entropy(cross_entropy):
    B, T, V = 2, 3, 5
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=g) * 2   # (B, T, V)
    targets = torch.randint(V, (B, T), generator=g)  # (B, T)
    mine = logits.clone()
    got = _number(call(cross_entropy, mine, targets.clone()), "cross_entropy")
    expect(torch.equal(mine, logits), "your function changed the logits passed to it (an in-place operation "
           "such as logits -= ...): compute on a new tensor (z = logits - m) so the caller's logits stay intact")
    right = F.cross_entropy(logits.view(-1, V), targets.view(-1)).item()
    picked = _picked_log_probs(logits, targets, dim=-1)  # (B, T)
    expect(not _same(got, -right), f"your loss is {got:.4f}, the right one {right:.4f}: the minus sign is missing. "
           "The loss is MINUS the mean log-probability of the targets")
    expect(not _same(got, -picked.sum().item()), f"your loss {got:.4f} is the SUM over all {B * T} positions: "
           "take the mean (divide by B * T), as F.cross_entropy does")
    expect(not _same(got, -picked.sum(dim=1).mean().item()), "you averaged over the batch but summed over time: "
           "average over all B * T positions")
    for dim, name in ((0, "the batch axis (dim 0)"), (1, "the time axis (dim 1)")):
        expect(not _same(got, -_picked_log_probs(logits, targets, dim).mean().item()),
               f"you normalised over {name}: the softmax runs over the vocabulary, the last axis (dim=-1), "
               "so that each position's probabilities over the V tokens add up to 1")
    expect(not _same(got, -picked.exp().mean().item()), "you averaged probabilities, not log-probabilities: "
           "take the log of the target's probability before the mean")
    expect(_same(got, right), f"your loss is {got:.4f}, F.cross_entropy gives {right:.4f} on the same logits")
    # Large logits: exp(1000) overflows to inf, and a naive softmax gives exactly 0 for a token
    # 2000 below the best, whose log is -inf. The right losses are simply 2000 and 1000.
    big = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]]])  # (1, 2, 3)
    big_targets = torch.tensor([[2, 0]])                                 # (1, 2)
    big_right = F.cross_entropy(big.view(-1, 3), big_targets.view(-1)).item()  # 1500
    got_big = _number(call(cross_entropy, big.clone(), big_targets.clone()), "cross_entropy")
    expect(math.isfinite(got_big),
           f"with logits in the thousands your loss is {got_big} (it should be {big_right:.0f}): exp() overflows "
           "to inf, or the softmax underflows to 0 before the log. Use the log-sum-exp trick: with m the row "
           "maximum, log sum exp(z) = m + log sum exp(z - m), so exp never sees a positive number")
    expect(_same(got_big, big_right), f"with logits in the thousands your loss is {got_big:.2f}, it should be "
           f"{big_right:.2f}")
    return f"{right:.4f} on random logits, {big_right:.0f} on logits in the thousands"


# ----------------------------------------------------------------------------- training step

def _correct_step(model, optimizer, x, y, max_norm, reset: bool = True) -> float:
    logits = model(x)                                                   # (B, T, V)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    if reset:
        optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@grader("training step")
def grade_train_step(train_step):
    V, max_norm = 7, 0.05  # a small max_norm: the clip then certainly changes the step
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        start = BigramLM(V)
    batches = [(torch.randint(V, (4, 6), generator=g), torch.randint(V, (4, 6), generator=g)) for _ in range(2)]

    def run(step_fn, n_steps, norm=max_norm, **variant):
        """n_steps of step_fn on a fresh copy of the same starting model -> (model, losses)."""
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        losses = [step_fn(model, optimizer, x.clone(), y.clone(), norm, **variant) for x, y in batches[:n_steps]]
        return model, losses

    right_1, (loss_1,) = run(_correct_step, 1)
    student_1, (got_1,) = run(lambda *a: call(train_step, *a), 1)
    got_1 = _number(got_1, "train_step")
    w0, w1, mine_1 = _weights(start), _weights(right_1), _weights(student_1)
    expect(not close(mine_1, w0), "the weights did not change: after the forward pass and the loss, call "
           "loss.backward() and then optimizer.step() on the optimizer you were given (zero the gradients "
           "BEFORE backward, not between backward and step)")
    unclipped, _ = run(_correct_step, 1, norm=float("inf"))
    expect(not close(mine_1, _weights(unclipped)), f"the gradients were not clipped to max_norm={max_norm}: call "
           "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) after loss.backward() and before "
           "optimizer.step() (use the max_norm argument, not a fixed number)")
    expect(_same(got_1, loss_1), f"train_step returned {got_1:.4f}, but the loss of this batch before the update is "
           f"{loss_1:.4f}: return the loss you computed and backpropagated (loss.item())")
    expect(close(mine_1, w1), "after one step your weights differ from a correct step's by up to "
           f"{(mine_1 - w1).abs().max():.2e}: the order is zero_grad, forward, loss, backward, clip, step")
    # Two steps: gradients that are never reset add the first batch's gradient to the second's.
    right_2, _ = run(_correct_step, 2)
    student_2, _ = run(lambda *a: call(train_step, *a), 2)
    stale, _ = run(_correct_step, 2, reset=False)
    mine_2 = _weights(student_2)
    expect(not close(mine_2, _weights(stale)), "the first step is right but the second is not: the gradients are "
           "never reset, so the second step uses the first batch's gradient plus the second's. Call "
           "optimizer.zero_grad() before loss.backward()")
    expect(close(mine_2, _weights(right_2)), "the first step is right but after the second your weights differ from "
           f"a correct run's by up to {(mine_2 - _weights(right_2)).abs().max():.2e}")
    return "checked over two steps"


# ----------------------------------------------------------------------------- evaluation

class _Recorder(BigramLM):
    """A bigram that notes, at every forward pass, whether gradients were on and its mode."""

    def __init__(self, vocab_size: int):
        super().__init__(vocab_size)
        self.calls: list[tuple[bool, bool]] = []  # (grad enabled, training) per forward

    def forward(self, idx):
        self.calls.append((torch.is_grad_enabled(), self.training))
        return super().forward(idx)


@grader("evaluate_loss")
def grade_evaluate_loss(evaluate_loss):
    V = 9
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = _Recorder(V)
        with torch.no_grad():
            model.table.weight.normal_(0, 2.0, generator=g)  # a confident model: batches' losses differ
    # Two full batches and the short tail that ends a split (course_lib.batching.sequential_batches)
    shapes = [(4, 8), (4, 8), (1, 3)]
    batches = [(torch.randint(V, s, generator=g), torch.randint(V, s, generator=g)) for s in shapes]
    model.train()
    got = _number(call(evaluate_loss, model, [(x.clone(), y.clone()) for x, y in batches]), "evaluate_loss")
    expect(model.calls, "evaluate_loss never ran the model on the batches")
    expect(not any(grad for grad, _ in model.calls), "the model ran with gradients on: wrap the loop in "
           "torch.no_grad() (or decorate the function with @torch.no_grad()). Evaluation never calls "
           "backward, and every batch's graph would be kept in memory for nothing")
    expect(not any(training for _, training in model.calls), "the model ran in training mode: call model.eval() "
           "before the loop (from notebook 08 on, dropout must be off while we measure)")
    expect(model.training, "the model is left in eval mode: call model.train() at the end (the next training "
           "step would otherwise run without dropout)")
    with torch.no_grad():
        sums = [F.cross_entropy(model(x).view(-1, V), y.view(-1), reduction="sum").item() for x, y in batches]
    counts = [y.numel() for _, y in batches]
    right = sum(sums) / sum(counts)
    mean_of_means = sum(s / c for s, c in zip(sums, counts)) / len(batches)
    expect(not _same(got, mean_of_means), f"you averaged the batches' mean losses ({got:.4f}), but the batches hold "
           f"different numbers of tokens ({', '.join(map(str, counts))}): the short last one counts as much as a "
           f"full one. Add up each batch's summed loss (reduction='sum') and divide once by the number of tokens "
           f"({right:.4f})")
    expect(not _same(got, sum(sums)), "you returned the total loss: divide by the number of tokens")
    expect(_same(got, right), f"your loss is {got:.4f}, the mean over every token is {right:.4f}")
    return "the same number as course_lib.training.evaluate"

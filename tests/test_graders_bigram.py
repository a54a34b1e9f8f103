"""The notebook-02 graders: the right answers pass, each typical mistake is named."""

import torch
import torch.nn.functional as F

from course_lib.checks import grade_cross_entropy, grade_evaluate_loss, grade_train_step


def _failing_with(grader, cases: dict) -> None:
    for fn, phrase in cases.items():
        grade = grader(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)


# ----------------------------------------------------------------------------- cross-entropy

def cross_entropy(logits, targets):
    m = logits.max(dim=-1, keepdim=True).values                             # (B, T, 1)
    log_probs = logits - m - torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))  # (B, T, V)
    return -log_probs.gather(-1, targets[..., None]).mean()


def naive(logits, targets):  # right for small logits, exp overflows for large ones
    probs = torch.exp(logits) / torch.exp(logits).sum(dim=-1, keepdim=True)
    return -torch.log(probs.gather(-1, targets[..., None])).mean()


def log_of_softmax(logits, targets):  # softmax is stable, but its 0 for a hopeless token has log -inf
    return -torch.log(torch.softmax(logits, dim=-1).gather(-1, targets[..., None])).mean()


def no_minus(logits, targets):
    return -cross_entropy(logits, targets)


def summed(logits, targets):
    return cross_entropy(logits, targets) * targets.numel()


def wrong_axis(logits, targets):
    return -torch.log_softmax(logits, dim=1).gather(-1, targets[..., None]).mean()


def in_place(logits, targets):
    logits -= logits.max(dim=-1, keepdim=True).values
    return cross_entropy(logits, targets)


def mean_of_probabilities(logits, targets):
    return -torch.softmax(logits, dim=-1).gather(-1, targets[..., None]).mean()


def ce_stub(logits, targets):
    raise NotImplementedError  # your code here


def test_the_cross_entropy_solution_passes():
    grade = grade_cross_entropy(cross_entropy, quiet=True)
    assert grade.passed is True, grade.message


def test_typical_cross_entropy_mistakes_are_named():
    _failing_with(grade_cross_entropy, {
        naive: "log-sum-exp trick", log_of_softmax: "log-sum-exp trick", no_minus: "minus sign is missing",
        summed: "SUM over all 6 positions", wrong_axis: "the time axis (dim 1)", in_place: "changed the logits",
        mean_of_probabilities: "averaged probabilities"})
    assert grade_cross_entropy(ce_stub, quiet=True).passed is None


# ----------------------------------------------------------------------------- training step

def train_step(model, optimizer, x, y, max_norm):
    logits = model(x)                                                        # (B, T, V)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def zero_grad_at_the_end(model, optimizer, x, y, max_norm):  # also right
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad()
    return loss


def never_reset(model, optimizer, x, y, max_norm):
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def no_clip(model, optimizer, x, y, max_norm):
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def clip_before_backward(model, optimizer, x, y, max_norm):
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    loss.backward()
    optimizer.step()
    return loss.item()


def reset_between_backward_and_step(model, optimizer, x, y, max_norm):
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def returns_the_loss_after_the_step(model, optimizer, x, y, max_norm):
    train_step(model, optimizer, x, y, max_norm)
    with torch.no_grad():
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()


def step_stub(model, optimizer, x, y, max_norm):
    raise NotImplementedError  # your code here


def test_the_training_step_solutions_pass():
    for fn in (train_step, zero_grad_at_the_end):
        grade = grade_train_step(fn, quiet=True)
        assert grade.passed is True, (fn.__name__, grade.message)


def test_typical_training_step_mistakes_are_named():
    _failing_with(grade_train_step, {
        never_reset: "the gradients are never reset", no_clip: "were not clipped",
        clip_before_backward: "were not clipped", reset_between_backward_and_step: "the weights did not change",
        returns_the_loss_after_the_step: "before the update"})
    assert grade_train_step(step_stub, quiet=True).passed is None


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_loss(model, batches):
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        logits = model(x)                                                    # (B, T, V)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def mean_of_batch_means(model, batches):
    model.eval()
    with torch.no_grad():
        losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches]
    model.train()
    return sum(losses) / len(losses)


def with_gradients(model, batches):
    model.eval()
    total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum") for x, y in batches)
    model.train()
    return total.item() / sum(y.numel() for _, y in batches)


def in_training_mode(model, batches):
    with torch.no_grad():
        total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum") for x, y in batches)
    return total.item() / sum(y.numel() for _, y in batches)


def left_in_eval_mode(model, batches):
    model.eval()
    with torch.no_grad():
        total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum") for x, y in batches)
    return total.item() / sum(y.numel() for _, y in batches)


def eval_stub(model, batches):
    raise NotImplementedError  # your code here


def test_the_evaluation_solution_passes_and_matches_the_library():
    from course_lib.checks.bigram import _Recorder
    from course_lib.training import evaluate

    grade = grade_evaluate_loss(evaluate_loss, quiet=True)
    assert grade.passed is True, grade.message
    model = _Recorder(5)
    batches = [(torch.randint(5, shape), torch.randint(5, shape)) for shape in ((2, 4), (1, 3))]
    assert abs(evaluate_loss(model, batches) - evaluate(model, batches).loss) < 1e-6  # the pass message says so


def test_typical_evaluation_mistakes_are_named():
    _failing_with(grade_evaluate_loss, {
        mean_of_batch_means: "averaged the batches' mean losses", with_gradients: "torch.no_grad()",
        in_training_mode: "call model.eval()", left_in_eval_mode: "left in eval mode"})
    assert grade_evaluate_loss(eval_stub, quiet=True).passed is None

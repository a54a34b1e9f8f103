"""The training primitives every loop shares (course_lib/optimization.py)."""

import math

import pytest
import torch

from course_lib.models import GPT, GPTConfig
from course_lib.optimization import (OptimizerStep, TrainingDivergedError, check_finite, decay_groups, lr_at,
                                     make_optimizer, nll_sum)


def test_weight_decay_only_on_matrices_and_tied_weights_once():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_embd=8, n_head=2, n_layer=1, bias=True, tie_weights=True))
    decay, no_decay = decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # the tied matrix once
    assert any(p is model.tok_emb.weight for p in decay["params"])


def test_optimizer_is_built_after_the_model_moved():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_embd=8, n_head=2, n_layer=1))
    opt = make_optimizer(model, 1e-3, betas=(0.9, 0.99), device="cpu")
    assert opt.defaults["betas"] == (0.9, 0.99) and not opt.defaults.get("fused")
    with pytest.raises(ValueError, match="model.to\\(device\\) before make_optimizer"):
        make_optimizer(model, 1e-3, device="cuda")
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer(model, 0.0)


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 100, 1.0, 10, min_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)   # linear warm-up
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))                  # then never rises
    assert lrs[-1] == pytest.approx(0.1)                                     # ends on the floor
    assert lrs[55] == pytest.approx(0.55, abs=0.02)                          # cosine: half-way point
    assert all(lr_at(s, 50, 3e-4, 0, min_ratio=1.0) == 3e-4 for s in range(50))  # constant


def test_optimizer_step_clips_steps_and_resets_gradients():
    model = torch.nn.Linear(3, 1, bias=False)
    stepper = OptimizerStep(torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1.0)
    before = model.weight.detach().clone()
    loss = (model(torch.full((1, 3), 100.0)) ** 2).sum()    # a huge gradient
    stepper.backward(loss)
    norm = stepper.step(model.parameters())
    assert norm > 1.0                                       # the norm before clipping is reported
    assert (model.weight.detach() - before).norm().item() == pytest.approx(1.0, rel=1e-4)  # clipped to 1
    assert model.weight.grad is None                         # and the gradients were reset


def test_fp16_loss_scaling_is_unscaled_before_clipping():
    """With fp16 the loss is scaled up for backward; clipping must see the true gradients."""
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    stepper = OptimizerStep(torch.optim.SGD(model.parameters(), lr=1.0), "cpu", torch.float16, grad_clip=100.0)
    assert stepper.scaler.is_enabled() and stepper.scaler.get_scale() > 1
    loss = model(torch.ones(1, 3)).sum()                     # gradient 1 per weight, norm sqrt(3) < 100
    stepper.backward(loss)
    stepper.step(model.parameters())
    torch.testing.assert_close(model.weight, -torch.ones(1, 3))  # exactly one unscaled SGD step


def test_nll_sum_counts_only_labelled_tokens():
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(7, (2, 5))
    targets[0, :2] = -100
    total, count = nll_sum(logits, targets)
    assert count == 8
    mean = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=-100)
    assert total.item() == pytest.approx(mean.item() * 8, rel=1e-5)


def test_divergence_is_one_error_type_everywhere():
    check_finite(torch.tensor(2.0), 3, 1e-3)
    with pytest.raises(TrainingDivergedError, match="at step 7.*lower the learning rate"):
        check_finite(torch.tensor(math.nan, requires_grad=True), 7, 1e-3)
    from course_lib import finetune, train_gpt2, training

    assert training.TrainingDivergedError is train_gpt2.TrainingDivergedError is TrainingDivergedError
    assert finetune.check_finite is check_finite  # fine-tuning raises the same error


def test_the_optimizer_step_lives_in_one_place():
    """grep for the step's pieces: only optimization.py may clip, unscale or step a scaler (the
    exercise graders in checks/ hold reference solutions that students write by hand, and
    recipe_bench's reference model must not share the course's code)."""
    from pathlib import Path

    import course_lib

    offenders = []
    for path in Path(course_lib.__file__).parent.rglob("*.py"):
        if path.name in ("optimization.py", "recipe_bench.py") or path.parent.name == "checks":
            continue
        text = path.read_text(encoding="utf-8")
        for piece in ("clip_grad_norm_(", "unscale_(", "scaler.step(", "GradScaler("):
            if piece in text:
                offenders.append(f"{path.name}: {piece}")
    assert not offenders, offenders

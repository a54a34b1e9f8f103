"""The pieces every training loop of the course shares, in one place.

Each model family keeps its own loop where the loop itself teaches something (random blocks
for the GPTs in `training`, truncated BPTT for the LSTM in `recurrent`, masked task batches in
`finetune`, gradient accumulation over processes in `train_gpt2`). What is the same in all of
them lives here, so a fix or an improvement reaches every loop at once:

    make_optimizer   AdamW with weight decay on the weight matrices only (GPT-2 / nanoGPT groups)
    lr_at            the learning-rate schedule: linear warm-up, then cosine decay to a floor
    set_lr           write a learning rate into every parameter group
    OptimizerStep    backward + (loss scaling, unscale, gradient clipping, step, zero_grad)
    nll_sum          the summed negative log-likelihood of the labelled tokens (for evaluation)
    check_finite     stop with TrainingDivergedError when the loss is NaN or infinite

The reference recipe, and why (Radford et al. 2019 for GPT-2; Karpathy's nanoGPT for small models):
    - warm-up: the first updates of Adam use poor estimates of the gradient's scale, so a
      full-size step then can throw the weights far from their careful initialisation;
      ramping the rate up over the first ~100 steps avoids that.
    - cosine decay to a floor (lr / 10): big steps early cover ground, small steps late settle
      into a minimum instead of bouncing around it. This alone lowers the final loss noticeably.
    - weight decay 0.1 on matrices only: it pulls unused weights towards zero (a regulariser);
      biases and LayerNorm gains are few, do not overfit, and decaying them only pushes offsets
      and scales away from where the data wants them.
    - betas (0.9, 0.99): Adam's second-moment average over ~100 steps instead of ~1000 adapts
      faster, which suits short runs of small models (nanoGPT's setting for its character model;
      GPT-2/3-sized runs use 0.95).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # a label with this value is skipped by the loss (padding, prompts)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def check_finite(loss: torch.Tensor | float, step: int, learning_rate: float, clip_hint: str = "grad_clip=1.0") -> None:
    """Raise TrainingDivergedError (with what to change) if the loss is NaN or infinite.

    Reading a GPU tensor's value makes the host wait for the GPU, so loops call this every step
    on a CPU (free there) and only at logging points on an accelerator."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"The loss became {value} at step {step}. Training diverged: lower the learning rate "
            f"(now {learning_rate:g}) or keep gradient clipping on ({clip_hint}).")


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: matrices (dim >= 2: linear layers, embeddings) decay, the rest
    (biases, LayerNorm weights: dim < 2) do not. A tied matrix is one Parameter and appears once."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if p.dim() >= 2]
    vectors = [p for p in params if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay}]
    if vectors:
        groups.append({"params": vectors, "weight_decay": 0.0})
    return groups


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float = 0.1,
                   betas: tuple[float, float] = (0.9, 0.99), device: torch.device | str | None = None,
                   eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over `decay_groups`. Build it AFTER model.to(device): on CUDA it uses the fused
    kernel (one launch updates every tensor), which needs the parameters already on the GPU."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    on_device = {p.device.type for p in model.parameters()}
    if on_device != {device.type}:
        raise ValueError(f"The model's parameters are on {sorted(on_device)} but the optimizer is for "
                         f"{device.type}: call model.to(device) before make_optimizer.")
    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=learning_rate, betas=tuple(betas), eps=eps,
                             fused=device.type == "cuda")


def lr_at(step: int, max_steps: int, peak_lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Learning rate for `step` (0-based): linear warm-up to peak_lr over `warmup` steps, then
    cosine decay to min_ratio * peak_lr at the last step. min_ratio=1 and warmup=0: constant."""
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - 1 - warmup))
    return peak_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class OptimizerStep:
    """backward() and step() for any loop, with the mixed-precision bookkeeping done once.

        stepper = OptimizerStep(optimizer, device, amp_dtype, grad_clip=1.0)
        stepper.backward(loss)        # as often as there are micro-batches (gradient accumulation)
        grad_norm = stepper.step(model.parameters())

    With fp16 autocast the loss is multiplied by a large factor before backward (a GradScaler),
    so that small gradients do not round to zero in 16 bits; the gradients must be divided back
    ("unscaled") before clipping, and the step is skipped if they overflowed. With bf16 or fp32
    the scaler is switched off and this is plain backward / clip / step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device | str = "cpu",
                 amp_dtype: torch.dtype | None = None, grad_clip: float | None = 1.0):
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler(torch.device(device).type, enabled=amp_dtype == torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, parameters) -> torch.Tensor | None:
        """Unscale, clip the global gradient norm, step, reset the gradients. Returns the norm
        before clipping (a tensor, not read here, so the GPU never waits) or None without clipping."""
        norm = None
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def nll_sum(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, int]:
    """(summed negative log-likelihood in nats, number of scored tokens) for logits (..., V) and
    targets (...). Computed in fp32 even under autocast. Summing (not averaging) lets a caller add
    up batches of different sizes and divide once: every token weighs the same."""
    flat_targets = targets.reshape(-1)
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), flat_targets,
                            ignore_index=ignore_index, reduction="sum")
    return total, int((flat_targets != ignore_index).sum())

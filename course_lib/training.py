"""The training loop of the course's next-token transformers (notebooks 02-08 and 10), and evaluation.

A model is any nn.Module that maps token ids (B, T) to next-token logits (B, T, vocab_size).
The loss is computed here, not inside the model, so every model is trained the same way.

The other loops (the LSTM's truncated BPTT in `recurrent`, fine-tuning in `finetune`, multi-
process pre-training in `train_gpt2`) have their own shape, but share the optimizer, the
schedule, the optimizer step and the loss bookkeeping from `optimization`, and write the same
checkpoint format (`checkpoints`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import fixed_batches, get_batch
from .checkpoints import CheckpointError, save_model  # noqa: F401  (CheckpointError: re-exported)
from .device import amp_dtype_for, autocast, compile_model, enable_tf32
from .optimization import (OptimizerStep, TrainingDivergedError, check_finite, lr_at,  # noqa: F401
                           make_optimizer, nll_sum, set_lr)

LN2 = math.log(2)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position. logits (B, T, V), targets (B, T) -> scalar."""
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))


@dataclass
class EvalResult:
    loss: float              # mean negative log-likelihood per token, in nats
    n_tokens: int
    n_chars: int | None = None  # characters of text the scored tokens stand for (None: 1 per token)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_token(self) -> float:
        return self.loss / LN2

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.n_chars else 1.0

    @property
    def bits_per_char(self) -> float:
        # total bits / total characters; for a character tokenizer this equals bits_per_token
        return self.bits_per_token / self.chars_per_token

    def as_dict(self) -> dict:
        return {"loss": round(self.loss, 4), "perplexity": round(self.perplexity, 3),
                "bits_per_char": round(self.bits_per_char, 4), "n_tokens": self.n_tokens, "n_chars": self.n_chars}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, n_chars: int | None = None) -> EvalResult:
    """Average loss over the given (x, y) batches, every token weighted the same.

    n_chars: how many characters of text the batches' targets stand for (a BPE token covers
    about 4), so that bits_per_char compares models with different tokenizers."""
    was_training = model.training
    model.eval()  # dropout off
    total_nll, total_tokens = 0.0, 0
    for x, y in batches:
        nll, count = nll_sum(model(x), y)
        total_nll += nll.item()
        total_tokens += count
    model.train(was_training)
    return EvalResult(loss=total_nll / max(total_tokens, 1), n_tokens=total_tokens, n_chars=n_chars)


def config_from_settings(config_cls, cfg, **extra):
    """Build a config dataclass from a profile's Settings (or a dict) plus overrides, keeping only
    the fields that dataclass knows (a profile also holds sizes meant for the model)."""
    values = cfg.as_dict() if hasattr(cfg, "as_dict") else dict(cfg)
    values.update(extra)
    return config_cls(**{k: v for k, v in values.items() if k in config_cls.__dataclass_fields__})


@dataclass
class TrainConfig:
    max_iters: int = 1000
    batch_size: int = 32
    block_size: int = 8
    learning_rate: float = 1e-3       # the peak rate, reached after the warm-up
    lr_schedule: str = "cosine"       # "cosine": warm-up then cosine decay; "constant": no schedule
    warmup_iters: int = 100           # linear warm-up steps (cosine schedule)
    min_lr_ratio: float = 0.1         # the cosine ends at learning_rate * min_lr_ratio
    weight_decay: float = 0.1         # AdamW decay of the weight matrices (not biases / norms)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0     # clip the global gradient norm; None or 0 switches it off
    eval_interval: int = 100
    eval_iters: int = 20              # number of fixed evaluation batches per split
    keep_best: bool = False           # end with the weights of the best evaluation, not the last
    patience: int | None = None       # stop after this many evaluations without a better val loss
    checkpoint_path: str | None = None  # save the final (or best) model here; needs tokenizer=
    seed: int = 1337
    compile: bool = False             # torch.compile the training steps (CUDA with Triton; see device.py)
    compile_backend: str | None = None  # e.g. "aot_eager" to exercise compiling on a CPU (tests)

    @classmethod
    def from_settings(cls, cfg, **extra) -> "TrainConfig":
        """Pick the fields TrainConfig knows from a profile's Settings (or dict)."""
        return config_from_settings(cls, cfg, **extra)

    def validate(self) -> None:
        for name in ("max_iters", "batch_size", "block_size", "eval_interval", "eval_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', not {self.lr_schedule!r}.")
        if self.warmup_iters < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_iters must be >= 0 and min_lr_ratio in [0, 1].")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or at least 1 evaluation, got {self.patience}.")

    def lr_at(self, step: int) -> float:
        if self.lr_schedule == "constant":
            return self.learning_rate
        return lr_at(step, self.max_iters, self.learning_rate, self.warmup_iters, self.min_lr_ratio)


@dataclass
class History:
    steps: list[int] = field(default_factory=list)         # the steps at which we evaluated
    train_loss: list[float] = field(default_factory=list)  # on fixed train batches, eval mode
    val_loss: list[float] = field(default_factory=list)    # on fixed val batches, eval mode
    lr: list[float] = field(default_factory=list)          # the learning rate at those steps
    step_losses: list[float] = field(default_factory=list)  # the training loss of every step
    best_step: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0            # the whole run, evaluations included
    eval_seconds: float = 0.0       # of which the evaluations on the fixed batches
    tokens_per_second: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def train(model: torch.nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig,
          device: torch.device | str = "cpu", generator: torch.Generator | None = None,
          optimizer: torch.optim.Optimizer | None = None, progress: bool = True, tokenizer=None,
          checkpoint_meta: dict | None = None) -> History:
    """Train on random blocks of `train_data` (or the batches of a DataLoader) with AdamW and the
    learning-rate schedule of `config`; evaluate on fixed train/val batches every `eval_interval`
    steps. Each step:

        x, y = batch;  loss = cross_entropy(model(x), y);  backward;  clip;  AdamW step

    keep_best / patience: end with the best evaluation's weights / stop when val stops improving.
    checkpoint_path: save the resulting model (with `tokenizer`, so it can write text later).
    Returns the loss history. Stops with TrainingDivergedError if the loss becomes NaN/inf.
    """
    config.validate()
    if config.checkpoint_path and tokenizer is None:
        raise ValueError("checkpoint_path is set but no tokenizer= was given: a checkpoint keeps the "
                         "tokenizer so the model can be used to write text later.")
    device = torch.device(device)
    model.to(device)  # before the optimizer: the fused CUDA AdamW needs the parameters in place
    model.train()
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    # On a GPU: bf16 autocast (fp16 + loss scaling on GPUs without bf16), TF32 for what stays in
    # fp32, and the fused AdamW kernel. On a CPU all of these are off and the loop is plain fp32.
    amp = amp_dtype_for(device)
    if device.type == "cuda":
        enable_tf32()
    if optimizer is None:
        optimizer = make_optimizer(model, config.learning_rate, config.weight_decay, config.betas, device)
    stepper = OptimizerStep(optimizer, device, amp, config.grad_clip)
    step_model = compile_model(model, device, config.compile, config.compile_backend)
    # Reading the loss on the host (for the NaN check) makes a GPU wait for all its queued work.
    # That is free on a CPU, so there we check every step; on an accelerator only when we log.
    check_every_step = device.type == "cpu"
    # train_data is a 1-D token tensor (random blocks are cut from it) or a DataLoader of (x, y).
    loader = train_data if isinstance(train_data, torch.utils.data.DataLoader) else None
    if loader is not None:
        train_tokens = loader.dataset.data
        batches = _cycle(loader)
    else:
        train_tokens = train_data
    # Built once: the same batches at every evaluation make the curve comparable point to point.
    eval_sets = {
        "train": fixed_batches(train_tokens, config.eval_iters, config.batch_size, config.block_size, device, seed=1),
        "val": fixed_batches(val_data, config.eval_iters, config.batch_size, config.block_size, device, seed=2),
    }
    history = History()
    best_state, evals_without_gain = None, 0
    pending: list[torch.Tensor] = []  # step losses not yet read on the host

    def log_eval(step: int) -> None:
        nonlocal best_state, evals_without_gain
        started = time.perf_counter()
        history.step_losses.extend(t.item() for t in pending)
        pending.clear()
        history.steps.append(step)
        history.train_loss.append(evaluate(model, eval_sets["train"]).loss)
        history.val_loss.append(evaluate(model, eval_sets["val"]).loss)
        history.lr.append(config.lr_at(min(step, config.max_iters - 1)))
        if history.val_loss[-1] < history.best_val_loss:
            history.best_val_loss, history.best_step = history.val_loss[-1], step
            evals_without_gain = 0
            if config.keep_best:  # a copy: training goes on changing the model's own tensors
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            evals_without_gain += 1
        history.eval_seconds += time.perf_counter() - started

    start = time.perf_counter()
    bar = tqdm(range(config.max_iters), desc="training", disable=not progress, mininterval=1.0)
    step = 0
    for step in bar:
        if step % config.eval_interval == 0:
            log_eval(step)
            bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{history.val_loss[-1]:.3f}")
            if config.patience and evals_without_gain >= config.patience:
                history.stopped_early = True
                break
        if loader is not None:
            x, y = (t.to(device, non_blocking=True) for t in next(batches))
        else:
            x, y = get_batch(train_data, config.batch_size, config.block_size, device, generator)
        lr = config.lr_at(step)
        set_lr(optimizer, lr)
        with autocast(device, amp):
            loss = lm_loss(step_model(x), y)
        if check_every_step or step % config.eval_interval == 0:
            check_finite(loss, step, lr)
        stepper.backward(loss)
        stepper.step(model.parameters())
        pending.append(loss.detach())
    else:
        step = config.max_iters
    if not history.stopped_early:
        log_eval(step)
    history.seconds = time.perf_counter() - start
    history.tokens_per_second = len(history.step_losses) * config.batch_size * config.block_size / max(history.seconds, 1e-9)
    bar.close()
    if config.keep_best and best_state is not None:
        model.load_state_dict(best_state)  # the best evaluation's weights, not the last step's
    if config.checkpoint_path:
        save_model(config.checkpoint_path, model, tokenizer, train_config=asdict(config),
                   history={k: v for k, v in history.as_dict().items() if k != "step_losses"},
                   **(checkpoint_meta or {}))
    return history


def _cycle(loader):
    """Endless batches from a DataLoader: a new shuffled pass (epoch) whenever one ends."""
    while True:
        yield from loader

"""One training loop for every next-token model in the course, plus evaluation and checkpoints.

A model is any nn.Module that maps token ids (B, T) to next-token logits (B, T, vocab_size).
The loss is computed here, not inside the model, so every model is trained the same way.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import fixed_batches, get_batch
from .device import amp_dtype_for, autocast, can_compile, enable_tf32

LN2 = math.log(2)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or from an incompatible model."""


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position. logits (B, T, V), targets (B, T) -> scalar."""
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))


@dataclass
class EvalResult:
    loss: float            # mean negative log-likelihood per token, in nats
    n_tokens: int
    chars_per_token: float = 1.0

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_token(self) -> float:
        return self.loss / LN2

    @property
    def bits_per_char(self) -> float:
        # total bits / total characters; for a character tokenizer this equals bits_per_token
        return self.bits_per_token / self.chars_per_token

    def as_dict(self) -> dict:
        return {"loss": round(self.loss, 4), "perplexity": round(self.perplexity, 3),
                "bits_per_char": round(self.bits_per_char, 4), "n_tokens": self.n_tokens}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, chars_per_token: float = 1.0) -> EvalResult:
    """Average loss over the given (x, y) batches, weighted by token count."""
    was_training = model.training
    model.eval()  # dropout off
    total_nll, total_tokens = 0.0, 0
    for x, y in batches:
        logits = model(x)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum")
        total_nll += nll.item()
        total_tokens += y.numel()
    model.train(was_training)
    return EvalResult(loss=total_nll / max(total_tokens, 1), n_tokens=total_tokens,
                      chars_per_token=chars_per_token)


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
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_interval: int = 100
    eval_iters: int = 20            # number of fixed evaluation batches per split
    checkpoint_path: str | None = None
    seed: int = 1337
    compile: bool = False           # torch.compile the model for the steps (CUDA with Triton only)

    @classmethod
    def from_settings(cls, cfg, **extra) -> "TrainConfig":
        """Pick the fields TrainConfig knows from a profile's Settings (or dict)."""
        return config_from_settings(cls, cfg, **extra)


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_second: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def train(model: torch.nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig,
          device: torch.device | str = "cpu", generator: torch.Generator | None = None,
          optimizer: torch.optim.Optimizer | None = None, progress: bool = True) -> History:
    """Train with AdamW on random blocks (or the batches of a DataLoader); evaluate on fixed
    batches every `eval_interval` steps.

    Returns the loss history. Stops with TrainingDivergedError if the loss becomes NaN/inf.
    """
    if config.max_iters < 1:
        raise ValueError(f"max_iters must be at least 1, got {config.max_iters}.")
    if config.eval_interval < 1:
        raise ValueError(f"eval_interval must be at least 1, got {config.eval_interval}.")
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}.")
    device = torch.device(device)
    model.to(device)
    model.train()
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    # On a GPU: bf16 autocast (fp16 + loss scaling on GPUs without bf16), TF32 for what stays in
    # fp32, and the fused AdamW kernel. On a CPU all of these are off and the loop is plain fp32.
    amp = amp_dtype_for(device)
    if device.type == "cuda":
        enable_tf32()
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay, fused=device.type == "cuda")
    # The compiled module shares its weights with `model`; evaluation keeps using `model`.
    step_model = model
    if config.compile and can_compile(device):
        from torch import _dynamo

        _dynamo.config.suppress_errors = True  # a graph it cannot compile runs eagerly instead
        step_model = torch.compile(model)
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

    def log_eval(step: int) -> None:
        history.steps.append(step)
        history.train_loss.append(evaluate(model, eval_sets["train"]).loss)
        history.val_loss.append(evaluate(model, eval_sets["val"]).loss)

    start = time.perf_counter()
    bar = tqdm(range(config.max_iters), desc="training", disable=not progress, mininterval=1.0)
    for step in bar:
        if step % config.eval_interval == 0:
            log_eval(step)
            bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{history.val_loss[-1]:.3f}")
        if loader is not None:
            x, y = (t.to(device, non_blocking=True) for t in next(batches))
        else:
            x, y = get_batch(train_data, config.batch_size, config.block_size, device, generator)
        with autocast(device, amp):
            loss = lm_loss(step_model(x), y)
        if (check_every_step or step % config.eval_interval == 0) and not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"The loss became {loss.item()} at step {step}. Training diverged: lower the "
                f"learning rate (now {config.learning_rate}) or keep gradient clipping on (grad_clip=1.0)."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()   # without fp16 the scaler is off and this is loss.backward()
        if config.grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    log_eval(config.max_iters)
    history.seconds = time.perf_counter() - start
    history.tokens_per_second = config.max_iters * config.batch_size * config.block_size / max(history.seconds, 1e-9)
    bar.close()
    if config.checkpoint_path:
        save_checkpoint(config.checkpoint_path, model, meta={"train_config": asdict(config),
                                                             "history": history.as_dict()})
    return history


def _cycle(loader):
    """Endless batches from a DataLoader: a new shuffled pass (epoch) whenever one ends."""
    while True:
        yield from loader


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict | None = None) -> Path:
    """Write weights + metadata atomically: a crash mid-write never leaves a half file behind.

    Next to `name.pt` (weights, large, git-ignored) goes `name.json` (the metadata, small,
    committed): the checkpoint registry that notebook 12, the generator CLI and the web app read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("parameters", sum(p.numel() for p in model.parameters()))
    meta.setdefault("saved_at", time.strftime("%Y-%m-%d %H:%M:%S"))
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    sidecar = path.with_suffix(".json")
    tmp_json = sidecar.with_name(sidecar.name + ".tmp")
    tmp_json.write_text(json.dumps({"weights": path.name, **meta}, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_json, sidecar)
    return path


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (weights_only=True: no arbitrary code runs) and optionally load it.

    Returns the payload {"state_dict": ..., "meta": ...}. Raises CheckpointError with the fix.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}. Run the notebook that trains this model first "
                              "(or check output_dir / COURSE_OUTPUT_DIR).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle garbage, wrong format...
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}). It is probably corrupt or "
            "truncated: delete it and re-run the notebook that writes it."
        ) from err
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a course checkpoint (no 'state_dict'). Delete it and re-train.")
    if model is not None:
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as err:
            raise CheckpointError(
                f"{path} holds weights for a different model shape: {str(err).splitlines()[0]} "
                "Build the model with the same settings (profile) it was trained with, or re-train."
            ) from err
    return payload

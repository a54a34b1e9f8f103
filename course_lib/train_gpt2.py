"""Pre-train the course's GPT-2 on BPE tokens, on one device or many (DistributedDataParallel).

One script, two ways to start it:

    python -m course_lib.train_gpt2 --preset gpt2-course-tiny --steps 50 --global-batch 16 \\
        --micro-batch 4 --block-size 32 --lr 3e-4 --out runs/tiny
    torchrun --standalone --nproc_per_node=4 -m course_lib.train_gpt2 ...the same arguments...
    python -m course_lib.train_gpt2 --init gpt2 --lr 6e-5 --block-size 256 --out runs/more  # continue OpenAI's GPT-2

--init starts from published weights (gpt2, gpt2-medium, gpt2-large, gpt2-xl from the Hugging Face
cache, downloaded there once when online; or a folder with config.json + model.safetensors) instead
of a random --preset model: continued pre-training on --corpus. Offline without the files, the run
stops at once and says how to fetch them.

The run is defined by the GLOBAL batch (sequences per optimizer step), not by the number of
processes. With W processes and micro-batches of m sequences, each process runs
A = global_batch / (m * W) forward/backward passes per step ("gradient accumulation") before
the gradients are averaged across processes and AdamW takes one step:

    global batch of step s (G windows, drawn from seed and s only)
      rows [0, G/W)      -> rank 0 -> micro-batches of m rows -> A backward passes
      rows [G/W, 2G/W)   -> rank 1 -> ...
      ...                              all-reduce (mean) of gradients, one AdamW step everywhere

Every loss is a mean over m * T tokens, scaled by 1/A, and DDP averages over the W ranks, so
the gradient is the mean over all G * T tokens whatever W and m are. The sequence of global
batches depends only on (seed, step), so 1 process and 8 processes walk the same trajectory
(up to float rounding: sums are added in another order), and a run can be stopped and resumed,
even with another number of processes.

Randomness without saved state: the data of step s come from a torch.Generator seeded with
(seed, s), and the global RNG (dropout masks) is re-seeded from (seed, s, rank) before every
step. So "where the RNG and the data are" is just the step number, which the checkpoint holds;
--resume continues on exactly the trajectory of an uninterrupted run.

On CUDA: bf16 autocast (fp16 + GradScaler on GPUs without bf16), TF32, fused AdamW, pinned
host memory with non_blocking copies, and no waiting for the GPU except when a log line, an
evaluation or a checkpoint needs numbers.

Outputs in --out (written by rank 0 only, atomically; see course_lib.checkpoints):
    model.safetensors + model.json   the latest weights, usable at once by
                                     `python -m course_lib.generate --checkpoint <out>`
    model.resume.pt                  optimizer state, step and losses for --resume
    best.safetensors + best.json     with --eval-every: the weights of the best validation loss
    summary.json                     the loss of every step, written at the end

--compile runs the steps through torch.compile (CUDA with Triton; a failure is reported and the
run continues uncompiled). On CUDA the vocabulary is padded to a multiple of 64 (50,257 ->
50,304) for faster matmuls; the padding's logits are never sampled or scored (--pad-vocab no
switches it off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .batching import as_tensor, fixed_batches, get_batch
from .checkpoints import CheckpointError, checkpoint_paths, load_state, read_meta, read_resume, save_model
from .device import amp_dtype_for, autocast, compile_model, describe_device, enable_tf32
from .models import GPT
from .models.gpt2 import GPT2_PRESETS, check_bpe_vocab, from_pretrained, gpt2_config, padded_vocab, pretrained_files
from .optimization import OptimizerStep, TrainingDivergedError, lr_at, make_optimizer, nll_sum, set_lr
from .cli import CommandError, CommandParser, cli_entry, resolve_device, seed_type
from .training import lm_loss

CHECKPOINT = "model"   # -> model.safetensors, model.json, model.resume.pt
BEST = "best"          # -> best.safetensors, best.json (with --eval-every)
SUMMARY = "summary.json"
# The settings that define a trajectory: a resumed run must use the same ones.
TRAJECTORY_KEYS = ("preset", "init", "block_size", "global_batch", "lr", "seed", "corpus", "warmup_steps",
                   "weight_decay", "grad_clip", "dropout", "min_lr_ratio")


# ----------------------------------------------------------------------------- arguments

def build_parser() -> CommandParser:
    p = CommandParser(
        prog="python -m course_lib.train_gpt2",
        description="Pre-train GPT-2 (course presets or the real sizes) on BPE tokens; single process or torchrun/DDP.")
    p.add_argument("--preset", default="gpt2-course-tiny", choices=list(GPT2_PRESETS),
                   help="the model's sizes when training from scratch (ignored with --init)")
    p.add_argument("--init", default=None,
                   help="start from published weights instead: gpt2, gpt2-medium, gpt2-large, gpt2-xl (Hugging Face "
                        "cache, downloaded once when online), or a folder with config.json + model.safetensors")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps in total (the schedule's length)")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per optimizer step, over all processes")
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward pass and process")
    p.add_argument("--block-size", type=int, default=None,
                   help="context length T (default and maximum: the model's, i.e. the preset's or --init's)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up (default: steps // 10, at most 100)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at lr * this")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of the matrices (not biases/norms)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm (0: off)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout (default 0; with dropout, runs with different process counts draw different masks)")
    p.add_argument("--seed", type=seed_type, default=1337, help="random seed, 0 to 2**32-1 (default 1337)")
    p.add_argument("--corpus", default="bundled",
                   help="corpus spec (course_lib.corpus): bundled, a path, hf:..., url:...")
    p.add_argument("--out", required=True, help="folder for model.safetensors (+ .json, .resume.pt) and summary.json")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out if it exists")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0, help="validation loss every N steps (0: only at the end)")
    p.add_argument("--eval-batches", type=int, default=8, help="fixed validation batches (of --micro-batch)")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop (with a checkpoint) after this step, as if the job were pre-empted; for tests/demos")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (under torchrun: auto, cpu or cuda; each process takes cuda:LOCAL_RANK)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training steps (CUDA with Triton)")
    # tests only: a compiler backend that needs no C++/Triton toolchain (e.g. aot_eager), so that
    # the compiled path also runs on a CPU (course_lib.device.compile_model)
    p.add_argument("--compile-backend", default=None, help=argparse.SUPPRESS)
    p.add_argument("--pad-vocab", choices=("auto", "yes", "no"), default="auto",
                   help="pad the vocabulary to a multiple of 64 for faster GPU matmuls (auto: on CUDA only)")
    return p


def check_args(parser: argparse.ArgumentParser, args, world_size: int) -> int:
    """Validate before anything expensive starts; return the gradient-accumulation steps."""
    def fail(message: str):
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: one copy of the message, from rank 0
            raise SystemExit(2)
        parser.error(message)

    for name in ("steps", "global_batch", "micro_batch", "log_every", "eval_batches"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    for name in ("eval_every", "save_every"):
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}.")
    if args.block_size is not None and args.block_size < 1:
        fail(f"--block-size must be >= 1, got {args.block_size}.")
    context = GPT2_PRESETS[args.preset][3]
    if not args.init and args.block_size is not None and args.block_size > context:
        fail(f"--block-size {args.block_size} is longer than the {args.preset} preset's context of {context} "
             f"positions: use at most {context} (or another --preset).")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        fail(f"--out {args.out} is a file, but train_gpt2 writes a folder (model.safetensors, summary.json, ...): "
             "give a folder name.")
    if not args.lr > 0:
        fail(f"--lr must be > 0, got {args.lr}.")
    if not 0 <= args.dropout < 1:
        fail(f"--dropout must be in [0, 1), got {args.dropout}.")
    if args.stop_after is not None and args.stop_after < 1:
        fail(f"--stop-after must be >= 1, got {args.stop_after}.")
    per_pass = args.micro_batch * world_size
    if args.global_batch % per_pass != 0:
        fail(
            f"--global-batch {args.global_batch} is not a multiple of --micro-batch {args.micro_batch} x "
            f"{world_size} process(es) = {per_pass} sequences per pass, so it cannot be split into whole "
            f"gradient-accumulation steps. Choose a global batch that is a multiple of {per_pass} "
            f"(e.g. {per_pass * max(1, round(args.global_batch / per_pass))}), or another micro batch.")
    args.warmup_given = args.warmup_steps is not None  # a resumed run keeps its checkpoint's default
    if args.warmup_steps is None:
        args.warmup_steps = min(100, args.steps // 10)
    if args.warmup_steps < 0:
        fail(f"--warmup-steps must be >= 0, got {args.warmup_steps}.")
    if args.block_size is None and not args.init:  # with --init: the model's, once its config is read
        args.block_size = context
    return args.global_batch // per_pass


# ----------------------------------------------------------------------------- processes

@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    distributed: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def distributed_backend(device_pref: str, cuda_available: bool) -> str:
    """"nccl" (one GPU per process) or "gloo" (CPU processes) for a --device under torchrun.
    Never a silent fallback: a GPU that was asked for and is missing is an error."""
    pref = (device_pref or "auto").lower()
    if pref.startswith("cuda:"):
        raise ValueError(f"--device {device_pref} cannot be used under torchrun: each process takes the GPU of "
                         "its LOCAL_RANK. Pass --device cuda (or auto), and choose GPUs with CUDA_VISIBLE_DEVICES.")
    if pref == "cuda" and not cuda_available:
        raise ValueError("--device cuda was asked for but this torch sees no CUDA GPU. Use --device cpu "
                         "(gloo, CPU processes) or install a CUDA build of torch (README, 'GPU users').")
    if pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"Unknown --device {device_pref!r} under torchrun: use auto, cpu or cuda.")
    return "nccl" if pref != "cpu" and cuda_available else "gloo"


def setup_processes(device_pref: str) -> Dist:
    """Single process: just pick the device. Under torchrun: join the process group that torchrun's
    environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) describe, one device per
    process: NCCL between GPUs, gloo between CPU processes."""
    if not launched_by_torchrun():
        return Dist(device=resolve_device(device_pref))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = distributed_backend(device_pref, torch.cuda.is_available()) == "nccl"
    if use_cuda:
        device = torch.device("cuda", local_rank)   # rank r of this node drives GPU r
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return Dist(rank, local_rank, world, device, distributed=True)


def average_across_ranks(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Mean of the same-shaped tensor over all processes (the identity for one process)."""
    if d.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t / d.world_size
    return t


def stop(d: Dist, message: str):
    """End every process with an error; only rank 0 prints the message (one copy, not W)."""
    raise SystemExit(message if d.main else 1)


def log(d: Dist, *parts) -> None:
    if d.main:  # one copy of every line, not one per process
        print(*parts, flush=True)


# ----------------------------------------------------------------------------- data

def load_tokens(corpus_spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """BPE ids of the train and validation splits, 1-D int64 on the CPU."""
    from .bpe import BPETokenizer
    from .corpus import load_corpus, split_corpus

    splits = split_corpus(load_corpus(corpus_spec).text)
    tok = BPETokenizer()
    return as_tensor(tok.encode(splits.train)), as_tensor(tok.encode(splits.val))


def step_seed(seed: int, step: int) -> int:
    """One seed per (seed, step): the step's data never depend on what ran before it."""
    return seed * 2**32 + step


def rank_batch(train_ids: torch.Tensor, step: int, args, d: Dist) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the global batch of `step`: x, y each (global_batch / W, T) on its device."""
    gen = torch.Generator().manual_seed(step_seed(args.seed, step))
    # Every rank draws the same G windows (cheap: G x T integers) and keeps its own slice.
    x, y = get_batch(train_ids, args.global_batch, args.block_size, "cpu", gen)     # (G, T) each
    per_rank = args.global_batch // d.world_size
    rows = slice(d.rank * per_rank, (d.rank + 1) * per_rank)
    x, y = x[rows], y[rows]                                                           # (G/W, T)
    if d.device.type == "cuda":
        # pinned (page-locked) memory lets the copy run asynchronously, overlapping GPU work
        return x.pin_memory().to(d.device, non_blocking=True), y.pin_memory().to(d.device, non_blocking=True)
    return x.to(d.device), y.to(d.device)


# ----------------------------------------------------------------------------- model & optimizer

def build_model(args, pad: bool, device: torch.device) -> GPT:
    """The GPT to train: a --preset with random weights, or (--init) published weights. With --init
    the default context is the model's own, and a longer --block-size is refused."""
    padded = padded_vocab() if pad else None
    if not args.init:
        with torch.device(device):
            return GPT(gpt2_config(args.preset, block_size=args.block_size, dropout=args.dropout,
                                   padded_vocab_size=padded))
    model = from_pretrained(args.init, dropout=args.dropout, padded_vocab_size=padded)
    check_bpe_vocab(model, args.init)
    if args.block_size is None:
        args.block_size = model.block_size
    elif args.block_size > model.block_size:
        raise CommandError(f"--block-size {args.block_size} is longer than the {args.init} model's context of "
                           f"{model.block_size} positions: use at most {model.block_size}.")
    return model.to(device)


@torch.no_grad()
def evaluate(model: GPT, val_batches, d: Dist, amp) -> float:
    """Mean validation loss per token; the fixed batches are shared out round-robin over ranks."""
    model.eval()
    totals = torch.zeros(2, device=d.device)  # (sum of token losses, number of tokens)
    for i in range(d.rank, len(val_batches), d.world_size):
        x, y = (t.to(d.device) for t in val_batches[i])
        with autocast(d.device, amp):
            nll, count = nll_sum(model(x), y)
        totals[0] += nll
        totals[1] += count
    if d.distributed:
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    model.train()
    return (totals[0] / totals[1]).item()


# ----------------------------------------------------------------------------- checkpoints

def run_config(args, world_size: int, accum: int) -> dict:
    keys = TRAJECTORY_KEYS + ("steps", "micro_batch")
    return {**{k: getattr(args, k) for k in keys}, "world_size": world_size, "accumulation_steps": accum}


def save_checkpoint(out: Path, model: GPT, stepper: OptimizerStep, step: int, state: dict, config: dict) -> Path:
    """Rank 0 only: the course's checkpoint format (usable by generate, the app, notebook 12)
    with a resume section. The data order and every random draw are functions of (seed, step),
    so the step number is the whole position of the run."""
    from .bpe import BPETokenizer

    resume = {**stepper.state_dict(), "step": step, "losses": state["losses"], "val_losses": state["val_losses"],
              "config": config,
              "rng": {"seed": config["seed"], "next_step": step,
                      "scheme": "data of step s: torch.Generator(seed * 2**32 + s); dropout RNG re-seeded per step"}}
    return save_model(out / CHECKPOINT, model, BPETokenizer(), resume=resume, producer="train_gpt2",
                      corpus=config["corpus"], preset=config["preset"], step=step, run_config=config,
                      val_loss=state["val_losses"][-1][1] if state["val_losses"] else None)


def load_for_resume(out: Path, model: GPT, stepper: OptimizerStep, args, d: Dist) -> dict:
    """Load weights and optimizer state to continue a run; refuse a damaged or foreign checkpoint
    (another script's, another model's) and one written with other settings, each with one message."""
    weights, _, resume_path = checkpoint_paths(out / CHECKPOINT)
    foreign = (f"error: cannot resume: {resume_path} is not a train_gpt2 resume state (written by another "
               "tool or version). Start a fresh run in another --out folder.")
    try:
        meta = read_meta(weights)
        payload = read_resume(weights, meta, map_location=d.device)
        saved = payload["config"]
        payload["step"], payload["losses"], payload["val_losses"] = (
            int(payload["step"]), list(payload["losses"]), list(payload["val_losses"]))
        saved_warmup = int(saved["warmup_steps"])
        int(saved["steps"]), int(saved["world_size"])
    except CheckpointError as err:
        stop(d, f"error: cannot resume: {err}")
    except (KeyError, TypeError, ValueError):
        stop(d, foreign)
    if not args.warmup_given:  # the default depends on --steps, which a resumed run may extend
        args.warmup_steps = saved_warmup
    different = {k: (saved.get(k), getattr(args, k)) for k in TRAJECTORY_KEYS if saved.get(k) != getattr(args, k)}
    if different:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in different.items())
        stop(d, f"error: {weights} was written with other settings ({listed}). Resume with the same "
                "settings, or start a fresh run in another --out folder.")
    saved_pad = (meta.get("config") or {}).get("padded_vocab_size")
    if saved_pad != model.config.padded_vocab_size:
        stop(d, f"error: cannot resume: {weights} was trained with the vocabulary "
                f"{'padded to ' + str(saved_pad) if saved_pad else 'not padded'}; pass --pad-vocab "
                f"{'yes' if saved_pad else 'no'} to continue it.")
    try:
        load_state(model, weights, meta)
        stepper.load_state_dict(payload)
    except CheckpointError as err:
        stop(d, f"error: cannot resume: {err}")
    except (KeyError, TypeError, ValueError, RuntimeError):  # an optimizer state of another model
        stop(d, foreign)
    return payload


# ----------------------------------------------------------------------------- training

def train(args, accum: int, d: Dist) -> dict:
    out = Path(args.out)
    ckpt_path = checkpoint_paths(out / CHECKPOINT)[0]
    if ckpt_path.exists() and not args.resume:
        stop(d, f"error: {ckpt_path} already exists. Pass --resume to continue that run, or choose "
                "another --out folder.")
    amp = amp_dtype_for(d.device)
    if d.device.type == "cuda":
        enable_tf32()
    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    pad = args.pad_vocab == "yes" or (args.pad_vocab == "auto" and d.device.type == "cuda")
    model = build_model(args, pad, d.device)  # first: missing published weights stop the run at once
    train_ids, val_ids = load_tokens(args.corpus)
    # the same validation windows at every evaluation, and for any number of processes
    val_batches = fixed_batches(val_ids, args.eval_batches, args.micro_batch, args.block_size, "cpu",
                                seed=args.seed + 1)
    # AdamW with decay on the matrices only; betas (0.9, 0.95) as in GPT-2/3 pre-training.
    optimizer = make_optimizer(model, args.lr, args.weight_decay, betas=(0.9, 0.95), device=d.device)
    stepper = OptimizerStep(optimizer, d.device, amp, args.grad_clip)  # fp16 loss scaling, clipping, step
    state = {"losses": [], "val_losses": []}
    start_step = 0
    if args.resume:
        if ckpt_path.exists():
            payload = load_for_resume(out, model, stepper, args, d)
            start_step, state = payload["step"], {"losses": payload["losses"], "val_losses": payload["val_losses"]}
            if payload["config"]["steps"] != args.steps:
                log(d, f"warning: the checkpoint's run had --steps {payload['config']['steps']}, now {args.steps}: "
                       "the learning-rate schedule changes, so the trajectory differs from either run.")
            log(d, f"resumed from {ckpt_path} at step {start_step} (written with {payload['config']['world_size']} "
                   f"process(es), now {d.world_size})")
        else:
            log(d, f"--resume: no checkpoint in {out} yet, starting from step 0")
    config = run_config(args, d.world_size, accum)  # after resume: it may adopt the checkpoint's warm-up
    # DDP averages the gradients across processes during backward, bucket by bucket, overlapping
    # the communication with the rest of the backward pass.
    ddp_model = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None) if d.distributed else model
    step_model = compile_model(ddp_model, d.device, args.compile, args.compile_backend)  # shares ddp_model's weights
    tokens_per_step = args.global_batch * args.block_size
    log(d, f"{describe_device(d.device)} | processes: {d.world_size}")
    log(d, f"{args.init or args.preset}: {model.num_parameters():,} parameters, T={args.block_size} | global batch "
           f"{args.global_batch} = {d.world_size} process(es) x {accum} accumulation step(s) x micro batch "
           f"{args.micro_batch} | {len(train_ids):,} training tokens | autocast: {amp or 'off (fp32)'}"
           + (f" | vocabulary padded to {model.config.padded_vocab_size:,}" if pad else ""))

    end_step = args.steps if args.stop_after is None else min(args.steps, args.stop_after)
    pending: list[torch.Tensor] = []     # per-step losses still on the device (not yet synced)
    run_start = last_time = time.perf_counter()
    last_step, lr = start_step, args.lr

    def flush(step: int) -> None:
        """Bring the pending losses to the host, averaged over ranks (every rank must call this)."""
        nonlocal pending, last_time, last_step
        if not pending:
            return
        losses = average_across_ranks(torch.stack(pending), d).tolist()  # the one host sync
        pending = []
        if not all(torch.isfinite(torch.tensor(losses))):
            raise TrainingDivergedError(f"The loss became {losses[-1]} by step {step - 1}: lower --lr "
                                        f"(now {args.lr}) or keep --grad-clip on.")
        state["losses"].extend(losses)
        now = time.perf_counter()
        tok_s = (step - last_step) * tokens_per_step / max(now - last_time, 1e-9)
        log(d, f"step {step:6d} | loss {losses[-1]:.4f} | lr {lr:.2e} | {tok_s:,.0f} tokens/s")
        last_time, last_step = now, step

    def validate(step: int) -> None:
        """Validation loss (every rank takes part); rank 0 keeps the best weights in best.*."""
        loss = evaluate(model, val_batches, d, amp)
        best_before = min((v for _, v in state["val_losses"]), default=float("inf"))
        state["val_losses"].append([step, loss])
        log(d, f"step {step:6d} | val loss {loss:.4f}")
        if d.main and args.eval_every and loss < best_before:
            from .bpe import BPETokenizer

            save_model(out / BEST, model, BPETokenizer(), producer="train_gpt2", corpus=config["corpus"],
                       preset=config["preset"], step=step, val_loss=loss, run_config=config)

    for step in range(start_step, end_step):
        lr = lr_at(step, args.steps, args.lr, args.warmup_steps, args.min_lr_ratio)
        set_lr(optimizer, lr)
        torch.manual_seed(step_seed(args.seed, step) + d.rank)  # dropout masks: a function of (seed, step, rank)
        x, y = rank_batch(train_ids, step, args, d)              # (G/W, T) each
        step_loss = torch.zeros((), device=d.device)
        for micro in range(accum):
            rows = slice(micro * args.micro_batch, (micro + 1) * args.micro_batch)
            # Only the last micro-step all-reduces gradients; the others just add to .grad locally.
            last = micro == accum - 1
            sync_ctx = ddp_model.no_sync() if d.distributed and not last else contextlib.nullcontext()
            with sync_ctx:
                with autocast(d.device, amp):
                    loss = lm_loss(step_model(x[rows]), y[rows])  # mean over micro_batch * T tokens
                stepper.backward(loss / accum)
            step_loss += loss.detach() / accum
        stepper.step(model.parameters())  # unscale (fp16), clip, AdamW step, zero the gradients
        pending.append(step_loss)
        done = step + 1
        if done % args.log_every == 0 or done == end_step:
            flush(done)
        if args.eval_every and done % args.eval_every == 0 and done != end_step:
            flush(done)
            validate(done)
        if args.save_every and done % args.save_every == 0 and done != end_step:
            flush(done)
            if d.main:
                save_checkpoint(out, model, stepper, done, state, config)
                log(d, f"checkpoint: {ckpt_path} (step {done})")
    flush(end_step)
    seconds = time.perf_counter() - run_start
    finished = end_step >= args.steps
    if finished and start_step < end_step:
        validate(end_step)
    if d.main and start_step < end_step:
        save_checkpoint(out, model, stepper, end_step, state, config)
        log(d, f"checkpoint: {ckpt_path} (step {end_step})")
    summary = {
        "config": config, "device": describe_device(d.device), "parameters": model.num_parameters(),
        "steps_done": end_step, "finished": finished, "resumed_from": start_step if args.resume else None,
        "seconds": seconds, "tokens_per_s": (end_step - start_step) * tokens_per_step / max(seconds, 1e-9),
        "losses": state["losses"], "val_losses": state["val_losses"],
    }
    if d.main:
        tmp = out / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / SUMMARY)
        log(d, f"summary: {out / SUMMARY}")
    return summary


@cli_entry
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    accum = check_args(parser, args, env_world_size())  # before any process group or data exists
    if args.init:
        pretrained_files(args.init)  # missing published weights: stop now, before anything is created
    d = setup_processes(args.device)
    try:
        if d.main:
            try:
                Path(args.out).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CommandError(f"cannot create the --out folder {args.out} ({err.strerror or err}).") from err
            if not os.access(args.out, os.W_OK):  # now, not at the first save after minutes of training
                raise CommandError(f"the --out folder {args.out} is not writable: choose another --out.")
        if d.distributed:
            dist.barrier()  # the folder exists before any rank looks into it
        train(args, accum, d)
    finally:
        if d.distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

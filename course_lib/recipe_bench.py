"""Does the course train as well as nanoGPT's recipe, and as fast? A side-by-side benchmark.

    python -m course_lib.recipe_bench                          # the bundled corpus, nanoGPT's CPU recipe
    python -m course_lib.recipe_bench --corpus books/my.txt    # any text of about 1 MB
    python -m course_lib.recipe_bench --iters 100 --time-rounds 2   # a quick look

Two character-level models of the same size see the same text, the same number of tokens and
the same split (the first 90 % to train, the last 10 % to score, as nanoGPT's character recipe
does), and are scored on the whole held-out tenth:

    reference  a minimal nanoGPT-style GPT written below for this comparison (fused q/k/v, pre-norm
               blocks, tied embedding, no biases, GPT-2 initialisation, and GPT-2's tanh-form GELU
               as the course uses: nanoGPT's exact GELU is a few per cent cheaper on CPUs, a choice
               of activation rather than of implementation) trained by a plain loop with nanoGPT's
               published CPU recipe
    course     course_lib.models.GPT trained by course_lib.training.train with the course's recipe

nanoGPT's CPU recipe (Karpathy, nanoGPT README, "I only have a macbook"; the rest from its
config/train_shakespeare_char.py): 4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000
iterations, dropout 0, AdamW lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4, betas
(0.9, 0.99), weight decay 0.1 on matrices, gradient clipping 1.0. (nanoGPT's README reports a
validation loss of about 1.88 on Shakespeare with it.)

Step time is measured apart from the training runs, in alternating rounds (course, reference,
course, ...) of the same number of steps, so a busy machine slows both alike; the medians are
compared. Nothing is written unless --output is given.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .batching import as_tensor, get_batch, sequential_batches
from .corpus import load_corpus
from .models import GPT, GPTConfig
from .optimization import lr_at
from .tokenizers import CharTokenizer
from .training import TrainConfig, evaluate, train


@dataclass
class Recipe:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.0


# ----------------------------------------------------------------------------- the reference model

class RefBlock(nn.Module):
    def __init__(self, C: int, H: int):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
        self.qkv, self.proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.fc, self.out = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

    def forward(self, x):                                                 # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class RefGPT(nn.Module):
    def __init__(self, V: int, r: Recipe):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, r.n_embd), nn.Embedding(r.block_size, r.n_embd)
        self.blocks = nn.ModuleList(RefBlock(r.n_embd, r.n_head) for _ in range(r.n_layer))
        self.ln_f = nn.LayerNorm(r.n_embd, bias=False)
        self.head = nn.Linear(r.n_embd, V, bias=False)
        self.head.weight = self.wte.weight                                 # tied, as nanoGPT does
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * r.n_layer) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):                                               # (B, T) -> (B, T, V)
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def ref_optimizer(model: nn.Module, r: Recipe) -> torch.optim.AdamW:
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=r.lr, betas=r.betas)


def ref_steps(model, optimizer, data, r: Recipe, steps, generator, start: int = 0) -> None:
    """nanoGPT's loop, plainly: lr for the step, batch, loss, backward, clip, step."""
    model.train()
    for step in range(start, start + steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, r.iters, r.lr, r.warmup, r.min_lr / r.lr)
        x, y = get_batch(data, r.batch_size, r.block_size, "cpu", generator)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        optimizer.step()


# ----------------------------------------------------------------------------- the course side

def course_model(V: int, r: Recipe) -> GPT:
    return GPT(GPTConfig(V, block_size=r.block_size, n_embd=r.n_embd, n_head=r.n_head, n_layer=r.n_layer,
                         dropout=r.dropout))


def course_config(r: Recipe, iters: int) -> TrainConfig:
    return TrainConfig(max_iters=iters, batch_size=r.batch_size, block_size=r.block_size, learning_rate=r.lr,
                       warmup_iters=r.warmup, min_lr_ratio=r.min_lr / r.lr, weight_decay=r.weight_decay,
                       betas=r.betas, grad_clip=r.grad_clip, eval_interval=max(iters, 1), eval_iters=1)


# ----------------------------------------------------------------------------- the comparison

def run(corpus: str = "bundled", recipe: Recipe | None = None, seed: int = 1337, time_rounds: int = 5,
        time_steps: int = 50, progress: bool = True) -> dict:
    r = recipe or Recipe()
    text = load_corpus(corpus).text
    tok = CharTokenizer.from_text(text)
    ids = as_tensor(tok.encode(text))
    cut = int(0.9 * len(ids))
    train_ids, val_ids = ids[:cut], ids[cut:]
    V = tok.vocab_size
    scored = sequential_batches(val_ids, r.block_size)

    torch.manual_seed(seed)
    ref = RefGPT(V, r)
    started = time.perf_counter()
    ref_steps(ref, ref_optimizer(ref, r), train_ids, r, r.iters, torch.Generator().manual_seed(seed))
    ref_seconds = time.perf_counter() - started
    ref_val = evaluate(ref, scored).loss

    torch.manual_seed(seed)
    ours = course_model(V, r)
    history = train(ours, train_ids, val_ids, course_config(r, r.iters), generator=torch.Generator().manual_seed(seed),
                    progress=progress)
    ours_val = evaluate(ours, scored).loss

    # Step times: alternating rounds of the same number of steps, each side's own loop, from a
    # fresh model. train() also evaluates on fixed batches at its first and last step, which the
    # plain reference loop never does: that time (History.eval_seconds) is left out.
    times = {"course": [], "reference": []}
    for _ in range(time_rounds):
        model = course_model(V, r)
        h = train(model, train_ids, val_ids, course_config(r, time_steps), progress=False)
        times["course"].append((h.seconds - h.eval_seconds) / time_steps)
        model = RefGPT(V, r)
        t0 = time.perf_counter()
        ref_steps(model, ref_optimizer(model, r), train_ids, r, time_steps, torch.Generator().manual_seed(0))
        times["reference"].append((time.perf_counter() - t0) / time_steps)
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {"corpus": corpus, "chars": len(text), "vocab_size": V, "recipe": r.__dict__, "seed": seed,
            "threads": torch.get_num_threads(),
            "val_loss": {"course": round(ours_val, 4), "reference": round(ref_val, 4)},
            "train_seconds": {"course": round(history.seconds, 1), "reference": round(ref_seconds, 1)},
            "ms_per_step_median": {k: round(v, 2) for k, v in ms.items()},
            "ms_per_step_rounds": {k: [round(1000 * t, 2) for t in v] for k, v in times.items()}}


def report(result: dict) -> str:
    v, ms = result["val_loss"], result["ms_per_step_median"]
    r = result["recipe"]
    lines = [f"{result['corpus']}: {result['chars']:,} characters, vocabulary {result['vocab_size']}, "
             f"{r['n_layer']} layers x {r['n_embd']} wide, context {r['block_size']}, batch {r['batch_size']}, "
             f"{r['iters']} iterations, {result['threads']} thread(s)",
             f"{'':<11}{'val loss (nats/char)':>22}{'ms per step (median)':>22}",
             f"{'course':<11}{v['course']:>22.4f}{ms['course']:>22.2f}",
             f"{'reference':<11}{v['reference']:>22.4f}{ms['reference']:>22.2f}"]
    diff = v["course"] - v["reference"]
    lines.append(f"course - reference: {diff:+.4f} nats/char ({'course better or equal' if diff <= 0 else 'reference better'}), "
                 f"step time ratio {ms['course'] / ms['reference']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.recipe_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="bundled", help="corpus spec: bundled, a path or glob, hf:..., url:...")
    p.add_argument("--iters", type=int, default=Recipe.iters, help="training iterations of both (default 2000)")
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--time-rounds", type=int, default=5, help="alternating timing rounds (default 5)")
    p.add_argument("--time-steps", type=int, default=50, help="steps per timing round (default 50)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--output", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    for name in ("iters", "batch_size", "time_rounds", "time_steps"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1.", file=sys.stderr)
            return 2
    if args.output and Path(args.output).is_dir():
        print(f"error: --output {args.output} is a folder; give a file name.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run(args.corpus, Recipe(iters=args.iters, batch_size=args.batch_size), args.seed, args.time_rounds,
                     args.time_steps)
    except (ValueError, OSError) as err:  # a corpus that cannot be read, a block that does not fit...
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

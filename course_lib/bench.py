"""How fast is each model of the course on this machine? Training and generation throughput, and
for the GPTs the model FLOPs utilisation (MFU).

    python -m course_lib.bench                      # cpu: profiles smoke,cpu   cuda: cpu,gpu
    python -m course_lib.bench --profiles gpu       # force a size (on a CPU: hours, see below)
    python -m course_lib.bench --steps 50 --warmup 10 --compile --output /tmp/bench.json

Each run is written to a new file, outputs/bench/bench-<date>-<time>.json (git-ignored), so a run
never replaces an earlier one, least of all the committed reference outputs/bench.json: only a
deliberate reference run writes that one (`--output outputs/bench.json --force`).

For every model family and every requested profile, at that profile's sizes:

    train     forward, loss, backward, AdamW step on random token batches (B, T); tokens/s over
              the timed steps after warm-up = steps * B * T / seconds.
    generate  new tokens/s for batch 1 from a one-token prompt, greedy. The GPTs twice: without a
              cache (every step re-reads the whole context) and with the KV cache; the LSTM
              carries its hidden state (its own kind of cache); the bigram looks at one token.

Random tokens instead of real text: speed does not depend on what the tokens say, and the bench
needs no corpus, no tokenizer file and no download. The vocabularies are plausible sizes: the
bundled corpus's 80 characters, a 3,000-word vocabulary for the LSTM (the bundled corpus gives
2,143 at min_freq=3; a bigger book gives more), GPT-2's 50,257 BPE tokens.

MFU (GPT models only) = achieved model FLOP/s / the accelerator's peak FLOP/s, with

    FLOPs per token = 6 * N  +  12 * n_layer * n_embd * T          (forward + backward)

    N: the parameters that take part in a matrix multiplication. That is every parameter except
       the position embedding (a table lookup, no multiply), and except the token embedding
       when it is NOT tied to the lm_head (then it too is only a lookup, and the lm_head counts
       as its own matrix). A tied embedding is counted once, as the lm_head matmul. LayerNorm
       weights and biases are included: they are < 0.1 % of N and the convention keeps them.
       6 = 2 FLOPs (multiply + add) per parameter per token forward, twice that backward.
    12 * n_layer * n_embd * T: the attention scores q @ k^T and the weighted sum @ v, which have
       no parameters: 2 * 2 * T * n_embd FLOPs per token and layer forward, x3 with backward.
       (Counted for the full T x T square although the causal mask makes half of it zero, the
       usual convention, so MFUs stay comparable with published ones.)

The work the model has to do is what MFU counts, not what the hardware happened to execute, so
recomputation, padding or wasted masked-out work lower MFU rather than inflating it. The peak is
the dense 16-bit tensor-core number of the datasheet (PEAK_TFLOPS below, source per row). A CPU
has no comparable published peak (it depends on the exact model, cores, clock and vector units),
so on CPU the bench reports the achieved TFLOP/s and prints MFU as "n/a" instead of inventing a
denominator.

On CUDA the bench runs the way a real GPU run should: bf16 autocast (fp16 with a GradScaler on
GPUs without bf16), TF32 for the remaining fp32 matmuls, fused AdamW, and torch.cuda.synchronize()
only around the timed regions (the steps themselves never wait for the host). --compile wraps the
training model in torch.compile (off by default: compiling costs a minute and hides nothing a
course student needs; CUDA with Triton only).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from .device import (amp_dtype_for, autocast, can_compile, compile_model, describe_device, enable_tf32,
                     set_cpu_threads, synchronize)
from .generation import generate
from .models import GPT, BigramLM, GPTConfig
from .models.gpt2 import gpt2_config, padded_vocab
from .models.lstm import LSTMConfig, LSTMLanguageModel, detach_hidden
from .optimization import OptimizerStep, make_optimizer
from .profiles import PROFILE_NAMES, SETTINGS
from .cli import CommandError, CommandParser, cli_entry, positive_float, positive_int, resolve_device
from .training import lm_loss

# family -> the notebook key whose settings (profiles.py) give its sizes
FAMILIES = {"bigram": "bigram", "char_gpt": "dropout", "lstm": "lstm", "gpt2": "gpt2"}
FAMILY_TITLES = {"bigram": "bigram (char)", "char_gpt": "char GPT", "lstm": "word LSTM", "gpt2": "GPT-2"}
CHAR_VOCAB = 80     # distinct characters of the bundled corpus
WORD_VOCAB = 3000   # synthetic word vocabulary (bundled corpus: 2,143 words at min_freq=3)

# Dense (no sparsity) 16-bit tensor-core peaks, TFLOP/s. Datasheets print the "with sparsity"
# number first; the dense one is half of it. The first row whose key is in the device name wins,
# so the more specific names come first. Not listed: MFU "n/a" (or give --peak-tflops).
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0, "NVIDIA H100 Tensor Core GPU datasheet: H100 PCIe, BF16 Tensor Core "
                         "1,513 TFLOPS with sparsity = 756 dense"),
    ("H100 NVL", None, "H100 NVL: not in this table (pass --peak-tflops)"),
    ("H100", 989.0, "NVIDIA H100 Tensor Core GPU datasheet: H100 SXM, BF16 Tensor Core 1,979 TFLOPS "
                    "with sparsity = 989 dense (an H100 whose name says neither PCIe nor NVL is the SXM part)"),
    ("H200", 989.0, "NVIDIA H200 Tensor Core GPU datasheet: H200 SXM, BF16 Tensor Core 1,979 TFLOPS "
                    "with sparsity = 989 dense"),
    ("A100", 312.0, "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS dense "
                    "(624 with sparsity), SXM and PCIe alike"),
]

CPU_MFU_NOTE = "n/a on CPU: no reliable published peak FLOP/s to divide by"


# ----------------------------------------------------------------------------- device helpers

def peak_tflops_for(device_name: str) -> tuple[float | None, str]:
    """(dense 16-bit peak in TFLOP/s or None, where the number comes from) for a CUDA device name."""
    for key, peak, source in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak, source
    return None, f"{device_name!r} is not in course_lib.bench.PEAK_TFLOPS (pass --peak-tflops)"


# ----------------------------------------------------------------------------- FLOPs

def matmul_parameters(model: GPT) -> int:
    """N of the MFU formula: the parameters used in matmuls (see the module docstring)."""
    n = model.num_parameters(include_position=False)  # a tied matrix is counted once
    if not model.config.tie_weights:
        n -= model.tok_emb.weight.numel()  # untied: the input embedding is a lookup only
    # rows added only to pad the vocabulary (GPU speed) are not work the model has to do
    n -= (model.lm_head.weight.size(0) - model.vocab_size) * model.config.n_embd
    return n


def flops_per_token(model: GPT, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward) of a GPT at context seq_len."""
    cfg = model.config
    return 6 * matmul_parameters(model) + 12 * cfg.n_layer * cfg.n_embd * seq_len


# ----------------------------------------------------------------------------- the models

def build(family: str, profile: str, device: torch.device) -> tuple[nn.Module, dict]:
    """The family's model at the profile's sizes, on `device`, and what describes the case."""
    cfg = SETTINGS[FAMILIES[family]][profile]
    torch.manual_seed(0)
    with torch.device(device):  # parameters are created on the device directly (fast for 124M)
        if family == "bigram":
            model = BigramLM(CHAR_VOCAB)
            info = dict(batch_size=cfg["batch_size"], seq_len=cfg["block_size"], vocab_size=CHAR_VOCAB,
                        model=f"V={CHAR_VOCAB} table")
        elif family == "char_gpt":
            model = GPT(GPTConfig(CHAR_VOCAB, block_size=cfg["block_size"], n_embd=cfg["n_embd"],
                                  n_head=cfg["n_head"], n_layer=cfg["n_layer"], dropout=cfg["dropout"]))
            info = dict(batch_size=cfg["batch_size"], seq_len=cfg["block_size"], vocab_size=CHAR_VOCAB,
                        model=f"L{cfg['n_layer']} H{cfg['n_head']} C{cfg['n_embd']}")
        elif family == "lstm":
            model = LSTMLanguageModel(LSTMConfig(
                WORD_VOCAB, emb_size=cfg["emb_size"], hidden_size=cfg["hidden_size"], n_layers=cfg["n_layers"],
                dropout=cfg["dropout"], embed_dropout=cfg["embed_dropout"], tie_weights=cfg["tie_weights"]))
            info = dict(batch_size=cfg["batch_size"], seq_len=cfg["bptt"], vocab_size=WORD_VOCAB,
                        model=f"{cfg['n_layers']}x{cfg['hidden_size']}")
        elif family == "gpt2":
            # on CUDA the vocabulary is padded to a multiple of 64 for fast matmuls, as in train_gpt2
            pad = padded_vocab() if device.type == "cuda" else None
            model = GPT(gpt2_config(cfg["preset"], block_size=cfg["block_size"], dropout=cfg["dropout"],
                                    padded_vocab_size=pad))
            c = model.config
            info = dict(batch_size=cfg["batch_size"], seq_len=cfg["block_size"], vocab_size=c.vocab_size,
                        model=f"{cfg['preset']} (L{c.n_layer} H{c.n_head} C{c.n_embd})")
        else:
            raise ValueError(f"Unknown family {family!r}; choose from {', '.join(FAMILIES)}.")
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return model, info


# ----------------------------------------------------------------------------- measurements

def measure_training(model: nn.Module, family: str, info: dict, device: torch.device, steps: int, warmup: int,
                     amp: torch.dtype | None, compile: bool) -> dict:
    """tokens/s of full optimizer steps on random (B, T) batches, after `warmup` untimed steps."""
    B, T, V = info["batch_size"], info["seq_len"], info["vocab_size"]
    model.train()  # dropout on, as in real training: its masks cost time too
    runner = compile_model(model, device, compile)
    # the course's optimizer and step: fused AdamW on CUDA, loss scaling for fp16, clipping
    stepper = OptimizerStep(make_optimizer(model, 1e-4, device=device), device, amp, grad_clip=1.0)
    gen = torch.Generator(device=device).manual_seed(0)
    # All batches made up front, on the device: the timed loop measures the model, not the data.
    data = torch.randint(V, (warmup + steps, B, T + 1), device=device, generator=gen)  # (S, B, T+1)
    hidden = model.init_hidden(B, device) if family == "lstm" else None

    def step(i: int) -> None:
        nonlocal hidden
        x, y = data[i, :, :-1], data[i, :, 1:]                    # (B, T) each, y = x shifted by one
        with autocast(device, amp):
            if family == "lstm":
                # truncated BPTT: the state flows on from the last batch, its gradient stops here
                logits, hidden = runner(x, detach_hidden(hidden))
            else:
                logits = runner(x)                                 # (B, T, V)
            loss = lm_loss(logits, y)
        stepper.backward(loss)
        stepper.step(model.parameters())

    for i in range(warmup):  # first steps allocate memory, pick kernels, compile: not timed
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    synchronize(device)
    seconds = time.perf_counter() - start
    return dict(tokens_per_s=steps * B * T / seconds, ms_per_step=1000 * seconds / steps, seconds=seconds)


@torch.no_grad()
def _lstm_generate(model: LSTMLanguageModel, prompt: torch.Tensor, n_new: int) -> None:
    """Greedy generation that feeds ONE token per step and carries the (h, c) state."""
    logits, hidden = model(prompt)                                 # read the prompt: (1, 1, V)
    for i in range(n_new):
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)       # (1, 1)
        if i < n_new - 1:
            logits, hidden = model(next_id, hidden)                # one step, state carried


def measure_generation(model: nn.Module, family: str, info: dict, device: torch.device, n_new: int,
                       cache: str, amp: torch.dtype | None) -> dict:
    """New tokens/s for batch 1, greedy, from a one-token prompt."""
    model.eval()
    prompt = torch.randint(info["vocab_size"], (1, 1), device=device)  # (1, 1)

    def run(n: int) -> None:
        with autocast(device, amp):
            if family == "lstm":
                _lstm_generate(model, prompt, n)
            else:
                generate(model, prompt, n, greedy=True, use_cache=cache == "kv")

    run(min(8, n_new))  # warm-up
    synchronize(device)
    start = time.perf_counter()
    run(n_new)
    synchronize(device)
    seconds = time.perf_counter() - start
    model.train()
    return dict(tokens_per_s=n_new / seconds, ms_per_step=1000 * seconds / n_new, seconds=seconds)


# ----------------------------------------------------------------------------- the run

def cache_kinds(family: str) -> list[str]:
    """Which generation rows a family gets."""
    return {"bigram": ["n/a"], "lstm": ["hidden"], "char_gpt": ["none", "kv"], "gpt2": ["none", "kv"]}[family]


def bench_case(family: str, profile: str, device: torch.device, args, amp, peak) -> list[dict]:
    model, info = build(family, profile, device)
    base = dict(family=family, profile=profile, model=info["model"], parameters=info["parameters"],
                batch_size=info["batch_size"], seq_len=info["seq_len"], vocab_size=info["vocab_size"],
                dtype=str(amp).removeprefix("torch.") if amp else "float32")
    if device.type == "cpu":
        base["threads"] = torch.get_num_threads()
    is_gpt = isinstance(model, GPT)
    rows = []
    train = measure_training(model, family, info, device, args.steps, args.warmup, amp,
                             args.compile and can_compile(device))
    row = dict(base, measurement="train", cache=None, steps=args.steps, warmup=args.warmup,
               compiled=bool(args.compile and can_compile(device)), **train,
               matmul_parameters=None, flops_per_token=None, achieved_tflops=None, mfu=None)
    if is_gpt:
        row["matmul_parameters"] = matmul_parameters(model)
        row["flops_per_token"] = flops_per_token(model, info["seq_len"])
        row["achieved_tflops"] = row["flops_per_token"] * train["tokens_per_s"] / 1e12
        if peak is not None:
            row["mfu"] = row["achieved_tflops"] / peak
    rows.append(row)
    n_new = args.gen_tokens or (32 if profile == "smoke" else 128)
    for cache in cache_kinds(family):
        gen = measure_generation(model, family, info, device, n_new, cache, amp)
        rows.append(dict(base, measurement="generate", cache=cache, new_tokens=n_new, **gen, mfu=None))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next (bigger) model gets the whole GPU
    return rows


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table (one line per measurement)."""
    headers = ["family", "profile", "model", "params", "B x T", "measurement", "tokens/s", "ms/step",
               "TFLOP/s", "MFU"]
    what = {None: "train", "n/a": "generate", "none": "generate, no cache", "kv": "generate, KV cache",
            "hidden": "generate, hidden state"}
    lines = []
    for r in rows:
        if "error" in r:
            lines.append([FAMILY_TITLES[r["family"]], r["profile"], "", "", "", "error", r["error"][:40], "", "", ""])
            continue
        gen = r["measurement"] == "generate"
        shape = f"1 x +{r['new_tokens']}" if gen else f"{r['batch_size']} x {r['seq_len']}"
        tflops = "" if r.get("achieved_tflops") is None else f"{r['achieved_tflops']:.3g}"
        if r["measurement"] == "train" and r.get("flops_per_token") is not None:
            mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        else:
            mfu = ""
        lines.append([FAMILY_TITLES[r["family"]], r["profile"], r["model"], f"{r['parameters'] / 1e6:.2f}M",
                      shape, what[r["cache"]], _fmt_rate(r["tokens_per_s"]), f"{r['ms_per_step']:.2f}",
                      tflops, mfu])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    numeric = {"params", "tokens/s", "ms/step", "TFLOP/s", "MFU"}
    out = []
    for line in [headers] + lines:
        cells = [c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(line, widths, headers)]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def build_parser() -> CommandParser:
    p = CommandParser(
        prog="python -m course_lib.bench",
        description="Training and generation throughput (and MFU for the GPTs) of every model family.")
    p.add_argument("--profiles", default=None,
                   help="comma-separated sizes from profiles.py (default: smoke,cpu on CPU, cpu,gpu on CUDA; "
                        "gpu on a CPU takes hours, but --profiles gpu forces it)")
    p.add_argument("--families", default=",".join(FAMILIES), help=f"subset of {','.join(FAMILIES)}")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first (default 5)")
    p.add_argument("--gen-tokens", type=int, default=None,
                   help="new tokens per generation (default 32 smoke, else 128)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the training model (CUDA with Triton only)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: 1 for smoke, all cores otherwise)")
    p.add_argument("--peak-tflops", type=positive_float, default=None,
                   help="your accelerator's dense bf16 peak, if it is not in the built-in table")
    p.add_argument("--output", default=None,
                   help="JSON file for the results (default: a new <output_dir>/bench/bench-<date>-<time>.json)")
    p.add_argument("--force", action="store_true", help="let --output replace an existing file")
    return p


def output_path(output: str | None, force: bool) -> Path:
    """Where the results go, checked BEFORE any benchmark runs (minutes of measurements must not
    end in "cannot write"). Default: a new timestamped file under <output_dir>/bench/."""
    if output is None:
        from .paths import output_dir

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = output_dir() / "bench" / f"bench-{stamp}.json"
        n = 1
        while path.exists():  # two runs in the same second: never the same file
            n += 1
            path = path.with_name(f"bench-{stamp}-{n}.json")
    else:
        path = Path(output).expanduser()
        if path.is_dir():
            raise CommandError(f"--output {output} is a folder: give a file name, e.g. {path / 'bench.json'}.")
        if path.exists() and not force:
            raise CommandError(f"--output {output} already exists: pass --force to replace it, or choose another "
                               "file (without --output every run gets a new file under outputs/bench/).")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"cannot create the folder {path.parent} for the results ({err.strerror or err}).") from err
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"cannot write {path}: choose a writable --output.")
    return path


@cli_entry
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}.")
    if args.gen_tokens is not None and args.gen_tokens < 1:
        parser.error(f"--gen-tokens must be >= 1, got {args.gen_tokens}.")
    # every check before the first measurement (and before the output folder is created)
    profiles = [p.strip() for p in (args.profiles or "").split(",") if p.strip()]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for p in profiles:
        if p not in PROFILE_NAMES:
            parser.error(f"Unknown profile {p!r}: use {', '.join(PROFILE_NAMES)}.")
    for f in families:
        if f not in FAMILIES:
            parser.error(f"Unknown family {f!r}: use {', '.join(FAMILIES)}.")
    device = resolve_device(args.device)
    path = output_path(args.output, args.force)
    profiles = profiles or (["cpu", "gpu"] if device.type == "cuda" else ["smoke", "cpu"])
    if device.type != "cuda" and "gpu" in profiles:
        print("warning: the gpu sizes on a CPU take hours (GPT-2 124M at 8 x 1024 tokens is ~6 TFLOP per "
              "step); running them because you asked for them.", file=sys.stderr)
    if args.compile and not can_compile(device):
        print("note: --compile ignored: torch.compile is used on CUDA with Triton only; running eagerly.",
              file=sys.stderr)

    amp = amp_dtype_for(device)
    if device.type == "cuda":
        enable_tf32()
        name = torch.cuda.get_device_name(device)
        peak, peak_source = peak_tflops_for(name)
    else:
        peak, peak_source = None, CPU_MFU_NOTE
    if args.peak_tflops is not None:
        peak, peak_source = args.peak_tflops, "given with --peak-tflops"

    print(describe_device(device))
    print(f"profiles: {', '.join(profiles)} | steps {args.steps} (+{args.warmup} warm-up) | "
          f"autocast: {amp or 'off (fp32)'} | peak: {f'{peak:g} TFLOP/s' if peak else 'n/a'} ({peak_source})",
          flush=True)
    rows = []
    for profile in profiles:
        if device.type == "cpu":
            print(f"profile {profile}: {set_cpu_threads(profile, args.threads)} CPU thread(s)", flush=True)
        for family in families:
            try:
                rows.extend(bench_case(family, profile, device, args, amp, peak))
            except RuntimeError as err:  # e.g. a gpu size out of memory on a small GPU: report it, go on
                rows.append(dict(family=family, profile=profile, measurement="train",
                                 error=f"{type(err).__name__}: {err}"))
                print(f"  {family} ({profile}) failed: {type(err).__name__}: {err}", file=sys.stderr)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"  done: {family} ({profile})", flush=True)
    print()
    print(format_table(rows))
    print("\ntokens/s: train = B*T tokens per optimizer step; generate = new tokens per second (batch 1). "
          "TFLOP/s and MFU use FLOPs/token = 6N + 12*n_layer*n_embd*T (N: matmul parameters).")

    result = {
        "device": describe_device(device), "device_type": device.type, "torch": torch.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {"profiles": profiles, "families": families, "steps": args.steps, "warmup": args.warmup,
                     "compile": bool(args.compile and can_compile(device)),
                     "autocast": str(amp).removeprefix("torch.") if amp else None},
        "peak_tflops": peak, "peak_source": peak_source,
        "mfu_definition": ("MFU = FLOPs/token * train tokens/s / peak FLOP/s; FLOPs/token = 6N + "
                           "12*n_layer*n_embd*T; N = all parameters except the position embedding, and "
                           "except the token embedding when it is not tied (tied: counted once, as lm_head)"),
        "rows": rows,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

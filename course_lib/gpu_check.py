"""`make gpu-check`: one prepared check of the course's GPU paths, in under 8 minutes on one GPU.

    python -m course_lib.gpu_check                      # on a CUDA machine
    python -m course_lib.gpu_check --quick              # a tiny dry run of the same stages (CPU is fine)

Every GPU-only path of the course (bf16 autocast, TF32, fused AdamW, torch.compile, the padded
vocabulary, pinned-memory batches) is written and unit-tested on CPUs, where most of it is
switched off. This script runs them for real, in one go, and prints what a GPU run should be
judged by: tokens per second, model FLOPs utilisation (MFU, see course_lib/bench.py) and peak
memory. The stages, each timed, each failure recorded without stopping the others:

    1. environment   device, torch, Triton, bf16, and the TF32 setting read back
    2. gpt2-124M     training throughput and MFU of GPT-2 124M at context 1024 (compiled, bf16,
                     vocabulary padded to 50,304): the number to compare with published ones
    3. char GPT      notebook 08's gpu-profile model trained on the bundled corpus with
                     training.train(compile=True): tokens/s, validation loss, a sample
    4. train_gpt2    `python -m course_lib.train_gpt2 --preset gpt2 --compile` for a few hundred
                     steps, then its checkpoint loaded by the registry and asked for text
    5. bench         `python -m course_lib.bench --profiles gpu` (every model family, eager: the
                     compiled paths are timed by the stages above, and compiling four more
                     models would not fit the time)

The results go to a JSON file (--output; by default under <output_dir>/gpu_check/, never over
the committed reference outputs/gpu_check.json, which only a deliberate reference run writes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from . import bench
from .device import amp_dtype_for, describe_device, enable_tf32, pick_device


def _peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def stage_environment(device: torch.device, args) -> dict:
    import importlib.util

    info = {"device": describe_device(device), "torch": torch.__version__,
            "triton": importlib.util.find_spec("triton") is not None}
    if device.type == "cuda":
        enable_tf32()
        info.update(name=torch.cuda.get_device_name(device), bf16=torch.cuda.is_bf16_supported(),
                    matmul_precision=torch.get_float32_matmul_precision(),  # raised before the TF32 fix
                    memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1))
    return info


def stage_bench(device: torch.device, args) -> dict:
    out = Path(args.workdir) / "bench.json"
    profile = "smoke" if args.quick else "gpu"
    steps = ["--steps", "3", "--warmup", "1"] if args.quick else ["--steps", "10", "--warmup", "3"]
    code = bench.main(["--profiles", profile, "--device", str(device), *steps, "--output", str(out)])
    result = json.loads(out.read_text(encoding="utf-8"))
    rows = [{k: r.get(k) for k in ("family", "measurement", "cache", "tokens_per_s", "mfu", "error")}
            for r in result["rows"]]
    return {"exit_code": code, "rows": rows, "peak_tflops": result["peak_tflops"]}


def stage_gpt2_mfu(device: torch.device, args) -> dict:
    """GPT-2 124M (or the tiny preset with --quick): train-step throughput and MFU."""
    from .models import GPT
    from .models.gpt2 import gpt2_config, padded_vocab

    preset, T, B = ("gpt2-course-tiny", 32, 4) if args.quick else ("gpt2", 1024, args.gpt2_micro_batch)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(gpt2_config(preset, block_size=T, padded_vocab_size=padded_vocab() if device.type == "cuda" else None))
    info = {"batch_size": B, "seq_len": T, "vocab_size": model.vocab_size}
    amp = amp_dtype_for(device)
    _reset_peak(device)
    steps, warmup = (3, 1) if args.quick else (20, 8)  # the warm-up includes compiling
    timing = bench.measure_training(model, "gpt2", info, device, steps, warmup, amp, compile=True)
    flops = bench.flops_per_token(model, T)
    peak, source = bench.peak_tflops_for(torch.cuda.get_device_name(device)) if device.type == "cuda" else (None, "")
    achieved = flops * timing["tokens_per_s"] / 1e12
    return {"preset": preset, "parameters": model.num_parameters(), "batch": B, "context": T,
            "tokens_per_s": round(timing["tokens_per_s"]), "ms_per_step": round(timing["ms_per_step"], 1),
            "achieved_tflops": round(achieved, 1), "mfu": round(achieved / peak, 4) if peak else None,
            "peak_tflops": peak, "peak_source": source, "peak_memory_gb": _peak_memory_gb(device)}


def stage_char_gpt(device: torch.device, args) -> dict:
    """Notebook 08's model at the gpu (or smoke) profile, trained with the course's own loop."""
    from .batching import sequential_batches
    from .generation import sample_text
    from .models import GPT, GPTConfig
    from .pipeline import load_char_data
    from .profiles import settings_for
    from .reporting import sample_prompts
    from .training import TrainConfig, evaluate, train

    cfg = settings_for("dropout", "smoke" if args.quick else "gpu")
    data = load_char_data("bundled")
    torch.manual_seed(1337)
    model = GPT(GPTConfig(data.vocab_size, block_size=cfg.block_size, n_embd=cfg.n_embd, n_head=cfg.n_head,
                          n_layer=cfg.n_layer, dropout=cfg.dropout))
    steps = cfg.max_iters if args.quick else args.char_steps
    config = TrainConfig.from_settings(cfg, max_iters=steps, eval_interval=max(1, steps // 2), compile=True,
                                       warmup_iters=min(cfg.as_dict().get("warmup_iters", 100), steps // 5))
    _reset_peak(device)
    history = train(model, data.train, data.val, config, device, progress=False)
    val = evaluate(model, sequential_batches(data.val, cfg.block_size, device=device))
    prompt = sample_prompts(data.splits.val, n=1, seed=1337)[0]
    sample = sample_text(model, data.tokenizer, prompt, 300, temperature=0.8, seed=1337, device=device)
    return {"settings": cfg.as_dict(), "steps": steps, "parameters": model.num_parameters(),
            "tokens_per_s": round(history.tokens_per_second), "seconds": round(history.seconds, 1),
            "val_loss_whole_split": round(val.loss, 4), "val_curve": list(zip(history.steps, history.val_loss)),
            "peak_memory_gb": _peak_memory_gb(device), "sample": sample}


def stage_train_gpt2(device: torch.device, args) -> dict:
    """The pre-training CLI end to end, compiled, then its checkpoint used for text."""
    from . import train_gpt2
    from .registry import load_model

    out = Path(args.workdir) / "train_gpt2"
    if args.quick:
        cli = ["--preset", "gpt2-course-tiny", "--steps", "4", "--global-batch", "4", "--micro-batch", "2",
               "--block-size", "16", "--eval-every", "2", "--eval-batches", "1"]
    else:
        cli = ["--preset", "gpt2", "--steps", str(args.gpt2_steps), "--global-batch", str(2 * args.gpt2_micro_batch),
               "--micro-batch", str(args.gpt2_micro_batch), "--block-size", "1024", "--lr", "6e-4",
               "--eval-every", str(max(1, args.gpt2_steps // 2)), "--eval-batches", "4", "--log-every", "25"]
    _reset_peak(device)
    started = time.perf_counter()
    code = train_gpt2.main([*cli, "--compile", "--device", str(device), "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"train_gpt2 exited with status {code} (its error line is printed above)")
    summary = json.loads((out / train_gpt2.SUMMARY).read_text(encoding="utf-8"))
    loaded = load_model(str(out), device=device)
    text = loaded.generate("The tide", 60, temperature=0.8, seed=1)
    return {"cli": " ".join(cli), "seconds": round(time.perf_counter() - started, 1),
            "tokens_per_s": round(summary["tokens_per_s"]), "final_loss": round(summary["losses"][-1], 4),
            "val_losses": summary["val_losses"], "peak_memory_gb": _peak_memory_gb(device),
            "padded_vocab": loaded.model.config.padded_vocab_size, "sample": text}


STAGES = {"environment": stage_environment, "gpt2_124m_mfu": stage_gpt2_mfu, "char_gpt": stage_char_gpt,
          "train_gpt2": stage_train_gpt2, "bench": stage_bench}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: checks the wiring anywhere")
    p.add_argument("--device", default="auto", help="auto or cuda[:N] (cpu only with --quick)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--char-steps", type=int, default=500, help="training steps of the char GPT (default 500)")
    p.add_argument("--gpt2-steps", type=int, default=100, help="train_gpt2 steps of GPT-2 124M (default 100)")
    p.add_argument("--gpt2-micro-batch", type=int, default=16, help="sequences of 1024 tokens per pass (default 16)")
    p.add_argument("--output", default=None, help="JSON file (default: <output_dir>/gpu_check/gpu_check-<time>.json)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if device.type != "cuda" and not args.quick:
        print("error: gpu-check needs a CUDA GPU (this machine has none). Run it on a GPU machine, or use "
              "--quick for a tiny dry run of the same stages.", file=sys.stderr)
        return 2
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"error: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}.", file=sys.stderr)
        return 2
    if args.output:
        output = Path(args.output)
    else:
        from .paths import output_dir

        output = output_dir() / "gpu_check" / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if output.exists() and output.is_dir():
        print(f"error: --output {output} is a folder; give a file name.", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)  # fail now, not after minutes of work
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": args.quick,
              "command": "python -m course_lib.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:]),
              "stages": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        for name in stages:
            print(f"==> {name}", flush=True)
            t0 = time.perf_counter()
            try:
                data = STAGES[name](device, args)
                status = "ok"
            except Exception as err:  # record it and go on: one broken stage must not lose the others
                data = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=6)}
                status = "FAILED"
                print(data["traceback"], file=sys.stderr, flush=True)
            data["stage_seconds"] = round(time.perf_counter() - t0, 1)
            result["stages"][name] = data
            print(f"    {name}: {status} in {data['stage_seconds']} s", flush=True)
            result["total_seconds"] = round(time.perf_counter() - started, 1)
            _write(output, result)  # after every stage: a run cut short keeps what it measured
    print(summary_table(result))
    print(f"written: {output}")
    return 0 if all("error" not in s for s in result["stages"].values()) else 1


def _write(output: Path, result: dict) -> None:
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(output)


def summary_table(result: dict) -> str:
    s = result["stages"]
    lines = ["", f"gpu-check summary ({result['total_seconds']} s)"]
    env = s.get("environment", {})
    if env:
        lines.append(f"  {env.get('device')} | matmul precision {env.get('matmul_precision')} | triton {env.get('triton')}")
    for name in ("gpt2_124m_mfu", "char_gpt", "train_gpt2"):
        st = s.get(name)
        if not st:
            continue
        if "error" in st:
            lines.append(f"  {name:<14} FAILED: {st['error'][:160]}")
            continue
        mfu = f" | MFU {st['mfu']:.1%}" if st.get("mfu") else ""
        mem = f" | peak {st['peak_memory_gb']:.1f} GB" if st.get("peak_memory_gb") else ""
        extra = f" | val {st['val_loss_whole_split']}" if "val_loss_whole_split" in st else ""
        lines.append(f"  {name:<14} {st['tokens_per_s']:>10,} tok/s{mfu}{mem}{extra}")
    if "bench" in s and "rows" in s["bench"]:
        for r in s["bench"]["rows"]:
            if r.get("error"):
                lines.append(f"  bench {r['family']}: FAILED {r['error'][:120]}")
            elif r.get("measurement") == "train":
                mfu = f" | MFU {r['mfu']:.1%}" if r.get("mfu") else ""
                lines.append(f"  bench {r['family']:<9} train {r['tokens_per_s']:>12,.0f} tok/s{mfu}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

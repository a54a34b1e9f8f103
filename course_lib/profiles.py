"""One notebook, three sizes: every size setting of the course lives in this file.

- smoke: CI. Proves the code runs; each notebook well under a minute on 2 CPU cores.
- cpu:   a student laptop. Minutes per notebook; results worth reading.
- gpu:   a CUDA box. The lecture-scale models; the reference results.

`auto` picks gpu when CUDA is available, else cpu.

A notebook's first cell holds plain parameters (profile, corpus, seed, output_dir, device) that
papermill can replace. Environment variables override them (COURSE_PROFILE, COURSE_CORPUS,
COURSE_SEED, COURSE_OUTPUT_DIR, COURSE_DEVICE) so that nbval, which cannot inject parameters,
can run the very same notebooks small.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

PROFILE_NAMES = ("smoke", "cpu", "gpu")

# Shared by all character-level transformer milestones (03-07) inside one profile, so that each
# notebook changes exactly one idea and the comparison with the previous milestone is fair.
_CHAR_STEPS = {
    "smoke": dict(batch_size=4, block_size=16, n_embd=16, n_head=2, n_layer=2, max_iters=40,
                  eval_interval=20, eval_iters=2, learning_rate=3e-3, dropout=0.0),
    "cpu": dict(batch_size=16, block_size=64, n_embd=64, n_head=4, n_layer=4, max_iters=3000,
                eval_interval=250, eval_iters=20, learning_rate=3e-3, dropout=0.0),
    "gpu": dict(batch_size=64, block_size=256, n_embd=384, n_head=6, n_layer=6, max_iters=3000,
                eval_interval=500, eval_iters=50, learning_rate=1e-3, dropout=0.0),
}

# notebook key -> profile -> settings. Keys are concept names, not chapter numbers.
SETTINGS: dict[str, dict[str, dict]] = {
    "data_prep": {
        "smoke": dict(batch_size=4, block_size=8, sample_chars=200),
        "cpu": dict(batch_size=4, block_size=8, sample_chars=500),
        "gpu": dict(batch_size=4, block_size=8, sample_chars=500),
    },
    "bigram": {
        "smoke": dict(batch_size=8, block_size=8, max_iters=60, eval_interval=30, eval_iters=2,
                      learning_rate=1e-2, sample_chars=200),
        "cpu": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=40,
                    learning_rate=1e-2, sample_chars=500),
        "gpu": dict(batch_size=64, block_size=8, max_iters=5000, eval_interval=500, eval_iters=100,
                    learning_rate=1e-2, sample_chars=500),
    },
    # 03-07 add one idea each on top of the same sizes (see _CHAR_STEPS). Extra settings:
    #   deep_layers / deep_iters: the deep stack trained with and without residuals (06)
    #   stats_iters: short runs that compare activation statistics with and without LayerNorm (07)
    **{
        key: {name: dict(_CHAR_STEPS[name], sample_chars=200 if name == "smoke" else 500,
                         deep_layers={"smoke": 3, "cpu": 8, "gpu": 12}[name],
                         deep_iters={"smoke": 5, "cpu": 300, "gpu": 500}[name],
                         stats_iters={"smoke": 5, "cpu": 300, "gpu": 500}[name])
              for name in PROFILE_NAMES}
        for key in ("self_attention", "multi_head", "feed_forward", "residual", "layernorm")
    },
    # 08 scales up to the full character GPT. gpu = the well-known lecture run.
    # compare_iters: the same model trained without dropout, to measure the train/val gap.
    # compile: torch.compile the training steps (honoured on CUDA with Triton only; training.py).
    "dropout": {
        "smoke": dict(batch_size=4, block_size=16, n_embd=16, n_head=2, n_layer=2, max_iters=40,
                      eval_interval=20, eval_iters=2, learning_rate=3e-3, dropout=0.1,
                      sample_chars=200, compare_iters=20),
        # lr 2e-3, not the 3e-3 of the smaller models: at width 128 with a constant rate, 3e-3
        # ended at val 1.69 (worse than milestone 6); 2e-3 (dropout 0.05) reached 1.55 and 1e-3
        # (dropout 0.1) 1.60 in the same 3000 steps (measured on 2 cores, see README).
        "cpu": dict(batch_size=16, block_size=64, n_embd=128, n_head=4, n_layer=4, max_iters=3000,
                    eval_interval=250, eval_iters=20, learning_rate=2e-3, dropout=0.1,
                    sample_chars=800, compare_iters=1000),
        "gpu": dict(batch_size=64, block_size=256, n_embd=384, n_head=6, n_layer=6, max_iters=5000,
                    eval_interval=500, eval_iters=200, learning_rate=3e-4, dropout=0.2,
                    sample_chars=1500, compare_iters=5000, compile=True),
    },
    # 09: word-level LSTM. gpu = the original full size of the projects this milestone reproduces
    # (2 x 1024 units, dropout 0.65, 50 epochs); cpu keeps the architecture but shrinks it.
    "lstm": {
        "smoke": dict(emb_size=32, hidden_size=32, n_layers=2, dropout=0.2, embed_dropout=0.05,
                      tie_weights=True, batch_size=8, bptt=16, max_epochs=1, patience=2,
                      learning_rate=3e-3, grad_clip=0.25, min_freq=3, sample_words=40,
                      ablation_epochs=1),
        # About 13 s per epoch on 2 idle cores: 12 epochs + a 3 x 10-epoch ablation take about
        # 9 minutes. 10 ablation epochs are enough to see the plain model stop improving while the
        # regularised one keeps going (at 2 epochs the plain model simply looks best).
        "cpu": dict(emb_size=256, hidden_size=256, n_layers=2, dropout=0.4, embed_dropout=0.1,
                    tie_weights=True, batch_size=32, bptt=35, max_epochs=12, patience=2,
                    learning_rate=2e-3, grad_clip=0.25, min_freq=3, sample_words=120,
                    ablation_epochs=10),
        "gpu": dict(emb_size=1024, hidden_size=1024, n_layers=2, dropout=0.65, embed_dropout=0.1,
                    tie_weights=True, batch_size=20, bptt=35, max_epochs=50, patience=5,
                    learning_rate=1e-3, grad_clip=0.25, min_freq=3, sample_words=200,
                    ablation_epochs=15),
    },
    # 10: GPT-2 with its BPE tokenizer. gpu = the real 124M preset at context 1024.
    "gpt2": {
        "smoke": dict(preset="gpt2-course-tiny", block_size=32, batch_size=4, max_iters=20, eval_interval=10,
                      eval_iters=2, learning_rate=3e-3, dropout=0.0, stride=32, sample_tokens=40),
        # The 50,257-way output layer dominates on a CPU: 4 x 128 tokens per step keeps notebook 10
        # near five minutes of training on 2 cores.
        "cpu": dict(preset="gpt2-course-small", block_size=128, batch_size=4, max_iters=500, eval_interval=100,
                    eval_iters=8, learning_rate=1e-3, dropout=0.1, stride=128, sample_tokens=120),
        "gpu": dict(preset="gpt2", block_size=1024, batch_size=8, max_iters=1000, eval_interval=100,
                    eval_iters=20, learning_rate=3e-4, dropout=0.1, stride=1024, sample_tokens=256,
                    compile=True),
    },
    # 11: fine-tuning notebook 10's checkpoint on the three task tables.
    # eval_limit: test examples per task to score (None = all); base_iters: the tiny base model
    # trained on the spot when notebook 10's checkpoint is missing (smoke profile only).
    "finetune": {
        "smoke": dict(max_steps=12, batch_size=4, learning_rate=1e-3, warmup_steps=2, eval_limit=6,
                      base_iters=20, sample_examples=2),
        # cpu, measured on 2 cores: 400 steps at 5e-4 left sorting near chance (0.26-0.30); 800 at
        # 1e-3 gave 0.39-0.44 with chat perplexity 365 -> 250; 1200 steps overfit the chat replies.
        "cpu": dict(max_steps=800, batch_size=8, learning_rate=1e-3, warmup_steps=60, eval_limit=None,
                    base_iters=0, sample_examples=4),
        "gpu": dict(max_steps=1500, batch_size=16, learning_rate=1e-4, warmup_steps=100, eval_limit=None,
                    base_iters=0, sample_examples=6),
    },
    # 12: every checkpoint on the same test text. test_chars: how much of the test split to score
    # (None = all of it).
    "comparison": {
        "smoke": dict(test_chars=2000, sample_tokens=40, temperature=0.8),
        "cpu": dict(test_chars=None, sample_tokens=300, temperature=0.8),
        "gpu": dict(test_chars=None, sample_tokens=400, temperature=0.8),
    },
}


class Settings(SimpleNamespace):
    """Attribute access for notebooks (`cfg.batch_size`) plus a dict for printing/saving."""

    def as_dict(self) -> dict:
        return dict(vars(self))

    def __getattr__(self, name):  # only called when the attribute is missing
        known = ", ".join(sorted(vars(self)))
        raise AttributeError(f"This profile has no setting {name!r}. Known settings: {known}.")


def resolve_profile(profile: str = "auto") -> str:
    """Turn 'auto' into 'gpu' (CUDA present) or 'cpu'; validate explicit names."""
    profile = (profile or "auto").strip().lower()
    if profile == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILE_NAMES:
        raise ValueError(
            f"Unknown profile {profile!r}. Use one of: auto, {', '.join(PROFILE_NAMES)} "
            "(set it in the notebook's parameters cell or with COURSE_PROFILE=...)."
        )
    return profile


def settings_for(notebook: str, profile: str = "auto") -> Settings:
    """The sizes for one notebook in one profile."""
    if notebook not in SETTINGS:
        raise KeyError(f"No settings for notebook {notebook!r}. Known: {', '.join(SETTINGS)}.")
    return Settings(**SETTINGS[notebook][resolve_profile(profile)])


def env_overrides(**params):
    """Apply COURSE_* environment variables on top of notebook parameters (env wins)."""
    out = dict(params)
    for key, cast in (("profile", str), ("corpus", str), ("seed", int), ("output_dir", str), ("device", str)):
        value = os.environ.get(f"COURSE_{key.upper()}")
        if value not in (None, ""):
            try:
                out[key] = cast(value)
            except ValueError as err:
                raise ValueError(f"COURSE_{key.upper()}={value!r} is not a valid {cast.__name__}.") from err
    return out


@dataclass
class NotebookRun:
    """Everything a notebook needs after its setup cell."""

    notebook: str
    profile: str
    cfg: Settings
    corpus: str
    seed: int
    device: torch.device
    output_dir: Path
    generator: torch.Generator = field(repr=False)

    @property
    def figures_dir(self) -> Path:
        path = self.output_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def checkpoints_dir(self) -> Path:
        path = self.output_dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def info(self) -> dict:
        """What goes into a milestone header and results.json."""
        return {"notebook": self.notebook, "profile": self.profile, "corpus": self.corpus,
                "seed": self.seed, "device": self.device.type}

    def finish_milestone(self, n: int, title: str, **kwargs) -> dict:
        """Checkpoint + milestone file + results row + comparison line (milestones.finish_milestone)."""
        from .milestones import finish_milestone

        return finish_milestone(self, n, title, **kwargs)


def setup_notebook(notebook: str, profile: str = "auto", corpus: str = "bundled", seed: int = 1337,
                   output_dir: str | None = None, device: str = "auto", verbose: bool = True) -> NotebookRun:
    """The second cell of every notebook: resolve parameters, seed, pick the device, print a summary."""
    from .device import describe_device, pick_device, seed_everything
    from .paths import output_dir as resolve_output_dir

    params = env_overrides(profile=profile, corpus=corpus, seed=seed, output_dir=output_dir, device=device)
    chosen = resolve_profile(params["profile"])
    cfg = settings_for(notebook, chosen)
    dev = pick_device(params["device"])
    if dev.type == "cpu":
        # cpu/gpu sizes: use every core for matmuls (torch's default is sometimes lower inside
        # containers). smoke: the models are so small that threads cost more than they save.
        # An explicit OMP_NUM_THREADS (e.g. on a shared machine) always wins.
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        else:
            torch.set_num_threads(1 if chosen == "smoke" else max(1, os.cpu_count() or 1))
    generator = seed_everything(params["seed"])
    out = resolve_output_dir(params["output_dir"])
    run = NotebookRun(notebook=notebook, profile=chosen, cfg=cfg, corpus=params["corpus"],
                      seed=params["seed"], device=dev, output_dir=out, generator=generator)
    if verbose:
        how = " (auto)" if (params["profile"] or "auto").lower() == "auto" else ""
        print(f"profile={chosen}{how} | corpus={run.corpus} | seed={run.seed} | outputs -> {out}")
        print(describe_device(dev))
    return run

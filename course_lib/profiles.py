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
# Every model trains with TrainConfig's reference recipe (warm-up, cosine decay to lr/10, AdamW
# with weight decay 0.1 on matrices, betas (0.9, 0.99), clipping 1.0); only the peak rate differs
# by family (_CHAR_LR). smoke: a 10-step warm-up, since 40 steps never reach the default 100.
_CHAR_STEPS = {
    "smoke": dict(batch_size=4, block_size=16, n_embd=16, n_head=2, n_layer=2, max_iters=40,
                  eval_interval=20, eval_iters=2, learning_rate=3e-3, warmup_iters=10, dropout=0.0),
    "cpu": dict(batch_size=16, block_size=64, n_embd=64, n_head=4, n_layer=4, max_iters=3000,
                eval_interval=250, eval_iters=20, learning_rate=3e-3, dropout=0.0),
    "gpu": dict(batch_size=64, block_size=256, n_embd=384, n_head=6, n_layer=6, max_iters=3000,
                eval_interval=500, eval_iters=50, learning_rate=1e-3, dropout=0.0),
}

# The peak learning rate, cpu profile, chosen on the validation split (whole split, seed 1337,
# 3000 steps; measured on 2 cores, README "How the settings were chosen"):
# - the one-block models without residuals (03-05) learn slowly: cosine from 3e-3 left 05 worse
#   than 04 (2.345 vs 2.335); from 1e-2: 03 2.273, 04 2.018, 05 1.772.
# - the deep residual stack (06-08) uses the full model's rate: for milestone 8's model (128 wide,
#   no dropout) 3e-3 gave 1.470, 2e-3 1.481, 6e-3 1.484, 1e-2 1.499. At 3e-3, 06 1.680 and
#   07 1.573. (At their own best rate, 1e-2, 06 and 07 both reach 1.54: with a tuned rate,
#   LayerNorm's gain at 4 layers is robustness across rates, which 07's exercise measures.)
_CHAR_LR = {"smoke": {}, "cpu": {"self_attention": 1e-2, "multi_head": 1e-2, "feed_forward": 1e-2}, "gpu": {}}

# notebook key -> profile -> settings. Keys are concept names, not chapter numbers.
SETTINGS: dict[str, dict[str, dict]] = {
    "data_prep": {
        "smoke": dict(batch_size=4, block_size=8, sample_chars=200),
        "cpu": dict(batch_size=4, block_size=8, sample_chars=500),
        "gpu": dict(batch_size=4, block_size=8, sample_chars=500),
    },
    # 02: the same steps train the written-out loop (constant rate) and the milestone (the recipe).
    # smoke: a warm-up that fits inside its 60 steps (cpu/gpu use TrainConfig's default warm-up).
    "bigram": {
        "smoke": dict(batch_size=8, block_size=8, max_iters=60, eval_interval=30, eval_iters=2,
                      learning_rate=1e-2, sample_chars=200, warmup_iters=10),
        "cpu": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=40,
                    learning_rate=1e-2, sample_chars=500),
        "gpu": dict(batch_size=64, block_size=8, max_iters=5000, eval_interval=500, eval_iters=100,
                    learning_rate=1e-2, sample_chars=500),
    },
    # 03-07 add one idea each on top of the same sizes (see _CHAR_STEPS). Extra settings:
    #   deep_layers / deep_iters: the deep stack trained with and without residuals (06)
    #   stats_iters: short runs that compare activation statistics with and without LayerNorm (07)
    **{
        key: {name: dict(_CHAR_STEPS[name], **({"learning_rate": _CHAR_LR[name][key]} if key in _CHAR_LR[name] else {}),
                         sample_chars=200 if name == "smoke" else 500,
                         deep_layers={"smoke": 3, "cpu": 8, "gpu": 12}[name],
                         deep_iters={"smoke": 5, "cpu": 300, "gpu": 500}[name],
                         stats_iters={"smoke": 5, "cpu": 300, "gpu": 500}[name])
              for name in PROFILE_NAMES}
        for key in ("self_attention", "multi_head", "feed_forward", "residual", "layernorm")
    },
    # 08 scales up to the full character GPT (08a: wider, no dropout), then adds dropout (08), both
    # for max_iters steps on the same batches; milestone 8 keeps whichever scores the lower
    # validation loss (the notebook says which). gpu = nanoGPT's character recipe, the well-known
    # lecture run (6 x 384, context 256, dropout 0.2, lr 1e-3 -> 1e-4, 5000 steps).
    # overfit_chars / overfit_iters: exercise 3 of 08 trains on only this many training characters
    # for this many steps, with and without dropout (a setting where there is something to overfit).
    # cpu, measured on 2 busy cores: 20,000 chars x 400 steps did not overfit yet (both val losses
    # still falling); 5,000 x 500 did: no dropout val 2.63 -> 2.94 while dropout 0.1 ended at 2.59.
    # compile: torch.compile the training steps (honoured on CUDA with Triton only; training.py).
    "dropout": {
        "smoke": dict(batch_size=4, block_size=16, n_embd=16, n_head=2, n_layer=2, max_iters=40,
                      eval_interval=20, eval_iters=2, learning_rate=3e-3, warmup_iters=10, dropout=0.1,
                      sample_chars=200, overfit_chars=2000, overfit_iters=10),
        # the learning rate of 06-07 (3e-3, chosen for this model: see _CHAR_LR); dropout 0.1 at
        # equal steps measured 1.568 (lr 2e-3) against 1.481 without it: the notebook re-measures.
        "cpu": dict(batch_size=16, block_size=64, n_embd=128, n_head=4, n_layer=4, max_iters=3000,
                    eval_interval=250, eval_iters=20, learning_rate=3e-3, dropout=0.1,
                    sample_chars=800, overfit_chars=5000, overfit_iters=500),
        "gpu": dict(batch_size=64, block_size=256, n_embd=384, n_head=6, n_layer=6, max_iters=5000,
                    eval_interval=500, eval_iters=200, learning_rate=1e-3, dropout=0.2,
                    sample_chars=1500, compile=True, overfit_chars=100_000, overfit_iters=1000),
    },
    # 09: word-level LSTM. gpu = the original full size of the projects this milestone reproduces
    # (2 x 1024 units, dropout 0.65, 50 epochs); cpu keeps the architecture but shrinks it.
    # 09b's ablation trains three variants on the first `ablation_fraction` of the training words,
    # in batches of `ablation_batch_size` rows at `ablation_learning_rate`, for at most
    # `ablation_epochs` epochs each (early stopping after `patience` epochs without a better
    # validation loss). On such a slice the unregularised model overfits within a few epochs, so
    # the plateau scheduler and early stopping visibly act (cpu, measured on 2 busy cores: plain
    # best at epoch 6, rate halved twice, stopped at 8; tied + dropouts still improving at 12).
    "lstm": {
        "smoke": dict(emb_size=32, hidden_size=32, n_layers=2, dropout=0.2, embed_dropout=0.05,
                      tie_weights=True, batch_size=8, bptt=16, max_epochs=1, patience=2,
                      learning_rate=3e-3, grad_clip=0.25, min_freq=3, sample_words=40,
                      ablation_fraction=0.2, ablation_batch_size=8, ablation_learning_rate=3e-3,
                      ablation_epochs=2),
        # About 5 s per epoch on 2 idle cores. At most 30 epochs, chosen on validation (seed 1337):
        # 12 epochs ended at perplexity 66.2 still improving; with 30 the best epoch is 26 (58.6)
        # and early stopping ends the run at epoch 28, about 2 minutes.
        "cpu": dict(emb_size=256, hidden_size=256, n_layers=2, dropout=0.4, embed_dropout=0.1,
                    tie_weights=True, batch_size=32, bptt=35, max_epochs=30, patience=2,
                    learning_rate=2e-3, grad_clip=0.25, min_freq=3, sample_words=120,
                    ablation_fraction=0.25, ablation_batch_size=8, ablation_learning_rate=3e-3,
                    ablation_epochs=12),
        "gpu": dict(emb_size=1024, hidden_size=1024, n_layers=2, dropout=0.65, embed_dropout=0.1,
                    tie_weights=True, batch_size=20, bptt=35, max_epochs=50, patience=5,
                    learning_rate=1e-3, grad_clip=0.25, min_freq=3, sample_words=200,
                    ablation_fraction=0.25, ablation_batch_size=10, ablation_learning_rate=1e-3,
                    ablation_epochs=20),
    },
    # 10: GPT-2's architecture and BPE tokenizer, trained from scratch (or, with the notebook's
    # `base = "gpt2"`, from OpenAI's weights at `base_learning_rate`). keep_best: end with the
    # weights of the best validation loss; patience: stop after that many evaluations without one.
    # The bundled corpus holds about 110K BPE training tokens: far too few for the 124M model (it
    # memorises them within a few hundred steps), so the gpu profile trains a 6-layer, 384-wide
    # GPT-2 ("gpt2-course-medium", about 30M parameters, most of them the embedding table) at
    # context 256 with dropout 0.2 and early stopping. The 124M preset needs a corpus of tens of
    # millions of tokens (README: "GPT-2 124M needs a bigger corpus").
    "gpt2": {
        "smoke": dict(preset="gpt2-course-tiny", block_size=32, batch_size=4, max_iters=20, eval_interval=10,
                      eval_iters=2, learning_rate=3e-3, warmup_iters=2, dropout=0.0, stride=32,
                      keep_best=True, patience=None, sample_tokens=40, base_learning_rate=3e-4),
        # The 50,257-way output layer dominates on a CPU: 4 x 128 tokens per step keeps notebook 10
        # near three minutes of training on 2 cores. Learning rate chosen on validation loss
        # (500 steps, seed 1337): 1e-3 -> 5.463, 2e-3 -> 5.323 nats/token (1e-3 for 1000 steps,
        # twice the time: 5.256).
        "cpu": dict(preset="gpt2-course-small", block_size=128, batch_size=4, max_iters=500, eval_interval=100,
                    eval_iters=8, learning_rate=2e-3, warmup_iters=50, dropout=0.1, stride=128,
                    keep_best=True, patience=None, sample_tokens=120, base_learning_rate=1e-4),
        "gpu": dict(preset="gpt2-course-medium", block_size=256, batch_size=32, max_iters=3000, eval_interval=100,
                    eval_iters=20, learning_rate=1e-3, warmup_iters=100, dropout=0.2, stride=256,
                    keep_best=True, patience=5, sample_tokens=256, base_learning_rate=1e-4, compile=True),
    },
    # 11 / 11b: fine-tuning notebook 10's checkpoint on the three task tables, and scoring it.
    # eval_interval: steps between dev-loss checks (finetune keeps the best dev weights);
    # eval_limit: examples per task that 11b scores on dev and test (None = all);
    # experiment_steps: each of the two runs of 11's predict-then-measure exercise;
    # chat_tokens: the longest greedy reply; base_iters: the tiny base trained on the spot when
    # notebook 10's checkpoint is missing (smoke profile only).
    "finetune": {
        "smoke": dict(max_steps=12, batch_size=4, learning_rate=1e-3, warmup_steps=2, eval_interval=4,
                      eval_limit=6, base_iters=20, sample_examples=2, experiment_steps=4, chat_tokens=12),
        # cpu: chosen on the DEV split (never test), from notebook 10's cpu checkpoint, by the best dev
        # masked loss: lr 1e-3 x 800 steps 3.048 (best at step 300, then rising: overfitting); 1e-3 x
        # 400 3.025 (at 300); 5e-4 x 800 3.034 (at 400); 5e-4 x 600 3.019 (at 600, still falling).
        # Dev sorting accuracy was 0.27-0.40 in all four runs, every interval overlapping the others.
        "cpu": dict(max_steps=600, batch_size=8, learning_rate=5e-4, warmup_steps=60, eval_interval=100,
                    eval_limit=None, base_iters=0, sample_examples=3, experiment_steps=300, chat_tokens=40),
        "gpu": dict(max_steps=1500, batch_size=16, learning_rate=1e-4, warmup_steps=100, eval_interval=100,
                    eval_limit=None, base_iters=0, sample_examples=4, experiment_steps=500, chat_tokens=40),
    },
    # 12: every checkpoint on the same test text. test_chars: how much of the test split to score
    # (None = all of it).
    "comparison": {
        "smoke": dict(test_chars=2000, sample_tokens=40, temperature=0.8),
        "cpu": dict(test_chars=None, sample_tokens=300, temperature=0.8),
        "gpu": dict(test_chars=None, sample_tokens=400, temperature=0.8),
    },
}

# 03-05, experiment_iters: the runs of each notebook's predict-then-measure exercise (it trains
# the one-layer model twice, with and without one change). cpu: at the reference run's speed
# (3000 steps of milestones 3 / 5 in 15 / 39 s on 2 cores) both runs take under two minutes;
# 500 steps were too few to separate anything (the models had not reached the bigram's loss).
for _key in ("self_attention", "multi_head", "feed_forward"):
    for _profile, _iters in (("smoke", 10), ("cpu", 2000), ("gpu", 1000)):
        SETTINGS[_key][_profile].update(experiment_iters=_iters)


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
    from .device import describe_device, pick_device, seed_everything, set_cpu_threads
    from .paths import output_dir as resolve_output_dir

    params = env_overrides(profile=profile, corpus=corpus, seed=seed, output_dir=output_dir, device=device)
    # First, before anything changes global state: an unusable output folder raises FolderError
    # naming output_dir / COURSE_OUTPUT_DIR and the fix, not a bare OS error from a later write.
    out = resolve_output_dir(params["output_dir"])
    chosen = resolve_profile(params["profile"])
    cfg = settings_for(notebook, chosen)
    dev = pick_device(params["device"])
    if dev.type == "cpu":
        set_cpu_threads(chosen)  # every core; 1 for smoke; OMP_NUM_THREADS wins
    generator = seed_everything(params["seed"])
    run = NotebookRun(notebook=notebook, profile=chosen, cfg=cfg, corpus=params["corpus"],
                      seed=params["seed"], device=dev, output_dir=out, generator=generator)
    if verbose:
        how = " (auto)" if (params["profile"] or "auto").lower() == "auto" else ""
        print(f"profile={chosen}{how} | corpus={run.corpus} | seed={run.seed} | outputs -> {out}")
        print(describe_device(dev))
    return run

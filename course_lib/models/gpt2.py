"""GPT-2 is our GPT class with GPT-2's choices switched on: biases, tied embeddings, GELU (tanh),
pre-norm blocks, learned positions, the 50,257-token BPE vocabulary. This module holds the
presets and the loader that maps OpenAI's published weights (Hugging Face format) onto it:

    from_pretrained("gpt2")      OpenAI's GPT-2 small as our GPT (sizes read from its config.json)
    load_base("gpt2")            the same, or a course checkpoint ("notebook10", a name, a path):
                                 what fine-tuning (notebook 11, `python -m course_lib.train finetune`)
                                 and continued pre-training start from
"""

from __future__ import annotations

from pathlib import Path

import torch

from .gpt import GPT, GPTConfig

GPT2_VOCAB_SIZE = 50257

# name -> (n_layer, n_head, n_embd, block_size). The first four are OpenAI's released sizes;
# the course sizes keep GPT-2's design but fit one GPU on the bundled corpus (medium, ~30M: the
# notebook 10 gpu profile; the 124M model needs a far larger corpus), a laptop (small) or a CI
# smoke test (tiny).
GPT2_PRESETS = {
    "gpt2": (12, 12, 768, 1024),          # 124M
    "gpt2-medium": (24, 16, 1024, 1024),  # 350M
    "gpt2-large": (36, 20, 1280, 1024),   # 774M
    "gpt2-xl": (48, 25, 1600, 1024),      # 1558M
    "gpt2-course-medium": (6, 6, 384, 256),
    "gpt2-course-small": (4, 4, 128, 128),
    "gpt2-course-tiny": (2, 2, 32, 32),
}


def gpt2_config(preset: str = "gpt2", **overrides) -> GPTConfig:
    if preset not in GPT2_PRESETS:
        raise ValueError(f"Unknown GPT-2 preset {preset!r}; choose one of {', '.join(GPT2_PRESETS)}.")
    n_layer, n_head, n_embd, block_size = GPT2_PRESETS[preset]
    values = dict(vocab_size=GPT2_VOCAB_SIZE, block_size=block_size, n_embd=n_embd, n_head=n_head,
                  n_layer=n_layer, dropout=0.0, bias=True, tie_weights=True)
    values.update(overrides)
    return GPTConfig(**values)


# Hugging Face name -> our name, for one block (i = layer index). Conv1D weights are stored
# transposed, (in, out) instead of nn.Linear's (out, in), so they are transposed on the way in.
_BLOCK_MAP = {
    "ln_1.weight": "ln1.weight", "ln_1.bias": "ln1.bias",
    "attn.c_attn.weight": "attn.qkv.weight", "attn.c_attn.bias": "attn.qkv.bias",
    "attn.c_proj.weight": "attn.proj.weight", "attn.c_proj.bias": "attn.proj.bias",
    "ln_2.weight": "ln2.weight", "ln_2.bias": "ln2.bias",
    "mlp.c_fc.weight": "ffn.fc.weight", "mlp.c_fc.bias": "ffn.fc.bias",
    "mlp.c_proj.weight": "ffn.proj.weight", "mlp.c_proj.bias": "ffn.proj.bias",
}
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def padded_vocab(vocab_size: int = GPT2_VOCAB_SIZE, multiple: int = 64) -> int:
    """The next multiple of `multiple` (50,257 -> 50,304): GPU matmul kernels are fastest when
    every dimension divides by 64 (nanoGPT measured about 25 % faster training for GPT-2)."""
    return -(-vocab_size // multiple) * multiple


def convert_hf_state_dict(hf_state: dict, n_layer: int, padded_vocab_size: int | None = None) -> dict:
    """Rename (and transpose where needed) a Hugging Face GPT2LMHeadModel state dict for GPT.
    With padded_vocab_size, the embedding gets zero rows appended (never used as input; their
    logits are cut off by GPT.logits)."""
    hf_state = {k.removeprefix("transformer."): v for k, v in hf_state.items()}
    layers = {int(k.split(".")[1]) for k in hf_state if k.startswith("h.") and k.split(".")[1].isdigit()}
    if len(layers) != n_layer:  # converting only some layers would give a silently different model
        raise ValueError(f"The weights have {len(layers)} transformer layers but the config says {n_layer}.")
    wte = hf_state["wte.weight"]
    if padded_vocab_size and padded_vocab_size > wte.size(0):
        wte = torch.cat([wte, wte.new_zeros(padded_vocab_size - wte.size(0), wte.size(1))])
    ours = {"tok_emb.weight": wte, "pos_emb.weight": hf_state["wpe.weight"],
            "ln_f.weight": hf_state["ln_f.weight"], "ln_f.bias": hf_state["ln_f.bias"]}
    for i in range(n_layer):
        for hf_name, our_name in _BLOCK_MAP.items():
            tensor = hf_state[f"h.{i}.{hf_name}"]
            ours[f"blocks.{i}.{our_name}"] = tensor.t().contiguous() if hf_name in _TRANSPOSED else tensor
    ours["lm_head.weight"] = ours["tok_emb.weight"]  # tied
    return ours


def gpt_from_hf_state_dict(hf_state: dict, config: GPTConfig) -> GPT:
    model = GPT(config)
    converted = convert_hf_state_dict(hf_state, config.n_layer, config.padded_vocab_size)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"Weights do not fit the config: missing {missing[:3]}, unexpected {unexpected[:3]}.")
    return model


# ----------------------------------------------------------------------------- published weights

# OpenAI's released sizes, as published on the Hugging Face Hub (the "openai-community" account).
PUBLISHED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
HF_ACCOUNT = "openai-community"
HF_FILES = ("config.json", "model.safetensors")


class PretrainedWeightsError(RuntimeError):
    """The published weights are not here (or not readable); the message says how to get them."""


def hf_cache_dir() -> str:
    """Where the Hugging Face libraries keep downloads (HF_HUB_CACHE / HF_HOME move it)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def fetch_instructions(name: str) -> str:
    """How to put the published weights of `name` into the Hugging Face cache, in one sentence."""
    repo = f"{HF_ACCOUNT}/{name}"
    one_liner = (f"python -c \"from huggingface_hub import hf_hub_download as get; "
                 f"[get('{repo}', f) for f in {HF_FILES!r}]\"")
    return (f"Fetch them once on a machine with internet: `hf download {repo} {' '.join(HF_FILES)}` or "
            f"{one_liner} (about 0.5 GB for gpt2, 6.5 GB for gpt2-xl). They land in the Hugging Face cache "
            f"{hf_cache_dir()}; for an offline machine copy that folder over (or point HF_HUB_CACHE at a copy), "
            f"or pass a folder holding {' and '.join(HF_FILES)} instead of the name.")


def pretrained_files(name: str) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a published GPT-2 (from the Hugging Face cache, downloaded
    there once when online) or of a local folder in the Hugging Face layout (save_pretrained)."""
    folder = Path(str(name)).expanduser()
    if folder.is_dir():
        paths = tuple(folder / f for f in HF_FILES)
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise PretrainedWeightsError(f"The folder {folder} is not a Hugging Face GPT-2 model: it has no "
                                         f"{' or '.join(missing)}. Use a folder written by save_pretrained, or "
                                         f"one of {', '.join(PUBLISHED)}.")
        return paths
    if name not in PUBLISHED:
        raise PretrainedWeightsError(f"No published weights called {name!r}: use one of {', '.join(PUBLISHED)}, "
                                     "or a folder holding config.json and model.safetensors.")
    from huggingface_hub import hf_hub_download

    try:  # the cache answers first; only files it lacks are downloaded (or, offline, reported)
        return tuple(Path(hf_hub_download(repo_id=f"{HF_ACCOUNT}/{name}", filename=f)) for f in HF_FILES)
    except Exception as err:  # offline, no network, proxy, hub down: all mean "not here" to a student
        from huggingface_hub import constants

        reason = ("offline mode, HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE
                  else f"{type(err).__name__}: {' '.join(str(err).split())[:150]}")
        raise PretrainedWeightsError(f"OpenAI's {name} weights are not in the Hugging Face cache and could not be "
                                     f"downloaded ({reason}). {fetch_instructions(name)}") from err


def config_from_hf(hf_config: dict, **overrides) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT-2 config.json: the sizes come from the file (so any
    GPT-2-shaped model loads, the published ones and tiny test models alike), after checking that
    it uses no option our GPT class does not implement."""
    if hf_config.get("model_type") != "gpt2":
        raise PretrainedWeightsError(f"config.json describes a {hf_config.get('model_type')!r} model, not GPT-2.")
    n_embd = hf_config["n_embd"]
    unsupported = {
        "activation_function": (hf_config.get("activation_function", "gelu_new"), ("gelu_new", "gelu_pytorch_tanh")),
        "n_inner": (hf_config.get("n_inner"), (None, 4 * n_embd)),
        "layer_norm_epsilon": (hf_config.get("layer_norm_epsilon", 1e-5), (1e-5,)),
        "tie_word_embeddings": (hf_config.get("tie_word_embeddings", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (hf_config.get("scale_attn_by_inverse_layer_idx", False), (False,)),
        "scale_attn_weights": (hf_config.get("scale_attn_weights", True), (True,)),
    }
    wrong = [f"{key}={value!r}" for key, (value, allowed) in unsupported.items() if value not in allowed]
    if wrong:
        raise PretrainedWeightsError(f"This GPT-2 variant uses settings the course's GPT does not implement: "
                                     f"{', '.join(wrong)}.")
    sizes = dict(vocab_size=hf_config["vocab_size"], block_size=hf_config["n_positions"], n_embd=n_embd,
                 n_head=hf_config["n_head"], n_layer=hf_config["n_layer"])
    return gpt2_config("gpt2", **{**sizes, **overrides})


def from_pretrained(name: str = "gpt2", **overrides) -> GPT:
    """A published GPT-2 ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl") or a Hugging Face-format
    folder, as the course's GPT. The sizes are read from its config.json.

    overrides: GPTConfig fields to change, e.g. dropout=0.1 for further training, or
    padded_vocab_size=padded_vocab() (the padding rows start at zero and are never used).
    Raises PretrainedWeightsError, with the command that fetches the files, when they are missing."""
    import json

    from safetensors.torch import load_file

    config_path, weights_path = pretrained_files(name)
    try:
        config = config_from_hf(json.loads(config_path.read_text(encoding="utf-8")), **overrides)
        return gpt_from_hf_state_dict(load_file(str(weights_path)), config)
    except PretrainedWeightsError:
        raise
    except Exception as err:  # a truncated download, a file of another model, a broken config.json
        raise PretrainedWeightsError(
            f"The files of {name!r} in {weights_path.parent} are not a usable GPT-2 ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}). Delete that folder and fetch them again. "
            f"{fetch_instructions(name) if name in PUBLISHED else ''}".strip()) from err


def check_bpe_vocab(model: GPT, name: str) -> None:
    """The course feeds GPT-2's BPE ids (0..50,256) to these models: a model with another vocabulary
    would fail deep inside the embedding, so say so up front."""
    if model.vocab_size != GPT2_VOCAB_SIZE:
        raise PretrainedWeightsError(f"{name!r} has a vocabulary of {model.vocab_size:,} tokens, not GPT-2's "
                                     f"{GPT2_VOCAB_SIZE:,}: the course trains it on GPT-2's BPE tokens, so it needs "
                                     "a GPT-2 vocabulary.")


# The base a fine-tuning run (notebook 11, `python -m course_lib.train finetune`) starts from.
COURSE_GPT2 = "notebook10"  # alias of the course's own GPT-2: checkpoint "gpt2" of notebook 10 / `train gpt2`


def load_base(base: str = COURSE_GPT2, output_dir=None, device="cpu") -> GPT:
    """The GPT-2 (BPE) model to fine-tune or continue training, on `device`, in eval mode.

    base:
      "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"  OpenAI's published weights (see from_pretrained)
      a folder with config.json + model.safetensors     a Hugging Face-format GPT-2 (save_pretrained)
      "notebook10"                                       the course's own GPT-2: checkpoint "gpt2" that
                                                         notebook 10 or `python -m course_lib.train gpt2` wrote
      any other checkpoint name or path                  a course checkpoint of a GPT with the BPE tokenizer
                                                         (e.g. "finetuned", or a train_gpt2 --out folder)
    Errors (missing weights, a character model, ...) say what to do instead."""
    from ..checkpoints import CheckpointError
    from ..registry import load_model

    folder = Path(str(base)).expanduser()
    if base in PUBLISHED or (folder.is_dir() and (folder / "config.json").is_file()):
        model = from_pretrained(str(base))
        check_bpe_vocab(model, base)
        return model.to(device).eval()
    loaded = load_model("gpt2" if base == COURSE_GPT2 else str(base), output_dir, device)
    kind, tokenizer = loaded.meta.get("model"), (loaded.meta.get("tokenizer") or {}).get("kind")
    if kind != "GPT" or tokenizer != "gpt2-bpe":
        raise CheckpointError(f"{base!r} is a {kind} with a {tokenizer} tokenizer; a GPT-2 base must be a GPT with "
                              f"GPT-2's BPE tokenizer: use {COURSE_GPT2!r}, one of {', '.join(PUBLISHED)}, or a "
                              "checkpoint of `python -m course_lib.train gpt2` / train_gpt2.")
    return loaded.model.eval()


@torch.no_grad()
def parameter_breakdown(model: GPT) -> dict:
    """Where the parameters are: embeddings vs transformer blocks vs final norm."""
    blocks = sum(p.numel() for p in model.blocks.parameters())
    return {"token embedding (tied with lm_head)": model.tok_emb.weight.numel(),
            "position embedding": model.pos_emb.weight.numel(),
            "transformer blocks": blocks,
            "final LayerNorm": sum(p.numel() for p in model.ln_f.parameters()),
            "total": model.num_parameters()}

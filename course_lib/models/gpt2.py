"""GPT-2 is our GPT class with GPT-2's choices switched on: biases, tied embeddings, GELU (tanh),
pre-norm blocks, learned positions, the 50,257-token BPE vocabulary. This module holds the
presets and the loader that maps OpenAI's published weights (Hugging Face format) onto it.
"""

from __future__ import annotations

import torch

from .gpt import GPT, GPTConfig

GPT2_VOCAB_SIZE = 50257

# name -> (n_layer, n_head, n_embd, block_size). The first four are OpenAI's released sizes;
# the course sizes keep GPT-2's design but fit a laptop (small) or a CI smoke test (tiny).
GPT2_PRESETS = {
    "gpt2": (12, 12, 768, 1024),          # 124M
    "gpt2-medium": (24, 16, 1024, 1024),  # 350M
    "gpt2-large": (36, 20, 1280, 1024),   # 774M
    "gpt2-xl": (48, 25, 1600, 1024),      # 1558M
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


def from_pretrained(name: str = "gpt2") -> GPT:
    """OpenAI's published GPT-2 weights in our model. Needs internet the first time (then the
    Hugging Face cache in ~/.cache/huggingface serves it offline)."""
    if name not in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        raise ValueError(f"No published weights called {name!r}: use gpt2, gpt2-medium, gpt2-large or gpt2-xl.")
    try:
        from huggingface_hub import hf_hub_download
        from safetensors.torch import load_file

        path = hf_hub_download(repo_id=f"openai-community/{name}", filename="model.safetensors")
    except Exception as err:
        raise RuntimeError(
            f"Could not get the {name} weights ({type(err).__name__}: {err}). They download from the "
            "Hugging Face Hub once (about 500 MB for gpt2); offline, copy a Hugging Face cache folder "
            "(~/.cache/huggingface) from a machine that has them."
        ) from err
    return gpt_from_hf_state_dict(load_file(path), gpt2_config(name))


@torch.no_grad()
def parameter_breakdown(model: GPT) -> dict:
    """Where the parameters are: embeddings vs transformer blocks vs final norm."""
    blocks = sum(p.numel() for p in model.blocks.parameters())
    return {"token embedding (tied with lm_head)": model.tok_emb.weight.numel(),
            "position embedding": model.pos_emb.weight.numel(),
            "transformer blocks": blocks,
            "final LayerNorm": sum(p.numel() for p in model.ln_f.parameters()),
            "total": model.num_parameters()}

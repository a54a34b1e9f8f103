"""The checkpoint registry: every notebook's trained model, found by name, rebuilt in one call.

Each notebook saves `outputs/checkpoints/<name>.pt` (weights; git-ignored, remade by
`make course`) and `<name>.json` (metadata: model kind, config, tokenizer, profile, metrics;
committed). Notebook 12, `python -m course_lib.generate` and the web app all go through here:

    list_checkpoints()                 -> [{"name": "bigram", "model": "BigramLM", ...}, ...]
    loaded = load_model("dropout")     -> LoadedModel(model, tokenizer, meta)
    loaded.generate("WREN:", 200, temperature=0.8)
    loaded.evaluate_text(test_text)    -> EvalResult with bits per character
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .training import CheckpointError, load_checkpoint
from .paths import output_dir as default_output_dir

# The notebook that writes each checkpoint, for "how do I get it?" messages.
WRITTEN_BY = {"bigram": "02_bigram", "self_attention": "03_self_attention", "multi_head": "04_multi_head",
              "feed_forward": "05_feed_forward", "residual": "06_residual", "layernorm": "07_layernorm",
              "dropout": "08_dropout", "lstm": "09_lstm", "gpt2": "10_gpt2", "finetuned": "11_finetuning"}


def checkpoints_dir(output_dir=None) -> Path:
    return Path(output_dir or default_output_dir()) / "checkpoints"


def list_checkpoints(output_dir=None) -> list[dict]:
    """Metadata of every registered checkpoint, with `name` and `has_weights` added."""
    rows = []
    for meta_path in sorted(checkpoints_dir(output_dir).glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue  # a damaged metadata file is skipped here; load_model reports it by name
        weights = meta_path.with_suffix(".pt")
        rows.append({"name": meta_path.stem, "has_weights": weights.exists(), **meta})
    return rows


def _missing_message(name: str, known: list[str]) -> str:
    notebook = WRITTEN_BY.get(name)
    how = (f"run notebooks/{notebook}.ipynb (or `make course`)" if notebook
           else "check the name")
    have = ", ".join(known) or "none yet"
    return f"No trained checkpoint {name!r}: {how}. Available: {have}."


def build_tokenizer(spec: dict):
    kind = spec.get("kind") or spec.get("type")
    if kind == "char":
        from .tokenizers import CharTokenizer
        return CharTokenizer.from_dict(spec)
    if kind == "gpt2-bpe":
        from .bpe import BPETokenizer
        return BPETokenizer()
    if kind == "word":
        from .words import Vocab
        return Vocab.from_dict(spec)
    raise CheckpointError(f"Unknown tokenizer kind {kind!r} in checkpoint metadata.")


def build_model(meta: dict) -> torch.nn.Module:
    kind = meta.get("model")
    if kind == "BigramLM":
        from .models import BigramLM
        return BigramLM(meta["vocab_size"])
    if kind == "GPT":
        from .models import GPT, GPTConfig
        return GPT(GPTConfig(**meta["config"]))
    if kind == "LSTMLanguageModel":
        from .models.lstm import LSTMConfig, LSTMLanguageModel
        return LSTMLanguageModel(LSTMConfig(**meta["config"]))
    raise CheckpointError(f"Unknown model kind {kind!r} in checkpoint metadata.")


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    meta: dict = field(repr=False)
    device: torch.device = torch.device("cpu")

    @property
    def is_recurrent(self) -> bool:
        return self.meta.get("model") == "LSTMLanguageModel"

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def stream(self, prompt: str, max_new_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None):
        """Yield the continuation piece by piece (one token at a time), as text."""
        from .generation import check_sampling, iter_generate

        if not isinstance(prompt, str) or not prompt:
            raise ValueError("The prompt is empty: type at least one character.")
        if self.is_recurrent:
            yield from self._stream_words(prompt, max_new_tokens, temperature, top_k, top_p, seed)
            return
        ids = self.tokenizer.encode(prompt, errors="strict")
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        check_sampling(temperature, top_k, self.tokenizer.vocab_size, max_new_tokens, top_p)
        stop = getattr(self.tokenizer, "eot_id", None)
        new_ids: list[int] = []
        shown = ""
        for next_id in iter_generate(self.model, idx, max_new_tokens, temperature, top_k, top_p,
                                     stop_token=stop, use_cache=hasattr(self.model, "new_cache"), seed=seed):
            if stop is not None and int(next_id) == stop:
                break
            new_ids.append(int(next_id))
            # decode everything so far and emit the difference: a BPE token can end mid-character
            text = self.tokenizer.decode(new_ids)
            if not text.endswith("\ufffd") and text != shown:
                yield text[len(shown):]
                shown = text

    @torch.no_grad()
    def _stream_words(self, prompt, n_words, temperature, top_k, top_p, seed):
        from .generation import check_sampling, next_token_probs
        from .words import tokenize_lines

        vocab = self.tokenizer
        check_sampling(temperature, top_k, vocab.vocab_size, n_words, top_p)
        ids = vocab.encode(tokenize_lines(prompt))
        if ids and ids[-1] == vocab.eol_id and not prompt.endswith("\n"):
            ids = ids[:-1]  # tokenize_lines ends every line; a prompt mid-line should not
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        self.model.eval()
        logits, hidden = self.model(torch.tensor([ids or [vocab.eol_id]], device=self.device))
        at_line_start = prompt.endswith(("\n", " "))  # words after a mid-line prompt need a space
        for _ in range(n_words):
            last = logits[:, -1, :].float()
            last[:, vocab.unk_id] = float("-inf")  # never write <unk>
            next_id = torch.multinomial(next_token_probs(last, temperature, top_k, top_p), 1, generator=generator)
            word = vocab.decode([int(next_id)])
            yield word if word == "\n" or at_line_start else " " + word
            at_line_start = word == "\n"
            logits, hidden = self.model(next_id.view(1, 1), hidden)

    def generate(self, prompt: str, max_new_tokens: int = 200, **sampling) -> str:
        """Prompt + continuation as one string."""
        return prompt + "".join(self.stream(prompt, max_new_tokens, **sampling))

    @torch.no_grad()
    def evaluate_text(self, text: str):
        """Total negative log-likelihood of `text` -> EvalResult; bits_per_char = bits / characters."""
        from .batching import as_tensor, sequential_batches
        from .training import evaluate

        if self.is_recurrent:
            from .recurrent import evaluate_recurrent
            from .words import tokenize_lines

            ids = as_tensor(self.tokenizer.encode(tokenize_lines(text)))
            return evaluate_recurrent(self.model, ids, bptt=64, batch_size=1, n_chars=len(text))
        ids = as_tensor(self.tokenizer.encode(text))
        block = self.model.block_size if getattr(self.model, "block_size", 1) > 1 else 256
        result = evaluate(self.model, sequential_batches(ids, block, device=self.device))
        result.chars_per_token = len(text) / result.n_tokens
        return result


def load_model(name: str, output_dir=None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a registered model by name (e.g. "dropout", "gpt2") or from a .pt path."""
    if str(name).endswith(".pt") or os.sep in str(name):
        weights = Path(name)
        meta_path = weights.with_suffix(".json")
        name = weights.stem
    else:
        meta_path = checkpoints_dir(output_dir) / f"{name}.json"
        weights = meta_path.with_suffix(".pt")
    known = [row["name"] for row in list_checkpoints(output_dir) if row["has_weights"]]
    if not weights.exists():
        raise CheckpointError(_missing_message(name, known))
    payload = load_checkpoint(weights, map_location="cpu")
    meta = payload["meta"]
    if not meta and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if "model" not in meta or "tokenizer" not in meta:
        raise CheckpointError(f"{weights} has no model/tokenizer metadata; re-run the notebook that wrote it.")
    model = build_model(meta)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{weights} does not match its own metadata ({str(err).splitlines()[0]}); "
                              "delete it and re-run the notebook that wrote it.") from err
    device = torch.device(device)
    model.to(device).eval()
    return LoadedModel(name=name, model=model, tokenizer=build_tokenizer(meta["tokenizer"]), meta=meta,
                       device=device)

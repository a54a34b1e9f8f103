"""The checkpoint registry: every trained model of the course, found by name, rebuilt in one call.

Each notebook (and `python -m course_lib.train`) saves `outputs/checkpoints/<name>.safetensors`
(weights with their metadata inside; git-ignored, remade by `make course`) and `<name>.json` (a
copy of the metadata; committed). The repository also ships a few small fp16 reference models
in `outputs/reference_models/` so that generation works right after cloning; a model trained
here with the same name replaces its reference copy when it is newer. Notebook 12,
`python -m course_lib.generate` and the web app all go through here:

    list_checkpoints()                 -> [{"name": "bigram", "model": "BigramLM", "ready": True, ...}, ...]
    loaded = load_model("dropout")     -> LoadedModel(model, tokenizer, meta)
    loaded.generate("WREN:", 200, temperature=0.8)
    loaded.evaluate_text(test_text)    -> EvalResult with bits per character

One damaged file never hides the others: it is listed with `broken` (the reason) instead.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import (META_SUFFIX, WEIGHTS_SUFFIX, CheckpointError, build_model,  # noqa: F401
                          build_tokenizer, checkpoint_paths, load_model as load_checkpoint_file, read_meta)
from .cli import CommandParser, cli_entry
from .paths import REPO_ROOT
from .paths import output_dir as default_output_dir

# The small fp16 models committed with the repository (see README, "Generating text").
REFERENCE_DIR = REPO_ROOT / "outputs" / "reference_models"


def reference_dir() -> Path | None:
    """Where the shipped reference models are; COURSE_REFERENCE_MODELS=<folder> moves it and
    COURSE_REFERENCE_MODELS=none switches them off (the tests do, to see only what they train)."""
    chosen = os.environ.get("COURSE_REFERENCE_MODELS", "")
    if chosen.lower() == "none":
        return None
    return Path(chosen).expanduser() if chosen else REFERENCE_DIR

# The notebook that writes each checkpoint, for "how do I get it?" messages.
WRITTEN_BY = {"bigram": "02_bigram", "self_attention": "03_self_attention", "multi_head": "04_multi_head",
              "feed_forward": "05_feed_forward", "residual": "06_residual", "layernorm": "07_layernorm",
              "dropout": "08_dropout", "lstm": "09_lstm", "gpt2": "10_gpt2", "finetuned": "11_finetuning"}


def checkpoints_dir(output_dir=None) -> Path:
    return Path(output_dir or default_output_dir()) / "checkpoints"


def _read_json_object(path: Path) -> dict:
    """A metadata copy as a dict, or CheckpointError saying what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise CheckpointError(f"{path.name} is not readable JSON ({type(err).__name__})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name} holds JSON that is not an object")
    return data


def _rows_in(folder: Path, source: str) -> dict[str, dict]:
    """One row per checkpoint in a folder: from the weights' own header where weights exist,
    else from the metadata copy ("metadata only": trained elsewhere, weights not here)."""
    rows: dict[str, dict] = {}
    if not folder.is_dir():
        return rows
    for weights in sorted(folder.glob(f"*{WEIGHTS_SUFFIX}")):
        name = weights.name[: -len(WEIGHTS_SUFFIX)]
        try:
            meta = read_meta(weights)
            rows[name] = {**meta, "name": name, "ready": True, "has_weights": True, "source": source,
                          "path": str(weights)}
        except CheckpointError as err:
            warnings.warn(f"skipping checkpoint {weights}: {err}", stacklevel=3)
            rows[name] = {"name": name, "ready": False, "has_weights": True, "source": source,
                          "path": str(weights), "broken": str(err)}
    for meta_path in sorted(folder.glob(f"*{META_SUFFIX}")):
        name = meta_path.name[: -len(META_SUFFIX)]
        if name in rows:
            continue
        try:
            meta = _read_json_object(meta_path)
            rows[name] = {**meta, "name": name, "ready": False, "has_weights": False, "source": source,
                          "path": str(checkpoint_paths(meta_path)[0])}
        except CheckpointError as err:
            warnings.warn(f"skipping {meta_path}: {err}", stacklevel=3)
            rows[name] = {"name": name, "ready": False, "has_weights": False, "source": source,
                          "path": str(meta_path), "broken": str(err)}
    return rows


def list_checkpoints(output_dir=None, include_reference: bool = True) -> list[dict]:
    """Every known checkpoint, one row per name: the trained one where it is ready and at least
    as new as the shipped reference copy, else the reference copy. Never raises for a bad file:
    such a row has `ready` False and `broken` set to the reason."""
    trained = _rows_in(checkpoints_dir(output_dir), "trained")
    ref_dir = reference_dir() if include_reference else None
    reference = _rows_in(ref_dir, "reference") if ref_dir is not None else {}
    rows = dict(reference)
    for name, row in trained.items():
        ref = reference.get(name)
        newer = ref is None or not ref["ready"] or str(row.get("saved_at", "")) >= str(ref.get("saved_at", ""))
        if row["ready"] and newer or not (ref and ref["ready"]):
            rows[name] = row
    return [rows[name] for name in sorted(rows)]


def _missing_message(name: str, known: list[str]) -> str:
    notebook = WRITTEN_BY.get(name)
    how = (f"run notebooks/{notebook}.ipynb (or `make course`, or `python -m course_lib.train`)" if notebook
           else "check the name")
    have = ", ".join(known) or "none yet"
    return f"No trained checkpoint {name!r}: {how}. Available: {have}."


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
               top_p: float | None = None, seed: int | None = None, greedy: bool = False):
        """Yield the continuation piece by piece (one token at a time), as text.
        greedy=True: always the most likely token (temperature, top_k and top_p are not used)."""
        from .generation import check_sampling, iter_generate

        if not isinstance(prompt, str) or not prompt:
            raise ValueError("The prompt is empty: type at least one character.")
        if self.is_recurrent:
            yield from self._stream_words(prompt, max_new_tokens, temperature, top_k, top_p, seed, greedy)
            return
        ids = self.tokenizer.encode(prompt, errors="strict")
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        check_sampling(temperature, top_k, self.tokenizer.vocab_size, max_new_tokens, top_p, greedy)
        stop = getattr(self.tokenizer, "eot_id", None)
        new_ids: list[int] = []
        shown = ""
        for next_id in iter_generate(self.model, idx, max_new_tokens, temperature, top_k, top_p, greedy=greedy,
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
    def _stream_words(self, prompt, n_words, temperature, top_k, top_p, seed, greedy=False):
        from .generation import check_sampling, next_token_probs
        from .words import tokenize_lines

        vocab = self.tokenizer
        check_sampling(temperature, top_k, vocab.vocab_size, n_words, top_p, greedy)
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
            if greedy:
                next_id = last.argmax(dim=-1, keepdim=True)                   # (1, 1)
            else:
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
        # the first token is never predicted: the characters scored are those after it
        n_chars = len(text) - len(self.tokenizer.decode(ids[:1].tolist()))
        return evaluate(self.model, sequential_batches(ids, block, device=self.device), n_chars=n_chars)


def load_model(name: str, output_dir=None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a registered model by name (e.g. "dropout", "gpt2"), or from a checkpoint path
    (a .safetensors / .json file, or a training run's folder holding model.safetensors)."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        path = path / "model"
    if os.sep in str(name) or "/" in str(name) or str(name).endswith((WEIGHTS_SUFFIX, META_SUFFIX, ".pt")):
        weights = checkpoint_paths(path)[0]
        display = weights.name[: -len(WEIGHTS_SUFFIX)]
    else:
        rows = {row["name"]: row for row in list_checkpoints(output_dir)}
        row = rows.get(name)
        known = [n for n, r in rows.items() if r["ready"]]
        if row is None or (not row["ready"] and "broken" not in row):
            raise CheckpointError(_missing_message(name, known))
        if "broken" in row:
            raise CheckpointError(f"Checkpoint {name!r} is damaged: {row['broken']}. Delete {row['path']} and "
                                  f"re-train it. Available: {', '.join(known) or 'none'}.")
        weights, display = Path(row["path"]), name
    if not weights.exists():
        raise CheckpointError(f"No checkpoint at {weights}: train it first, or check the path.")
    device = torch.device(device)
    loaded = load_checkpoint_file(weights, device=device)
    return LoadedModel(name=display, model=loaded.model, tokenizer=loaded.tokenizer, meta=loaded.meta, device=device)


# The models a fresh clone most needs (the app's free text, the LSTM, the fine-tuned tasks), in
# fp16: about 1.6 + 3 + 14.5 MB with the cpu reference sizes, under the 25 MB the repo allows.
REFERENCE_MODELS = ("dropout", "lstm", "finetuned")
REFERENCE_BUDGET_MB = 25.0


def export_reference_models(names=REFERENCE_MODELS, output_dir=None, target: str | os.PathLike | None = None,
                            note: str = "") -> list[Path]:
    """Copy trained checkpoints into the shipped reference folder as fp16 safetensors (half the
    size; load_model turns them back into fp32), so that `generate` and the app work right after
    cloning. `note` (e.g. the command of the run) is kept in each one's metadata. Refuses to write
    more than REFERENCE_BUDGET_MB in all."""
    from .checkpoints import load_model as load_file, save_model

    target = Path(target) if target is not None else REFERENCE_DIR
    rows = {row["name"]: row for row in list_checkpoints(output_dir, include_reference=False)}
    missing = [n for n in names if n not in rows or not rows[n]["ready"]]
    if missing:
        raise CheckpointError(f"Cannot export {', '.join(missing)}: not trained (and ready) in "
                              f"{checkpoints_dir(output_dir)}. Run the course first.")
    loaded = {n: load_file(rows[n]["path"]) for n in names}
    size_mb = sum(2 * sum(p.numel() for p in c.model.parameters()) for c in loaded.values()) / 1e6
    if size_mb > REFERENCE_BUDGET_MB:
        raise CheckpointError(f"The reference models would take {size_mb:.1f} MB in fp16, over the "
                              f"{REFERENCE_BUDGET_MB:g} MB budget: export fewer or smaller models.")
    paths = []
    for name, ck in loaded.items():
        # what describes the file itself is save_model's to write (and model/tokenizer/dtype are its
        # arguments' names): keep only what the training run recorded
        meta = {k: v for k, v in ck.meta.items()
                if k not in ("model", "config", "tokenizer", "parameters", "format", "tied", "dtype", "save_id",
                             "has_resume")}
        meta.update(reference_copy_of=f"{name} trained {ck.meta.get('saved_at', '?')}", reference_note=note)
        paths.append(save_model(target / name, ck.model, ck.tokenizer, dtype=torch.float16, **meta))
    return paths


@cli_entry
def main(argv=None) -> int:
    """`python -m course_lib.registry --export-reference`: refresh the shipped fp16 models from
    this machine's trained checkpoints (a deliberate step of a reference run, never automatic)."""
    p = CommandParser(prog="python -m course_lib.registry", description=main.__doc__.split("\n")[0])
    p.add_argument("--export-reference", action="store_true", help=f"write {', '.join(REFERENCE_MODELS)} in fp16 "
                                                                    f"to {REFERENCE_DIR.relative_to(REPO_ROOT)}/")
    p.add_argument("--output-dir", default=None, help="where the trained checkpoints are (default: outputs/)")
    p.add_argument("--note", default="", help="where the models come from (e.g. the run's command)")
    args = p.parse_args(argv)
    if not args.export_reference:
        for row in list_checkpoints(args.output_dir):
            print(f"{row['name']:<16} {row['source']:<10} {'ready' if row['ready'] else row.get('broken', 'metadata only')}")
        return 0
    for path in export_reference_models(output_dir=args.output_dir, note=args.note):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One checkpoint format for everything the course trains, and one way to read it back.

    save_model(path, model, tokenizer, **meta)   -> writes the checkpoint, returns the weights path
    load_model(path, device)                     -> Checkpoint(model, tokenizer, meta, resume)
    read_meta(path)                              -> the metadata alone (cheap: reads the header)

A checkpoint called `name` in a folder is up to three files:

    name.safetensors   the weights, plus ALL the metadata (model kind and config, tokenizer,
                       profile, metrics...) as JSON inside the file's header. safetensors holds
                       plain tensors only, so loading it can never run code (unlike a pickle).
    name.json          a copy of the metadata for people and for git (small; the weights are not
                       committed). Only for listing: the header inside the weights is the truth,
                       so a lost or stale copy never changes what loads.
    name.resume.pt     optional: what is needed to continue training (optimizer state, step, ...),
                       nested data that safetensors cannot hold; read with torch.load(weights_only=True),
                       which also refuses anything but tensors and plain data. It carries the
                       `save_id` of the weights it belongs to, so a mismatched pair is detected.

The metadata names the model kind and its config, so `load_model` rebuilds any checkpoint
without being told what it is: the notebooks, `training.train`, `recurrent.train_recurrent`,
`finetune.finetune` and `train_gpt2` all write this format, and the registry (notebook 12, the
generator CLI, the web app) reads it.

Tied weights (GPT-2's token embedding doubles as its output layer) are one tensor under two
names; they are stored once and re-tied by the model's own constructor on load. Writes go to a
temporary file that is renamed into place: a crash leaves either the old checkpoint or the new
one, never half of one, and temporaries left by a killed process are removed by the next save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

FORMAT = "course_lib-checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"
RESUME_SUFFIX = ".resume.pt"
_META_KEY = "course_meta"  # the key of our JSON inside the safetensors header


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model it claims to be."""


# ----------------------------------------------------------------------------- paths

def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(weights, metadata copy, resume) for a checkpoint path given with or without a suffix
    ("runs/x", "runs/x.safetensors", "runs/x.json" and "runs/x.pt" all name the same checkpoint)."""
    path = Path(path)
    name = path.name
    for suffix in (RESUME_SUFFIX, WEIGHTS_SUFFIX, META_SUFFIX, ".pt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    base = path.with_name(name)
    return (base.with_name(name + WEIGHTS_SUFFIX), base.with_name(name + META_SUFFIX),
            base.with_name(name + RESUME_SUFFIX))


def _atomic_write(target: Path, write) -> None:
    """write(tmp_path) then rename over target: readers see the old file or the new one."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_temporaries(weights: Path) -> None:
    """Temporaries of this checkpoint left by a process that was killed mid-save."""
    stem = weights.name[: -len(WEIGHTS_SUFFIX)]
    for tmp in weights.parent.glob(f"{stem}.*.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _process_alive(pid):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (someone else's) or we cannot tell: leave its file alone
    return True


# ----------------------------------------------------------------------------- what a model is

def describe_model(model: torch.nn.Module) -> dict:
    """{"model": kind, "config": {...}}: enough to rebuild the architecture with build_model."""
    from .models import GPT, BigramLM
    from .models.lstm import LSTMLanguageModel

    if isinstance(model, BigramLM):
        return {"model": "BigramLM", "config": {"vocab_size": model.vocab_size}}
    if isinstance(model, GPT):
        return {"model": "GPT", "config": model.config.as_dict()}
    if isinstance(model, LSTMLanguageModel):
        return {"model": "LSTMLanguageModel", "config": model.config.as_dict()}
    raise CheckpointError(f"save_model does not know how to rebuild a {type(model).__name__}: checkpoints "
                          "hold the course's models (BigramLM, GPT, LSTMLanguageModel).")


def build_model(meta: dict) -> torch.nn.Module:
    """The (untrained) model that a checkpoint's metadata describes."""
    from .models import GPT, BigramLM, GPTConfig
    from .models.lstm import LSTMConfig, LSTMLanguageModel

    kinds = {"BigramLM": (None, BigramLM), "GPT": (GPTConfig, GPT), "LSTMLanguageModel": (LSTMConfig, LSTMLanguageModel)}
    kind, config = meta.get("model"), meta.get("config")
    if kind not in kinds:
        raise CheckpointError(f"Unknown model kind {kind!r} in the checkpoint metadata (known: {', '.join(kinds)}).")
    if not isinstance(config, dict):
        raise CheckpointError(f"The checkpoint metadata has no model config for its {kind}.")
    config_cls, model_cls = kinds[kind]
    if config_cls is None:
        return model_cls(**config)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise CheckpointError(
            f"The checkpoint's {kind} config has settings this version of course_lib does not know: "
            f"{', '.join(unknown)}. It was written by another version of the course: update course_lib "
            "(git pull) or re-train the model with this one.")
    try:
        return model_cls(config_cls(**config))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"The checkpoint's {kind} config is not usable ({err}). Re-train the model.") from err


def build_tokenizer(spec: dict):
    """The tokenizer a checkpoint was trained with, from its metadata ({"kind": ...})."""
    if not isinstance(spec, dict):
        raise CheckpointError("The checkpoint metadata has no tokenizer description.")
    kind = spec.get("kind")
    try:
        if kind == "char":
            from .tokenizers import CharTokenizer
            return CharTokenizer.from_dict(spec)
        if kind == "gpt2-bpe":
            from .bpe import BPETokenizer
            return BPETokenizer()
        if kind == "word":
            from .words import Vocab
            return Vocab.from_dict(spec)
    except (ValueError, TypeError, KeyError) as err:  # e.g. {"kind": "char", "chars": 7}
        raise CheckpointError(f"The checkpoint's {kind} tokenizer is damaged ({type(err).__name__}: {err}). "
                              "Re-train the model.") from err
    raise CheckpointError(f"Unknown tokenizer kind {kind!r} in the checkpoint metadata (known: char, word, gpt2-bpe).")


# ----------------------------------------------------------------------------- saving

def _unique_tensors(model: torch.nn.Module, dtype: torch.dtype | None) -> tuple[dict, dict]:
    """The state dict with every tensor once: ({name: cpu tensor}, {alias: name it shares memory with}).

    Tied weights are one Parameter under two names; copying each name to the CPU separately
    would write the matrix twice (154 MB extra for GPT-2 124M), and safetensors refuses shared
    tensors anyway. (safetensors.torch.save_model dedupes too, but cannot change the dtype.)"""
    tensors, aliases, seen = {}, {}, {}
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.to("cpu").contiguous()
    return tensors, aliases


def _jsonable(value):
    """Metadata must be plain JSON: tuples become lists, paths and dtypes strings."""
    return json.loads(json.dumps(value, default=str))


def save_model(path: str | os.PathLike, model: torch.nn.Module, tokenizer, *, resume: dict | None = None,
               dtype: torch.dtype | None = None, **meta) -> Path:
    """Write a checkpoint that load_model can rebuild without being told anything else.

    path: where (any suffix is replaced: see checkpoint_paths).
    tokenizer: the model's tokenizer (anything with to_dict(), or its dict).
    resume: optional training state (e.g. {"optimizer": ..., "step": ...}) for continuing later.
    dtype: e.g. torch.float16 to halve the file; load_model converts back to the model's fp32.
    meta: anything else worth keeping (profile, corpus, metrics, ...): JSON-able values.
    Returns the weights path.
    """
    from safetensors.torch import save_file

    weights, meta_copy, resume_path = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(weights)
    spec = tokenizer if isinstance(tokenizer, dict) else tokenizer.to_dict()
    tensors, aliases = _unique_tensors(model, dtype)
    full_meta = {
        **_jsonable(meta),
        **describe_model(model),
        "tokenizer": spec,
        "parameters": sum(p.numel() for p in model.parameters()),
        "format": FORMAT,
        "tied": aliases,
        "dtype": str(dtype or next(iter(tensors.values())).dtype).removeprefix("torch."),
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "save_id": uuid.uuid4().hex,  # pairs these weights with their resume state
        "has_resume": resume is not None,
    }
    header = {_META_KEY: json.dumps(full_meta)}
    # Order: resume state first, then the weights (which name it), then the copy for people.
    # Killed between the first two, the old weights stay, and their save_id does not match the
    # new resume file, which load_model then reports instead of mixing the two.
    if resume is not None:
        _atomic_write(resume_path, lambda tmp: torch.save({**resume, "save_id": full_meta["save_id"]}, tmp))
    elif resume_path.exists():
        resume_path.unlink()  # a resume state of an older save no longer belongs to these weights
    _atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    _atomic_write(meta_copy, lambda tmp: tmp.write_text(
        json.dumps({"weights": weights.name, **full_meta}, indent=2) + "\n", encoding="utf-8"))
    return weights


# ----------------------------------------------------------------------------- loading

@dataclass
class Checkpoint:
    model: torch.nn.Module
    tokenizer: object
    meta: dict = field(repr=False)
    path: Path
    resume: dict | None = field(default=None, repr=False)


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata inside a checkpoint's weights file (reads the header only, not the tensors)."""
    from safetensors import safe_open

    weights, _, _ = checkpoint_paths(path)
    if not weights.exists():
        raise CheckpointError(f"No checkpoint at {weights}. Train the model first (its notebook, or "
                              "`python -m course_lib.train`), or check the path / output_dir.")
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header[_META_KEY])
    except Exception as err:  # truncated file, not safetensors, no or broken metadata
        raise CheckpointError(
            f"{weights} is not a readable course checkpoint ({type(err).__name__}: {err}). It is probably "
            "corrupt, truncated or not from this course: delete it and train again.") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{weights} has metadata that is not a JSON object: delete it and train again.")
    return meta


def _check_shapes(model: torch.nn.Module, tensors: dict, weights: Path) -> None:
    expected = model.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in tensors.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    unexpected = sorted(set(tensors) - set(expected))
    if wrong or unexpected:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of another shape ({'; '.join(wrong[:4])}"
                         + (", ..." if len(wrong) > 4 else "") + ")")
        if unexpected:
            parts.append(f"tensors the model does not have ({', '.join(unexpected[:4])})")
        raise CheckpointError(f"{weights} does not fit the model its metadata describes: {' and '.join(parts)}. "
                              "Delete it and train again with the same settings.")


def load_state(model: torch.nn.Module, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Load a checkpoint's weights into an existing model of the right shape (names and shapes
    are checked first, so a mismatch says which tensor differs and how)."""
    from safetensors.torch import load_file

    weights, _, _ = checkpoint_paths(path)
    meta = meta if meta is not None else read_meta(weights)
    try:
        tensors = load_file(str(weights))
    except Exception as err:
        raise CheckpointError(f"{weights} is corrupt ({type(err).__name__}: {err}): delete it and train again.") from err
    _check_shapes(model, tensors, weights)
    # Tied names were stored once; the model ties them itself, so they are the only allowed gap.
    missing = set(model.state_dict()) - set(tensors) - set(meta.get("tied", {}))
    if missing:
        raise CheckpointError(f"{weights} lacks tensors the model needs ({', '.join(sorted(missing)[:4])}): "
                              "delete it and train again.")
    model.load_state_dict(tensors, strict=False)  # copies into the model's dtype (fp16 file -> fp32)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", with_resume: bool = False) -> Checkpoint:
    """Rebuild the model and tokenizer of any course checkpoint; in eval mode, on `device`."""
    weights, _, resume_path = checkpoint_paths(path)
    meta = read_meta(weights)
    model = build_model(meta)
    load_state(model, weights, meta)
    tokenizer = build_tokenizer(meta.get("tokenizer"))
    resume = read_resume(weights, meta, map_location=device) if with_resume else None
    model.to(device).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, meta=meta, path=weights, resume=resume)


def read_resume(path: str | os.PathLike, meta: dict | None = None, map_location="cpu") -> dict:
    """The training state saved with `resume=` (tensors and plain data only)."""
    weights, _, resume_path = checkpoint_paths(path)
    meta = meta if meta is not None else read_meta(weights)
    if not resume_path.exists():
        raise CheckpointError(f"{weights} was saved without a resume state ({resume_path.name}), so training "
                              "cannot continue from it; start a new run instead.")
    try:
        state = torch.load(resume_path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{resume_path} is corrupt ({type(err).__name__}): delete it (the weights stay "
                              "usable for generation) and start a new run.") from err
    if not isinstance(state, dict) or state.get("save_id") != meta.get("save_id"):
        raise CheckpointError(f"{resume_path} does not belong to {weights.name} (a save was interrupted between "
                              "the two files): resume is not safe; start a new run or use the weights as they are.")
    return state

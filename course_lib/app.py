"""A small web app to write text with any checkpoint of the course, and to try the fine-tuned tasks.

    python -m course_lib.app                      # http://127.0.0.1:8000, outputs/checkpoints
    python -m course_lib.app --port 8080 --output-dir /path/to/outputs --device cuda
    python -m course_lib.app --server waitress    # a production WSGI server (pip install waitress)

One HTML page (course_lib/app_static/) and a JSON API over the checkpoint registry: the models
trained here (outputs/checkpoints/) and the reference models shipped with the repository.

    GET  /                 the page: pick a model, continue a prompt (text streams in), or use the
                           fine-tuned model's three tasks (sorting, spells, chat)
    GET  /api/models       [{"name", "model", "parameters", "tokenizer", "vocab_size", "profile",
                             "corpus", "source", "ready", "has_weights", "broken", "tasks", ...}]
                             (broken: why a damaged file cannot be used; tasks: see below)
    POST /api/generate     JSON body (below) -> {"text": prompt + continuation, "completion", "model",
                             "seed", "pieces", "elapsed_s", ...}
    POST /api/stream       the same JSON body -> text/event-stream:
                             event: start  data: {"model", "seed", ...}
                             event: token  data: {"text": "..."}        (one per generated piece)
                             event: done   data: {"pieces", "seed", "elapsed_s", ...}
                             (event: error data: {"error"} if generation fails half-way)
                           Closing the connection stops the generation (the page's Stop button).
    GET  /api/tasks        {"halls", "characters", "lexicon", ...}: what the task forms offer
    POST /api/task/sorting {"model", "description"} -> {"hall", "probabilities": {hall: p}, ...}
    POST /api/task/spell   {"model", "effect"}      -> {"incantation", "parts": [...] or null, ...}
    POST /api/task/chat    {"model", "character", "message"} -> {"reply", ...}

The generation body (sent with Content-Type: application/json):
    {"model": "dropout", "prompt": "WREN:", "max_new_tokens": 200, "temperature": 1.0,
     "top_k": null, "top_p": null, "seed": null, "greedy": false}
Only model and prompt are required; numbers must be JSON numbers; null switches top_k / top_p
off and draws a fresh seed (the reply says which, so any sample can be repeated). "greedy": true
always takes the most likely token; temperature, top_k and top_p do not apply then (leave them
out). Every mistake is answered with HTTP 400 and {"error": "...", "field": "..."} naming the
field and what is allowed, before any text is generated. For example:

    curl -N -X POST http://127.0.0.1:8000/api/stream -H "Content-Type: application/json" \
         -d '{"model": "dropout", "prompt": "WREN:", "max_new_tokens": 100, "seed": 1}'

Tasks. Notebook 11 fine-tunes GPT-2 on three tasks, each behind a prefix ([SORTING], [SPELL],
[CHAT]). The app builds those prompts itself with course_lib.finetune's sorting_prompt,
spell_prompt and chat_prompt; the user never types a prefix. A checkpoint offers the tasks that
its metadata lists under "tasks" (e.g. "tasks": ["sorting", "spell", "chat"]); a checkpoint
without that key that was written by the fine-tuning (metadata "finetune_config", saved by
finetune.finetune, or "finetune", notebook 11's scores) offers all three. Only a GPT with the
GPT-2 tokenizer qualifies: answers end at its <|endoftext|> token. GET /api/models lists each
model's tasks; asking another model for a task is a 400 naming the models that can.

One damaged file never takes the app down: the registry lists it with `broken` instead of
loading it, a file that only turns out damaged when loaded (weights that do not fit their
metadata, NaN weights, ...) is remembered as broken until it changes, and either way a request
for it is a 400 naming the problem while every other model keeps answering.

The default server is werkzeug's threaded development server: fine for one person or a
classroom on a trusted network, not meant to face the internet. It listens on 127.0.0.1 unless
told otherwise and closes connections idle for --idle-timeout seconds (an idle socket would
otherwise hold one of its threads forever). --server waitress serves the same app with waitress,
a production WSGI server with a fixed pool of worker threads (install it: pip install waitress).
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import logging
import math
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.serving import WSGIRequestHandler, make_server

from . import registry
from .bpe import TokenizerFileError
from .checkpoints import CheckpointError
from .device import pick_device
from .finetune import HOUSES, chat_prompt, sorting_prompt, spell_prompt
from .task_scores import answer_logprobs, complete, parse_spell
from .generation import SamplingError
from .paths import TASKS_DIR
from .tokenizers import UnknownCharacterError

log = logging.getLogger("course_lib.app")

STATIC_DIR = Path(__file__).with_name("app_static")
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 1000
MAX_SEED = 2**32 - 1
MAX_BODY_BYTES = 64 * 1024
# Any finite temperature > 0 is honoured (course_lib.generation stays exact where logits / T
# would overflow: a tiny T is greedy, a huge one uniform). top_p is not: below float32's range
# (~1e-45) it rounds to 0 and keeps no token at all. Anything below MIN_TOP_P keeps only the most
# likely token anyway (with fewer than a million tokens the best one has more than 1e-6 of the
# probability), so that is the documented limit.
MIN_TOP_P = 1e-6
IDLE_TIMEOUT_S = 30       # the server closes a connection that sends nothing for this long
WAITRESS_THREADS = 8      # waitress: requests served at once (each stream holds one thread)
DEFAULTS = {"max_new_tokens": 200, "temperature": 1.0, "top_k": None, "top_p": None, "seed": None,
            "greedy": False}
FIELDS = ("model", "prompt", *DEFAULTS)

TASKS = ("sorting", "spell", "chat")
TASK_FIELDS = {"sorting": ("description",), "spell": ("effect",), "chat": ("character", "message")}
MAX_TASK_CHARS = 500      # the longest task prompt in data/tasks/ has 232 characters
SPELL_TOKENS = 8          # as task_scores.spell_scores: an incantation is one short word
CHAT_REPLY_TOKENS = 80    # the longest reply in data/tasks/chat.csv is 60 GPT-2 tokens
ANSWER_ROOM = {"sorting": 2, "spell": SPELL_TOKENS, "chat": 16}  # tokens kept free for the answer


class InputError(ValueError):
    """A request the client must fix: answered with HTTP 400 and this message."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


class TaskDataMissing(RuntimeError):
    """data/tasks/ could not be read at start-up: the task forms are off (HTTP 503)."""

    def __init__(self):
        super().__init__(f"The task tables are missing or unreadable ({TASKS_DIR}): restore data/tasks/ from git "
                         "(git checkout -- data/tasks) and restart the app.")


# ---------------------------------------------------------------------------------------------
# Reading metadata defensively: a checkpoint's JSON may hold anything, and one odd file must
# never turn a listing or a request for another model into a 500.
# ---------------------------------------------------------------------------------------------

def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value) -> int | None:
    """A positive integer from the metadata, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _label(value) -> str | None:
    """A short text for the page: strings as they are, anything else quoted (or None)."""
    if value is None or isinstance(value, str):
        return value
    return _shown(value, 80)


def _tokenizer_kind(row: dict) -> str | None:
    spec = _as_dict(row.get("tokenizer"))
    kind = spec.get("kind") or spec.get("type")
    return kind if isinstance(kind, str) else None


def _chars(spec: dict):
    """A character-level tokenizer's characters (a string or a list of strings), else None."""
    chars = spec.get("chars")
    if isinstance(chars, (str, list)) and all(isinstance(c, str) for c in chars):
        return chars
    return None


def _vocab_size(spec: dict, meta: dict) -> int | None:
    if _chars(spec) is not None:
        return len(_chars(spec))
    if isinstance(spec.get("itos"), list):
        return len(spec["itos"])
    if (spec.get("kind") or spec.get("type")) == "gpt2-bpe":
        return 50257
    return _count(meta.get("vocab_size")) or _count(_as_dict(meta.get("config")).get("vocab_size"))


def tasks_of(row: dict) -> list[str]:
    """The fine-tuned tasks a checkpoint offers (see the module docstring for the rule)."""
    if row.get("model") != "GPT" or _tokenizer_kind(row) != "gpt2-bpe":
        return []
    declared = row.get("tasks")
    if isinstance(declared, list):
        return [task for task in TASKS if task in declared]
    if "finetune_config" in row or "finetune" in row:
        return list(TASKS)
    return []


def public_row(row: dict) -> dict:
    """What the page needs to know about a checkpoint (not its whole metadata)."""
    spec = _as_dict(row.get("tokenizer"))
    return {"name": row["name"], "model": _label(row.get("model")), "parameters": _count(row.get("parameters")),
            "tokenizer": _tokenizer_kind(row), "vocab_size": _vocab_size(spec, row),
            "block_size": _count(_as_dict(row.get("config")).get("block_size")),
            "profile": _label(row.get("profile")), "corpus": _label(row.get("corpus")),
            "notebook": _label(row.get("notebook")), "source": row.get("source"), "ready": bool(row.get("ready")),
            "has_weights": bool(row.get("has_weights")), "broken": row.get("broken"), "tasks": tasks_of(row)}


# ---------------------------------------------------------------------------------------------
# Reading and checking a request
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationRequest:
    model: str
    prompt: str
    max_new_tokens: int
    temperature: float | None  # None with greedy
    top_k: int | None
    top_p: float | None
    seed: int
    greedy: bool = False

    def sampling(self) -> dict:
        """The keyword arguments of LoadedModel.stream."""
        if self.greedy:
            # Sampling among the one most likely token is taking the most likely token (argmax),
            # for every kind of model the registry streams (GPT, bigram, LSTM).
            return {"temperature": 1.0, "top_k": 1, "top_p": None, "seed": self.seed}
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}


@dataclass(frozen=True)
class TaskRequest:
    model: str
    task: str
    inputs: dict    # the task's fields as used, e.g. {"character": "Wren", "message": "..."}
    prompt: str     # built by course_lib.finetune, prefix included


def _shown(value, limit: int = 40) -> str:
    """A client's value quoted in an error message, cut short if long."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_finite_number(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _integer(body: dict, field: str, low: int, high: int, allowed: str) -> int | None:
    value = body.get(field, DEFAULTS[field])
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    if not low <= value <= high:
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    return value


def _real(body: dict, field: str, allowed: str, ok) -> float | None:
    value = body.get(field, DEFAULTS[field])
    if value is None:
        return None
    if not _is_finite_number(value) or not ok(value):
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    return float(value)


def _check_object(body, example: str) -> None:
    if not isinstance(body, dict):
        raise InputError(None, f"The request body must be a JSON object such as {example}.")


def _check_fields(body: dict, allowed) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        shown = ", ".join(_shown(key) for key in unknown[:5])
        raise InputError(unknown[0][:40], f"Unknown field(s) {shown}; allowed: {', '.join(allowed)}.")


def _ready_model(body: dict, rows: dict[str, dict]) -> str:
    """The requested model's name, once it is known to be usable. Only names listed in `rows`
    are accepted, so a request can never make load_model open an arbitrary path."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InputError("model", "model is required: the name of a checkpoint from GET /api/models.")
    available = [n for n, row in rows.items() if row.get("ready")]
    if name not in rows:
        raise InputError("model", f"model: unknown model {_shown(name)}; available: "
                                  f"{', '.join(available) or 'none yet (run `make course`)'}.")
    if rows[name].get("broken"):
        raise InputError("model", f"model: {name!r} is damaged ({rows[name]['broken'].rstrip('.')}); available: "
                                  f"{', '.join(available) or 'none'}.")
    if not rows[name].get("ready"):
        notebook = registry.WRITTEN_BY.get(name)
        how = f"run notebooks/{notebook}.ipynb (or `make course`)" if notebook else "re-run the notebook that wrote it"
        raise InputError("model", f"model: {name!r} has metadata but no weights file; {how}.")
    return name


def parse_request(body, rows: dict[str, dict]) -> GenerationRequest:
    """Check a generation request's body before any work: fields, types, ranges, the model's name,
    and top_k and the prompt's characters against the tokenizer recorded in the model's metadata.

    `rows`: list_checkpoints() by name (ModelCache.rows()).
    """
    _check_object(body, '{"model": "dropout", "prompt": "WREN:", "max_new_tokens": 100}')
    _check_fields(body, FIELDS)
    name = _ready_model(body, rows)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise InputError("prompt", "prompt is required and must be a string of text to continue.")
    if not prompt:
        raise InputError("prompt", "prompt is empty: type at least one character to continue.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError("prompt", f"prompt is too long: {len(prompt)} characters, at most "
                                   f"{MAX_PROMPT_CHARS} allowed.")
    max_new = _integer(body, "max_new_tokens", 1, MAX_NEW_TOKENS, f"an integer from 1 to {MAX_NEW_TOKENS}")
    if max_new is None:
        raise InputError("max_new_tokens", f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS}; got null.")
    greedy = body.get("greedy", False)
    if not isinstance(greedy, bool):
        raise InputError("greedy", f"greedy must be true or false; got {_shown(greedy)}.")
    if greedy:
        for field in ("temperature", "top_k", "top_p"):
            if body.get(field) is not None:
                raise InputError(field, f"{field} does not apply with greedy (always the most likely token): "
                                        f"leave it out (or null), or set greedy to false to sample.")
        temperature = top_k = top_p = None
    else:
        allowed = ("a number > 0 (e.g. 0.8; 1.0 = the model's own distribution; for always the most likely "
                   "token use greedy)")
        temperature = _real(body, "temperature", allowed, lambda t: t > 0)
        if temperature is None:
            raise InputError("temperature", f"temperature must be {allowed}; got null.")
        # top_k's upper bound is the model's vocabulary size: check_for_model finishes it.
        top_k = _integer(body, "top_k", 1, sys.maxsize, "an integer >= 1 (at most the vocabulary size), or null for off")
        top_p = _real(body, "top_p", f"a number from {MIN_TOP_P:g} to 1, e.g. 0.9 (anything smaller keeps only "
                                     "the most likely token: use greedy), or null for off",
                      lambda p: MIN_TOP_P <= p <= 1)
    seed = _integer(body, "seed", 0, MAX_SEED, f"an integer from 0 to {MAX_SEED}, or null for a random one")
    if seed is None:
        # Every request gets its own seeded generator: nothing touches torch's global RNG, and
        # the reply reports the seed so an unseeded sample can still be repeated.
        seed = secrets.randbelow(MAX_SEED + 1)
    req = GenerationRequest(name, prompt, max_new, temperature, top_k, top_p, seed, greedy)
    # The metadata holds the tokenizer, so the model-specific checks run before loading anything.
    spec = _as_dict(rows[name].get("tokenizer"))
    check_for_model(req, _vocab_size(spec, rows[name]), _chars(spec))
    return req


def check_for_model(req: GenerationRequest, vocab_size: int | None, chars) -> None:
    """The checks that depend on the model: top_k against its vocabulary size and, for a
    character-level model (`chars`: its characters, else None), the prompt's characters."""
    if req.top_k is not None and vocab_size is not None and req.top_k > vocab_size:
        raise InputError("top_k", f"top_k must be an integer from 1 to {vocab_size} (the vocabulary size "
                                  f"of {req.model!r}), or null for off; got {req.top_k}.")
    if chars is not None:
        unknown = sorted(set(req.prompt) - set(chars))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise InputError("prompt", f"prompt: {len(unknown)} character(s) are unknown to the character-level "
                                       f"model {req.model!r}: {shown}. Remove or replace them.")


def _task_text(body: dict, field: str) -> str:
    """A free-text task field. Line breaks and runs of spaces become one space: the prompts the
    model was fine-tuned on are one line each (the reply shows the prompt as it was built)."""
    value = body.get(field)
    if not isinstance(value, str):
        raise InputError(field, f"{field} is required and must be a string.")
    text = " ".join(value.split())
    if not text:
        raise InputError(field, f"{field} is empty: type a few words.")
    if len(text) > MAX_TASK_CHARS:
        raise InputError(field, f"{field} is too long: {len(text)} characters, at most {MAX_TASK_CHARS} allowed.")
    return text


def parse_task_request(task: str, body, rows: dict[str, dict], characters) -> TaskRequest:
    """Check a task request's body before any work; build the task's prompt."""
    example = {"sorting": '{"model": "finetuned", "description": "Always first to help..."}',
               "spell": '{"model": "finetuned", "effect": "open the stuck door"}',
               "chat": '{"model": "finetuned", "character": "Wren", "message": "Hello!"}'}[task]
    _check_object(body, example)
    _check_fields(body, ("model", *TASK_FIELDS[task]))
    name = _ready_model(body, rows)
    if task not in tasks_of(rows[name]):
        offering = [n for n, row in rows.items() if row.get("ready") and task in tasks_of(row)]
        raise InputError("model", f"model: {name!r} was not fine-tuned on the {task} task; models that offer it: "
                                  f"{', '.join(offering) or 'none yet (run notebooks/11_finetuning.ipynb)'}.")
    if task == "sorting":
        inputs = {"description": _task_text(body, "description")}
        return TaskRequest(name, task, inputs, sorting_prompt(inputs["description"]))
    if task == "spell":
        inputs = {"effect": _task_text(body, "effect")}
        return TaskRequest(name, task, inputs, spell_prompt(inputs["effect"]))
    character = body.get("character")
    if character not in characters:
        raise InputError("character", f"character must be one of {', '.join(characters)}; got {_shown(character)}.")
    inputs = {"character": character, "message": _task_text(body, "message")}
    return TaskRequest(name, task, inputs, chat_prompt(character, inputs["message"]))


def check_task_fits(req: TaskRequest, loaded: registry.LoadedModel) -> None:
    """The prompt must fit the model's context with room for the answer: a prompt cut from the
    left would lose its task prefix, and the model would no longer know what it is asked."""
    block_size = getattr(loaded.model, "block_size", None)
    n_tokens = len(loaded.tokenizer.encode(req.prompt))
    if block_size and n_tokens + ANSWER_ROOM[req.task] > block_size:
        field = TASK_FIELDS[req.task][-1]
        raise InputError(field, f"{field} is too long for {req.model!r}: with the task's prefix it is {n_tokens} "
                                f"tokens, and this model reads at most {block_size} tokens, "
                                f"{ANSWER_ROOM[req.task]} of them kept for the answer. Shorten it.")


# ---------------------------------------------------------------------------------------------
# The tasks: what the fine-tuned model is asked, and how its answer is read
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskData:
    characters: tuple[str, ...]   # who can be chatted with (data/tasks/chat.csv)
    lexicon: tuple[dict, ...]     # {"kind": prefix|root|ending, "morpheme", "meaning"} (spell_lexicon.csv)


def load_task_data(tasks_dir: Path = TASKS_DIR) -> TaskData:
    """The characters and the spell lexicon, from the same tables the model was fine-tuned on.
    (csv from the standard library, like course_lib.finetune: two small fixed tables.)"""
    def rows(name: str) -> list[dict]:
        with (Path(tasks_dir) / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    characters = tuple(sorted({row["character"] for row in rows("chat")}))
    lexicon = tuple({"kind": row["kind"], "morpheme": row["morpheme"], "meaning": row["meaning"]}
                    for row in rows("spell_lexicon"))
    return TaskData(characters, lexicon)


def spell_parts(incantation: str, lexicon) -> list[dict] | None:
    """Split an incantation into the lexicon's pieces, [ro] + root + ending (data/README.md), with
    their meanings: "roketis" -> ro (strongly) + ket (close, lock, bind) + is (a door, gate, lid or
    lock). None when it does not split that way (the model invented something else). The split is
    task_scores.parse_spell's, the one notebook 11b scores by."""
    morphemes = {kind: [e["morpheme"] for e in lexicon if e["kind"] == kind] for kind in ("prefix", "root", "ending")}
    split = parse_spell(incantation, morphemes)
    if split is None:
        return None
    entry = {(e["kind"], e["morpheme"]): e for e in lexicon}
    return [entry[kind, part] for kind, part in zip(("prefix", "root", "ending"), split) if part]


def hall_probabilities(loaded: registry.LoadedModel, description: str) -> tuple[dict, dict]:
    """How strongly the model believes in each hall for this student.

    Each hall's whole answer (" Lantern", " Thorn", ...; some are two tokens) is scored by its
    log-likelihood after the sorting prompt: the sum of its tokens' log-probabilities, which is
    log P(answer | prompt), the score task_scores.sorting_scores picks the best hall by. A softmax
    over the four turns them into the model's probability of each hall given that it names one.
    -> ({hall: probability}, {hall: summed log-probability}), in HOUSES order.
    """
    prompt = sorting_prompt(description)
    scored = answer_logprobs(loaded.model, loaded.tokenizer, [(prompt, f" {hall}") for hall in HOUSES],
                             loaded.device)                                     # one batched pass
    logp = torch.tensor([lp for lp, _ in scored])                               # (4,)
    probs = torch.softmax(logp, dim=0)                                          # (4,)
    return ({h: round(p, 4) for h, p in zip(HOUSES, probs.tolist())},
            {h: round(lp, 4) for h, lp in zip(HOUSES, logp.tolist())})


def run_task(req: TaskRequest, loaded: registry.LoadedModel, data: TaskData) -> dict:
    """The answer to a checked task request. Spells and chat are decoded greedily (the model's
    single best answer, the same every time) and end at <|endoftext|> or a line break, exactly
    as notebook 11b evaluates them (task_scores.complete)."""
    model, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    if req.task == "sorting":
        probabilities, log_likelihoods = hall_probabilities(loaded, req.inputs["description"])
        return {"hall": max(probabilities, key=probabilities.get), "probabilities": probabilities,
                "log_likelihoods": log_likelihoods}
    if req.task == "spell":
        answer = complete(model, tokenizer, req.prompt, SPELL_TOKENS, device)
        incantation = answer.split(" ")[0]  # one word, as task_scores.spell_scores reads it
        return {"incantation": incantation, "parts": spell_parts(incantation, data.lexicon)}
    return {"reply": complete(model, tokenizer, req.prompt, CHAT_REPLY_TOKENS, device)}


# ---------------------------------------------------------------------------------------------
# Models: loaded once, shared by every request
# ---------------------------------------------------------------------------------------------

# What a checkpoint file can make the library raise while it is being rebuilt: the checkpoint
# module's own CheckpointError, or an error from building a model or tokenizer out of metadata
# that has the right keys but unusable values. Anything else (out of memory, a bug) stays a 500.
DAMAGED_FILE_ERRORS = (CheckpointError, ValueError, TypeError, KeyError, IndexError, AssertionError)


def _stamp(row: dict) -> tuple | None:
    """Which version of a weights file a row points to: a rewritten or replaced file loads anew."""
    try:
        stat = Path(row["path"]).stat()
    except (KeyError, TypeError, OSError):
        return None
    return (row["path"], stat.st_mtime_ns, stat.st_size)


def _non_finite_weights(model: torch.nn.Module) -> str | None:
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if not bad:
        return None
    return (f"its weights hold NaN or infinite values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
            "the training diverged or the file is damaged; train it again")


class ModelCache:
    """name -> LoadedModel, each loaded at most once (again only if its weights file changes).

    A lock per name: two first requests for the same model wait for one load, while a request
    for an already loaded model is not held up by a slow load of another one. A file that fails
    to load is remembered (with its version) and listed as broken until it is replaced.
    """

    def __init__(self, output_dir, device: torch.device):
        self.output_dir, self.device = output_dir, device
        self._lock = threading.Lock()                    # guards _name_locks
        self._name_locks: dict[str, threading.Lock] = {}
        self._models: dict[str, tuple[tuple, registry.LoadedModel]] = {}  # name -> (stamp, model)
        self._failed: dict[str, tuple[tuple, str]] = {}                   # name -> (stamp, reason)

    def rows(self) -> dict[str, dict]:
        """The registry's rows by name, with the files that failed to load marked broken."""
        rows = {row["name"]: row for row in registry.list_checkpoints(self.output_dir)}
        for name, (stamp, reason) in list(self._failed.items()):
            row = rows.get(name)
            if row is not None and row.get("ready") and _stamp(row) == stamp:
                rows[name] = {**row, "ready": False, "broken": reason}
        return rows

    def loaded_names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str) -> registry.LoadedModel:
        with self._lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            row = {r["name"]: r for r in registry.list_checkpoints(self.output_dir)}.get(name, {})
            stamp = _stamp(row) if row.get("ready") else None
            cached = self._models.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            started = time.perf_counter()
            try:
                loaded = registry.load_model(name, self.output_dir, self.device)
                problem = _non_finite_weights(loaded.model)
                if problem:
                    raise CheckpointError(problem)
            except DAMAGED_FILE_ERRORS as err:
                reason = str(err) if isinstance(err, CheckpointError) else f"unusable metadata: {type(err).__name__}: {err}"
                log.warning("model %s is damaged: %s", name, reason)
                if stamp is not None:
                    self._failed[name] = (stamp, reason)
                raise InputError("model", f"model: {name!r} is damaged ({reason.rstrip('.')}); "
                                          "choose another model.") from err
            log.info("loaded %s (%s, %s parameters) in %.1f s", name, loaded.meta.get("model"),
                     f"{loaded.parameters:,}", time.perf_counter() - started)
            self._failed.pop(name, None)
            self._models[name] = (stamp, loaded)
            return loaded


# Concurrency: requests share one model object per name and are NOT serialised by a lock.
# Generating never writes to the model: it stays in eval mode from load on (iter_generate's
# model.eval() / model.train(was_training) only re-set the flag it already has), runs without
# autograd, builds its KV cache with model.new_cache() per call, keeps the LSTM's hidden state
# in local variables, and samples with its own torch.Generator seeded from the request's seed.
# The tokenizers are read-only. So two requests on the same model cannot see each other's
# state, and torch releases the GIL inside its kernels, so they really run side by side. A lock
# per model would instead make one long stream (up to MAX_NEW_TOKENS tokens, paced by a slow
# client) block every other user of that model. tests/test_app.py fires concurrent requests and
# checks each gives the same text as when run alone.

def _stepwise_inference(pieces):
    """Advance the generator one step at a time inside torch.inference_mode().

    A `with` block around `yield` would leave inference mode switched on in whatever code runs
    between two steps (here werkzeug, writing to the socket); entering it per step keeps it
    around the model's work only.
    """
    while True:
        with torch.inference_mode():
            try:
                piece = next(pieces)
            except StopIteration:
                return
        yield piece


class Stats:
    """Counters the tests (and the log) use to see streams start, finish and get cancelled."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = {"active": 0, "done": 0, "cancelled": 0, "failed": 0}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.counts)


def _sse(event: str, data: dict) -> str:
    # json.dumps escapes newlines, so every payload fits on the one `data:` line SSE allows.
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------------------------
# The Flask app
# ---------------------------------------------------------------------------------------------

def create_app(output_dir=None, device: str = "cpu") -> Flask:
    """The app over the checkpoints in `output_dir`/checkpoints (default: outputs/, or
    COURSE_OUTPUT_DIR) and the shipped reference models (see course_lib.registry)."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    cache = ModelCache(output_dir, pick_device(device))
    stats = Stats()
    try:
        task_data = load_task_data()
    except (OSError, KeyError, csv.Error) as err:  # the app still writes text without them
        log.warning("the task forms are off: cannot read data/tasks/ (%s); restore it from git", err)
        task_data = None
    app.extensions["course_app"] = {"cache": cache, "stats": stats, "task_data": task_data}
    page = Template((STATIC_DIR / "index.html").read_text(encoding="utf-8")).substitute(
        max_prompt_chars=MAX_PROMPT_CHARS, max_new_tokens=MAX_NEW_TOKENS, max_seed=MAX_SEED,
        max_task_chars=MAX_TASK_CHARS)

    def json_body():
        if not request.is_json:
            # Also a guard: a page on another site can only send a cross-origin POST with a JSON
            # content type after a CORS preflight, which this server never grants.
            raise InputError(None, "Send the body as JSON, with the header Content-Type: application/json.")
        body = request.get_json(silent=True)
        if body is None:
            raise InputError(None, "The request body is not valid JSON. Send a JSON object such as "
                                   '{"model": "dropout", "prompt": "WREN:"} (Content-Type: application/json).')
        return body

    def prepare() -> tuple[GenerationRequest, registry.LoadedModel]:
        req = parse_request(json_body(), cache.rows())
        loaded = cache.get(req.model)
        # again with the tokenizer actually loaded, in case the .json copy differs from the weights
        check_for_model(req, loaded.tokenizer.vocab_size, _chars({"chars": getattr(loaded.tokenizer, "chars", None)}))
        return req, loaded

    def describe(req: GenerationRequest, loaded: registry.LoadedModel) -> dict:
        return {"model": req.model, "model_kind": loaded.meta.get("model"), **asdict(req)}

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/models")
    def models():
        return jsonify([public_row(row) for row in cache.rows().values()])

    @app.post("/api/generate")
    def generate():
        req, loaded = prepare()
        started = time.perf_counter()
        pieces = list(_stepwise_inference(loaded.stream(req.prompt, req.max_new_tokens, **req.sampling())))
        elapsed = time.perf_counter() - started
        completion = "".join(pieces)
        return jsonify({**describe(req, loaded), "text": req.prompt + completion, "completion": completion,
                        "pieces": len(pieces), "elapsed_s": round(elapsed, 4)})

    @app.post("/api/stream")
    def stream():
        req, loaded = prepare()

        def events():
            # Runs after the view has returned, while the server writes each event to the socket.
            # When the client goes away (Stop, closed tab), that write fails, the server closes this
            # generator: GeneratorExit is raised at the `yield` and `finally` closes the model's
            # generator, so no more tokens are computed for nobody.
            pieces = loaded.stream(req.prompt, req.max_new_tokens, **req.sampling())
            count, outcome, started = 0, "cancelled", time.perf_counter()
            stats.add("active")
            try:
                yield _sse("start", describe(req, loaded))
                for piece in _stepwise_inference(pieces):
                    count += 1
                    yield _sse("token", {"text": piece})
                elapsed = time.perf_counter() - started
                outcome = "done"
                yield _sse("done", {"pieces": count, "seed": req.seed, "elapsed_s": round(elapsed, 4),
                                    "pieces_per_s": round(count / elapsed, 1) if elapsed > 0 else None})
            except Exception as err:  # noqa: BLE001 -- the status line must say it; the server goes on
                outcome = "failed"
                log.exception("generation failed half-way (%s)", req.model)
                yield _sse("error", {"error": f"generation failed after {count} pieces: {type(err).__name__}"})
            finally:
                pieces.close()
                stats.add("active", -1)
                stats.add(outcome)
                if outcome == "cancelled":
                    log.info("stream of %s stopped by the client after %d pieces", req.model, count)

        return Response(events(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def require_task_data() -> TaskData:
        if task_data is None:
            raise TaskDataMissing()
        return task_data

    @app.get("/api/tasks")
    def tasks():
        data = require_task_data()
        return jsonify({"tasks": list(TASKS), "halls": list(HOUSES), "characters": list(data.characters),
                        "lexicon": list(data.lexicon), "max_chars": MAX_TASK_CHARS})

    @app.post("/api/task/<task>")
    def task_endpoint(task: str):
        if task not in TASKS:
            raise NotFound(f"No task {task!r}: the tasks are {', '.join(TASKS)} (POST /api/task/<task>).")
        data = require_task_data()
        req = parse_task_request(task, json_body(), cache.rows(), data.characters)
        loaded = cache.get(req.model)
        check_task_fits(req, loaded)
        started = time.perf_counter()
        with torch.inference_mode():
            answer = run_task(req, loaded, data)
        return jsonify({"model": req.model, "task": task, **req.inputs, **answer, "prompt": req.prompt,
                        "elapsed_s": round(time.perf_counter() - started, 4)})

    @app.errorhandler(InputError)
    def bad_input(err: InputError):
        payload = {"error": str(err)}
        if err.field:
            payload["field"] = err.field
        return jsonify(payload), 400

    @app.errorhandler(SamplingError)
    @app.errorhandler(UnknownCharacterError)
    def library_refused(err: ValueError):
        # a safety net: parse_request should have caught these already, with the field named
        return jsonify({"error": str(err)}), 400

    @app.errorhandler(CheckpointError)
    def bad_checkpoint(err: CheckpointError):
        # a safety net too (ModelCache.get turns these into a 400 naming the model): a damaged
        # file is the chosen model's problem, never the server's
        log.error("checkpoint problem: %s", err)
        return jsonify({"error": str(err), "field": "model"}), 400

    @app.errorhandler(TokenizerFileError)
    @app.errorhandler(TaskDataMissing)
    def setup_incomplete(err: RuntimeError):
        # the server's installation lacks a file; the message says how to restore it
        log.error("setup incomplete: %s", err)
        return jsonify({"error": str(err)}), 503

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify({"error": f"{err.code} {err.name}: {err.description}"}), err.code
        return err

    @app.errorhandler(Exception)
    def crashed(err: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify({"error": f"Internal error ({type(err).__name__}); the server log has the details."}), 500

    return app


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

def make_dev_server(app, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = IDLE_TIMEOUT_S):
    """werkzeug's threaded server, whose connections time out after `idle_timeout` seconds of silence.

    The server starts one thread per connection, which waits for the request to arrive. Browsers
    open spare connections in advance and may never use them, and a stuck client or a closed
    laptop leaves its connection open: without a timeout, each would hold its thread forever.
    socketserver applies a request handler's `timeout` to the socket: a read that waits longer
    ends the connection (werkzeug treats that as a dropped connection). It bounds each silence,
    not the whole request, and a stream in progress is not affected: it only writes, and each
    write completes as soon as the client reads. (werkzeug closes a connection after its
    response, so there are no kept-alive connections to time out.)
    """
    handler = type("IdleTimeoutRequestHandler", (WSGIRequestHandler,), {"timeout": idle_timeout})
    return make_server(host, port, app, threaded=True, request_handler=handler)


def make_waitress_server(app, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = IDLE_TIMEOUT_S,
                         threads: int = WAITRESS_THREADS):
    """waitress (optional: pip install waitress), a production WSGI server: `threads` workers
    serve requests while one event loop holds the connections, so an idle connection costs no
    thread; one silent for `idle_timeout` seconds is closed (its channel_timeout, checked every
    cleanup_interval). Streams work as with werkzeug: waitress sends each event as it is yielded,
    and closes the app's generator when the client leaves.
    Returns the server: .effective_port, .run(), .close()."""
    try:
        import waitress
    except ImportError:
        raise RuntimeError("--server waitress needs the waitress package: pip install waitress "
                           "(or leave out --server to use the development server).") from None
    timeout = max(1, round(idle_timeout))  # waitress counts whole seconds
    return waitress.create_server(app, host=host, port=port, threads=threads, channel_timeout=timeout,
                                  cleanup_interval=min(30, timeout), ident="course_lib.app")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.app",
                                description="A page and a JSON API that write text with the course's checkpoints.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--output-dir", default=None, help="the folder holding checkpoints/ (default: outputs/)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--server", choices=("dev", "waitress"), default="dev",
                   help="dev: werkzeug's development server (default); waitress: a production WSGI server "
                        "(pip install waitress)")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                   help=f"close connections that send nothing for this many seconds (default {IDLE_TIMEOUT_S})")
    p.add_argument("--threads", type=int, default=WAITRESS_THREADS,
                   help=f"waitress only: requests served at once (default {WAITRESS_THREADS})")
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_notice(host: str, port: int, server: str = "dev") -> str:
    """What to print at start-up about who can reach the server."""
    if _is_loopback(host):
        return (f"Only this computer can reach it. To let other machines in on purpose, restart with "
                f"--host 0.0.0.0 (there is no login: anyone who reaches port {port} can use it).")
    kind = "a development server" if server == "dev" else "served by waitress"
    return (f"WARNING: listening on {host}, so other machines on the network can reach this server. "
            f"It has no login and is {kind}: use it on a trusted network only, "
            "and stop it (Ctrl+C) when you are done. Drop --host to keep it on 127.0.0.1.")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.idle_timeout > 0 or args.threads < 1:
        print("error: --idle-timeout must be > 0 seconds and --threads at least 1.", file=sys.stderr)
        return 2
    try:
        app = create_app(args.output_dir, args.device)
    except (RuntimeError, ValueError) as err:  # e.g. --device cuda without a GPU
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.server == "waitress":
            server = make_waitress_server(app, args.host, args.port, args.idle_timeout, args.threads)
            # (a host name with several addresses gets several sockets, and no single port)
            port, serve, close = getattr(server, "effective_port", args.port), server.run, server.close
        else:
            server = make_dev_server(app, args.host, args.port, args.idle_timeout)
            port, serve, close = server.server_port, server.serve_forever, server.server_close
    except RuntimeError as err:  # waitress is not installed
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, SystemExit):  # werkzeug prints why and exits when it cannot bind
        print(f"error: cannot listen on {args.host}:{args.port}. Try another --port.", file=sys.stderr)
        return 2
    rows = app.extensions["course_app"]["cache"].rows()
    ready = [name for name, row in rows.items() if row["ready"]]
    broken = [name for name, row in rows.items() if row.get("broken")]
    where = registry.checkpoints_dir(args.output_dir)
    print(f"{len(ready)} model(s) ready (trained ones in {where}, reference ones in "
          f"{registry.reference_dir() or 'none'}): {', '.join(ready) or 'none yet (run `make course`)'}")
    if broken:
        print(f"damaged, skipped: {', '.join(broken)} (GET /api/models says why)")
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Serving on http://{shown_host}:{port}/  (Ctrl+C to stop)")
    print(exposure_notice(args.host, port, args.server), flush=True)
    try:
        serve()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Multi-task fine-tuning with task prefixes and a loss on the completion only.

Every example is a prompt and a completion:

    [SORTING] <description>\\nHall:                 ->  " Thorn"
    [SPELL] Effect: <effect>\\nIncantation:          ->  " ketis"
    [CHAT] User to <Character>: <line>\\n<CHARACTER>: ->  " <reply>"

followed by <|endoftext|>. The model reads prompt + completion, but only the completion's tokens
count in the loss: we want it to learn to *answer*, not to write more questions (the prompt
tokens would otherwise take a large share of the gradient: descriptions are long, houses short).

Three splits, and what each is for (notebooks 11 and 11b):

    train  the task tables' training rows minus dev: the only examples fine-tuning learns from
    dev    carved from the training rows by `split_dev` (about 20 % of each hall, spell root and
           character): every choice (steps, learning rate, which weights to keep) is made on it
    test   the tables' test rows: read once, at the end, to report; nothing is chosen by it

How the fine-tuned model is scored on the tasks (intervals, baselines, the two readings of
sorting) is the next module, `course_lib.task_scores` (notebook 11b).
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .device import amp_dtype_for, autocast
from .optimization import IGNORE_INDEX, OptimizerStep, check_finite, lr_at, make_optimizer, set_lr
from .paths import TASKS_DIR

IGNORE = IGNORE_INDEX  # label value that cross_entropy skips
HOUSES = ("Lantern", "Anvil", "Tide", "Thorn")


@dataclass
class Example:
    task: str          # sorting | spell | chat
    prompt: str
    completion: str    # starts with a space: GPT-2's BPE joins a word to its leading space
    answer: str        # the completion without the space (for exact match)
    row: dict = field(default_factory=dict, repr=False)  # the table row it was made from


def _rows(name: str) -> list[dict]:
    """Read a task table. (csv from the standard library: the tables are small and fixed.)"""
    path = TASKS_DIR / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"Task table {path} is missing: restore data/tasks/ from git.")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# The prompt of each task: the one place that spells out the prefixes (the notebooks, the
# evaluation and the web app all build prompts through these, never by hand).
def sorting_prompt(description: str) -> str:
    return f"[SORTING] {description}\nHall:"


def spell_prompt(effect: str) -> str:
    return f"[SPELL] Effect: {effect}\nIncantation:"


def chat_prompt(character: str, user_line: str) -> str:
    return f"[CHAT] User to {character}: {user_line}\n{character.upper()}:"


def load_examples(split: str, tasks=("sorting", "spell", "chat")) -> list[Example]:
    """All examples of one split ('train' or 'test') of the chosen tasks, in table order."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    unknown = set(tasks) - {"sorting", "spell", "chat"}
    if unknown:
        raise ValueError(f"Unknown task(s) {sorted(unknown)}: choose from 'sorting', 'spell', 'chat'.")
    out: list[Example] = []
    if "sorting" in tasks:
        out += [Example("sorting", sorting_prompt(r["description"]), f" {r['house']}", r["house"], r)
                for r in _rows("sorting") if r["split"] == split]
    if "spell" in tasks:
        out += [Example("spell", spell_prompt(r["effect"]), f" {r['incantation']}", r["incantation"], r)
                for r in _rows("spells") if r["split"] == split]
    if "chat" in tasks:
        out += [Example("chat", chat_prompt(r["character"], r["user"]), f" {r['reply']}", r["reply"], r)
                for r in _rows("chat") if r["split"] == split]
    return out


def per_task(examples: list[Example], n: int | None) -> list[Example]:
    """The first n examples of each task, in order (all of them when n is None): small profiles
    score a few examples per task, the others all of them."""
    seen: Counter = Counter()
    out = []
    for e in examples:
        if n is None or seen[e.task] < n:
            out.append(e)
            seen[e.task] += 1
    return out


# ----------------------------------------------------------------------------- the dev split

DEV_FRACTION = 0.2


def stratum(ex: Example) -> str:
    """What the dev split keeps in proportion: the hall (sorting), the spell's root, the character (chat)."""
    key = {"sorting": "house", "spell": "root", "chat": "character"}.get(ex.task)
    if key is None or key not in ex.row:
        raise ValueError(f"Example of task {ex.task!r} has no table row with {key!r}: build examples with "
                         "load_examples, which keeps each one's row.")
    return ex.row[key]


def _unit(ex: Example) -> tuple:
    """What moves to dev as a whole. A spell moves with every training spell of the same
    (root, ending, ro-) combination, so dev holds out combinations exactly as the test split does."""
    if ex.task == "spell":
        return ("spell", ex.row["root"], ex.row["ending"], ex.row["intensified"])
    return (ex.task, ex.prompt)


def _parts(ex: Example) -> tuple:
    return (("root", ex.row["root"]), ("ending", ex.row["ending"]))


def _stable_order(unit: tuple) -> str:
    # A hash of the content, not Python's hash() (salted per process) and not the table order:
    # the same rows land in dev on every machine and every run, whatever the seed.
    return hashlib.sha256(repr(unit).encode("utf-8")).hexdigest()


def split_dev(examples: list[Example], fraction: float = DEV_FRACTION) -> tuple[list[Example], list[Example]]:
    """Carve a dev split out of TRAINING examples: -> (train, dev), both in table order.

    Deterministic (by a hash of each example's content) and stratified: about `fraction` of every
    hall, every spell root and every character goes to dev. Spells move by combination (see _unit)
    and only while each root and ending keeps at least one training spell, so that dev, like test,
    asks for new combinations of known parts. Never pass test examples here."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1 (e.g. 0.2), got {fraction!r}.")
    if any(ex.row.get("split") == "test" for ex in examples):
        raise ValueError("split_dev got test examples: carve dev from load_examples('train') only, so that "
                         "the test split stays unseen until the end.")
    dev_units: set[tuple] = set()
    for task in ("sorting", "spell", "chat"):
        rows = [ex for ex in examples if ex.task == task]
        units: dict[tuple, list[Example]] = {}
        for ex in rows:
            units.setdefault(_unit(ex), []).append(ex)
        # spells: how many training spells each root and each ending still has
        left = Counter(part for ex in rows if task == "spell" for part in _parts(ex))
        taken: Counter = Counter()
        target = {s: round(fraction * n) for s, n in Counter(stratum(ex) for ex in rows).items()}
        for unit in sorted(units, key=_stable_order):
            members = units[unit]
            s = stratum(members[0])
            if taken[s] + len(members) > target[s]:
                continue
            parts = _parts(members[0]) if task == "spell" else ()
            if any(left[part] <= len(members) for part in parts):
                continue  # keep at least one training spell with this root and this ending
            dev_units.add(unit)
            taken[s] += len(members)
            for part in parts:
                left[part] -= len(members)
    train = [ex for ex in examples if _unit(ex) not in dev_units]
    dev = [ex for ex in examples if _unit(ex) in dev_units]
    return train, dev


def encode_example(tokenizer, ex: Example, max_len: int, mask_prompt: bool = True) -> tuple[list[int], list[int]]:
    """-> (input ids, labels), same length. labels[t] is the token that follows input[t], or IGNORE.
    Long prompts are cut from the left so that the completion always fits."""
    prompt_ids = tokenizer.encode(ex.prompt)
    completion_ids = tokenizer.encode(ex.completion) + [tokenizer.eot_id]
    if len(completion_ids) >= max_len:
        completion_ids = completion_ids[:max_len - 1]
    keep = max_len + 1 - len(completion_ids)
    prompt_ids = prompt_ids[-keep:]
    ids = prompt_ids + completion_ids
    targets = ids[1:]
    labels = [IGNORE if (mask_prompt and t < len(prompt_ids) - 1) else tok for t, tok in enumerate(targets)]
    return ids[:-1], labels


def pad_collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of (ids, labels) to the longest: x (B, T) padded with pad_id, y (B, T) with
    IGNORE, so padding never counts in the loss (causal attention means real tokens never see it)."""
    T = max(len(ids) for ids, _ in batch)
    x = torch.full((len(batch), T), pad_id, dtype=torch.long)
    y = torch.full((len(batch), T), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(batch):
        x[i, :len(ids)] = torch.tensor(ids)
        y[i, :len(labels)] = torch.tensor(labels)
    return x, y


def masked_loss(logits: torch.Tensor, labels: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """Cross-entropy over the labelled positions only. logits (B, T, V), labels (B, T).

    per_example=False: the mean over all labelled tokens of the batch.
    per_example=True: each example's mean first, then the mean over examples, so a two-token
    answer (" Thorn" + end) weighs as much as a forty-token chat reply. Without it, in a mixed
    batch the long chat replies would take almost all of the gradient.
    """
    if not per_example:
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE)
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")  # (B, T)
    counts = (labels != IGNORE).sum(dim=1).clamp(min=1)                                             # (B,)
    return (nll.sum(dim=1) / counts).mean()


def completion_loss(model, x: torch.Tensor, labels: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """masked_loss(model(x), labels, per_example), computing logits only at the labelled positions.

    The same number (a test checks it), much less work: in our task mix about 64% of the
    positions are prompt or padding, and on a GPT-2 vocabulary the output layer is most of the
    cost. Models without `hidden_states` (e.g. the LSTM) take the plain path."""
    if not hasattr(model, "hidden_states"):
        return masked_loss(model(x), labels, per_example)
    keep = labels != IGNORE                                          # (B, T)
    h = model.hidden_states(x)[keep]                                 # (N, C): N labelled positions
    nll = F.cross_entropy(model.logits(h), labels[keep], reduction="none")     # (N,)
    if not per_example:
        return nll.mean()
    rows = keep.nonzero(as_tuple=True)[0]                            # (N,) which example each came from
    sums = torch.zeros(x.size(0), device=nll.device, dtype=nll.dtype).index_add_(0, rows, nll)  # (B,)
    return (sums / keep.sum(dim=1).clamp(min=1)).mean()


@dataclass
class FinetuneConfig:
    max_steps: int = 300
    batch_size: int = 8
    learning_rate: float = 3e-4
    warmup_steps: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    mask_prompt: bool = True
    per_example: bool = True   # every example weighs the same (see masked_loss)
    eval_interval: int = 50    # with dev examples: their loss every this many steps
    keep_best: bool = True     # with dev examples: end with the weights of the best dev loss
    checkpoint_path: str | None = None  # save the fine-tuned model here at the end
    seed: int = 1337

    @classmethod
    def from_settings(cls, cfg, **extra) -> "FinetuneConfig":
        from .training import config_from_settings

        return config_from_settings(cls, cfg, **extra)


@dataclass
class FinetuneHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    dev_steps: list[int] = field(default_factory=list)
    dev_loss: list[float] = field(default_factory=list)
    best_step: int | None = None
    best_dev_loss: float = math.inf
    seconds: float = 0.0


@torch.no_grad()
def dev_loss(model, tokenizer, examples: list[Example], device="cpu", batch_size: int = 16,
             per_example: bool = True) -> float:
    """The masked completion loss on held-out examples (eval mode), averaged like training's."""
    was_training = model.training
    model.eval()
    encoded = [encode_example(tokenizer, ex, model.block_size) for ex in examples]
    total, n = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i:i + batch_size]
        x, y = (t.to(device) for t in pad_collate(chunk, tokenizer.eot_id))
        total += completion_loss(model, x, y, per_example).float().item() * len(chunk)
        n += len(chunk)
    model.train(was_training)
    return total / max(1, n)


def finetune(model, tokenizer, examples: list[Example], config: FinetuneConfig, device="cpu",
             progress: bool = True, dev_examples: list[Example] | None = None,
             checkpoint_meta: dict | None = None) -> FinetuneHistory:
    """Shuffled mini-batches of mixed tasks, AdamW with warm-up + cosine, masked loss.

    dev_examples: held-out examples (from the training tables, never the test split) scored every
    `eval_interval` steps; with keep_best the model ends with the weights of the best dev loss."""
    if not examples:
        raise ValueError("No training examples: check the task tables and the split.")
    max_len = model.block_size
    encoded = [encode_example(tokenizer, ex, max_len, config.mask_prompt) for ex in examples]
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device(device)
    model.to(device).train()  # before the optimizer: the fused CUDA AdamW needs the parameters there
    # The GPU speed-ups of training.train: bf16/fp16 autocast, loss scaling for fp16, fused AdamW.
    amp = amp_dtype_for(device)
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay, betas=(0.9, 0.999), device=device)
    stepper = OptimizerStep(optimizer, device, amp, config.grad_clip)
    history = FinetuneHistory()
    best_state = None

    def score_dev(step: int) -> None:
        nonlocal best_state
        with autocast(device, amp):
            loss = dev_loss(model, tokenizer, dev_examples, device, per_example=config.per_example)
        history.dev_steps.append(step)
        history.dev_loss.append(loss)
        if loss < history.best_dev_loss:
            history.best_dev_loss, history.best_step = loss, step
            if config.keep_best:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    order, cursor = torch.randperm(len(encoded), generator=generator).tolist(), 0
    check_every_step = device.type == "cpu"  # reading a loss is free on a CPU, a host sync on a GPU
    pending: list[torch.Tensor] = []          # step losses not yet read on the host
    start = time.perf_counter()
    for step in tqdm(range(config.max_steps), desc="fine-tuning", disable=not progress, mininterval=1.0):
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(encoded), generator=generator).tolist(), 0
        batch = [encoded[i] for i in order[cursor:cursor + config.batch_size]]
        cursor += config.batch_size
        x, y = (t.to(device) for t in pad_collate(batch, tokenizer.eot_id))
        if dev_examples and step % config.eval_interval == 0:
            score_dev(step)
        lr = lr_at(step, config.max_steps, config.learning_rate, config.warmup_steps)
        set_lr(optimizer, lr)
        with autocast(device, amp):
            loss = completion_loss(model, x, y, config.per_example)
        if check_every_step or step % config.eval_interval == 0:  # as training.train: no per-step sync on a GPU
            check_finite(loss, step, lr)
        stepper.backward(loss)
        stepper.step(model.parameters())
        history.steps.append(step)
        pending.append(loss.detach())
        history.lr.append(lr)
    history.loss.extend(t.item() for t in pending)  # the step losses, read on the host once
    if dev_examples:
        score_dev(config.max_steps)
    history.seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)  # the best dev loss's weights, not the last step's
    model.eval()
    if config.checkpoint_path:
        from dataclasses import asdict

        from .checkpoints import save_model

        meta = {"finetune_config": asdict(config), "best_step": history.best_step,
                "best_dev_loss": history.best_dev_loss if dev_examples else None,
                "train_seconds": round(history.seconds, 1), **(checkpoint_meta or {})}
        save_model(config.checkpoint_path, model, tokenizer, **meta)
    return history

"""Every milestone leaves two traces: outputs/milestoneN.txt (header + samples) and one row in
outputs/results.json (the ledger that later notebooks and the README read their numbers from).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .paths import output_dir as default_output_dir

RESULTS_FILE = "results.json"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_results(output_dir: str | os.PathLike | None = None) -> dict:
    """{milestone number (str): row}. An unreadable ledger is an error, never silently replaced."""
    path = Path(output_dir or default_output_dir()) / RESULTS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Fix it by hand or move it away; "
                         "the next milestone will then start a new ledger.") from err
    return data.get("milestones", {})


def previous_result(n: int, output_dir=None) -> dict | None:
    """The nearest earlier milestone's row (to print 'before vs after'), or None."""
    rows = load_results(output_dir)
    earlier = sorted((int(k) for k in rows if int(k) < n), reverse=True)
    return rows[str(earlier[0])] if earlier else None


def format_header(n: int, title: str, run_info: dict, metrics: dict, sampling: dict, extra: dict) -> str:
    lines = [f"Milestone {n}: {title}", "=" * (len(title) + 13)]
    fields = {**run_info, **extra}
    for key, value in fields.items():
        if isinstance(value, (dict, list)):
            continue  # tables and nested data live in results.json, not in the header
        lines.append(f"{key:>16}: {value}")
    for key, value in metrics.items():
        lines.append(f"{key:>16}: {value}")
    if sampling:
        lines.append(f"{'sampling':>16}: " + ", ".join(f"{k}={v}" for k, v in sampling.items()))
    return "\n".join(lines)


def save_milestone(n: int, title: str, samples: list[str] | str, run_info: dict, metrics: dict | None = None,
                   sampling: dict | None = None, extra: dict | None = None,
                   output_dir: str | os.PathLike | None = None) -> Path:
    """Write outputs/milestone{n}.txt and upsert row n of outputs/results.json. Returns the txt path.

    run_info: notebook, profile, corpus, seed, device (NotebookRun.info()).
    metrics: e.g. val_loss, perplexity, bits_per_char, parameters, train_seconds.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"Milestone number must be a positive integer, got {n!r}.")
    out = Path(output_dir or default_output_dir())
    out.mkdir(parents=True, exist_ok=True)
    samples = [samples] if isinstance(samples, str) else list(samples)
    metrics, sampling, extra = metrics or {}, sampling or {}, extra or {}
    header = format_header(n, title, run_info, metrics, sampling, extra)
    body = "\n\n".join(f"--- sample {i + 1} ---\n{s.rstrip()}" for i, s in enumerate(samples))
    txt = out / f"milestone{n}.txt"
    _atomic_write(txt, header + "\n\n" + body + "\n")

    rows = load_results(out)
    rows[str(n)] = {"milestone": n, "title": title, **run_info, **metrics, **extra,
                    "sampling": sampling, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    ordered = {k: rows[k] for k in sorted(rows, key=int)}
    _atomic_write(out / RESULTS_FILE, json.dumps({"milestones": ordered}, indent=2) + "\n")
    return txt


def finish_milestone(run, n: int, title: str, *, samples, metrics: dict, model=None, tokenizer=None,
                     checkpoint: str | None = None, changes: str = "", sampling: dict | None = None,
                     history=None, extra: dict | None = None, compare_key: str = "val_loss",
                     compare_unit: str | None = None, checkpoint_meta: dict | None = None) -> dict:
    """The bookkeeping at the end of a milestone notebook, in one call:

    1. the checkpoint `checkpoints/<checkpoint>` (weights, tokenizer, and this run's metadata),
       so notebook 12, the CLI and the web app can use the model;
    2. `milestone<n>.txt` (header + samples) and row n of `results.json`, with `changes` (what
       this rung of the ladder changed, for the ladder figure's labels) and the validation curve;
    3. one printed line comparing `compare_key` with the previous milestone of the same profile
       and corpus, phrased from the numbers (course_lib.reporting.compare).

    run: the notebook's NotebookRun. samples: {label: text} or a list of texts.
    compare_unit: the unit of compare_key in the printed sentence (default: bits/char for a
    "bits" key, else nats/char). checkpoint_meta: more metadata for the checkpoint (e.g. tasks).
    Returns {"milestone": path, "checkpoint": path or None, "comparison": sentence or None}.
    """
    from .checkpoints import save_model
    from .reporting import SEED_NOISE_NATS, compare

    if isinstance(samples, dict):
        samples = [f"[{label}]\n{text}" for label, text in samples.items()]
    extra = dict(extra or {})
    if changes:
        extra["changes"] = changes
    if history is not None:  # the validation curve, for the ladder's overlay of every rung
        extra["curve"] = {"steps": list(history.steps), "val_loss": [round(v, 4) for v in history.val_loss]}
    ckpt_path = None
    if checkpoint is not None:
        if model is None or tokenizer is None:
            raise ValueError("finish_milestone(checkpoint=...) needs model= and tokenizer= to save.")
        ckpt_path = save_model(run.checkpoints_dir / checkpoint, model, tokenizer, milestone=n, title=title,
                               **run.info(), metrics=metrics, **(checkpoint_meta or {}))
        extra["checkpoint"] = checkpoint
    before = previous_result(n, run.output_dir)
    path = save_milestone(n, title, samples, run.info(), metrics=metrics, sampling=sampling, extra=extra,
                          output_dir=run.output_dir)
    print(f"saved {path.name}" + (f" and checkpoint {ckpt_path.name}" if ckpt_path else "")
          + f" in {run.output_dir}")
    sentence = None
    if before is None or compare_key not in metrics or compare_key not in before:
        print(f"(no earlier milestone with {compare_key} in results.json to compare with)")
    elif (before.get("profile"), before.get("corpus")) != (run.profile, run.corpus):
        print(f"(milestone {before['milestone']} was run with profile {before.get('profile')} / corpus "
              f"{before.get('corpus')}: run it with this profile and corpus to compare)")
    else:
        bits = "bits" in compare_key  # the same noise, in the key's unit
        sentence = compare(f"milestone {n}", float(metrics[compare_key]), f"milestone {before['milestone']}",
                           float(before[compare_key]), unit=compare_unit or ("bits/char" if bits else "nats/char"),
                           noise=SEED_NOISE_NATS / math.log(2) if bits else SEED_NOISE_NATS)
        print(f"{compare_key}: {sentence}")
    return {"milestone": path, "checkpoint": ckpt_path, "comparison": sentence}

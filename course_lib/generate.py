"""Command-line text generation from any trained checkpoint of the course.

    python -m course_lib.generate --list
    python -m course_lib.generate --checkpoint dropout --prompt "WREN:" --max-new-tokens 300
    python -m course_lib.generate --checkpoint gpt2 --prompt "The tide" --temperature 0.8 --top-p 0.9

Errors (unknown checkpoint, bad sampling values, characters the model has never seen) are
printed as one clear line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from .generation import SamplingError
from .registry import list_checkpoints, load_model
from .tokenizers import UnknownCharacterError
from .training import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", "-c",
                   help="registry name (e.g. bigram, dropout, lstm, gpt2), a .safetensors file, or a train_gpt2 --out folder")
    p.add_argument("--prompt", "-p", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", "-n", type=int, default=200)
    p.add_argument("--temperature", "-t", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="fix the randomness for a repeatable sample")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--output-dir", default=None, help="where outputs/checkpoints lives (default: outputs/)")
    p.add_argument("--list", action="store_true", help="list the available checkpoints and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list or not args.checkpoint:
        rows = list_checkpoints(args.output_dir)
        if not rows:
            print("No checkpoints yet: run `make course` (or the notebooks) first.")
        for row in rows:
            if row.get("broken"):
                status = f"broken: {row['broken']}"
            elif row["ready"]:
                status = "ready" + (" (shipped reference model)" if row["source"] == "reference" else "")
            else:
                status = "metadata only: re-run its notebook"
            print(f"{row['name']:<16} {str(row.get('model', '?')):<18} {row.get('parameters') or 0:>12,} params  ({status})")
        return 0 if args.list else 2
    try:
        loaded = load_model(args.checkpoint, args.output_dir, args.device)
        sys.stdout.write(args.prompt)
        for piece in loaded.stream(args.prompt, args.max_new_tokens, temperature=args.temperature,
                                   top_k=args.top_k, top_p=args.top_p, seed=args.seed):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except (CheckpointError, SamplingError, UnknownCharacterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command-line text generation from any trained checkpoint of the course.

    python -m course_lib.generate --list
    python -m course_lib.generate --checkpoint dropout --prompt "WREN:" --max-new-tokens 300
    python -m course_lib.generate --checkpoint gpt2 --prompt "The tide" --temperature 0.8 --top-p 0.9

Errors (unknown checkpoint, bad sampling values, characters the model has never seen, a device
this machine does not have) are printed as one clear line and exit with status 2; no traceback.
"""

from __future__ import annotations

import itertools
import sys

from .registry import list_checkpoints, load_model
from .cli import CommandParser, cli_entry, resolve_device, seed_type


def build_parser() -> CommandParser:
    p = CommandParser(prog="python -m course_lib.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", "-c",
                   help="registry name (e.g. bigram, dropout, lstm, gpt2), a .safetensors file, or a folder "
                        "written by train_gpt2 --out / train --out")
    p.add_argument("--prompt", "-p", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", "-n", type=int, default=200)
    p.add_argument("--temperature", "-t", type=float, default=1.0,
                   help="any finite number > 0: below 1 safer, above 1 wilder; tiny values act as greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true",
                   help="always the most likely token (temperature, top-k and top-p are not used)")
    p.add_argument("--seed", type=seed_type, default=None,
                   help="fix the randomness for a repeatable sample (0 to 2**32-1)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    p.add_argument("--output-dir", default=None, help="where outputs/checkpoints lives (default: outputs/)")
    p.add_argument("--list", action="store_true", help="list the available checkpoints and exit")
    return p


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list or not args.checkpoint:
        rows = list_checkpoints(args.output_dir)
        if not rows:
            print("No checkpoints yet: run `make course`, the notebooks, or `python -m course_lib.train <family>`.")
        for row in rows:
            if row.get("broken"):
                status = f"broken: {row['broken']}"
            elif row["ready"]:
                status = "ready" + (": shipped reference model" if row["source"] == "reference" else "")
            else:
                status = "metadata only: re-run its notebook"
            print(f"{row['name']:<16} {str(row.get('model', '?')):<18} {row.get('parameters') or 0:>12,} params  ({status})")
        if args.list:
            return 0
        print("error: no --checkpoint given: pass one of the names above, or a checkpoint's path.", file=sys.stderr)
        return 2
    device = resolve_device(args.device)  # before loading: a missing GPU is reported as such
    loaded = load_model(args.checkpoint, args.output_dir, device)
    pieces = loaded.stream(args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, seed=args.seed, greedy=args.greedy)
    first = next(pieces, "")  # sampling settings and the prompt are checked here, before anything is printed
    sys.stdout.write(args.prompt)
    for piece in itertools.chain([first], pieces):
        sys.stdout.write(piece)
        sys.stdout.flush()  # show each piece as it comes
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the course's models from the command line: the same library calls and the same checkpoints
as notebooks 08-11, with progress bars, no Jupyter needed.

    python -m course_lib.train char --profile cpu              # notebook 08: the full character GPT
    python -m course_lib.train lstm --profile cpu --epochs 5   # notebook 09: the word-level LSTM
    python -m course_lib.train gpt2 --profile gpu              # notebook 10: GPT-2 from scratch ...
    python -m course_lib.train gpt2 --init gpt2 --steps 300    # ... or from OpenAI's published weights
    python -m course_lib.train finetune --base gpt2            # notebook 11: the three tasks

Each run saves one checkpoint (course_lib.checkpoints: weights, tokenizer, metadata) under the
name the notebook uses (dropout, lstm, gpt2, finetuned) in outputs/checkpoints/, or where --out
says, and never over an existing one unless --force is given. Then:

    python -m course_lib.generate --checkpoint dropout --prompt "WREN:"
    python -m course_lib.app                                   # the web page lists it too

Like every command-line tool of the course, it reports a mistake as ONE line `error: ...`
(course_lib.cli).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from .cli import CommandError, CommandParser, cli_entry, positive_float, positive_int, resolve_device, seed_type

# ----------------------------------------------------------------------------- where the checkpoint goes

def checkpoint_target(out: str | None, default_name: str, output_dir=None) -> Path:
    """--out -> the checkpoint path (without suffix).

    None: outputs/checkpoints/<default name>. A bare name ("mychar"): outputs/checkpoints/mychar,
    so `generate --checkpoint mychar` and the web app find it. An existing folder: <folder>/model
    (the layout of train_gpt2 --out, so `generate --checkpoint <folder>` works). Else a path."""
    from .registry import checkpoints_dir

    if out is None:
        return checkpoints_dir(output_dir) / default_name
    path = Path(out).expanduser()
    if path.is_dir():
        return path / "model"
    if "/" not in out and os.sep not in out and not out.endswith((".safetensors", ".json", ".pt")):
        return checkpoints_dir(output_dir) / out
    return path


def check_target(target: Path, force: bool) -> Path:
    """Refuse to replace an existing checkpoint without --force, and check that the folder can be
    written to BEFORE any training starts (a run must never fail at its very last step)."""
    from .checkpoints import checkpoint_paths

    weights, meta, _ = checkpoint_paths(target)
    existing = [p for p in (weights, meta) if p.exists()]
    if any(p.is_dir() for p in existing):
        raise CommandError(f"{existing[0]} is a folder, not a checkpoint file: choose another --out.")
    if existing and not force:
        raise CommandError(f"{existing[0]} already exists: pass --force to replace it (the old one stays until "
                           "the new one is saved), or choose another name with --out.")
    try:
        weights.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"cannot create the folder {weights.parent} for --out ({err.strerror or err}).") from err
    if not os.access(weights.parent, os.W_OK):
        raise CommandError(f"the folder {weights.parent} is not writable: choose another --out.")
    return weights


# ----------------------------------------------------------------------------- the four families

# family -> (profiles.py key, checkpoint name, the notebook it reproduces)
FAMILIES = {
    "char": ("dropout", "dropout", "08_dropout"),
    "lstm": ("lstm", "lstm", "09_lstm"),
    "gpt2": ("gpt2", "gpt2", "10_gpt2"),
    "finetune": ("finetune", "finetuned", "11_finetuning"),
}


# the profile setting that each family's --steps (or --epochs) replaces
LENGTH_SETTING = {"char": "max_iters", "lstm": "max_epochs", "gpt2": "max_iters", "finetune": "max_steps"}


def profile_settings(args) -> dict:
    """The family's settings in the chosen profile, with the options the user gave on top."""
    from .profiles import SETTINGS

    cfg = dict(SETTINGS[FAMILIES[args.family][0]][args.profile])
    given = {LENGTH_SETTING[args.family]: getattr(args, "steps", None) or getattr(args, "epochs", None),
             "learning_rate": args.lr, "batch_size": args.batch_size,
             "block_size": getattr(args, "block_size", None)}
    cfg.update({k: v for k, v in given.items() if v is not None})
    return cfg


def train_char(args, cfg, device, weights: Path, meta: dict) -> None:
    """Notebook 08: the character-level GPT with dropout, trained by training.train."""
    from .batching import check_fits
    from .models import GPT, GPTConfig
    from .pipeline import load_char_data
    from .training import TrainConfig, train

    data = load_char_data(args.corpus)
    print(data.summary())
    check_fits(data.val, cfg["block_size"], "the validation split")  # before a huge model is built
    model = GPT(GPTConfig(data.vocab_size, block_size=cfg["block_size"], n_embd=cfg["n_embd"],
                          n_head=cfg["n_head"], n_layer=cfg["n_layer"], dropout=cfg["dropout"])).to(device)
    print(f"character GPT: {model.num_parameters():,} parameters")
    config = TrainConfig.from_settings(cfg, seed=args.seed, checkpoint_path=str(weights))
    history = train(model, data.train, data.val, config, device, torch.Generator().manual_seed(args.seed),
                    tokenizer=data.tokenizer, checkpoint_meta=meta)
    print(f"val loss {history.val_loss[-1]:.4f} nats/char after {history.steps[-1]} steps "
          f"({history.seconds:.0f} s, {history.tokens_per_second:,.0f} tokens/s)")


def train_lstm(args, cfg, device, weights: Path, meta: dict) -> None:
    """Notebook 09: the word-level LSTM, trained by recurrent.train_recurrent (truncated BPTT)."""
    from .corpus import load_corpus, split_corpus
    from .models.lstm import LSTMConfig, LSTMLanguageModel
    from .recurrent import RecurrentTrainConfig, train_recurrent
    from .words import Vocab, tokenize_lines

    splits = split_corpus(load_corpus(args.corpus).text)
    tokens = {name: tokenize_lines(getattr(splits, name)) for name in ("train", "val")}
    vocab = Vocab.build(tokens["train"], min_freq=cfg["min_freq"])
    ids = {name: torch.tensor(vocab.encode(toks)) for name, toks in tokens.items()}
    print(f"{len(tokens['train']):,} training words, vocabulary {len(vocab):,} (min_freq={cfg['min_freq']})")
    model = LSTMLanguageModel(LSTMConfig(
        vocab_size=len(vocab), emb_size=cfg["emb_size"], hidden_size=cfg["hidden_size"], n_layers=cfg["n_layers"],
        dropout=cfg["dropout"], embed_dropout=cfg["embed_dropout"], tie_weights=cfg["tie_weights"])).to(device)
    # as notebook 09: the smoke profile trains a few windows per epoch only
    config = RecurrentTrainConfig.from_settings(cfg, seed=args.seed, checkpoint_path=str(weights),
                                                max_windows=30 if args.profile == "smoke" else None)
    history = train_recurrent(model, ids["train"], ids["val"], config, device, tokenizer=vocab, checkpoint_meta=meta)
    best = history.best_epoch - 1
    print(f"best epoch {history.best_epoch}: val perplexity {history.val_perplexity[best]:.2f} "
          f"({history.seconds:.0f} s)")


def train_gpt2(args, cfg, device, weights: Path, meta: dict) -> None:
    """Notebook 10: GPT-2 on BPE tokens with training.train; --init starts from published weights."""
    from .batching import make_dataloader
    from .bpe import BPETokenizer
    from .models import GPT
    from .models.gpt2 import GPT2_PRESETS, check_bpe_vocab, from_pretrained, gpt2_config
    from .train_gpt2 import load_tokens
    from .training import TrainConfig, train

    if args.init:  # first, so that missing weights stop the run before any other work
        model = from_pretrained(args.init, dropout=cfg["dropout"])
        check_bpe_vocab(model, args.init)
        context, meta["init"] = model.block_size, args.init
    else:
        context, meta["preset"] = GPT2_PRESETS[cfg["preset"]][3], cfg["preset"]
    # the profile's context, but never more than the model has positions for
    block = args.block_size or min(cfg["block_size"], context)
    if block > context:
        raise CommandError(f"--block-size {block} is longer than the {args.init or cfg['preset']} model's context "
                           f"of {context} positions: use at most {context}.")
    if not args.init:
        model = GPT(gpt2_config(cfg["preset"], block_size=block, dropout=cfg["dropout"]))
    model.to(device)
    tok = BPETokenizer()
    train_ids, val_ids = load_tokens(args.corpus)
    print(f"GPT-2 ({args.init or cfg['preset']}): {model.num_parameters():,} parameters, context {block} | "
          f"{len(train_ids):,} training tokens")
    loader = make_dataloader(train_ids, block, min(cfg["stride"], block), cfg["batch_size"], seed=args.seed)
    config = TrainConfig.from_settings(cfg, block_size=block, seed=args.seed, checkpoint_path=str(weights))
    history = train(model, loader, val_ids, config, device, torch.Generator().manual_seed(args.seed),
                    tokenizer=tok, checkpoint_meta=meta)
    print(f"val loss {history.val_loss[-1]:.4f} nats/token after {history.steps[-1]} steps "
          f"({history.seconds:.0f} s, {history.tokens_per_second:,.0f} tokens/s)")


def train_finetune(args, cfg, device, weights: Path, meta: dict) -> None:
    """Notebook 11: multi-task fine-tuning (finetune.finetune) of a GPT-2 base. As in the notebook,
    a dev split carved from the training tables picks the kept weights and is what gets scored;
    the test rows stay unread (notebook 11b reads them once)."""
    from .bpe import BPETokenizer
    from .finetune import FinetuneConfig, finetune, load_examples, split_dev
    from .task_scores import sorting_scores
    from .models.gpt2 import load_base

    model = load_base(args.base, args.output_dir, device)  # first: a missing base stops the run at once
    tok = BPETokenizer()
    train_examples, dev_examples = split_dev(load_examples("train"))
    print(f"base {args.base!r}: {model.num_parameters():,} parameters | {len(train_examples)} training and "
          f"{len(dev_examples)} dev examples")
    meta.update(base=args.base, tasks=["sorting", "spell", "chat"])
    config = FinetuneConfig.from_settings(cfg, seed=args.seed, checkpoint_path=str(weights))
    history = finetune(model, tok, train_examples, config, device, dev_examples=dev_examples, checkpoint_meta=meta)
    sorting = [e for e in dev_examples if e.task == "sorting"][:cfg["eval_limit"]]
    accuracy = sorting_scores(model, tok, sorting, device).predictions().accuracy
    print(f"{config.max_steps} steps in {history.seconds:.0f} s, kept step {history.best_step} (best dev loss "
          f"{history.best_dev_loss:.3f}) | dev sorting accuracy {accuracy} "
          "(chance 0.25; notebook 11b scores every task with baselines)")


TRAINERS = {"char": train_char, "lstm": train_lstm, "gpt2": train_gpt2, "finetune": train_finetune}


# ----------------------------------------------------------------------------- the command

def build_parser() -> CommandParser:
    common = CommandParser(add_help=False)
    common.add_argument("--profile", default="auto", choices=("auto", "smoke", "cpu", "gpu"),
                        help="sizes from course_lib/profiles.py: smoke (seconds, CI), cpu (a laptop), gpu (a CUDA "
                             "box); auto: gpu on CUDA, else cpu")
    common.add_argument("--corpus", default="bundled",
                        help="corpus spec (as in the notebooks): bundled, a file / folder / glob of text files, "
                             "hf:<dataset id>, url:<address>")
    common.add_argument("--out", default=None,
                        help="where the checkpoint goes: a name (saved in outputs/checkpoints/), a folder "
                             "(<folder>/model.safetensors) or a path; default: the notebook's name")
    common.add_argument("--force", action="store_true", help="replace an existing checkpoint at --out")
    common.add_argument("--seed", type=seed_type, default=1337, help="random seed (0 to 2**32-1; default 1337)")
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    common.add_argument("--output-dir", default=None, help="the outputs folder (default: outputs/)")
    common.add_argument("--batch-size", type=positive_int, default=None, help="default: the profile's")

    parser = CommandParser(
        prog="python -m course_lib.train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model of the course without Jupyter (same library, same checkpoints as the notebooks).",
        epilog="`python -m course_lib.train <family> --help` shows each family's options; afterwards\n"
               "`python -m course_lib.generate --checkpoint <name or --out>` writes text with the model.")
    families = parser.add_subparsers(dest="family", required=True, metavar="{char,lstm,gpt2,finetune}")

    char = families.add_parser("char", parents=[common], help="notebook 08's full character-level GPT (dropout)",
                               description="Notebook 08: the full character-level GPT with dropout (training.train). "
                                           "Saved as 'dropout' unless --out says otherwise.")
    char.add_argument("--steps", type=positive_int, default=None, help="training steps (default: the profile's)")
    char.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: the profile's)")
    char.add_argument("--block-size", type=positive_int, default=None, help="context in characters")

    lstm = families.add_parser("lstm", parents=[common], help="notebook 09's word-level LSTM",
                               description="Notebook 09: the word-level LSTM with truncated BPTT "
                                           "(recurrent.train_recurrent). Saved as 'lstm' unless --out says otherwise.")
    lstm.add_argument("--epochs", type=positive_int, default=None, help="most epochs (default: the profile's)")
    lstm.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (default: the profile's)")

    gpt2 = families.add_parser("gpt2", parents=[common], help="notebook 10's GPT-2 on BPE tokens, from scratch or from "
                                                                "published weights (--init)",
                               description="Notebook 10: GPT-2 on BPE tokens (training.train). From scratch at the "
                                           "profile's preset, or with --init gpt2 from OpenAI's published weights "
                                           "(continued pre-training on --corpus). Saved as 'gpt2' unless --out "
                                           "says otherwise.")
    gpt2.add_argument("--steps", type=positive_int, default=None, help="training steps (default: the profile's)")
    gpt2.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: the profile's)")
    gpt2.add_argument("--block-size", type=positive_int, default=None,
                      help="context in tokens (default: the profile's, at most the model's)")
    gpt2.add_argument("--init", default=None,
                      help="start from published weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl (Hugging Face "
                           "cache; downloaded once when online), or a folder with config.json + model.safetensors")

    finetune = families.add_parser("finetune", parents=[common],
                                   help="notebook 11: fine-tune a GPT-2 (--base) on sorting, spells and chat",
                                   description="Notebook 11: fine-tune a GPT-2 on the three task tables "
                                               "(finetune.finetune). Saved as 'finetuned' unless --out says otherwise.")
    finetune.add_argument("--base", default="notebook10",
                          help="notebook10 (default: the course's GPT-2 from notebook 10 or `train gpt2`), "
                               "gpt2 / gpt2-medium / gpt2-large / gpt2-xl (OpenAI's weights), or a checkpoint "
                               "name or path")
    finetune.add_argument("--steps", type=positive_int, default=None, help="fine-tuning steps (default: the profile's)")
    finetune.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: the profile's)")
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .device import seed_everything, set_cpu_threads
    from .registry import checkpoints_dir

    _, default_name, notebook = FAMILIES[args.family]
    device = resolve_device(args.device)
    if args.profile == "auto":  # by the device actually used, not merely by whether CUDA exists
        args.profile = "gpu" if device.type == "cuda" else "cpu"
    cfg = profile_settings(args)
    weights = check_target(checkpoint_target(args.out, default_name, args.output_dir), args.force)
    if device.type == "cpu":
        set_cpu_threads(args.profile)  # the notebooks' policy; OMP_NUM_THREADS wins
    seed_everything(args.seed)
    print(f"{args.family} (notebook {notebook}) | profile {args.profile} | corpus {args.corpus} | seed {args.seed} "
          f"| device {device} -> {weights}", flush=True)
    meta = {"profile": args.profile, "corpus": args.corpus, "seed": args.seed, "producer": "train",
            "family": args.family}
    TRAINERS[args.family](args, cfg, device, weights, meta)
    name = weights.name.removesuffix(".safetensors")
    shown = (name if weights.parent == checkpoints_dir(args.output_dir)
             else weights.parent if name == "model" else weights.with_name(name))
    where = f" --output-dir {args.output_dir}" if args.output_dir and shown == name else ""
    print(f"saved {weights}\nwrite with it: python -m course_lib.generate --checkpoint {shown}{where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

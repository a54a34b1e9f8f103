"""What every command-line tool of the course shares (train, train_gpt2, generate, bench,
registry): argument types, the --device check, and `cli_entry`, which turns any error into ONE
line `error: <what is wrong and what to do>` on stderr and a non-zero exit status, never a
traceback (COURSE_DEBUG=1 shows it)."""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

MAX_SEED = 2**32 - 1  # NumPy's limit, and train_gpt2 derives per-step seeds as seed * 2**32 + step


class CommandError(Exception):
    """A mistake in what the user asked for; the message says what to do instead."""


class CommandParser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other error: one `error: ...` line."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def seed_type(text: str) -> int:
    """argparse type for --seed: an integer from 0 to 2**32 - 1 (torch, NumPy and Python accept it)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def resolve_device(preference: str) -> torch.device:
    """course_lib.device.pick_device for a --device option: any problem is a CommandError."""
    from .device import pick_device

    try:
        return pick_device(preference)
    except (RuntimeError, ValueError) as err:
        raise CommandError(f"--device {preference}: {err}") from err


def one_line(err: BaseException) -> str:
    """The error as one line a student can act on."""
    message = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError):
        message = f"missing entry {message}"
    if isinstance(err, torch.OutOfMemoryError):
        return (f"out of memory on the device ({message[:200]}). Use a smaller --batch-size or --block-size, "
                "or a smaller --profile.")
    # Our own errors and the standard "bad value / bad file" ones carry messages written for people;
    # anything else is a bug we did not foresee, and says how to see where it happened.
    ours = type(err).__module__.startswith("course_lib") or isinstance(err, (ValueError, OSError))
    if ours:
        return message[:1500]
    return (f"{type(err).__name__}: {message[:1000]} (unexpected: run again with COURSE_DEBUG=1 to see where "
            "it happened, and please report it)")


def cli_entry(main):
    """Wrap a command's main(argv) -> exit code: every error becomes one `error: ...` line on
    stderr and exit status 2 (130 for Ctrl-C), never a traceback. COURSE_DEBUG=1 shows the
    traceback instead. argparse's own usage errors (exit 2) and SystemExit pass through.
    Under torchrun only rank 0 prints, so a message appears once, not once per process."""

    @functools.wraps(main)
    def run(argv=None) -> int:
        speak = os.environ.get("RANK", "0") == "0"
        try:
            return main(argv)
        except KeyboardInterrupt:
            if speak:
                print("error: interrupted. Checkpoints saved before this point are unchanged.", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader went away (e.g. `| head`): not our failure, stop quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (keeps Python's exit-time flush quiet)
            return 0
        except Exception as err:
            if os.environ.get("COURSE_DEBUG"):
                raise
            if speak:
                print(f"error: {one_line(err)}", file=sys.stderr)
            return 2

    return run

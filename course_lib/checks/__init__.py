"""Keeping the notebook code and the library code honest, and grading the exercises.

1. Teach, then check: a notebook writes a component in front of the student, then calls
   `check_same_outputs` to prove it computes exactly what the library version computes on the
   same weights and inputs. After that the notebook uses the library version.
2. Exercises: each notebook ends with exercises; a grader (`grade_...`) runs the student's
   function on cases with known answers and prints "passed" or what differs (grading.py; one
   module of graders per topic, all re-exported here: `from course_lib.checks import grade_...`).
"""

from __future__ import annotations

import torch


from .grading import Grade, Mistake, NotAttempted, grader  # noqa: F401

# One module of graders per notebook topic; each lists its graders in __all__.
from .data import *  # noqa: F401,F403,E402          01 data prep
from .bigram import *  # noqa: F401,F403,E402        02 bigram
from .attention import *  # noqa: F401,F403,E402     03 self-attention
from .multihead import *  # noqa: F401,F403,E402     04 multi-head
from .feedforward import *  # noqa: F401,F403,E402   05 feed-forward
from .residual import *  # noqa: F401,F403,E402      06 residual
from .layernorm import *  # noqa: F401,F403,E402     07 LayerNorm
from .dropout import *  # noqa: F401,F403,E402       08 dropout, the full GPT
from .lstm import *  # noqa: F401,F403,E402          09 LSTM
from .gpt2 import *  # noqa: F401,F403,E402          10 GPT-2
from .finetuning import *  # noqa: F401,F403,E402    11 fine-tuning
from .comparison import *  # noqa: F401,F403,E402    12 comparison


class CheckFailed(AssertionError):
    pass


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy parameters by position (names may differ between the two versions, shapes may not)."""
    src, dst = list(source.state_dict().values()), list(target.state_dict().keys())
    if len(src) != len(dst):
        raise CheckFailed(f"The two modules hold different numbers of tensors ({len(src)} vs {len(dst)}).")
    new_state = {}
    for (name, old), value in zip(target.state_dict().items(), src):
        if old.shape != value.shape:
            raise CheckFailed(f"Shape mismatch at {name}: {tuple(value.shape)} vs {tuple(old.shape)}.")
        new_state[name] = value.clone()
    target.load_state_dict(new_state)


@torch.no_grad()
def check_same_outputs(mine: torch.nn.Module, reference: torch.nn.Module, *inputs: torch.Tensor,
                       atol: float = 1e-5, copy: bool = True) -> float:
    """Copy `mine`'s weights into `reference` (unless copy=False), run both in eval mode on the
    same inputs and raise CheckFailed unless the outputs agree within atol. Returns max |diff|."""
    if copy:
        copy_weights(mine, reference)
    mine.eval()
    reference.eval()
    a, b = mine(*inputs), reference(*inputs)
    if a.shape != b.shape:
        raise CheckFailed(f"Output shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}.")
    diff = (a - b).abs().max().item()
    if not diff <= atol:
        raise CheckFailed(f"Outputs differ by up to {diff:.2e} (allowed {atol:.0e}).")
    print(f"check passed: same shape {tuple(a.shape)}, max |difference| = {diff:.2e}")
    return diff

"""The machinery every exercise grader shares.

A grader takes the student's function (or module), runs it on cases whose right answers we know,
and says in one line either "passed" or precisely what differs. It never raises, so a notebook
with an unfinished exercise still runs top to bottom (`make course`, nbval):

    @grader("causal self-attention")
    def grade_causal_attention(attend):
        out = attend(q, k, v)
        expect(out.shape == ..., f"wrong shape: {tuple(out.shape)}, expected ...")
        ...

    grade_causal_attention(my_attention)   # prints one line, returns a Grade

An unfilled stub (its body is `raise NotImplementedError`, or it returns None or Ellipsis)
prints "not attempted yet"; a crash inside the student's code prints the exception's type and
message; a wrong answer prints the first mistake the checks find. Graders check the most
telling mistakes first, so the message names the cause (mask the wrong way round, missing
1/sqrt(d), softmax over the wrong axis...) rather than only "values differ".
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass

import torch


class Mistake(AssertionError):
    """Raised inside a grader: the student's answer is wrong, and the message says how."""


class NotAttempted(Exception):
    """Raised inside a grader when the student's function is still the stub."""


@dataclass
class Grade:
    exercise: str
    passed: bool | None       # True passed, False a mistake, None not attempted yet
    message: str

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __repr__(self) -> str:
        return f"Grade({self.exercise!r}: {self.status})"

    def _ipython_display_(self) -> None:
        """The grader has already printed its line; a cell ending in the call shows nothing more."""

    @property
    def status(self) -> str:
        return {True: "passed", False: "not yet", None: "not attempted yet"}[self.passed]


def expect(condition, message: str) -> None:
    """Inside a grader: if the condition is false, the student's answer has this mistake."""
    if not condition:
        raise Mistake(message)


def call(student_fn, *args, **kwargs):
    """Run the student's code; turn "still a stub" into NotAttempted."""
    try:
        result = student_fn(*args, **kwargs)
    except NotImplementedError as err:
        raise NotAttempted() from err
    if result is None or result is Ellipsis:
        raise NotAttempted()
    return result


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    """Same shape and values within atol (floats); a helper for the checks."""
    return tuple(a.shape) == tuple(b.shape) and torch.allclose(a.float(), b.float(), atol=atol, rtol=0)


def grader(exercise: str):
    """Decorate a checking function: it becomes a grader that prints one line and returns a Grade."""
    def wrap(check):
        @functools.wraps(check)
        def run(*args, quiet: bool = False, **kwargs) -> Grade:
            try:
                extra = check(*args, **kwargs)
                grade = Grade(exercise, True, f"passed: {exercise}" + (f" ({extra})" if isinstance(extra, str) else ""))
            except NotAttempted:
                grade = Grade(exercise, None, f"not attempted yet: {exercise} (fill in the function above, "
                                              "then run this cell again)")
            except Mistake as err:
                grade = Grade(exercise, False, f"not yet: {exercise}: {err}")
            except Exception as err:  # the student's code crashed: show where, briefly
                where = traceback.extract_tb(err.__traceback__)[-1]
                grade = Grade(exercise, False, f"not yet: {exercise}: your code raised {type(err).__name__}: "
                                               f"{err} (line {where.lineno}: {where.line})")
            if not quiet:
                print(("✅ " if grade.passed else "⏳ " if grade.passed is None else "❌ ") + grade.message)
            return grade
        run.exercise = exercise
        return run
    return wrap

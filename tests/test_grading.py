"""The grading machinery every exercise uses (course_lib/checks/grading.py)."""

from course_lib.checks import grader
from course_lib.checks.grading import call, expect


@grader("double a number")
def grade_double(fn):
    expect(call(fn, 2) == 4, f"double(2) should be 4, got {call(fn, 2)!r}")
    return "checked on 2"


def test_passed_mistake_stub_and_crash_each_get_their_line(capsys):
    def stub(x):
        raise NotImplementedError

    assert grade_double(lambda x: 2 * x).passed is True
    assert grade_double(lambda x: x + 3).passed is False
    assert grade_double(stub).passed is None
    assert grade_double(lambda x: None).passed is None           # "return" left empty: a stub too
    assert grade_double(lambda x: 1 / 0).passed is False         # a crash never escapes a grader
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0].endswith("passed: double a number (checked on 2)")
    assert "double(2) should be 4, got 5" in lines[1]
    assert "not attempted yet" in lines[2] and "not attempted yet" in lines[3]
    assert "your code raised ZeroDivisionError" in lines[4]


def test_quiet_grading_prints_nothing(capsys):
    assert not grade_double(lambda x: x, quiet=True)
    assert capsys.readouterr().out == ""

import os

import pytest
import torch

from course_lib import paths
from course_lib.paths import FolderError, cache_dir, output_dir
from course_lib.profiles import setup_notebook


def test_the_environment_wins_and_the_folder_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "from_env" / "deep"))
    assert output_dir(tmp_path / "param") == tmp_path / "from_env" / "deep"
    assert (tmp_path / "from_env" / "deep").is_dir()
    monkeypatch.delenv("COURSE_OUTPUT_DIR")
    assert output_dir(str(tmp_path / "param")) == tmp_path / "param"


@pytest.mark.parametrize("make_bad, problem", [
    (lambda tmp: (tmp / "a_file").touch() or tmp / "a_file", "is a file, not a folder"),
    (lambda tmp: (tmp / "a_file").touch() or tmp / "a_file" / "sub", "part of the path is a file, not a folder"),
    (lambda tmp: "bad\x00name", "cannot be created \\(embedded null byte\\)"),
])
def test_an_unusable_output_dir_parameter_names_the_setting_and_the_fix(tmp_path, monkeypatch, make_bad, problem):
    monkeypatch.delenv("COURSE_OUTPUT_DIR")
    with pytest.raises(FolderError, match=f"^output_dir = .*{problem}. Fix: set output_dir .*parameters cell"):
        output_dir(make_bad(tmp_path))


def test_an_unusable_environment_variable_is_named(tmp_path, monkeypatch):
    (tmp_path / "a_file").touch()
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "a_file"))
    with pytest.raises(FolderError, match="^COURSE_OUTPUT_DIR .*is a file.*Fix: set COURSE_OUTPUT_DIR"):
        output_dir(tmp_path / "fine")  # the parameter is fine, but the environment wins
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "a_file"))
    with pytest.raises(FolderError, match="^COURSE_CACHE_DIR .*is a file.*Fix: set COURSE_CACHE_DIR"):
        cache_dir()


def test_not_a_path_at_all(monkeypatch):
    monkeypatch.delenv("COURSE_OUTPUT_DIR")
    with pytest.raises(FolderError, match="output_dir must be a folder path \\(a string\\), got 42"):
        output_dir(42)


def test_a_folder_without_write_permission(tmp_path, monkeypatch):
    # as root (CI, containers) chmod cannot take write permission away, so ask os.access to say no
    target = tmp_path / "read_only"
    target.mkdir()
    real_access = os.access
    monkeypatch.setattr(paths.os, "access", lambda p, mode: False if str(p) == str(target) else real_access(p, mode))
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(target))
    with pytest.raises(FolderError, match="read_only' is not writable.*Fix: set COURSE_OUTPUT_DIR"):
        output_dir()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_a_folder_without_write_permission_for_real(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        monkeypatch.setenv("COURSE_OUTPUT_DIR", str(locked))
        with pytest.raises(FolderError, match="is not writable"):
            output_dir()
        monkeypatch.setenv("COURSE_OUTPUT_DIR", str(locked / "new"))
        with pytest.raises(FolderError, match="permission denied"):
            output_dir()
    finally:
        locked.chmod(0o700)


def test_setup_notebook_fails_first_with_the_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a_file").touch()
    monkeypatch.delenv("COURSE_OUTPUT_DIR")
    threads = torch.get_num_threads()
    with pytest.raises(FolderError, match="^output_dir = .*a_file' is a file, not a folder. Fix:"):
        setup_notebook("data_prep", profile="smoke", output_dir=str(tmp_path / "a_file"), device="cpu",
                       verbose=False)
    assert torch.get_num_threads() == threads  # it failed before changing anything global
